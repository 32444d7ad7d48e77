//! etcd as a reference: a single-member etcd on two free loopback ports (client and peer) with a
//! fresh temporary data directory, `GOMAXPROCS=1` so that it gets one core like each Township
//! server, and its default durability (the write-ahead log is fsynced before a write is
//! acknowledged). Its readiness is checked with a plain HTTP/1.1 `GET /health` over a std
//! `TcpStream`, so this needs no HTTP or gRPC client.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context;

use crate::process::{self, Process, Shutdown};

/// The Debian package that installs `etcd` (`apt-get install etcd-server`).
pub const ETCD_PACKAGE: &str = "etcd-server";

/// The etcd binary, looked up on `PATH`.
const BINARY: &str = "etcd";

/// How long etcd may take to report itself healthy after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long etcd may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The bound on each health probe's connect, write and read.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The installed etcd's version, e.g. "3.4.23", from `etcd --version`; `None` when there is no
/// `etcd` on `PATH` (install [`ETCD_PACKAGE`]).
pub fn etcd_version() -> anyhow::Result<Option<String>> {
    let Some(text) = process::version_output(Path::new(BINARY))? else {
        return Ok(None);
    };
    let version = text
        .lines()
        .find_map(|line| line.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("unexpected `etcd --version` output {text:?}"))?;
    Ok(Some(version))
}

/// A running single-member etcd. [`Etcd::stop`] ends it gracefully; dropping it instead SIGKILLs
/// it by PID and reaps it. Either way its temporary directory is removed after the process is
/// gone.
pub struct Etcd {
    /// The etcd process; declared before `dir` so that a drop ends it before removing its data.
    process: Process,
    /// Its client URL, e.g. "http://127.0.0.1:40123".
    client_url: String,
    /// Holds the data directory (`data/`) and the log (`etcd.log`).
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts a single member on two free loopback ports with a fresh temporary data directory,
    /// `GOMAXPROCS=1` and default durability (WAL fsync per write), logging to `etcd.log` in its
    /// directory, and waits (at most 30 s) until `GET /health` answers `"health":"true"`.
    ///
    /// Fails if etcd is not installed (naming [`ETCD_PACKAGE`]), exits while starting, or does not
    /// become healthy in time; the error quotes the last lines of its log.
    pub fn start() -> anyhow::Result<Etcd> {
        if etcd_version()?.is_none() {
            anyhow::bail!("etcd is not installed (apt-get install {ETCD_PACKAGE})");
        }
        let dir = tempfile::Builder::new()
            .prefix("township-etcd-")
            .tempdir()
            .context("cannot create a temporary directory for etcd")?;
        let [client_port, peer_port] = process::free_ports::<2>()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut process = spawn_member(
            dir.path(),
            "default",
            [client_port, peer_port],
            &format!("default={peer_url}"),
            None,
        )?;
        let addr = SocketAddr::from(([127, 0, 0, 1], client_port));
        process.wait_ready(START_TIMEOUT, || is_healthy(addr))?;
        Ok(Etcd {
            process,
            client_url,
            dir,
        })
    }

    /// Its client URL, "http://127.0.0.1:PORT", for the v3 gRPC API and the HTTP endpoints.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The etcd process's PID (our direct child).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its temporary directory: the data directory `data/` and the log `etcd.log`. Removed by
    /// [`Etcd::stop`] or the drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log file, for a caller that wants to explain a failure of its own.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Sends SIGTERM to its PID, waits at most 10 s for it to exit (then SIGKILL), reaps it and
    /// removes its directory. Fails if it had already exited on its own (quoting its log) or the
    /// directory cannot be removed; the process is gone either way.
    pub fn stop(self) -> anyhow::Result<()> {
        let Etcd { process, dir, .. } = self;
        let stopped = process.stop(Shutdown {
            signal: libc::SIGTERM,
            grace: STOP_GRACE,
        });
        let path = dir.path().to_owned();
        let removed = dir
            .close()
            .with_context(|| format!("cannot remove etcd's directory {}", path.display()));
        stopped.and(removed)
    }
}

/// TLS on etcd's client port: its certificate and key, and the CA whose client certificates it
/// requires (`--client-cert-auth`). Health is then served in plaintext on a port of its own.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// With [`EtcdTls`]: the TLS files, and the plaintext port for `/health` (etcd's metrics URL).
pub(crate) type ClientTls<'a> = Option<(&'a EtcdTls, u16)>;

/// Spawns one etcd member named `name` on `[client_port, peer_port]` of loopback, keeping its
/// data in `dir/<name>/` and its log in `dir/<name>.log`, one of `initial_cluster`
/// (`name=peer-url,...`), with `GOMAXPROCS=1`. A member restarted on its data directory
/// ignores the initial-cluster flags and rejoins the cluster it was part of.
pub(crate) fn spawn_member(
    dir: &Path,
    name: &str,
    [client_port, peer_port]: [u16; 2],
    initial_cluster: &str,
    tls: ClientTls,
) -> anyhow::Result<Process> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let client_url = format!("{scheme}://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    // The single member keeps its historical layout: `data/` and `etcd.log`.
    let (data, log) = if name == "default" {
        (dir.join("data"), dir.join("etcd.log"))
    } else {
        (dir.join(name), dir.join(format!("{name}.log")))
    };
    let mut command = Command::new(BINARY);
    if let Some((files, health_port)) = tls {
        command
            .arg("--cert-file")
            .arg(&files.cert)
            .arg("--key-file")
            .arg(&files.key)
            .arg("--trusted-ca-file")
            .arg(&files.client_ca)
            .arg("--client-cert-auth")
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{health_port}"),
            ]);
    }
    Process::spawn(
        "etcd",
        command
            .args(["--name", name])
            .arg("--data-dir")
            .arg(data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap"])
            .env("GOMAXPROCS", "1")
            .current_dir(dir),
        log,
        Shutdown::KILL,
    )
}

/// Whether etcd at `addr` answers `GET /health` with `"health":"true"`, each step bounded.
pub(crate) fn is_healthy(addr: SocketAddr) -> bool {
    http_get(addr, "/health").is_ok_and(|reply| reply.contains("\"health\":\"true\""))
}

/// A minimal HTTP/1.1 GET with `Connection: close`: the whole reply, headers and body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}
