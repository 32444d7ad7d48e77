//! The lock service's test helpers: a lock-server on a data directory, requests and one function
//! per RPC, what Inspect shows, an open Session stream, a CLI process holding a lock, grpcurl,
//! and the stress tests' bookkeeping (a client-side overlap checker, grant waits).

use std::{collections::HashMap, net::SocketAddr, path::Path, sync::Mutex, time::Duration};

use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, transport::Channel};

use township_lock_client::Mode;
use township_proto::lock::v1::{self as pb, lock_service_client::LockServiceClient};
use township_tests::{Output, ServiceProcess, spawn_service, township};

use crate::support::{grpcurl::grpcurl_call, wait::wait_until};

/// A raw lock-service client.
pub type Rpc = LockServiceClient<Channel>;

/// A generous bound for anything that should happen "at once" on a loaded machine.
pub const SOON: Duration = Duration::from_secs(5);
/// A wait long enough that only a bug (or a release) ends it.
pub const LONG_WAIT: Duration = Duration::from_secs(60);

/// A lock-server on `dir` (its fencing epoch lives there) and a raw client of it.
pub async fn lock_server_in(dir: &Path) -> (ServiceProcess, Rpc) {
    let dir = dir.to_str().expect("a UTF-8 temp path");
    let server = spawn_service("lock-server", &["--data-dir", dir])
        .await
        .unwrap();
    let rpc = LockServiceClient::new(server.channel().await);
    (server, rpc)
}

/// A lock-server on a fresh data directory (keep the `TempDir` alive as long as the server).
pub async fn lock_server() -> (TempDir, ServiceProcess, Rpc) {
    let dir = tempfile::tempdir().unwrap();
    let (server, rpc) = lock_server_in(dir.path()).await;
    (dir, server, rpc)
}

/// One resource in `mode`.
pub fn target(resource: &str, mode: pb::Mode) -> pb::LockTarget {
    pb::LockTarget {
        resource: resource.into(),
        mode: mode.into(),
    }
}

/// `d` as a protobuf duration.
pub fn duration(d: Duration) -> Option<prost_types::Duration> {
    Some(prost_types::Duration::try_from(d).unwrap())
}

/// An Acquire by `owner` of `targets` that waits at most `wait` (default ttl).
pub fn ask(owner: &str, targets: &[(&str, pb::Mode)], wait: Duration) -> pb::AcquireRequest {
    pb::AcquireRequest {
        targets: targets.iter().map(|&(r, m)| target(r, m)).collect(),
        ttl: None,
        wait_timeout: duration(wait),
        owner: owner.into(),
    }
}

/// [`ask`] with a lease lifetime.
pub fn ask_ttl(
    owner: &str,
    targets: &[(&str, pb::Mode)],
    ttl: Duration,
    wait: Duration,
) -> pb::AcquireRequest {
    pb::AcquireRequest {
        ttl: duration(ttl),
        ..ask(owner, targets, wait)
    }
}

/// Acquire.
pub async fn acquire(rpc: &Rpc, request: pb::AcquireRequest) -> Result<pb::Lease, Status> {
    rpc.clone().acquire(request).await.map(|r| r.into_inner())
}

/// An Acquire running in the background (it may wait long).
pub fn spawn_acquire(
    rpc: &Rpc,
    request: pb::AcquireRequest,
) -> JoinHandle<Result<pb::Lease, Status>> {
    let rpc = rpc.clone();
    tokio::spawn(async move { acquire(&rpc, request).await })
}

/// The result of a background Acquire that must finish within [`SOON`].
pub async fn granted_soon(task: JoinHandle<Result<pb::Lease, Status>>) -> pb::Lease {
    tokio::time::timeout(SOON, task)
        .await
        .expect("the waiter is answered soon")
        .expect("the task did not panic")
        .expect("the waiter is granted")
}

/// Release.
pub async fn release(rpc: &Rpc, lease_id: &str) -> Result<(), Status> {
    let request = pb::ReleaseRequest {
        lease_id: lease_id.into(),
    };
    rpc.clone().release(request).await.map(drop)
}

/// Refresh.
pub async fn refresh(rpc: &Rpc, lease_id: &str) -> Result<(), Status> {
    let request = pb::RefreshRequest {
        lease_id: lease_id.into(),
    };
    rpc.clone().refresh(request).await.map(drop)
}

/// The fencing token a lease got for `resource`.
pub fn token(lease: &pb::Lease, resource: &str) -> u64 {
    lease
        .grants
        .iter()
        .find(|g| g.resource == resource)
        .unwrap_or_else(|| panic!("no grant for {resource} in {lease:?}"))
        .fencing_token
}

/// What Inspect says about exactly `resource` (`None`: nobody holds or waits for it).
pub async fn state(rpc: &Rpc, resource: &str) -> Option<pb::ResourceState> {
    let request = pb::InspectRequest {
        resource_prefix: resource.into(),
    };
    let reply = rpc.clone().inspect(request).await.unwrap().into_inner();
    reply.resources.into_iter().find(|r| r.resource == resource)
}

/// The owners holding `resource`, sorted.
pub async fn holders(rpc: &Rpc, resource: &str) -> Vec<String> {
    let mut owners: Vec<String> = state(rpc, resource)
        .await
        .map(|s| s.holders.into_iter().map(|h| h.owner).collect())
        .unwrap_or_default();
    owners.sort();
    owners
}

/// The owners waiting for `resource`, in arrival order.
pub async fn waiters(rpc: &Rpc, resource: &str) -> Vec<String> {
    state(rpc, resource)
        .await
        .map(|s| s.waiters.into_iter().map(|w| w.owner).collect())
        .unwrap_or_default()
}

/// Waits until Inspect shows exactly `expected` (in order) waiting for `resource`.
pub async fn wait_for_waiters(rpc: &Rpc, resource: &str, expected: &[&str]) {
    let what = format!("waiters of {resource} are {expected:?}");
    wait_until(&what, SOON, async || {
        waiters(rpc, resource).await == expected
    })
    .await;
}

/// `owners` as owned strings, to compare with [`holders`] and [`waiters`].
pub fn strings(owners: &[&str]) -> Vec<String> {
    owners.iter().map(|s| s.to_string()).collect()
}

// ----- the CLI and grpcurl -----

/// A `township lock acquire ...` child that has printed its `acquired` line, its stdout lines
/// (to read on), and that line.
pub async fn cli_holding(
    addr: SocketAddr,
    args: &[&str],
) -> (Child, Lines<BufReader<ChildStdout>>, String) {
    let mut command = township();
    command
        .args(["--addr", &addr.to_string(), "lock", "acquire"])
        .args(args);
    let mut child = command.spawn().expect("township starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let acquired = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("acquired") {
                return line;
            }
        }
        panic!("township ended without an `acquired` line");
    })
    .await
    .expect("the CLI acquires in time");
    (child, lines, acquired)
}

/// `grpcurl -plaintext -d DATA ADDR township.lock.v1.LockService/METHOD` as JSON.
pub async fn grpcurl_lock(addr: SocketAddr, method: &str, data: &str) -> Output {
    grpcurl_call(addr, "township.lock.v1.LockService", method, data).await
}

// ----- Session streams -----

/// A Session stream: its request sender and its answers.
pub struct Session {
    pub requests: mpsc::Sender<pb::SessionRequest>,
    pub answers: tonic::Streaming<pb::SessionResponse>,
}

impl Session {
    /// Opens a Session stream.
    pub async fn open(rpc: &Rpc) -> Session {
        let (requests, rx) = mpsc::channel(16);
        let answers = rpc
            .clone()
            .session(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Session { requests, answers }
    }

    /// Asks for `request` as request `request_id`.
    pub async fn acquire(&self, request_id: u64, request: pb::AcquireRequest) {
        self.send(request_id, pb::session_request::Op::Acquire(request))
            .await;
    }

    /// Releases `lease_id` as request `request_id`.
    pub async fn release(&self, request_id: u64, lease_id: &str) {
        let release = pb::ReleaseRequest {
            lease_id: lease_id.into(),
        };
        self.send(request_id, pb::session_request::Op::Release(release))
            .await;
    }

    /// Sends `op` as request `request_id`.
    pub async fn send(&self, request_id: u64, op: pb::session_request::Op) {
        let request = pb::SessionRequest {
            request_id,
            op: Some(op),
        };
        self.requests.send(request).await.unwrap();
    }

    /// The next answer, which must come within [`SOON`].
    pub async fn answer(&mut self) -> (u64, pb::session_response::Result) {
        let answer = tokio::time::timeout(SOON, self.answers.message())
            .await
            .expect("an answer soon")
            .expect("the stream is healthy")
            .expect("not the end of the stream");
        (answer.request_id, answer.result.expect("a result"))
    }

    /// The next answer, which must be the lease granted to `request_id`.
    pub async fn lease(&mut self, request_id: u64) -> pb::Lease {
        match self.answer().await {
            (id, pb::session_response::Result::Lease(lease)) if id == request_id => lease,
            other => panic!("expected the lease of request {request_id}, got {other:?}"),
        }
    }

    /// The next answer, which must be the error of `request_id`.
    pub async fn error(&mut self, request_id: u64) -> pb::SessionError {
        match self.answer().await {
            (id, pb::session_response::Result::Error(error)) if id == request_id => error,
            other => panic!("expected the error of request {request_id}, got {other:?}"),
        }
    }
}

// ----- the stress and starvation tests' bookkeeping -----

#[derive(Default)]
/// Who is inside one resource, and the highest fencing tokens seen there.
pub struct ResourceLog {
    readers: usize,
    writers: usize,
    max_token: u64,
    max_write_token: u64,
}

/// Watches, from the clients' side, who is inside each resource. A client enters after its grant
/// arrives and exits before it asks to release, so what it sees is within the server's own hold.
#[derive(Default)]
pub struct Checker {
    resources: Mutex<HashMap<String, ResourceLog>>,
    /// Every overlap or out-of-order token seen, in words.
    pub violations: Mutex<Vec<String>>,
}

impl Checker {
    /// A client holding `token` in `mode` enters `resource`; what it should not see is noted.
    pub fn enter(&self, resource: &str, mode: Mode, token: u64) {
        let mut resources = self.resources.lock().unwrap();
        let log = resources.entry(resource.to_owned()).or_default();
        let mut problems = Vec::new();
        if log.writers > 0 {
            problems.push(format!("{mode:?} entered {resource} while a writer was in"));
        }
        if mode == Mode::Write && log.readers > 0 {
            problems.push(format!(
                "a writer entered {resource} with {} readers in",
                log.readers
            ));
        }
        match mode {
            Mode::Write if token <= log.max_token => problems.push(format!(
                "WRITE token {token:#x} on {resource} not above {:#x}",
                log.max_token
            )),
            Mode::Read if token <= log.max_write_token => problems.push(format!(
                "READ token {token:#x} on {resource} not above WRITE token {:#x}",
                log.max_write_token
            )),
            _ => {}
        }
        log.max_token = log.max_token.max(token);
        match mode {
            Mode::Read => log.readers += 1,
            Mode::Write => {
                log.writers += 1;
                log.max_write_token = log.max_write_token.max(token);
            }
        }
        drop(resources);
        self.violations.lock().unwrap().extend(problems);
    }

    /// A client in `mode` leaves `resource`.
    pub fn exit(&self, resource: &str, mode: Mode) {
        let mut resources = self.resources.lock().unwrap();
        let log = resources.get_mut(resource).expect("entered before");
        match mode {
            Mode::Read => log.readers -= 1,
            Mode::Write => log.writers -= 1,
        }
    }
}

/// How often one kind of client was granted, and its longest wait.
#[derive(Default)]
pub struct Waits {
    /// Grants received.
    pub grants: usize,
    /// The longest wait for one.
    pub longest: Duration,
}
