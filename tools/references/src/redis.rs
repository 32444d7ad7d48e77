//! Redis as a reference: `redis-server` on a free loopback port with a temporary working directory
//! (its append-only file, if any, and its log), in one of two durabilities chosen by the caller.
//! Its readiness is checked with an inline `PING` over a std `TcpStream`, so this needs no Redis
//! client. Redis is single-threaded already, so it needs no core limit.

use std::{
    fmt,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context;

use crate::process::{self, Process, Shutdown};

/// The Debian package that installs `redis-server` (`apt-get install redis-server`).
pub const REDIS_PACKAGE: &str = "redis-server";

/// The Redis server binary, looked up on `PATH`.
const BINARY: &str = "redis-server";

/// How long Redis may take to answer PING after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long Redis may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The bound on each PING's connect, write and read.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The installed Redis's version, e.g. "7.0.15", from `redis-server --version`; `None` when there
/// is no `redis-server` on `PATH` (install [`REDIS_PACKAGE`]).
pub fn redis_version() -> anyhow::Result<Option<String>> {
    let Some(text) = process::version_output(Path::new(BINARY))? else {
        return Ok(None);
    };
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .map(str::to_owned)
        .with_context(|| format!("unexpected `redis-server --version` output {text:?}"))?;
    Ok(Some(version))
}

/// How durable a started Redis is. Snapshots (RDB) are off in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisDurability {
    /// Nothing on disk: `--appendonly no --save ""`. A cache, or a lock that may be lost.
    InMemory,
    /// Every write fsynced before it is acknowledged: `--appendonly yes --appendfsync always
    /// --save ""`, the durability Township's servers keep.
    EveryWrite,
}

impl RedisDurability {
    /// The redis-server arguments that select this durability.
    fn args(self) -> &'static [&'static str] {
        match self {
            RedisDurability::InMemory => &["--appendonly", "no", "--save", ""],
            RedisDurability::EveryWrite => &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
        }
    }
}

impl fmt::Display for RedisDurability {
    /// "in memory" or "fsync every write", for reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedisDurability::InMemory => "in memory",
            RedisDurability::EveryWrite => "fsync every write",
        })
    }
}

/// A running redis-server. [`Redis::stop`] ends it gracefully; dropping it instead SIGKILLs it by
/// PID and reaps it. Either way its temporary directory is removed after the process is gone.
pub struct Redis {
    /// The server process; declared before `dir` so that a drop ends it before removing its files.
    process: Process,
    /// Where it listens, 127.0.0.1:PORT.
    addr: SocketAddr,
    /// The durability it was started with.
    durability: RedisDurability,
    /// Its `--dir`: the append-only file (if any) and the log `redis.log`.
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts redis-server on a free loopback port (`--bind 127.0.0.1`) with a temporary `--dir`,
    /// its log `redis.log` there at `--loglevel warning`, in `durability`, and waits (at most
    /// 30 s) until `PING` answers `+PONG`.
    ///
    /// Fails if Redis is not installed (naming [`REDIS_PACKAGE`]), exits while starting, or does
    /// not answer in time; the error quotes the last lines of its log.
    pub fn start(durability: RedisDurability) -> anyhow::Result<Redis> {
        if redis_version()?.is_none() {
            anyhow::bail!("redis-server is not installed (apt-get install {REDIS_PACKAGE})");
        }
        let dir = tempfile::Builder::new()
            .prefix("township-redis-")
            .tempdir()
            .context("cannot create a temporary directory for Redis")?;
        let port = process::free_port()?;
        let log = dir.path().join("redis.log");
        let mut process = Process::spawn(
            "redis-server",
            Command::new(BINARY)
                .arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1"])
                .args(durability.args())
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .args(["--loglevel", "warning"])
                .current_dir(dir.path()),
            // Its own startup messages, before it opens --logfile, land here too.
            log,
            Shutdown::KILL,
        )?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        process.wait_ready(START_TIMEOUT, || answers_ping(addr))?;
        Ok(Redis {
            process,
            addr,
            durability,
            dir,
        })
    }

    /// Where it listens, 127.0.0.1:PORT.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL for Redis clients, "redis://127.0.0.1:PORT/".
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// The durability it was started with.
    pub fn durability(&self) -> RedisDurability {
        self.durability
    }

    /// The redis-server process's PID (our direct child).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its temporary `--dir`: the append-only file (if any) and the log `redis.log`. Removed by
    /// [`Redis::stop`] or the drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log file, for a caller that wants to explain a failure of its own.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Sends SIGTERM to its PID, waits at most 10 s for it to exit (then SIGKILL), reaps it and
    /// removes its directory. Fails if it had already exited on its own (quoting its log) or the
    /// directory cannot be removed; the process is gone either way.
    pub fn stop(self) -> anyhow::Result<()> {
        let Redis { process, dir, .. } = self;
        let stopped = process.stop(Shutdown {
            signal: libc::SIGTERM,
            grace: STOP_GRACE,
        });
        let path = dir.path().to_owned();
        let removed = dir
            .close()
            .with_context(|| format!("cannot remove Redis's directory {}", path.display()));
        stopped.and(removed)
    }
}

/// Whether Redis at `addr` answers an inline `PING` with `+PONG`, each step bounded.
fn answers_ping(addr: SocketAddr) -> bool {
    let ping = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
        stream.write_all(b"PING\r\n")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    };
    ping().is_ok_and(|line| line == "+PONG\r\n")
}
