//! Redis as a reference for the lock benchmark: starting `redis-server` on loopback with a
//! temporary directory, and a minimal RESP2 client (commands out as arrays of bulk strings;
//! simple strings, errors, integers and bulk strings back), enough for the usual single-node
//! Redis lock: `SET key token NX PX ttl` to take it, a compare-and-delete Lua script to release.
//!
//! Redis runs durable, like Township's servers: append-only file with `appendfsync always`, so
//! every acknowledged write is fsynced; snapshots are off. It is single-threaded already. Its
//! lock is single-node and not fenced (no token a protected resource could check), so it promises
//! less than Township's lock service.

use std::{
    net::TcpListener,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream},
    net::TcpStream,
    process::{Child, Command},
};

/// The Redis server binary, looked up on `PATH`.
const BINARY: &str = "redis-server";

/// How long Redis may take to answer PING after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Deletes the lock key only if it still holds the caller's token, atomically; 1 if it did.
pub const RELEASE_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// The installed Redis's version, e.g. "7.0.15", from `redis-server --version`; `None` when there
/// is no redis-server on `PATH`.
pub async fn version() -> anyhow::Result<Option<String>> {
    let output = match Command::new(BINARY).arg("--version").output().await {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).context("cannot run `redis-server --version`"),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .map(str::to_owned)
        .with_context(|| format!("unexpected `redis-server --version` output {text:?}"))?;
    Ok(Some(version))
}

/// A running redis-server, killed when dropped (the process before its directory).
pub struct Redis {
    /// The server process, killed on drop if not stopped before.
    child: Child,
    /// Its address, e.g. "127.0.0.1:40123".
    pub addr: String,
    /// Its append-only file and log, removed after the process is killed.
    _dir: tempfile::TempDir,
}

/// Starts redis-server on a free loopback port, durable (AOF, fsync on every write), and waits
/// until it answers PING (at most 30 s).
pub async fn start() -> anyhow::Result<Redis> {
    let dir = tempfile::tempdir().context("cannot create a temporary dir for Redis")?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("cannot find a free port")?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log_path = dir.path().join("redis.log");
    let mut child = Command::new(BINARY)
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log_path)
        .args(["--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start redis-server")?;
    let began = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("cannot poll redis-server")? {
            bail!("redis-server exited with {status}: {}", log_tail(&log_path));
        }
        if began.elapsed() > START_TIMEOUT {
            bail!(
                "redis-server did not answer within {START_TIMEOUT:?}: {}",
                log_tail(&log_path)
            );
        }
        let answered = async {
            let mut client = Client::connect(&addr).await?;
            client.command(&[b"PING"]).await
        };
        let answer = tokio::time::timeout(Duration::from_secs(1), answered).await;
        if matches!(answer, Ok(Ok(Reply::Simple(ref pong))) if pong == "PONG") {
            return Ok(Redis {
                child,
                addr,
                _dir: dir,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Redis {
    /// Kills the process and waits for it to end, so none is left behind (dropping only sends the
    /// signal).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("cannot stop redis-server")
    }
}

/// The last lines of Redis's log, to explain a failed start.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(5)..].join(" / ")
        }
        Err(err) => format!("(no log: {err})"),
    }
}

/// One RESP2 reply, as far as this client understands them (no arrays).
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$3\r\nfoo`, or `None` for the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
}

/// A RESP2 connection: one command at a time, reply read before the next is sent.
pub struct Client {
    stream: BufStream<TcpStream>,
}

impl Client {
    /// Connects to Redis at `addr`, with Nagle off.
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to Redis at {addr}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        Ok(Self {
            stream: BufStream::new(stream),
        })
    }

    /// Sends one command (its name and arguments as bulk strings) and reads its reply.
    pub async fn command(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&out)
            .await
            .context("cannot send to Redis")?;
        self.stream.flush().await.context("cannot send to Redis")?;
        self.reply().await
    }

    /// Reads one reply.
    async fn reply(&mut self) -> anyhow::Result<Reply> {
        let line = self.line().await?;
        let (kind, rest) = line.split_at_checked(1).context("empty RESP line")?;
        let text = || String::from_utf8_lossy(rest).into_owned();
        match kind {
            b"+" => Ok(Reply::Simple(text())),
            b"-" => Ok(Reply::Error(text())),
            b":" => {
                Ok(Reply::Integer(text().parse().with_context(|| {
                    format!("bad RESP integer {:?}", text())
                })?))
            }
            b"$" => {
                let len: i64 = text()
                    .parse()
                    .with_context(|| format!("bad RESP bulk length {:?}", text()))?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len).context("bulk length")?;
                let mut body = vec![0; len + 2];
                self.stream
                    .read_exact(&mut body)
                    .await
                    .context("Redis closed the connection mid-reply")?;
                if !body.ends_with(b"\r\n") {
                    bail!("RESP bulk string not ended by CRLF");
                }
                body.truncate(len);
                Ok(Reply::Bulk(Some(body)))
            }
            _ => bail!(
                "unsupported RESP reply {:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }

    /// Reads one CRLF-ended line, without its CRLF.
    async fn line(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut line = Vec::new();
        let read = self
            .stream
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read from Redis")?;
        if read == 0 {
            bail!("Redis closed the connection");
        }
        if !line.ends_with(b"\r\n") {
            bail!("RESP line not ended by CRLF");
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}
