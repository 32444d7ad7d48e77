//! The lock service elected on etcd: three lock-servers on a three-member etcd cluster with a
//! 2 s leader lease. Its leader is measured beside the single lock-server (it serves from memory
//! the same way: etcd is touched only to renew the lease), and its failover is timed: kill -9 the
//! leader, then count until one of the others grants an Acquire.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;
use tonic::transport::Channel;
use township_client::Dialer;
use township_proto::lock::v1::{
    AcquireRequest, LeaderRequest, LockTarget, Mode, lock_service_client::LockServiceClient,
};
use township_references::EtcdCluster;

use crate::server::{self, Server};

/// The leader's etcd lease: the figure, etcd 3.4's shortest.
const LEADER_LEASE: &str = "2s";
/// How long an election may take before the benchmark gives up on it.
const ELECTION_LIMIT: Duration = Duration::from_secs(30);
/// The bound on one call to one lock-server (a dead or frozen one never answers).
const CALL: Duration = Duration::from_millis(300);

/// Three elected lock-servers and their etcd cluster, stopped when dropped.
pub struct Elected {
    /// Declared first: the lock-servers end before etcd does.
    servers: Vec<Option<Server>>,
    addrs: Vec<String>,
    dirs: Vec<TempDir>,
    etcd: EtcdCluster,
}

impl Elected {
    /// Starts the etcd cluster, then the three lock-servers, and waits for a leader.
    pub async fn start() -> anyhow::Result<Self> {
        let etcd = tokio::task::spawn_blocking(|| EtcdCluster::start(3))
            .await
            .context("start etcd")??;
        let mut elected = Self {
            servers: Vec::new(),
            addrs: Vec::new(),
            dirs: Vec::new(),
            etcd,
        };
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            elected.addrs.push(format!("127.0.0.1:{port}"));
            elected.dirs.push(tempfile::tempdir()?);
        }
        for i in 0..3 {
            let server = elected.spawn(i).await?;
            elected.servers.push(Some(server));
        }
        elected.leader().await?;
        Ok(elected)
    }

    /// Lock-server `i` on its address.
    async fn spawn(&self, i: usize) -> anyhow::Result<Server> {
        let endpoints = self.etcd.endpoints().join(",");
        let args = [
            "--etcd-endpoints",
            &endpoints,
            "--advertise-addr",
            &self.addrs[i],
            "--leader-lease",
            LEADER_LEASE,
        ];
        let dir = self.dirs[i].path();
        server::start_on("lock-server", &self.addrs[i], dir, &args, &Dialer::new()).await
    }

    /// The index of the server that leads, once one does (at most [`ELECTION_LIMIT`]).
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let started = Instant::now();
        loop {
            for (i, addr) in self.addrs.iter().enumerate() {
                if self.servers[i].is_some() && leads(addr).await {
                    return Ok(i);
                }
            }
            if started.elapsed() > ELECTION_LIMIT {
                bail!("no lock-server leads after {ELECTION_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The leader's address.
    pub async fn leader_addr(&self) -> anyhow::Result<String> {
        Ok(self.addrs[self.leader().await?].clone())
    }

    /// `kills` times: kill -9 the leader and time until another grants an Acquire; then start
    /// the killed one again (it follows).
    pub async fn failovers(&mut self, kills: usize) -> anyhow::Result<Vec<Duration>> {
        let clients: Vec<LockServiceClient<Channel>> = self
            .addrs
            .iter()
            .map(|addr| Ok(LockServiceClient::new(Dialer::new().lazy(addr)?)))
            .collect::<anyhow::Result<_>>()?;
        let mut took = Vec::new();
        for kill in 0..kills {
            let leader = self.leader().await?;
            self.servers[leader]
                .take()
                .context("the leader runs")?
                .kill()
                .await?;
            let killed = Instant::now();
            let resource = format!("bench/failover/{kill}");
            'granted: loop {
                for (i, client) in clients.iter().enumerate() {
                    if i != leader && grants(client, &resource).await {
                        took.push(killed.elapsed());
                        break 'granted;
                    }
                }
                if killed.elapsed() > ELECTION_LIMIT {
                    bail!("no grant within {ELECTION_LIMIT:?} of killing the leader");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.servers[leader] = Some(self.spawn(leader).await?);
        }
        Ok(took)
    }
}

/// Whether the lock-server at `addr` says it leads.
async fn leads(addr: &str) -> bool {
    let ask = async {
        let channel = Dialer::new()
            .connect_timeout(CALL)
            .connect(addr)
            .await
            .ok()?;
        LockServiceClient::new(channel)
            .leader(LeaderRequest {})
            .await
            .ok()
    };
    tokio::time::timeout(CALL, ask)
        .await
        .ok()
        .flatten()
        .is_some_and(|reply| reply.into_inner().serving)
}

/// Whether `client`'s server grants a write lock on `resource` now (a short lease, no wait).
async fn grants(client: &LockServiceClient<Channel>, resource: &str) -> bool {
    let request = AcquireRequest {
        targets: vec![LockTarget {
            resource: resource.to_owned(),
            mode: Mode::Write.into(),
        }],
        ttl: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        wait_timeout: Some(prost_types::Duration {
            seconds: 0,
            nanos: 100_000_000,
        }),
        owner: "bench-failover".into(),
    };
    let mut client = client.clone();
    matches!(
        tokio::time::timeout(CALL, client.acquire(request)).await,
        Ok(Ok(_))
    )
}
