//! The lock-server under load from its clients: closed-loop acquire+release cycles on a Session
//! stream (as the bank's lock client asks) or with the Acquire and Release RPCs, each client on a
//! connection of its own, dialled in plaintext or over mutual TLS. Shared by the lock benchmark
//! and the TLS one.

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use township_client::Dialer;
use township_proto::lock::v1::{
    AcquireRequest, LockTarget, Mode, ReleaseRequest, SessionRequest, SessionResponse,
    lock_service_client::LockServiceClient, session_request, session_response,
};

use crate::load::{self, Window};

/// The lock-server's flags in every benchmark: its per-principal caps raised far beyond any
/// load here. Every bench client is one principal (the anonymous one in plaintext, `bench` over
/// mutual TLS) taking many leases and queueing many acquires; the benchmarks measure the lock
/// service, not its defence against one greedy principal (default caps: 1024 leases, 1024
/// waiters).
pub const UNCAPPED: [&str; 4] = [
    "--max-leases-per-principal",
    "1000000",
    "--max-waiters-per-principal",
    "1000000",
];

/// How a lock-server client asks.
#[derive(Clone, Copy)]
pub enum Api {
    /// One Session stream per client: each cycle is an acquire answered with its lease, and the
    /// release goes out at once, ahead of the next acquire (one round trip per cycle), as the
    /// bank's lock client does.
    Session,
    /// The Acquire and Release RPCs: two calls, two round trips per cycle.
    Unary,
}

/// A lock-server round: one client per entry of `resources` (the resource it cycles on), each on
/// its own connection dialled by `dialer` to `addr`, asking through `api`.
pub async fn round(
    dialer: &Dialer,
    addr: &str,
    resources: &[String],
    api: Api,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    load::each_client(
        resources.len(),
        window,
        async |i| {
            let channel = dialer
                .connect(addr)
                .await
                .with_context(|| format!("connect to {addr}"))?;
            Ok((channel, resources[i].clone()))
        },
        move |(channel, resource), window| async move {
            match api {
                Api::Session => session_cycles(channel, resource, window).await,
                Api::Unary => unary_cycles(channel, resource, window).await,
            }
        },
    )
    .await
}

/// The lock-server's acquire request in every cycle: a write lock with a 10 s lease.
fn acquire_request(resource: String) -> AcquireRequest {
    AcquireRequest {
        targets: vec![LockTarget {
            resource,
            mode: Mode::Write.into(),
        }],
        ttl: Some(prost_types::Duration {
            seconds: 10,
            nanos: 0,
        }),
        wait_timeout: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        owner: "bench".into(),
    }
}

/// One closed-loop lock-server client on a Session stream: acquire (write), and on the grant send
/// the release, whose answer is read while waiting for the next grant. Every answer is checked;
/// after the window the stream is closed and the last release's answer awaited.
async fn session_cycles(
    channel: Channel,
    resource: String,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut client = LockServiceClient::new(channel);
    let request = acquire_request(resource);
    let (tx, rx) = mpsc::channel(4);
    let mut answers = client
        .session(ReceiverStream::new(rx))
        .await
        .context("open a Session")?
        .into_inner();
    let mut next_id = 0u64;
    let histogram = load::closed_loop(window, async || {
        next_id += 1;
        let acquire_id = next_id;
        let acquire = session_request::Op::Acquire(request.clone());
        send(&tx, acquire_id, acquire).await?;
        loop {
            let answer = next_answer(&mut answers).await?;
            match answer.result {
                Some(session_response::Result::Lease(lease)) if answer.request_id == acquire_id => {
                    next_id += 1;
                    let release = session_request::Op::Release(ReleaseRequest {
                        lease_id: lease.lease_id,
                    });
                    return send(&tx, next_id, release).await;
                }
                Some(session_response::Result::Released(_)) => {}
                other => bail!("Session answered request {}: {other:?}", answer.request_id),
            }
        }
    })
    .await?;
    drop(tx);
    while let Some(answer) = answers.message().await.context("Session")? {
        if !matches!(answer.result, Some(session_response::Result::Released(_))) {
            bail!("Session answered a release with {:?}", answer.result);
        }
    }
    Ok(histogram)
}

async fn send(
    tx: &mpsc::Sender<SessionRequest>,
    request_id: u64,
    op: session_request::Op,
) -> anyhow::Result<()> {
    let request = SessionRequest {
        request_id,
        op: Some(op),
    };
    tx.send(request).await.context("the Session stream ended")
}

async fn next_answer(
    answers: &mut tonic::Streaming<SessionResponse>,
) -> anyhow::Result<SessionResponse> {
    answers
        .message()
        .await
        .context("Session")?
        .context("the Session stream ended early")
}

/// One closed-loop lock-server client: Acquire (write) then Release, again and again. Every
/// Acquire creates a lease with a 10 s TTL.
async fn unary_cycles(
    channel: Channel,
    resource: String,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut client = LockServiceClient::new(channel);
    let request = acquire_request(resource);
    load::closed_loop(window, async || {
        let lease = client
            .acquire(request.clone())
            .await
            .context("acquire")?
            .into_inner();
        client
            .release(ReleaseRequest {
                lease_id: lease.lease_id,
            })
            .await
            .context("release")?;
        Ok(())
    })
    .await
}
