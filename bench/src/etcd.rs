//! etcd as a reference for the lock benchmark: starting a single-member etcd on loopback with a
//! temporary data directory, and a small client for the three v3 RPCs a lock cycle needs
//! (LeaseGrant, Lock, Unlock), with the messages declared here rather than generated.
//!
//! etcd is a Go program and would spread over every core; it runs with `GOMAXPROCS=1` so that it
//! gets one core, like each Township server (started with `TOKIO_WORKER_THREADS=1`). Its default
//! durability is kept: it fsyncs its write-ahead log before acknowledging a write.

use std::{
    net::TcpListener,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tonic::{client::Grpc, codegen::http::uri::PathAndQuery, transport::Channel};

/// The etcd binary, looked up on `PATH`.
const BINARY: &str = "etcd";

/// How long etcd may take to answer after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The deadline sent with every RPC, so a stuck etcd ends the benchmark instead of hanging it
/// (the same bound as the lock-server's `wait_timeout`).
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// The installed etcd's version, e.g. "3.4.23", from `etcd --version`; `None` when there is no
/// etcd on `PATH`.
pub async fn version() -> anyhow::Result<Option<String>> {
    let output = match Command::new(BINARY).arg("--version").output().await {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).context("cannot run `etcd --version`"),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .lines()
        .find_map(|line| line.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("unexpected `etcd --version` output {text:?}"))?;
    Ok(Some(version))
}

/// A running single-member etcd, killed when dropped (the process before its data directory).
pub struct Etcd {
    /// The etcd process, killed on drop if not stopped before.
    child: Child,
    /// Its client URL, e.g. "http://127.0.0.1:40123".
    pub uri: String,
    /// Its data directory and log, removed after the process is killed.
    _data: tempfile::TempDir,
}

/// Starts etcd on two free loopback ports (client and peer) with a fresh data directory and
/// waits until it grants a lease (at most 30 s). It runs with `GOMAXPROCS=1`, one core like each
/// Township server, and with its default durability (WAL fsynced on every write).
pub async fn start() -> anyhow::Result<Etcd> {
    let data = tempfile::tempdir().context("cannot create a temporary dir for etcd")?;
    let (client_port, peer_port) = {
        let client = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
        let peer = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
        (
            client.local_addr().context("client port")?.port(),
            peer.local_addr().context("peer port")?.port(),
        )
    };
    let uri = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log_path = data.path().join("etcd.log");
    let log = std::fs::File::create(&log_path).context("cannot create etcd's log file")?;
    let log_err = log.try_clone().context("cannot share etcd's log file")?;
    let mut child = Command::new(BINARY)
        .arg("--name")
        .arg("default")
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .arg("--listen-client-urls")
        .arg(&uri)
        .arg("--advertise-client-urls")
        .arg(&uri)
        .arg("--listen-peer-urls")
        .arg(&peer)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer)
        .arg("--initial-cluster")
        .arg(format!("default={peer}"))
        .args(["--initial-cluster-state", "new"])
        .args(["--logger", "zap", "--log-level", "error"])
        .env("GOMAXPROCS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .context("cannot start etcd")?;
    let began = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("cannot poll etcd")? {
            bail!("etcd exited with {status}: {}", log_tail(&log_path));
        }
        if began.elapsed() > START_TIMEOUT {
            bail!(
                "etcd did not answer within {START_TIMEOUT:?}: {}",
                log_tail(&log_path)
            );
        }
        let answered = async {
            let mut client = Client::connect(&uri).await?;
            client.lease_grant(5).await
        };
        if tokio::time::timeout(Duration::from_secs(1), answered)
            .await
            .is_ok_and(|granted| granted.is_ok())
        {
            return Ok(Etcd {
                child,
                uri,
                _data: data,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Etcd {
    /// Kills the process and waits for it to end, so none is left behind (dropping only sends the
    /// signal).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("cannot stop etcd")
    }
}

/// The last lines of etcd's log, to explain a failed start.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(5)..].join(" / ")
        }
        Err(err) => format!("(no log: {err})"),
    }
}

/// A client of etcd's v3 gRPC API, limited to what a lock cycle uses. Each holds its own
/// connection.
pub struct Client {
    grpc: Grpc<Channel>,
}

impl Client {
    /// Connects to etcd's client URL.
    pub async fn connect(uri: &str) -> anyhow::Result<Self> {
        let channel = crate::server::dial(uri)
            .await
            .with_context(|| format!("cannot connect to etcd at {uri}"))?;
        Ok(Self {
            grpc: Grpc::new(channel),
        })
    }

    /// Grants a lease of `ttl_seconds` and returns its ID.
    pub async fn lease_grant(&mut self, ttl_seconds: i64) -> anyhow::Result<i64> {
        let reply: LeaseGrantResponse = self
            .unary(
                "/etcdserverpb.Lease/LeaseGrant",
                LeaseGrantRequest {
                    ttl: ttl_seconds,
                    id: 0,
                },
            )
            .await?;
        if !reply.error.is_empty() {
            bail!("etcd refused the lease: {}", reply.error);
        }
        Ok(reply.id)
    }

    /// Waits for the lock `name` and takes it under `lease`; returns the key that holds it.
    pub async fn lock(&mut self, name: &[u8], lease: i64) -> anyhow::Result<Vec<u8>> {
        let reply: LockResponse = self
            .unary(
                "/v3lockpb.Lock/Lock",
                LockRequest {
                    name: name.to_vec(),
                    lease,
                },
            )
            .await?;
        if reply.key.is_empty() {
            bail!("etcd granted a lock without a key");
        }
        Ok(reply.key)
    }

    /// Releases the lock held by `key`.
    pub async fn unlock(&mut self, key: Vec<u8>) -> anyhow::Result<()> {
        let _: UnlockResponse = self
            .unary("/v3lockpb.Lock/Unlock", UnlockRequest { key })
            .await?;
        Ok(())
    }

    /// One unary call at `path`, with [`RPC_TIMEOUT`] as its deadline.
    async fn unary<Req, Resp>(&mut self, path: &'static str, message: Req) -> anyhow::Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .with_context(|| format!("etcd {path}: connection not ready"))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(RPC_TIMEOUT);
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let reply = self
            .grpc
            .unary(request, PathAndQuery::from_static(path), codec)
            .await
            .with_context(|| format!("etcd {path}"))?;
        Ok(reply.into_inner())
    }
}

/// `etcdserverpb.LeaseGrantRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantRequest {
    /// Time to live, in seconds.
    #[prost(int64, tag = "1")]
    pub ttl: i64,
    /// The lease ID wanted; 0 lets etcd choose.
    #[prost(int64, tag = "2")]
    pub id: i64,
}

/// `etcdserverpb.LeaseGrantResponse` (its header is not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantResponse {
    /// The granted lease's ID.
    #[prost(int64, tag = "2")]
    pub id: i64,
    /// The granted time to live, in seconds.
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    /// Set when the lease was not granted.
    #[prost(string, tag = "4")]
    pub error: String,
}

/// `v3lockpb.LockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LockRequest {
    /// The lock's name, shared by everyone contending for it.
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    /// The lease the lock is held under; the lock ends with it.
    #[prost(int64, tag = "2")]
    pub lease: i64,
}

/// `v3lockpb.LockResponse` (its header is not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LockResponse {
    /// The key that holds the lock while it exists.
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
}

/// `v3lockpb.UnlockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockRequest {
    /// The key returned by Lock.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// `v3lockpb.UnlockResponse` (only a header, not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockResponse {}
