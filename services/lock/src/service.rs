//! The gRPC face of the lock service: validates requests into the table's types (in one place,
//! [`crate::convert`]), calls the [`LockTable`] of the current leadership term, and maps errors
//! to statuses. A server that does not lead answers every call but Leader UNAVAILABLE, naming the
//! leader in the `township-lock-leader` trailer when it knows it.

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
    leader::{Leadership, Role, Term},
    session,
    table::LockTable,
};

/// Implements `township.lock.v1.LockService`.
#[derive(Clone)]
pub struct LockApi {
    leadership: Leadership,
    guard: Arc<Guard>,
    shutdown: Shutdown,
    /// This server's advertised address (HOST:PORT), when elected on etcd.
    advertise: Option<String>,
}

impl LockApi {
    /// Serves the table of each term `leadership` gives, every acquire checked by `guard`; waits
    /// and streams end when their term ends or `shutdown` fires. `advertise` is this server's
    /// address as the Leader RPC names it.
    pub fn new(
        leadership: Leadership,
        guard: Arc<Guard>,
        shutdown: Shutdown,
        advertise: Option<String>,
    ) -> Self {
        Self {
            leadership,
            guard,
            shutdown,
            advertise,
        }
    }

    /// The current term, or UNAVAILABLE naming the leader.
    fn term(&self) -> Result<Term, Status> {
        self.leadership.term().map_err(Status::from)
    }

    /// The status of a table's error, naming the leader when the term ended under the call.
    fn status(&self, err: Error) -> Status {
        Status::from(self.leadership.hint(err))
    }
}

#[tonic::async_trait]
impl LockService for LockApi {
    async fn acquire(
        &self,
        request: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let term = self.term()?;
        let deadline = grpc_timeout(request.metadata());
        let principal = principal_of(&request);
        let (acquire, wait_timeout) = parse_acquire(request.into_inner(), &principal)?;
        let caps = self.guard.check(&acquire)?;
        let wait = wait_for(wait_timeout, deadline);
        let granted = tokio::select! {
            granted = term.table.acquire(acquire, wait, caps) => granted.map_err(|e| self.status(e))?,
            () = term.ended.cancelled() => return Err(if self.shutdown.is_cancelled() {
                Error::ShuttingDown.into()
            } else {
                self.status(Error::NotLeader(None))
            }),
        };
        Ok(Response::new(lease_to_pb(granted)))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let term = self.term()?;
        let id = parse_lease_id(&request.get_ref().lease_id)?;
        term.table.release(id, &principal_of(&request))?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let term = self.term()?;
        let id = parse_lease_id(&request.get_ref().lease_id)?;
        let expires_at = term
            .table
            .refresh(id, &principal_of(&request))
            .map_err(|e| self.status(e))?;
        Ok(Response::new(pb::RefreshResponse {
            expires_at: Some(expires_at.into()),
        }))
    }

    type KeepAliveStream = ReceiverStream<Result<pb::KeepAliveResponse, Status>>;

    async fn keep_alive(
        &self,
        request: Request<Streaming<pb::KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let term = self.term()?;
        let (tx, rx) = mpsc::channel(16);
        let principal = principal_of(&request);
        tokio::spawn(keep_alive_session(
            term.table,
            principal,
            request.into_inner(),
            tx,
            term.ended,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type SessionStream = ReceiverStream<Result<pb::SessionResponse, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let term = self.term()?;
        let (tx, rx) = mpsc::channel(64);
        let principal = principal_of(&request);
        tokio::spawn(session::serve(
            term.table,
            self.guard.clone(),
            principal,
            request.into_inner(),
            tx,
            term.ended,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn inspect(
        &self,
        request: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let resources = self
            .term()?
            .table
            .inspect(&request.get_ref().resource_prefix)
            .into_iter()
            .map(resource_to_pb)
            .collect();
        Ok(Response::new(pb::InspectResponse { resources }))
    }

    async fn leader(
        &self,
        _request: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        let reply = match self.leadership.role() {
            Role::Leading(term) => pb::LeaderResponse {
                leader: self.advertise.clone().unwrap_or_default(),
                epoch: term.epoch,
                serving: true,
            },
            Role::Following { leader, epoch } => pb::LeaderResponse {
                leader: leader.unwrap_or_default(),
                epoch,
                serving: false,
            },
        };
        Ok(Response::new(reply))
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
                // "lost" when unknown or expired, and when the term has ended.
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
