//! Lock-servers elected on etcd: a three-member etcd cluster from Debian's package and lock-servers
//! on fixed loopback addresses (each its own, advertised, and an empty data directory), which can
//! be killed, frozen and started again; who leads, asked with the Leader RPC; an Acquire bounded
//! in time, since a frozen server never answers.

use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;
use tonic::{Status, transport::Endpoint};
use township_proto::lock::v1::{self as pb, lock_service_client::LockServiceClient};
use township_references::{EtcdCluster, EtcdTls};
use township_tests::{ServiceProcess, free_port, spawn_service_at};

use crate::support::lock::{Rpc, ask};

/// The bound on a failover, or anything else the election does by itself.
pub const FAILOVER: Duration = Duration::from_secs(15);

/// The leader's etcd lease in these tests: short, for quick failovers, with room for a loaded
/// machine.
const LEADER_LEASE: &str = "3s";

/// The trailer of a "not the leader" answer that names the leader (as the lock service spells
/// it; tests link no server crate).
const LEADER_TRAILER: &str = "township-lock-leader";

/// The bound on one call to one lock-server: a frozen one never answers.
const CALL: Duration = Duration::from_secs(2);

/// etcd and the lock-servers elected on it.
pub struct LockCluster {
    pub etcd: EtcdCluster,
    /// Each lock-server, `None` while killed.
    pub servers: Vec<Option<ServiceProcess>>,
    /// Each lock-server's address, `127.0.0.1:PORT`, as it advertises it.
    pub addrs: Vec<String>,
    /// Each lock-server's data directory, which it must leave empty.
    pub dirs: Vec<TempDir>,
    /// Flags every lock-server gets beyond the election's (e.g. etcd's TLS files).
    extra: Vec<String>,
    /// Every lock-server's `--leader-lease`.
    lease: &'static str,
}

impl LockCluster {
    /// Three etcd members and `size` lock-servers on them.
    pub async fn start(size: usize) -> Self {
        Self::start_with(size, None, &[]).await
    }

    /// [`LockCluster::start`] with etcd's client ports on `tls`, and `extra` flags for each
    /// lock-server.
    pub async fn start_with(size: usize, tls: Option<EtcdTls>, extra: &[String]) -> Self {
        Self::launch(size, tls, extra, LEADER_LEASE).await
    }

    /// [`LockCluster::start`] with `lease` as every lock-server's `--leader-lease`.
    pub async fn start_with_lease(size: usize, lease: &'static str) -> Self {
        Self::launch(size, None, &[], lease).await
    }

    async fn launch(
        size: usize,
        tls: Option<EtcdTls>,
        extra: &[String],
        lease: &'static str,
    ) -> Self {
        let etcd = tokio::task::spawn_blocking(|| EtcdCluster::start_with(3, tls))
            .await
            .unwrap()
            .expect("a three-member etcd cluster starts (apt-get install etcd-server)");
        let addrs: Vec<String> = (0..size)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let dirs: Vec<TempDir> = (0..size).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut cluster = Self {
            etcd,
            servers: Vec::new(),
            addrs,
            dirs,
            extra: extra.to_vec(),
            lease,
        };
        for i in 0..size {
            let server = cluster.spawn(i).await;
            cluster.servers.push(Some(server));
        }
        cluster
    }

    /// Lock-server `i` started (again) on its address and data directory.
    pub async fn spawn(&self, i: usize) -> ServiceProcess {
        let endpoints = self.etcd.endpoints().join(",");
        let dir = self.dirs[i].path().to_str().expect("a UTF-8 temp path");
        let mut args = vec![
            "--data-dir",
            dir,
            "--etcd-endpoints",
            &endpoints,
            "--advertise-addr",
            &self.addrs[i],
            "--leader-lease",
            self.lease,
        ];
        args.extend(self.extra.iter().map(String::as_str));
        spawn_service_at("lock-server", &self.addrs[i], &args)
            .await
            .unwrap()
    }

    /// Starts lock-server `i` again after a kill.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.servers[i].is_none(), "lock-server {i} is running");
        self.servers[i] = Some(self.spawn(i).await);
    }

    /// Kills lock-server `i` with SIGKILL and waits for it to exit.
    pub async fn kill(&mut self, i: usize) {
        let mut server = self.servers[i].take().expect("running");
        server.signal(libc::SIGKILL);
        server.wait_exit(FAILOVER).await.expect("killed");
    }

    /// Sends `signal` to lock-server `i` (SIGSTOP, SIGCONT).
    pub fn signal(&self, i: usize, signal: libc::c_int) {
        self.servers[i].as_ref().expect("running").signal(signal);
    }

    /// A client of lock-server `i` (connected now: a frozen server still takes connections).
    pub async fn rpc(&self, i: usize) -> Rpc {
        let channel = Endpoint::from_shared(format!("http://{}", self.addrs[i]))
            .unwrap()
            .connect_timeout(CALL)
            .connect()
            .await
            .expect("connects");
        LockServiceClient::new(channel)
    }

    /// What lock-server `i` says of the leadership, or `None` when it does not answer in time.
    pub async fn leader_of(&self, i: usize) -> Option<pb::LeaderResponse> {
        self.servers[i].as_ref()?;
        let mut rpc = self.rpc(i).await;
        tokio::time::timeout(CALL, rpc.leader(pb::LeaderRequest {}))
            .await
            .ok()?
            .ok()
            .map(tonic::Response::into_inner)
    }

    /// Waits (at most [`FAILOVER`]) until exactly one running server leads, other than `not`,
    /// and every other running one but `not` names it: its index and epoch.
    pub async fn leader(&self, not: Option<usize>) -> (usize, u64) {
        let deadline = Instant::now() + FAILOVER;
        loop {
            let mut answers = Vec::new();
            for i in (0..self.servers.len()).filter(|&i| Some(i) != not) {
                if self.servers[i].is_some() {
                    answers.push((i, self.leader_of(i).await));
                }
            }
            let leading: Vec<(usize, u64)> = answers
                .iter()
                .filter_map(|(i, a)| a.as_ref().filter(|a| a.serving).map(|a| (*i, a.epoch)))
                .collect();
            if let [(leader, epoch)] = leading[..] {
                let named = answers.iter().all(|(_, a)| {
                    a.as_ref()
                        .is_some_and(|a| a.leader == self.addrs[leader] && a.epoch == epoch)
                });
                if named {
                    return (leader, epoch);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no single leader within {FAILOVER:?}: {answers:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An Acquire of `resource` for writing on `rpc`, bounded by [`CALL`] (a frozen server never
/// answers: DEADLINE_EXCEEDED then).
pub async fn try_acquire(rpc: &Rpc, resource: &str) -> Result<pb::Lease, Status> {
    let request = ask("ha", &[(resource, pb::Mode::Write)], Duration::from_secs(1));
    match tokio::time::timeout(CALL, rpc.clone().acquire(request)).await {
        Ok(answer) => answer.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("no answer in time")),
    }
}

/// The leader named in a "not the leader" answer's trailer.
pub fn named_leader(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(LEADER_TRAILER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
