//! `township-lock-client`: the readers/writers cell's interface across the network. [`LockClient`]
//! acquires, keeps the lease alive in the background while the caller works, hands the caller the
//! fencing tokens, and always releases — on success, error, panic or cancellation.
//!
//! It speaks only the lock API (`township-proto`) and dials through `township-client`: a bank
//! replica or the CLI links it without linking the lock server. Its types are plain values
//! ([`Mode`], [`Grant`], [`Error`]), not protobuf messages or gRPC statuses.
//!
//! Given several lock-servers ([`LockClient::dial`]; one leads, elected on etcd), it finds the
//! leader and follows it when it changes (`servers`): every lease then held is lost with the old
//! leader, which its holders see as [`HeldLease::is_lost`] and fenced storage as an old token.
//! The Session stream every acquire and release goes over is driven in `session`.

mod servers;
mod session;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, transport::Channel};
use township_client::{DialError, Dialer};
use township_proto::lock::v1::{
    self as pb, session_request::Op, session_response::Result as Answer,
};

pub use servers::LEADER_TRAILER;
use servers::Servers;
use session::SessionLink;

/// How a resource is held: shared with other readers, or alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Shared: any number of readers at once, no writer.
    Read,
    /// Exclusive: one writer, no reader.
    Write,
}

impl Mode {
    /// The mode's name in lower case, as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Write => "write",
        }
    }
}

/// One resource of a granted lease, with the fencing token its holder presents to fenced storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The resource's name, e.g. `account/42`.
    pub resource: String,
    /// How it is held.
    pub mode: Mode,
    /// Greater than every token granted for this resource before: storage refuses older ones.
    pub fencing_token: u64,
}

/// Why a lock call failed. Each says in words what the service or the network said, as a phrase
/// for the caller to put after "the lock service ...: ".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The lock service could not be reached, or the session to it broke (the service then
    /// releases the session's leases).
    #[error("unreachable: {0}")]
    Unavailable(String),
    /// No grant within the wait, or no answer in time.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The lease is no longer held: it expired, or was already released.
    #[error("lease gone: {0}")]
    LeaseGone(String),
    /// The service answered something other than what was asked (a bug on one side).
    #[error("answered out of turn: {0}")]
    OutOfTurn(String),
    /// The service refused the request (e.g. a bad resource name, or a ttl out of range).
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// The gRPC status code it answered.
        code: Code,
        /// Its message.
        message: String,
    },
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::Unavailable => Error::Unavailable(message),
            Code::DeadlineExceeded => Error::TimedOut(message),
            Code::NotFound => Error::LeaseGone(message),
            code => Error::Refused { code, message },
        }
    }
}

/// A client of the lock service. Cheap to clone; clones share the connection and one Session
/// stream, over which every acquire and release goes (no call set-up per lock, and a release never
/// waits for its answer). Create it inside a tokio runtime: it starts the stream's driver task.
#[derive(Clone, Debug)]
pub struct LockClient {
    servers: Servers,
    session: SessionLink,
    owner: String,
    ttl: Duration,
    wait: Duration,
}

impl LockClient {
    /// A client of the one lock-server on `channel` that asks as `owner` with 10 s leases and
    /// waits up to 10 s for a grant.
    pub fn new(channel: Channel, owner: impl Into<String>) -> Self {
        Self::on(Servers::one(channel), owner.into())
    }

    /// A client of the lock-servers at `addrs` (`HOST:PORT`, comma-separated), each dialled lazily
    /// with `dialer` (so it may start before them), that takes the leader among them and follows
    /// it: a server that does not lead names the leader, one that cannot be reached is passed
    /// over. As [`LockClient::new`] otherwise. Fails only on an address that cannot be read.
    pub fn dial(dialer: Dialer, addrs: &str, owner: impl Into<String>) -> Result<Self, DialError> {
        Ok(Self::on(Servers::dial(dialer, addrs)?, owner.into()))
    }

    fn on(servers: Servers, owner: String) -> Self {
        Self {
            session: SessionLink::start(servers.clone()),
            servers,
            owner,
            ttl: Duration::from_secs(10),
            wait: Duration::from_secs(10),
        }
    }

    /// Sets the lease lifetime (1 s to 5 min).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how long an acquire waits for its grant.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Acquires every target at once (all or nothing) and keeps the lease alive until the
    /// returned [`HeldLease`] is released or dropped. If this future is dropped while waiting,
    /// a grant that arrives later is released at once.
    pub async fn acquire(&self, targets: &[(&str, Mode)]) -> Result<HeldLease, Error> {
        let request = pb::AcquireRequest {
            targets: targets
                .iter()
                .map(|(resource, mode)| pb::LockTarget {
                    resource: (*resource).to_owned(),
                    mode: match mode {
                        Mode::Read => pb::Mode::Read,
                        Mode::Write => pb::Mode::Write,
                    }
                    .into(),
                })
                .collect(),
            ttl: prost_types::Duration::try_from(self.ttl).ok(),
            wait_timeout: prost_types::Duration::try_from(self.wait).ok(),
            owner: self.owner.clone(),
        };
        // The service answers DEADLINE_EXCEEDED itself at the end of the wait; this bound only
        // covers a service that stops answering.
        let answer = self
            .session
            .call(Op::Acquire(request), self.wait + Duration::from_secs(1))
            .await?;
        match answer {
            Answer::Lease(lease) => Ok(HeldLease::start(
                self.servers.clone(),
                self.session.clone(),
                lease,
                self.ttl,
            )),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs `work` holding a READ lock on `resource`, then releases it.
    pub async fn read<R>(
        &self,
        resource: &str,
        work: impl AsyncFnOnce(&HeldLease) -> R,
    ) -> Result<R, Error> {
        self.with_locks(&[(resource, Mode::Read)], work).await
    }

    /// Runs `work` holding a WRITE lock on `resource`, then releases it.
    pub async fn write<R>(
        &self,
        resource: &str,
        work: impl AsyncFnOnce(&HeldLease) -> R,
    ) -> Result<R, Error> {
        self.with_locks(&[(resource, Mode::Write)], work).await
    }

    /// Runs `work` holding every target at once, then releases them without waiting for the
    /// answer (a later acquire on this client is ordered after the release). If `work` panics or
    /// the returned future is dropped, the lease is released all the same.
    pub async fn with_locks<R>(
        &self,
        targets: &[(&str, Mode)],
        work: impl AsyncFnOnce(&HeldLease) -> R,
    ) -> Result<R, Error> {
        let lease = self.acquire(targets).await?;
        let result = work(&lease).await;
        drop(lease);
        Ok(result)
    }
}

/// A granted lease, kept alive in the background while held. Released by [`HeldLease::release`]
/// or, failing that, when dropped.
#[derive(Debug)]
pub struct HeldLease {
    session: SessionLink,
    id: String,
    grants: Vec<Grant>,
    lost: Arc<AtomicBool>,
    keep_alive: CancellationToken,
    released: bool,
}

impl HeldLease {
    fn start(servers: Servers, session: SessionLink, lease: pb::Lease, ttl: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let keep_alive = CancellationToken::new();
        tokio::spawn(keep_alive_loop(
            servers,
            lease.lease_id.clone(),
            ttl,
            lost.clone(),
            keep_alive.clone(),
        ));
        let grants = lease
            .grants
            .iter()
            .map(|grant| Grant {
                resource: grant.resource.clone(),
                mode: match grant.mode() {
                    pb::Mode::Read => Mode::Read,
                    _ => Mode::Write,
                },
                fencing_token: grant.fencing_token,
            })
            .collect();
        Self {
            session,
            id: lease.lease_id,
            grants,
            lost,
            keep_alive,
            released: false,
        }
    }

    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The fencing token granted for `resource`. Whoever stores data checks it.
    pub fn token(&self, resource: &str) -> Option<u64> {
        self.grants
            .iter()
            .find(|g| g.resource == resource)
            .map(|g| g.fencing_token)
    }

    /// Every grant, in the order asked.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// True once the service has said the lease is gone (expired): its grants may now be held by
    /// others, and writes under its tokens will be refused by fenced storage.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Releases the lease now and waits for the answer. [`Error::LeaseGone`] means it had already
    /// expired.
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        let release = Op::Release(pb::ReleaseRequest {
            lease_id: self.id.clone(),
        });
        // The keep-alive stream stops only after the answer: its end would release the lease too,
        // and this release would then find it gone.
        let released = self.session.call(release, RELEASE_TIMEOUT).await;
        self.keep_alive.cancel();
        match released? {
            Answer::Released(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.keep_alive.cancel();
        if !self.released {
            self.session.release_later(self.id.clone());
        }
    }
}

fn unexpected(answer: &Answer) -> Error {
    Error::OutOfTurn(format!("{answer:?}"))
}

/// How long a Release may take before the client gives up on it (the lease then ends at its
/// expiry): a hung lock service must not hang the caller.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Refreshes the lease every third of its ttl over one KeepAlive stream, opened only once the
/// holder has held it that long (short holds cost no stream at all).
async fn keep_alive_loop(
    servers: Servers,
    lease_id: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let period = ttl / 3;
    tokio::select! {
        () = tokio::time::sleep(period) => {}
        () = stop.cancelled() => return,
    }
    let (tx, rx) = mpsc::channel(1);
    // On the server taken for the leader now: if that is no longer the one that granted the lease,
    // the lease went with the old leader and this stream says so.
    let (_, mut rpc) = servers.leader();
    let opened = tokio::select! {
        opened = rpc.keep_alive(ReceiverStream::new(rx)) => opened,
        () = stop.cancelled() => return,
    };
    let mut replies = match opened {
        Ok(replies) => replies.into_inner(),
        Err(status) => {
            if status.code() == Code::Unavailable {
                // Not the leader (or gone): a lease is only ever held on the leader.
                lost.store(true, Ordering::Relaxed);
            }
            tracing::warn!(%status, lease = %lease_id, "cannot keep the lease alive");
            return;
        }
    };
    let mut ticks = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if tx.send(pb::KeepAliveRequest { lease_id: lease_id.clone() }).await.is_err() {
                    break;
                }
            }
            reply = replies.message() => match reply {
                Ok(Some(reply)) if !reply.lost => {}
                _ => {
                    lost.store(true, Ordering::Relaxed);
                    tracing::warn!(lease = %lease_id, "lease lost");
                    break;
                }
            },
            () = stop.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_becomes_the_error_that_says_what_happened() {
        let cases = [
            (
                Status::unavailable("connection refused"),
                Error::Unavailable("connection refused".into()),
            ),
            (
                Status::deadline_exceeded("no grant within 5s"),
                Error::TimedOut("no grant within 5s".into()),
            ),
            (
                Status::not_found("no such lease"),
                Error::LeaseGone("no such lease".into()),
            ),
            (
                Status::invalid_argument("resource: must not be empty"),
                Error::Refused {
                    code: Code::InvalidArgument,
                    message: "resource: must not be empty".into(),
                },
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(Error::from(status), expected);
        }
    }

    #[test]
    fn errors_read_as_phrases_about_the_lock_service() {
        assert_eq!(
            Error::TimedOut("no grant within 5s".into()).to_string(),
            "timed out: no grant within 5s"
        );
        assert_eq!(Mode::Read.as_str(), "read");
        assert_eq!(Mode::Write.as_str(), "write");
    }
}
