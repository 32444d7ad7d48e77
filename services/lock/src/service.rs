//! The gRPC face of the lock service: validates requests into the table's types (in one place,
//! [`crate::convert`]), calls the [`LockTable`], and maps errors to statuses.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use township_kit::{Caller, Shutdown, status::grpc_timeout};
use township_proto::lock::v1 as pb;
use township_proto::lock::v1::lock_service_server::LockService;

use crate::{
    Error,
    convert::{MAX_WAIT, lease_to_pb, parse_acquire, parse_lease_id, resource_to_pb},
    guard::Guard,
    session,
    table::LockTable,
};

/// Implements `township.lock.v1.LockService`.
#[derive(Clone)]
pub struct LockApi {
    table: Arc<LockTable>,
    guard: Arc<Guard>,
    shutdown: Shutdown,
}

impl LockApi {
    /// Serves `table`, every acquire checked by `guard`; waits and keep-alive streams end when
    /// `shutdown` fires.
    pub fn new(table: Arc<LockTable>, guard: Arc<Guard>, shutdown: Shutdown) -> Self {
        Self {
            table,
            guard,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl LockService for LockApi {
    async fn acquire(
        &self,
        request: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let deadline = grpc_timeout(request.metadata());
        let principal = principal_of(&request);
        let (acquire, wait_timeout) = parse_acquire(request.into_inner(), &principal)?;
        let caps = self.guard.check(&acquire)?;
        let wait = wait_for(wait_timeout, deadline);
        let granted = tokio::select! {
            granted = self.table.acquire(acquire, wait, caps) => granted?,
            () = self.shutdown.cancelled() => return Err(Error::ShuttingDown.into()),
        };
        Ok(Response::new(lease_to_pb(granted)))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let id = parse_lease_id(&request.get_ref().lease_id)?;
        self.table.release(id, &principal_of(&request))?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let id = parse_lease_id(&request.get_ref().lease_id)?;
        let expires_at = self.table.refresh(id, &principal_of(&request))?;
        Ok(Response::new(pb::RefreshResponse {
            expires_at: Some(expires_at.into()),
        }))
    }

    type KeepAliveStream = ReceiverStream<Result<pb::KeepAliveResponse, Status>>;

    async fn keep_alive(
        &self,
        request: Request<Streaming<pb::KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let principal = principal_of(&request);
        tokio::spawn(keep_alive_session(
            self.table.clone(),
            principal,
            request.into_inner(),
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type SessionStream = ReceiverStream<Result<pb::SessionResponse, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let principal = principal_of(&request);
        tokio::spawn(session::serve(
            self.table.clone(),
            self.guard.clone(),
            principal,
            request.into_inner(),
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn inspect(
        &self,
        request: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let resources = self
            .table
            .inspect(&request.get_ref().resource_prefix)
            .into_iter()
            .map(resource_to_pb)
            .collect();
        Ok(Response::new(pb::InspectResponse { resources }))
    }
}

/// One KeepAlive stream: refreshes each lease named on it and answers with its new expiry (or
/// `lost`). When the stream ends or breaks, every lease it carried is released at once.
async fn keep_alive_session(
    table: Arc<LockTable>,
    principal: String,
    mut inbound: Streaming<pb::KeepAliveRequest>,
    tx: mpsc::Sender<Result<pb::KeepAliveResponse, Status>>,
    shutdown: Shutdown,
) {
    let mut carried = HashSet::new();
    loop {
        let message = tokio::select! {
            message = inbound.message() => message,
            () = tx.closed() => break,
            () = shutdown.cancelled() => break,
        };
        let Ok(Some(request)) = message else { break };
        let reply = match parse_lease_id(&request.lease_id) {
            Err(err) => Err(Status::from(err)),
            Ok(id) => {
                carried.insert(id);
                let expires_at = table.refresh(id, &principal).ok();
                Ok(pb::KeepAliveResponse {
                    lease_id: request.lease_id,
                    lost: expires_at.is_none(),
                    expires_at: expires_at.map(Into::into),
                })
            }
        };
        let failed = reply.is_err();
        if tx.send(reply).await.is_err() || failed {
            break;
        }
    }
    for id in carried {
        if table.release(id, &principal).is_ok() {
            tracing::info!(lease = %id, "keep-alive stream ended: lease released");
        }
    }
}

/// Who calls, as its client certificate names it: a lease belongs to it. Callers without a
/// certificate (plaintext) share the empty principal, so among them anyone may act on a lease
/// whose id it has, as before mutual TLS.
fn principal_of<T>(request: &Request<T>) -> String {
    Caller::of(request).map_or_else(String::new, |caller| caller.principal().to_owned())
}

/// The wait for a grant: the request's `wait_timeout`, else the call's deadline, never more than
/// [`MAX_WAIT`]. Ends a little before the deadline so that this service answers
/// DEADLINE_EXCEEDED itself (tonic's own timeout would answer CANCELLED).
fn wait_for(wait_timeout: Option<Duration>, deadline: Option<Duration>) -> Duration {
    let before_deadline =
        deadline.map(|d| d.saturating_sub((d / 10).min(Duration::from_millis(50))));
    [Some(MAX_WAIT), wait_timeout, before_deadline]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_ends_before_the_calls_deadline_and_never_exceeds_the_maximum() {
        assert_eq!(wait_for(None, None), MAX_WAIT);
        assert_eq!(
            wait_for(Some(Duration::from_secs(2)), None),
            Duration::from_secs(2)
        );
        assert_eq!(
            wait_for(None, Some(Duration::from_secs(1))),
            Duration::from_millis(950)
        );
        assert_eq!(
            wait_for(None, Some(Duration::from_millis(100))),
            Duration::from_millis(90)
        );
        assert_eq!(
            wait_for(
                Some(Duration::from_millis(10)),
                Some(Duration::from_secs(1))
            ),
            Duration::from_millis(10)
        );
        assert_eq!(wait_for(None, Some(Duration::from_secs(3600))), MAX_WAIT);
    }
}
