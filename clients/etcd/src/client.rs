//! [`Etcd`]: one connection to whichever member of the endpoint list answers, moved on to the
//! next member when a call finds its member gone; and the calls Township makes.

use std::{
    future::Future,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming, transport::Channel};
use township_client::{DialError, Dialer, addr_list};

use crate::pb::{
    etcdserverpb::{
        LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, RangeRequest, TxnRequest,
        TxnResponse, WatchCreateRequest, WatchRequest, WatchResponse, kv_client::KvClient,
        lease_client::LeaseClient, watch_client::WatchClient, watch_request::RequestUnion,
    },
    mvccpb::KeyValue,
};

/// How long one call may take when the caller does not say: a member that does not answer
/// within it is taken as lost, and the next call goes to another.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint list cannot be read (the reason quotes it).
    #[error("etcd endpoints: {0}")]
    BadEndpoints(String),
    /// No member of the list took a connection.
    #[error("no etcd member could be reached at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    /// A member was reached and the call failed: etcd's answer, or the transport's (the member
    /// went away, did not answer in time).
    #[error("etcd answered {:?}: {}", .0.code(), .0.message())]
    Call(Status),
}

impl Error {
    /// Whether trying again later, or through another member, may succeed: etcd or the member
    /// was unreachable, unavailable (e.g. no raft leader) or slow, as opposed to a refusal.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::BadEndpoints(_) => false,
            Error::Unreachable { .. } => true,
            Error::Call(status) => member_lost(status),
        }
    }
}

/// A lease granted by etcd: keys put under it go when it expires or is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// Its time to live as etcd granted it (etcd may raise a short one to its minimum).
    pub ttl: Duration,
}

/// A client of an etcd cluster. Cheap to share behind an `Arc`; calls may run at once.
pub struct Etcd {
    dialer: Dialer,
    /// The endpoint list as given (`host:port,...`).
    endpoints: String,
    call_timeout: Duration,
    connection: Mutex<Connection>,
}

/// The connection in use, and where to dial from when there is none.
#[derive(Default)]
struct Connection {
    /// A channel to the member at this index of the list.
    current: Option<(Channel, usize)>,
    /// The index to dial from next.
    next: usize,
}

impl Etcd {
    /// A client of the members at `endpoints` (`host:port`, comma-separated), dialled with
    /// `dialer` (its TLS, connect timeout and keepalive) on the first call. Fails only on a list
    /// that cannot be read.
    pub fn new(endpoints: &str, dialer: Dialer) -> Result<Self, Error> {
        addr_list(endpoints).map_err(Error::BadEndpoints)?;
        Ok(Self {
            dialer: dialer.retries(0),
            endpoints: endpoints.to_owned(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connection: Mutex::new(Connection::default()),
        })
    }

    /// How long one call may take before its member is taken as lost (default 5 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, Error> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let reply = self
            .call(|channel| async move {
                let request = LeaseGrantRequest {
                    ttl: seconds,
                    id: 0,
                };
                LeaseClient::new(channel)
                    .lease_grant(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        if !reply.error.is_empty() {
            return Err(Error::Call(Status::unavailable(reply.error)));
        }
        Ok(Lease {
            id: reply.id,
            ttl: Duration::from_secs(u64::try_from(reply.ttl).unwrap_or(0)),
        })
    }

    /// Renews lease `id` once: its time to live from now, or `None` when it has already expired
    /// (or was revoked), in which case its keys are gone.
    pub async fn keep_alive(&self, id: i64) -> Result<Option<Duration>, Error> {
        let reply = self
            .call(|channel| async move {
                let once = tokio_stream::once(LeaseKeepAliveRequest { id });
                let mut replies = LeaseClient::new(channel)
                    .lease_keep_alive(once)
                    .await?
                    .into_inner();
                replies.message().await?.ok_or_else(|| {
                    Status::unavailable("etcd ended the keepalive stream without an answer")
                })
            })
            .await?;
        Ok(u64::try_from(reply.ttl)
            .ok()
            .filter(|&ttl| ttl > 0)
            .map(Duration::from_secs))
    }

    /// Revokes lease `id`: its keys go at once.
    pub async fn revoke(&self, id: i64) -> Result<(), Error> {
        self.call(|channel| async move {
            LeaseClient::new(channel)
                .lease_revoke(LeaseRevokeRequest { id })
                .await
                .map(tonic::Response::into_inner)
        })
        .await
        .map(drop)
    }

    /// Reads `key` (linearizably): its state if it exists, and the store's revision.
    pub async fn get(&self, key: &[u8]) -> Result<(Option<KeyValue>, i64), Error> {
        let key = key.to_vec();
        let reply = self
            .call(|channel| async move {
                let request = RangeRequest {
                    key,
                    ..RangeRequest::default()
                };
                KvClient::new(channel)
                    .range(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        let revision = reply.header.map_or(0, |h| h.revision);
        Ok((reply.kvs.into_iter().next(), revision))
    }

    /// Applies a transaction (see [`crate::txn`] for its pieces). An error that
    /// [`Error::is_unavailable`] may hide a transaction that applied.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, Error> {
        self.call(|channel| async move {
            KvClient::new(channel)
                .txn(request)
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Watches `key` from `start_revision` (0: from now), once etcd has confirmed the watch.
    pub async fn watch(&self, key: &[u8], start_revision: i64) -> Result<Watch, Error> {
        let key = key.to_vec();
        self.call(|channel| async move {
            let (requests, outgoing) = mpsc::channel(1);
            let create = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key,
                    start_revision,
                    ..WatchCreateRequest::default()
                })),
            };
            requests
                .send(create)
                .await
                .map_err(|_| Status::internal("the watch request stream closed"))?;
            let mut events = WatchClient::new(channel)
                .watch(ReceiverStream::new(outgoing))
                .await?
                .into_inner();
            match events.message().await? {
                Some(reply) if reply.created && !reply.canceled => Ok(Watch {
                    events,
                    _requests: requests,
                }),
                other => Err(Status::unavailable(format!(
                    "etcd did not create the watch: {other:?}"
                ))),
            }
        })
        .await
    }

    /// Runs `call` on the current connection (dialling one if need be), bounded by the call
    /// timeout; a failure that says the member is lost drops the connection, so that the next
    /// call dials on from the member after it.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let (channel, index) = self.channel().await?;
        let answer = match tokio::time::timeout(self.call_timeout, call(channel)).await {
            Ok(answer) => answer,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer from etcd within {:?}",
                self.call_timeout
            ))),
        };
        match answer {
            Ok(reply) => Ok(reply),
            Err(status) => {
                if member_lost(&status) {
                    self.lost(index);
                }
                Err(Error::Call(status))
            }
        }
    }

    /// The connection in use, or a new one to the first member that takes it.
    async fn channel(&self) -> Result<(Channel, usize), Error> {
        let next = {
            let connection = self.lock();
            if let Some(current) = &connection.current {
                return Ok(current.clone());
            }
            connection.next
        };
        let (channel, index) = self
            .dialer
            .connect_from(&self.endpoints, next)
            .await
            .map_err(|err| match err {
                DialError::BadAddress { reason, .. } => Error::BadEndpoints(reason),
                DialError::Unreachable { reason, .. } => Error::Unreachable {
                    endpoints: self.endpoints.clone(),
                    reason,
                },
            })?;
        self.lock().current = Some((channel.clone(), index));
        Ok((channel, index))
    }

    /// Drops the connection to the member at `index` (if still in use), to dial on past it.
    fn lost(&self, index: usize) {
        let mut connection = self.lock();
        if matches!(connection.current, Some((_, current)) if current == index) {
            connection.current = None;
            connection.next = index + 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // The guarded data is two fields set in one statement each: never half-written.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A watch on one key: its events as etcd sends them.
pub struct Watch {
    events: Streaming<WatchResponse>,
    /// Kept open: etcd ends the watch when the client's side of the stream ends.
    _requests: mpsc::Sender<WatchRequest>,
}

impl Watch {
    /// The next batch of events; `None` when etcd ended the stream.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, Error> {
        self.events.message().await.map_err(Error::Call)
    }
}

/// Whether a failed call says its member is gone or unusable (so another may serve): the
/// transport failed on this side, or the answer is UNAVAILABLE (no connection, no raft leader)
/// or DEADLINE_EXCEEDED.
fn member_lost(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
        || matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
}
