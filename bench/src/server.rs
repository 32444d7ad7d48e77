//! Starting a Township server binary (from the same target directory as this benchmark) on an
//! ephemeral loopback port, with one worker thread and quiet logs, and reading its footprint:
//! time from spawn to SERVING and resident memory. Callers own the data directory (a
//! `tempfile::TempDir`), so replicas can share one.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use township_client::Dialer;

use crate::{load::Window, report::Footprint};

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    name: String,
    /// Its gRPC address.
    pub addr: SocketAddr,
    start_to_serving: Duration,
    idle_rss_kib: u64,
}

/// The path of `binary` beside this benchmark's own executable (the same target directory), or
/// an error saying how to build it.
pub fn binary(binary: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let path: PathBuf = exe.with_file_name(binary);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release --workspace`",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `binary` with `--data-dir data_dir` and `args`, and waits until its health check
/// answers SERVING (at most 60 s).
pub async fn start(binary: &str, data_dir: &Path, args: &[&str]) -> anyhow::Result<Server> {
    start_dialing(binary, data_dir, args, &Dialer::new()).await
}

/// [`start`], with the health check dialled by `dialer`: over mutual TLS for a server started
/// with `--tls-cert`, `--tls-key` and `--tls-client-ca`.
pub async fn start_dialing(
    binary: &str,
    data_dir: &Path,
    args: &[&str],
    dialer: &Dialer,
) -> anyhow::Result<Server> {
    start_on(binary, "127.0.0.1:0", data_dir, args, dialer).await
}

/// [`start_dialing`] on a given `listen` address (for a server that must be told its own
/// address, or come back on it).
pub async fn start_on(
    binary: &str,
    listen: &str,
    data_dir: &Path,
    args: &[&str],
    dialer: &Dialer,
) -> anyhow::Result<Server> {
    let path = self::binary(binary)?;
    let spawned = Instant::now();
    let mut child = Command::new(&path)
        .args(["--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("TOKIO_WORKER_THREADS", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", path.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await
        .context("cannot read the server's stdout")?
        .context("the server exited before listening")?;
    let addr: SocketAddr = line
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .parse()
        .context("bad announced address")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::time::timeout(Duration::from_secs(60), wait_serving(addr, dialer))
        .await
        .with_context(|| format!("{binary} did not report SERVING within 60 s"))??;
    let start_to_serving = spawned.elapsed();
    let pid = child.id().context("the server has already exited")?;
    let idle_rss_kib = memory(pid)?.0;
    Ok(Server {
        child,
        name: binary.to_owned(),
        addr,
        start_to_serving,
        idle_rss_kib,
    })
}

impl Server {
    /// Kills the server (SIGKILL) and waits for it to exit.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("cannot kill the server")
    }

    /// The footprint so far: start-up time, idle RSS and the high-water RSS until now.
    pub fn footprint(&self) -> anyhow::Result<Footprint> {
        let pid = self.child.id().context("the server has exited")?;
        Ok(Footprint {
            server: self.name.clone(),
            start_to_serving: self.start_to_serving,
            idle_rss_kib: self.idle_rss_kib,
            peak_rss_kib: memory(pid)?.1,
            cpu_us_per_op: None,
        })
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let pid = self.child.id().context("the server has exited")?;
        cpu_time(pid)
    }
}

/// The CPU time each of `servers` uses during the measured part of `window`, sampled when it
/// starts and when it stops.
pub async fn cpu_during(window: Window, servers: &[&Server]) -> anyhow::Result<Vec<Duration>> {
    tokio::time::sleep_until(window.measure_from().into()).await;
    let before = servers
        .iter()
        .map(|s| s.cpu_time())
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep_until(window.stop().into()).await;
    servers
        .iter()
        .zip(before)
        .map(|(s, before)| Ok(s.cpu_time()?.saturating_sub(before)))
        .collect()
}

/// Connects once to a server or a reference at `addr` (`host:port` or `http://host:port`), the
/// way every Township client dials (`township-client`). Nothing is retried: the benchmarks start
/// their servers themselves and wait for them.
pub async fn dial(addr: &str) -> anyhow::Result<Channel> {
    Ok(Dialer::new().connect(addr).await?)
}

/// Polls the standard health check (the whole server) until it answers SERVING.
async fn wait_serving(addr: SocketAddr, dialer: &Dialer) -> anyhow::Result<()> {
    let channel = dialer
        .connect(&addr.to_string())
        .await
        .context("connect for the health check")?;
    let mut health = HealthClient::new(channel);
    loop {
        let status = health
            .check(HealthCheckRequest::default())
            .await
            .map(|reply| reply.into_inner().status);
        if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// User plus system CPU time of process `pid` so far, from /proc (fields 14 and 15 of `stat`,
/// in clock ticks of 1/100 s, the Linux `USER_HZ` on every architecture Township targets).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it follow its closing paren.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no CPU time in /proc/{pid}/stat"))
    };
    // After the name come state (field 3), ..., utime (14) and stime (15): indices 11 and 12.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// `(VmRSS, VmHWM)` of process `pid`, in KiB, from /proc.
pub fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
