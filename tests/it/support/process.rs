//! Starting and stopping the servers under test (on top of the `township_tests` harness): a
//! server on a data directory, a fixed address for one restarted on the same port, a channel with
//! the tests' timeouts, and a stop that checks how the server exited.

use std::{path::Path, time::Duration};

use tonic_health::pb::health_check_response::ServingStatus;

use tonic::transport::{Channel, Endpoint};

use crate::support::storage::{Backend, Storage};
use township_tests::{
    Output, ServiceProcess, command, free_port, health_status, run, spawn_service, spawn_service_at,
};

/// The longest any single call may take before the test calls it hung.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped or killed server may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts `binary` with `args` on `listen`, or on an ephemeral port when `None`.
pub async fn try_server(
    binary: &str,
    listen: Option<&str>,
    args: &[&str],
) -> anyhow::Result<ServiceProcess> {
    match listen {
        Some(listen) => spawn_service_at(binary, listen, args).await,
        None => spawn_service(binary, args).await,
    }
}

/// `binary` on the data directory `dir`, on `listen` (`None`: an ephemeral port), with `extra`
/// flags; it must start.
pub async fn server_on(
    binary: &str,
    dir: &Path,
    listen: Option<&str>,
    extra: &[&str],
) -> ServiceProcess {
    let mut args = vec!["--data-dir", dir.to_str().expect("a UTF-8 temp path")];
    args.extend_from_slice(extra);
    try_server(binary, listen, &args)
        .await
        .unwrap_or_else(|err| panic!("the {binary} starts: {err:#}"))
}

/// `binary` on `storage` (its data directory, and on PostgreSQL its database), on `listen`
/// (`None`: an ephemeral port), with `extra` flags; it must start.
pub async fn server_with(
    binary: &str,
    storage: &Storage,
    listen: Option<&str>,
    extra: &[&str],
) -> ServiceProcess {
    let flags = storage.flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    try_server(binary, listen, &args)
        .await
        .unwrap_or_else(|err| panic!("the {binary} starts: {err:#}"))
}

/// One server on SQLite, or two replicas of it on one PostgreSQL database, each with its own
/// data directory: what a test of concurrent callers runs against, so that on PostgreSQL their
/// races are between processes too. Keep it as long as the servers.
pub struct Replicas {
    servers: Vec<ServiceProcess>,
    _storage: Vec<Storage>,
}

impl Replicas {
    /// `binary` with `extra` flags on fresh state on `backend`: one server (SQLite) or two
    /// replicas (PostgreSQL).
    pub async fn start(binary: &str, backend: Backend, extra: &[&str]) -> Replicas {
        let first = Storage::new(backend).await;
        let mut storage = vec![];
        if backend == Backend::Postgres {
            storage.push(first.replica());
        }
        storage.insert(0, first);
        let mut servers = Vec::new();
        for state in &storage {
            servers.push(server_with(binary, state, None, extra).await);
        }
        Replicas {
            servers,
            _storage: storage,
        }
    }

    /// Server `n`, modulo their number: callers numbered 0, 1, 2, ... alternate between them.
    pub fn server(&self, n: usize) -> &ServiceProcess {
        &self.servers[n % self.servers.len()]
    }
}

/// A loopback address below the ephemeral range, for a server restarted on the same address.
pub fn fixed_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A connected channel to `server`; every call on it is bounded by `call_timeout` when given
/// (streams that live long take `None` and bound each step themselves).
pub async fn connect(server: &ServiceProcess, call_timeout: Option<Duration>) -> Channel {
    let mut endpoint = Endpoint::from_shared(server.uri())
        .expect("valid uri")
        .connect_timeout(Duration::from_secs(5));
    if let Some(limit) = call_timeout {
        endpoint = endpoint.timeout(limit);
    }
    endpoint.connect().await.expect("connect to the server")
}

/// Stops `server` with `signal` and waits for it to exit; a signal other than SIGKILL must end it
/// gracefully, with code 0.
pub async fn stop(mut server: ServiceProcess, signal: libc::c_int) {
    server.signal(signal);
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .await
        .expect("the server exits");
    if signal == libc::SIGKILL {
        assert_eq!(status.code(), None, "killed by a signal");
    } else {
        assert_eq!(
            status.code(),
            Some(0),
            "a graceful stop exits 0; logs:\n{}",
            server.logs()
        );
    }
}

/// A base port such that base..base+6 are free right now (for `township up`, which starts every
/// server on consecutive ports).
pub fn free_port_range() -> u16 {
    for attempt in 0..200u16 {
        let base = 20_000 + (std::process::id() as u16 % 1000) * 30 + attempt * 7;
        let free = (base..base + 6).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port range");
}

/// Runs `binary` with `args` and `env` to its end (bounded: 20 s), for servers that must refuse
/// to start, and returns its output.
pub async fn run_binary(binary_name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = command(binary_name);
    command.args(args).envs(env.iter().copied());
    run(command, Duration::from_secs(20)).await
}

/// Asserts that health reports SERVING for the whole server and for `service`.
pub async fn assert_serving(server: &ServiceProcess, service: &str) {
    for name in [service, ""] {
        let status = health_status(server.addr, name).await;
        assert!(
            matches!(status, Ok(ServingStatus::Serving)),
            "health of {name:?}: {status:?}"
        );
    }
}
