//! `township up`: runs the whole town on this machine — every server binary found beside this
//! executable, each as its own child process on its default port — and stops them all gracefully
//! on Ctrl-C or SIGTERM.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use township_proto::town;

use crate::error::CliError;

/// One server of the town.
struct Server {
    /// How it is found: its name (used for the data directory and the log file) and default port.
    service: town::Service,
    /// Executable name, looked up beside `township`.
    binary: &'static str,
}

impl Server {
    /// Its port's offset from `--port-base`, which is the time service's port: each server keeps
    /// its place in the town's default ports.
    fn port_offset(&self) -> u16 {
        self.service.port - town::TIME.port
    }
}

/// Every server, in start order (a service starts after the ones it depends on).
const TOWN: &[Server] = &[
    Server {
        service: town::TIME,
        binary: "time-server",
    },
    Server {
        service: town::DOCTOR,
        binary: "doctor-server",
    },
    Server {
        service: town::CHAT,
        binary: "chat-server",
    },
    Server {
        service: town::PHONEBOOK,
        binary: "phonebook-server",
    },
    Server {
        service: town::LOCK,
        binary: "lock-server",
    },
    Server {
        service: town::BANK,
        binary: "bank-server",
    },
];

/// How long a server has to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Flags of `township up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Each service keeps its state in DIR/<service>; logs go to DIR/logs/<service>.log.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "township-data",
        env = "TOWNSHIP_UP_DATA_DIR"
    )]
    data_dir: PathBuf,

    /// The address every server listens on.
    #[arg(
        long,
        value_name = "IP",
        default_value = "127.0.0.1",
        env = "TOWNSHIP_UP_HOST"
    )]
    host: IpAddr,

    /// Port of the time service; the others follow: doctor +1, chat +2, phonebook +3, bank +4,
    /// lock +5.
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = town::TIME.port,
        env = "TOWNSHIP_UP_PORT_BASE"
    )]
    port_base: u16,

    /// How long each server may take to report SERVING.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    start_timeout: Duration,
}

/// A started server.
struct Running {
    name: &'static str,
    addr: SocketAddr,
    pid: u32,
    log: PathBuf,
}

/// Runs `township up`; whatever fails, it exits with `up`'s own code.
pub async fn run(args: UpArgs) -> Result<(), CliError> {
    run_town(args).await.map_err(CliError::Up)
}

/// Starts the town, waits for Ctrl-C, SIGTERM or a server that stops, and stops the town.
async fn run_town(args: UpArgs) -> anyhow::Result<()> {
    let bin_dir = std::env::current_exe()
        .context("cannot find the township executable")?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("the township executable has no parent directory"))?;
    let plan = plan(&args, &bin_dir)?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;

    let (exits_tx, mut exits) = mpsc::unbounded_channel();
    let mut running = Vec::new();
    for (server, addr) in plan {
        let started = tokio::select! {
            started = start(server, addr, &bin_dir, &args, exits_tx.clone()) => started,
            _ = interrupt.recv() => Err(anyhow!("interrupted while starting {}", server.service.name)),
            _ = terminate.recv() => Err(anyhow!("terminated while starting {}", server.service.name)),
        };
        match started {
            Ok(server) => running.push(server),
            Err(err) => {
                stop(&running, &mut exits).await;
                return Err(err);
            }
        }
    }

    println!("{:<10} {:<22} LOG", "SERVICE", "ADDRESS");
    for server in &running {
        println!(
            "{:<10} {:<22} {}",
            server.name,
            server.addr,
            server.log.display()
        );
    }
    println!("Township is up. Press Ctrl-C to stop.");

    let outcome = tokio::select! {
        _ = interrupt.recv() => Ok(()),
        _ = terminate.recv() => Ok(()),
        Some((name, status)) = exits.recv() => {
            running.retain(|s| s.name != name);
            Err(anyhow!("{name} stopped unexpectedly ({})", describe(status)))
        }
    };
    eprintln!("township: stopping every server");
    stop(&running, &mut exits).await;
    outcome
}

/// Checks that every binary exists and every port is free before anything starts.
fn plan(args: &UpArgs, bin_dir: &Path) -> anyhow::Result<Vec<(&'static Server, SocketAddr)>> {
    let mut plan = Vec::new();
    for server in TOWN {
        let binary = bin_dir.join(server.binary);
        if !binary.is_file() {
            bail!(
                "{} not found in {}: build every server first with `cargo build --release --workspace`",
                server.binary,
                bin_dir.display()
            );
        }
        let port = args
            .port_base
            .checked_add(server.port_offset())
            .ok_or_else(|| {
                anyhow!(
                    "--port-base {} leaves no port for {}",
                    args.port_base,
                    server.service.name
                )
            })?;
        let addr = SocketAddr::new(args.host, port);
        std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "port {addr} for {} is not free (stop what holds it, or use --port-base)",
                server.service.name
            )
        })?;
        plan.push((server, addr));
    }
    Ok(plan)
}

fn lock_addr(args: &UpArgs) -> String {
    let offset = town::LOCK.port - town::TIME.port;
    SocketAddr::new(args.host, args.port_base.saturating_add(offset)).to_string()
}

/// Starts one server, waits for its `listening on` line and for SERVING.
async fn start(
    server: &'static Server,
    addr: SocketAddr,
    bin_dir: &Path,
    args: &UpArgs,
    exits: mpsc::UnboundedSender<(&'static str, std::io::Result<ExitStatus>)>,
) -> anyhow::Result<Running> {
    let data_dir = args.data_dir.join(server.service.name);
    let log_dir = args.data_dir.join("logs");
    for dir in [&data_dir, &log_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log = log_dir.join(format!("{}.log", server.service.name));
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;

    let mut command = Command::new(bin_dir.join(server.binary));
    command
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(&data_dir)
        .env(town::LOCK.addr_env, lock_addr(args))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGTERM the child if this
    // process dies, so no server outlives a killed `township up`.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", server.binary))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("{} exited at once", server.binary))?;
    let running = Running {
        name: server.service.name,
        addr,
        pid,
        log: log.clone(),
    };

    let first_line = read_first_line(&mut child, args.start_timeout).await;
    let announced = match first_line {
        Ok(line) => line.strip_prefix("listening on ").map(str::to_owned),
        Err(err) => {
            let _ = child.start_kill();
            let status = child.wait().await;
            bail!(
                "{} did not start ({err:#}; {}); see {}",
                server.binary,
                describe(status),
                log.display()
            );
        }
    };
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = exits.send((server.service.name, status));
    });
    if announced.as_deref() != Some(&addr.to_string()) {
        kill(pid, libc::SIGKILL);
        bail!("{} announced {announced:?}, expected {addr}", server.binary);
    }
    if let Err(err) = wait_serving(addr, args.start_timeout).await {
        kill(pid, libc::SIGKILL);
        bail!(
            "{} did not become SERVING: {err:#}; see {}",
            server.binary,
            log.display()
        );
    }
    Ok(running)
}

async fn read_first_line(child: &mut Child, limit: Duration) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(limit, lines.next_line())
        .await
        .context("no `listening on` line in time")?
        .context("cannot read its stdout")?
        .context("it exited before listening")?;
    // Keep draining later lines so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(line)
}

async fn wait_serving(addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(1));
    let probe = async {
        loop {
            if let Ok(channel) = endpoint.connect().await {
                let mut client = HealthClient::new(channel);
                if let Ok(reply) = client.check(HealthCheckRequest::default()).await
                    && reply.into_inner().status == ServingStatus::Serving as i32
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(limit, probe)
        .await
        .context("timed out")
}

/// Sends SIGTERM to every running server (last started first) and waits for them; kills what is
/// left after [`STOP_TIMEOUT`].
async fn stop(
    running: &[Running],
    exits: &mut mpsc::UnboundedReceiver<(&'static str, std::io::Result<ExitStatus>)>,
) {
    let mut left: Vec<&Running> = running.iter().rev().collect();
    for server in &left {
        kill(server.pid, libc::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    while !left.is_empty() {
        match tokio::time::timeout_at(deadline, exits.recv()).await {
            Ok(Some((name, status))) => {
                left.retain(|s| s.name != name);
                eprintln!("township: {name} stopped ({})", describe(status));
            }
            Ok(None) | Err(_) => break,
        }
    }
    for server in left {
        eprintln!(
            "township: {} did not stop in {STOP_TIMEOUT:?}; killing it",
            server.name
        );
        kill(server.pid, libc::SIGKILL);
    }
}

fn kill(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is one of our children.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(err) => format!("unknown exit status: {err}"),
    }
}
