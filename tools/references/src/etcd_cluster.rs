//! An etcd cluster as a reference: several members on loopback, each with its own ports, data
//! directory and log under one temporary directory, so that a test can kill one member by its PID,
//! start it again on its data, or lose the quorum. Each member runs as [`crate::Etcd`] does:
//! `GOMAXPROCS=1` and its default durability.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, bail};

use crate::{
    etcd::{ETCD_PACKAGE, EtcdTls, etcd_version, http_get, is_healthy, spawn_member},
    process::{self, Process, Shutdown},
};

/// How long the members may take to elect a leader and report themselves healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd cluster. Dropping it SIGKILLs every member by PID and reaps it, then removes the
/// temporary directory.
pub struct EtcdCluster {
    /// The members, in the order of their names (`m0`, `m1`, ...); declared before `dir` so a drop
    /// ends them before removing their data.
    members: Vec<Member>,
    /// Holds each member's data directory (`m0/`, ...) and log (`m0.log`, ...).
    dir: tempfile::TempDir,
    /// `m0=http://127.0.0.1:PEER,...`, as every member was started with.
    initial_cluster: String,
    /// TLS on the client ports, if asked for.
    tls: Option<EtcdTls>,
}

struct Member {
    name: String,
    /// Client, peer, and (with TLS) plaintext health port.
    ports: [u16; 3],
    /// `None` while the member is killed.
    process: Option<Process>,
}

impl EtcdCluster {
    /// Starts `size` members (named `m0`, `m1`, ...) on free loopback ports and waits (at most
    /// 30 s) until each answers `GET /health` with `"health":"true"`, which it does once the
    /// cluster has a leader. Fails if etcd is not installed (naming [`ETCD_PACKAGE`]), or a member
    /// exits or stays unhealthy, quoting its log.
    pub fn start(size: usize) -> anyhow::Result<EtcdCluster> {
        Self::start_with(size, None)
    }

    /// [`EtcdCluster::start`] with TLS on the client ports (`https://`, client certificates
    /// required, from `tls.client_ca`); peers still talk in plaintext on loopback.
    pub fn start_with(size: usize, tls: Option<EtcdTls>) -> anyhow::Result<EtcdCluster> {
        if size == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        if etcd_version()?.is_none() {
            bail!("etcd is not installed (apt-get install {ETCD_PACKAGE})");
        }
        let dir = tempfile::Builder::new()
            .prefix("township-etcd-cluster-")
            .tempdir()
            .context("cannot create a temporary directory for etcd")?;
        let ports = process::free_port_list(3 * size)?;
        let mut members: Vec<Member> = ports
            .chunks(3)
            .enumerate()
            .map(|(i, three)| Member {
                name: format!("m{i}"),
                ports: [three[0], three[1], three[2]],
                process: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.ports[1]))
            .collect::<Vec<_>>()
            .join(",");
        // Every member first: none is healthy until a majority runs.
        for member in &mut members {
            let tls = tls.as_ref().map(|files| (files, member.ports[2]));
            let [client, peer, _] = member.ports;
            member.process = Some(spawn_member(
                dir.path(),
                &member.name,
                [client, peer],
                &initial_cluster,
                tls,
            )?);
        }
        let mut cluster = EtcdCluster {
            members,
            dir,
            initial_cluster,
            tls,
        };
        for i in 0..size {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    /// The client endpoints, `127.0.0.1:PORT` each, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.ports[0]))
            .collect()
    }

    /// The PID of member `i`, or `None` while it is killed.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].process.as_ref().map(Process::pid)
    }

    /// Kills member `i` with SIGKILL by its PID and reaps it: a lost machine. Fails if it had
    /// already exited on its own (quoting its log).
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        match self.members[i].process.take() {
            Some(mut process) => process.end(Shutdown::KILL),
            None => Ok(()),
        }
    }

    /// Starts member `i` again on its data directory and ports, after [`EtcdCluster::kill`], and
    /// waits until it is healthy (which needs a quorum).
    pub fn start_again(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].process.is_some() {
            bail!("etcd member {} is running", self.members[i].name);
        }
        let member = &mut self.members[i];
        let tls = self.tls.as_ref().map(|files| (files, member.ports[2]));
        let [client, peer, _] = member.ports;
        member.process = Some(spawn_member(
            self.dir.path(),
            &member.name,
            [client, peer],
            &self.initial_cluster,
            tls,
        )?);
        self.wait_healthy(i)
    }

    /// The running member that is etcd's own raft leader now (its metric
    /// `etcd_server_is_leader` is 1), or `None` while none is.
    pub fn raft_leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].process.is_some()
                && http_get(self.probe_addr(i), "/metrics")
                    .is_ok_and(|reply| reply.lines().any(|line| line == "etcd_server_is_leader 1"))
        })
    }

    /// The cluster's temporary directory: each member's data directory and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where member `i` answers `/health` and `/metrics` in plaintext: with TLS, its metrics
    /// port; else its client port.
    fn probe_addr(&self, i: usize) -> SocketAddr {
        let port = self.members[i].ports[if self.tls.is_some() { 2 } else { 0 }];
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn wait_healthy(&mut self, i: usize) -> anyhow::Result<()> {
        let addr = self.probe_addr(i);
        let member = &mut self.members[i];
        let process = member
            .process
            .as_mut()
            .with_context(|| format!("etcd member {} is not running", member.name))?;
        process.wait_ready(START_TIMEOUT, || is_healthy(addr))
    }
}
