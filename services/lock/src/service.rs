//! The gRPC face of the lock service: validates requests into the table's types (in one place,
//! below), calls the [`LockTable`], and maps errors to statuses.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use township_cell::Mode;
use township_kit::{Shutdown, status::grpc_timeout};
use township_proto::lock::v1 as pb;
use township_proto::lock::v1::lock_service_server::LockService;

use crate::{
    Error, session,
    table::{self, LeaseId, LockTable},
};

/// Lease lifetime when the request gives none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Shortest lease lifetime allowed.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest lease lifetime allowed.
pub const MAX_TTL: Duration = Duration::from_secs(300);
/// Longest wait for a grant, whatever the request or its deadline says.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Most targets in one request.
pub const MAX_TARGETS: usize = 64;
/// Longest resource name, in bytes.
pub const MAX_RESOURCE_BYTES: usize = 256;
/// Longest owner text, in bytes.
pub const MAX_OWNER_BYTES: usize = 256;

/// Implements `township.lock.v1.LockService`.
#[derive(Clone)]
pub struct LockApi {
    table: Arc<LockTable>,
    shutdown: Shutdown,
}

impl LockApi {
    /// Serves `table`; waits and keep-alive streams end when `shutdown` fires.
    pub fn new(table: Arc<LockTable>, shutdown: Shutdown) -> Self {
        Self { table, shutdown }
    }
}

#[tonic::async_trait]
impl LockService for LockApi {
    async fn acquire(
        &self,
        request: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let deadline = grpc_timeout(request.metadata());
        let (acquire, wait_timeout) = parse_acquire(request.into_inner())?;
        let wait = wait_for(wait_timeout, deadline);
        let granted = tokio::select! {
            granted = self.table.acquire(acquire, wait) => granted?,
            () = self.shutdown.cancelled() => return Err(Error::ShuttingDown.into()),
        };
        Ok(Response::new(lease_to_pb(granted)))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let id = parse_lease_id(&request.get_ref().lease_id)?;
        self.table.release(id)?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let id = parse_lease_id(&request.get_ref().lease_id)?;
        let expires_at = self.table.refresh(id)?;
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
        tokio::spawn(keep_alive_session(
            self.table.clone(),
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
        tokio::spawn(session::serve(
            self.table.clone(),
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
            .map(|view| pb::ResourceState {
                resource: view.resource,
                holders: view
                    .holders
                    .into_iter()
                    .map(|h| pb::Holder {
                        lease_id: h.lease.to_string(),
                        owner: h.owner,
                        mode: mode_to_pb(h.mode).into(),
                        fencing_token: h.token,
                        lease_age: duration_to_pb(h.age),
                        expires_at: Some(h.expires_at.into()),
                    })
                    .collect(),
                waiters: view
                    .waiters
                    .into_iter()
                    .map(|w| pb::Waiter {
                        owner: w.owner,
                        mode: mode_to_pb(w.mode).into(),
                        waiting_for: duration_to_pb(w.waiting_for),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::InspectResponse { resources }))
    }
}

/// One KeepAlive stream: refreshes each lease named on it and answers with its new expiry (or
/// `lost`). When the stream ends or breaks, every lease it carried is released at once.
async fn keep_alive_session(
    table: Arc<LockTable>,
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
                let expires_at = table.refresh(id).ok();
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
        if table.release(id).is_ok() {
            tracing::info!(lease = %id, "keep-alive stream ended: lease released");
        }
    }
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

pub(crate) fn parse_acquire(
    request: pb::AcquireRequest,
) -> Result<(table::Request, Option<Duration>), Error> {
    if request.targets.is_empty() {
        return Err(Error::invalid(
            "targets",
            "give at least one resource to lock",
        ));
    }
    if request.targets.len() > MAX_TARGETS {
        return Err(Error::invalid(
            "targets",
            format!("at most {MAX_TARGETS} per request"),
        ));
    }
    let mut targets: Vec<table::Target> = Vec::with_capacity(request.targets.len());
    for (i, target) in request.targets.into_iter().enumerate() {
        let resource = target.resource;
        if resource.is_empty() || resource.len() > MAX_RESOURCE_BYTES {
            return Err(Error::invalid(
                format!("targets[{i}].resource"),
                format!("must be 1 to {MAX_RESOURCE_BYTES} bytes"),
            ));
        }
        if let Some(j) = targets.iter().position(|t| t.resource == resource) {
            return Err(Error::invalid(
                format!("targets[{i}].resource"),
                format!("{resource:?} is already targets[{j}]"),
            ));
        }
        let mode = match pb::Mode::try_from(target.mode) {
            Ok(pb::Mode::Read) => Mode::Read,
            Ok(pb::Mode::Write) => Mode::Write,
            _ => {
                return Err(Error::invalid(
                    format!("targets[{i}].mode"),
                    "must be MODE_READ or MODE_WRITE",
                ));
            }
        };
        targets.push(table::Target { resource, mode });
    }
    let ttl = match request.ttl {
        None => DEFAULT_TTL,
        Some(ttl) => Duration::try_from(ttl)
            .ok()
            .filter(|ttl| (MIN_TTL..=MAX_TTL).contains(ttl))
            .ok_or_else(|| Error::invalid("ttl", "must be from 1s to 5m"))?,
    };
    let wait_timeout = request
        .wait_timeout
        .map(|wait| {
            Duration::try_from(wait)
                .ok()
                .filter(|wait| *wait <= MAX_WAIT)
                .ok_or_else(|| Error::invalid("wait_timeout", "must be from 0s to 5m"))
        })
        .transpose()?;
    if request.owner.len() > MAX_OWNER_BYTES {
        return Err(Error::invalid(
            "owner",
            format!("at most {MAX_OWNER_BYTES} bytes"),
        ));
    }
    Ok((
        table::Request {
            targets,
            ttl,
            owner: request.owner,
        },
        wait_timeout,
    ))
}

pub(crate) fn parse_lease_id(text: &str) -> Result<LeaseId, Error> {
    if text.is_empty() {
        return Err(Error::invalid("lease_id", "must not be empty"));
    }
    text.parse()
}

pub(crate) fn lease_to_pb(granted: table::Granted) -> pb::Lease {
    pb::Lease {
        lease_id: granted.lease.to_string(),
        grants: granted
            .grants
            .into_iter()
            .map(|g| pb::Grant {
                resource: g.resource,
                mode: mode_to_pb(g.mode).into(),
                fencing_token: g.token,
            })
            .collect(),
        expires_at: Some(granted.expires_at.into()),
        ttl: duration_to_pb(granted.ttl),
    }
}

fn mode_to_pb(mode: Mode) -> pb::Mode {
    match mode {
        Mode::Read => pb::Mode::Read,
        Mode::Write => pb::Mode::Write,
    }
}

fn duration_to_pb(duration: Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(duration).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(resource: &str, mode: pb::Mode) -> pb::LockTarget {
        pb::LockTarget {
            resource: resource.into(),
            mode: mode.into(),
        }
    }

    fn field_of(request: pb::AcquireRequest) -> String {
        match parse_acquire(request) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn bad_acquire_requests_name_the_field() {
        let ok = || pb::AcquireRequest {
            targets: vec![target("a", pb::Mode::Read)],
            ..Default::default()
        };
        assert_eq!(field_of(pb::AcquireRequest::default()), "targets");
        let mut r = ok();
        r.targets.push(target("", pb::Mode::Write));
        assert_eq!(field_of(r), "targets[1].resource");
        let mut r = ok();
        r.targets.push(target(&"x".repeat(257), pb::Mode::Write));
        assert_eq!(field_of(r), "targets[1].resource");
        let mut r = ok();
        r.targets.push(target("a", pb::Mode::Write));
        assert_eq!(field_of(r), "targets[1].resource");
        let mut r = ok();
        r.targets.push(target("b", pb::Mode::Unspecified));
        assert_eq!(field_of(r), "targets[1].mode");
        let mut r = ok();
        r.targets[0].mode = 7;
        assert_eq!(field_of(r), "targets[0].mode");
        let mut r = ok();
        r.ttl = Some(prost_types::Duration {
            seconds: 0,
            nanos: 999_999_999,
        });
        assert_eq!(field_of(r), "ttl");
        let mut r = ok();
        r.ttl = Some(prost_types::Duration {
            seconds: 301,
            nanos: 0,
        });
        assert_eq!(field_of(r), "ttl");
        let mut r = ok();
        r.wait_timeout = Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        });
        assert_eq!(field_of(r), "wait_timeout");
        let mut r = ok();
        r.owner = "o".repeat(257);
        assert_eq!(field_of(r), "owner");
    }

    #[test]
    fn defaults_are_a_ten_second_lease_and_no_explicit_wait() {
        let request = pb::AcquireRequest {
            targets: vec![target("a", pb::Mode::Write)],
            ..Default::default()
        };
        let (parsed, wait) = parse_acquire(request).unwrap();
        assert_eq!(parsed.ttl, DEFAULT_TTL);
        assert_eq!(wait, None);
        assert_eq!(
            parsed.targets,
            vec![table::Target {
                resource: "a".into(),
                mode: Mode::Write
            }]
        );
    }

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
