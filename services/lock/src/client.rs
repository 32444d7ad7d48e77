//! [`LockClient`]: the readers/writers cell's interface across the network. It acquires, keeps
//! the lease alive in the background while the caller works, hands the caller the fencing tokens,
//! and always releases — on success, error, panic or cancellation.

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
use tonic::{Status, transport::Channel};
use township_cell::Mode;
use township_proto::lock::v1::{self as pb, lock_service_client::LockServiceClient};

/// A client of the lock service. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct LockClient {
    rpc: LockServiceClient<Channel>,
    owner: String,
    ttl: Duration,
    wait: Duration,
}

impl LockClient {
    /// A client that asks as `owner` with 10 s leases and waits up to 10 s for a grant.
    pub fn new(channel: Channel, owner: impl Into<String>) -> Self {
        Self {
            rpc: LockServiceClient::new(channel),
            owner: owner.into(),
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
    /// returned [`HeldLease`] is released or dropped.
    pub async fn acquire(&self, targets: &[(&str, Mode)]) -> Result<HeldLease, Status> {
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
        let mut call = tonic::Request::new(request);
        // The call's deadline leaves the service time to answer DEADLINE_EXCEEDED itself.
        call.set_timeout(self.wait + Duration::from_secs(1));
        let lease = self.rpc.clone().acquire(call).await?.into_inner();
        Ok(HeldLease::start(self.rpc.clone(), lease, self.ttl))
    }

    /// Runs `work` holding a READ lock on `resource`, then releases it.
    pub async fn read<R>(
        &self,
        resource: &str,
        work: impl AsyncFnOnce(&HeldLease) -> R,
    ) -> Result<R, Status> {
        self.with_locks(&[(resource, Mode::Read)], work).await
    }

    /// Runs `work` holding a WRITE lock on `resource`, then releases it.
    pub async fn write<R>(
        &self,
        resource: &str,
        work: impl AsyncFnOnce(&HeldLease) -> R,
    ) -> Result<R, Status> {
        self.with_locks(&[(resource, Mode::Write)], work).await
    }

    /// Runs `work` holding every target at once, then releases them. If `work` panics or the
    /// returned future is dropped, the lease is released in the background.
    pub async fn with_locks<R>(
        &self,
        targets: &[(&str, Mode)],
        work: impl AsyncFnOnce(&HeldLease) -> R,
    ) -> Result<R, Status> {
        let lease = self.acquire(targets).await?;
        let result = work(&lease).await;
        if let Err(status) = lease.release().await {
            tracing::warn!(%status, "lock release failed; the lease ends at its expiry");
        }
        Ok(result)
    }
}

/// A granted lease, kept alive in the background while held. Released by [`HeldLease::release`]
/// or, failing that, when dropped.
#[derive(Debug)]
pub struct HeldLease {
    rpc: LockServiceClient<Channel>,
    lease: pb::Lease,
    lost: Arc<AtomicBool>,
    keep_alive: CancellationToken,
    released: bool,
}

impl HeldLease {
    fn start(rpc: LockServiceClient<Channel>, lease: pb::Lease, ttl: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let keep_alive = CancellationToken::new();
        tokio::spawn(keep_alive_loop(
            rpc.clone(),
            lease.lease_id.clone(),
            ttl,
            lost.clone(),
            keep_alive.clone(),
        ));
        Self {
            rpc,
            lease,
            lost,
            keep_alive,
            released: false,
        }
    }

    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.lease.lease_id
    }

    /// The fencing token granted for `resource`. Whoever stores data checks it.
    pub fn token(&self, resource: &str) -> Option<u64> {
        self.lease
            .grants
            .iter()
            .find(|g| g.resource == resource)
            .map(|g| g.fencing_token)
    }

    /// Every grant, in the order asked.
    pub fn grants(&self) -> &[pb::Grant] {
        &self.lease.grants
    }

    /// True once the service has said the lease is gone (expired): its grants may now be held by
    /// others, and writes under its tokens will be refused by fenced storage.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Releases the lease now. NOT_FOUND means it had already expired.
    pub async fn release(mut self) -> Result<(), Status> {
        self.released = true;
        let request = release_request(&self.lease.lease_id);
        let result = self.rpc.release(request).await.map(drop);
        self.keep_alive.cancel();
        result
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Ending the keep-alive stream releases the lease on the server (session semantics);
        // an explicit release follows as well, in case the stream was never opened.
        self.keep_alive.cancel();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut rpc = self.rpc.clone();
            let lease_id = self.lease.lease_id.clone();
            runtime.spawn(async move {
                let _ = rpc.release(release_request(&lease_id)).await;
            });
        }
    }
}

/// How long a Release may take before the client gives up on it (the lease then ends at its
/// expiry): a hung lock service must not hang the caller.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

fn release_request(lease_id: &str) -> tonic::Request<pb::ReleaseRequest> {
    let mut request = tonic::Request::new(pb::ReleaseRequest {
        lease_id: lease_id.to_owned(),
    });
    request.set_timeout(RELEASE_TIMEOUT);
    request
}

/// Refreshes the lease every third of its ttl over one KeepAlive stream, opened only once the
/// holder has held it that long (short holds cost no stream at all).
async fn keep_alive_loop(
    mut rpc: LockServiceClient<Channel>,
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
    let opened = tokio::select! {
        opened = rpc.keep_alive(ReceiverStream::new(rx)) => opened,
        () = stop.cancelled() => return,
    };
    let mut replies = match opened {
        Ok(replies) => replies.into_inner(),
        Err(status) => {
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
