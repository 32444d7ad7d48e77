//! Typed server configuration shared by every Township server: flags, their environment variables,
//! and the "bad config exits 64 with one line" rule.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, ValueEnum, error::ErrorKind};

/// Exit status for invalid configuration (sysexits' `EX_USAGE`).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Exit status when the server fails after start-up (cannot bind, storage error, ...).
pub const EXIT_FAILURE: u8 = 1;

/// Exit status when the data the server keeps is unusable, e.g. a damaged database file
/// (sysexits' `EX_DATAERR`): restarting cannot help, so a supervisor can tell it from a crash.
pub const EXIT_BAD_DATA: u8 = 65;

/// Exit status when what the server needs is held by another process, e.g. its data directory
/// (sysexits' `EX_TEMPFAIL`): it may start once the other one is gone.
pub const EXIT_IN_USE: u8 = 75;

/// Flags every server takes. Flatten it into the server's own `clap::Parser`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// gRPC address to listen on, `host:port` (an `http://` in front is accepted); port 0 picks a
    /// free port. Default: the service's own port on 127.0.0.1.
    #[arg(long, env = "TOWNSHIP_LISTEN", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub listen: Option<SocketAddr>,

    /// Directory for the service's state (created if missing). Default: ./township-data/<service>.
    #[arg(long, env = "TOWNSHIP_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log format on stderr; the level comes from RUST_LOG (default `info`).
    #[arg(long, env = "TOWNSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long in-flight calls may take to finish once shutdown begins.
    #[arg(long, env = "TOWNSHIP_SHUTDOWN_GRACE", value_name = "DURATION",
          value_parser = humantime::parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,

    /// Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, env = "TOWNSHIP_MAX_MESSAGE_BYTES", value_name = "BYTES",
          default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_message_bytes: u32,

    /// Most calls (streams) one client connection may have open at once (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS); further calls wait in the client until one ends.
    #[arg(long, env = "TOWNSHIP_MAX_CONCURRENT_STREAMS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Most unary calls in flight at once, over every connection; past it a call is refused at
    /// once with RESOURCE_EXHAUSTED and a RetryInfo (health checks are never refused).
    #[arg(long, env = "TOWNSHIP_MAX_CONCURRENT_CALLS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_calls: u32,

    /// Most streams open at once, over every connection (WatchTime, Join, Converse, KeepAlive,
    /// Session, Export, Import, health's Watch, reflection); past it a new one is refused at once
    /// with RESOURCE_EXHAUSTED and a RetryInfo.
    #[arg(long, env = "TOWNSHIP_MAX_OPEN_STREAMS", value_name = "N", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_open_streams: u32,

    /// How long a unary call may run when its client set no deadline, before DEADLINE_EXCEEDED.
    /// Default: 60s (the lock-server: above its longest Acquire wait).
    #[arg(long, env = "TOWNSHIP_CALL_DEADLINE", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub call_deadline: Option<Duration>,

    /// Also serve `grpc.health.v1.Health`, and nothing else, in plaintext on this address, for
    /// probes that cannot speak TLS (Kubernetes' gRPC probes, some load balancers).
    #[arg(long, env = "TOWNSHIP_HEALTH_LISTEN", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub health_listen: Option<SocketAddr>,

    /// The authorization policy (gRPC authz JSON: deny_rules, then allow_rules; anything not
    /// allowed is PERMISSION_DENIED), re-read on SIGHUP. Without it, every caller may call
    /// everything.
    #[arg(long, env = "TOWNSHIP_AUTHZ_POLICY", value_name = "FILE")]
    pub authz_policy: Option<PathBuf>,

    /// Serve TLS with this certificate chain (PEM, leaf first), e.g. from `township certs init`.
    #[arg(
        long,
        env = "TOWNSHIP_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "TOWNSHIP_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: require a client certificate signed by this CA (PEM). Needs --tls-cert.
    #[arg(
        long,
        env = "TOWNSHIP_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// Test only (debug builds): a file holding the most pages each database may have, read
    /// before each write, so tests can fill the disk and give the space back (see
    /// `township_store::full`, which every server with a database applies; the time-server has
    /// none).
    #[cfg(debug_assertions)]
    #[arg(long, hide = true, value_name = "FILE")]
    pub test_storage_pages_file: Option<PathBuf>,
}

impl ServerArgs {
    /// The listen address, or `127.0.0.1:<default_port>` when none was given.
    pub fn listen_or(&self, default_port: u16) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)))
    }

    /// The TLS files, when --tls-cert and --tls-key are given.
    pub fn tls(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The data directory, or `./township-data/<service>` when none was given.
    pub fn data_dir_or(&self, service: &str) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("township-data").join(service))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Parses the process arguments into `T`. `--help` and `--version` print and exit 0; anything
/// invalid prints one line (`<binary>: error: ...`) on stderr and exits [`EXIT_BAD_CONFIG`].
pub fn parse_args<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => std::process::exit(i32::from(exit_for_parse_error(&err))),
    }
}

/// Prints a clap error the Township way and returns the exit status to use.
fn exit_for_parse_error(err: &clap::Error) -> u8 {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                EXIT_BAD_CONFIG
            } else {
                0
            }
        }
        _ => {
            eprintln!(
                "{}: {}",
                program_name(),
                first_line(&err.render().to_string())
            );
            EXIT_BAD_CONFIG
        }
    }
}

/// A setting refused after parsing, e.g. a secret file that others may read: [`run_server`]
/// exits [`EXIT_BAD_CONFIG`] with its one line, as for a flag that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadConfig(pub String);

/// Stored data found unusable, e.g. a database file that SQLite says is damaged: [`run_server`]
/// exits [`EXIT_BAD_DATA`] with its one line, where a plain failure would exit 1 and be
/// restarted into the same failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadData(pub String);

/// What the server needs is held by another process, e.g. its data directory
/// ([`crate::data_dir::DataDirLock`]): [`run_server`] exits [`EXIT_IN_USE`] with its one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InUse(pub String);

/// The body of every server binary's `main`: parses `A` (bad config: one line, exit 64), starts
/// tracing in the format its [`ServerArgs`] ask for, runs `serve`, and turns a failure into one
/// line on stderr and exit 1 ([`BadConfig`] anywhere in its chain: exit 64; [`BadData`]: exit 65;
/// [`InUse`]: exit 75).
pub async fn run_server<A: Parser>(
    server_args: impl Fn(&A) -> &ServerArgs,
    serve: impl AsyncFnOnce(A) -> anyhow::Result<()>,
) -> ExitCode {
    let args: A = parse_args();
    crate::telemetry::init(server_args(&args).log_format);
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.chain().any(|cause| cause.is::<BadConfig>()) => {
            eprintln!("{}: {err:#}", program_name());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(err) if err.chain().any(|cause| cause.is::<BadData>()) => {
            eprintln!("{}: {err:#}", program_name());
            ExitCode::from(EXIT_BAD_DATA)
        }
        Err(err) if err.chain().any(|cause| cause.is::<InUse>()) => {
            eprintln!("{}: {err:#}", program_name());
            ExitCode::from(EXIT_IN_USE)
        }
        Err(err) => fail(&err),
    }
}

/// Reports a fatal start-up or runtime error as one line and returns the failure exit code.
pub fn fail(err: &anyhow::Error) -> ExitCode {
    tracing::error!(error = format!("{err:#}"), "server failed");
    eprintln!("{}: {err:#}", program_name());
    ExitCode::from(EXIT_FAILURE)
}

fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "township".to_owned())
}

/// The error's first line; when it ends with ':' (clap's "the following required arguments were
/// not provided:"), the lines it introduces are joined onto it, so the one line names them.
fn first_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return text.trim().to_owned();
    };
    if !first.ends_with(':') {
        return first.to_owned();
    }
    let listed: Vec<&str> = lines
        .take_while(|l| l.starts_with("--") || l.starts_with('<'))
        .collect();
    format!("{first} {}", listed.join(", "))
}

/// Parses a duration above zero (`30s`, `5m`).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be above zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(err) => Err(err.to_string()),
    }
}

/// Parses a listen address: `ip:port` or `host:port`, with an optional `http://` in front.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let bare = strip_scheme(text);
    if let Ok(addr) = bare.parse() {
        return Ok(addr);
    }
    bare.to_socket_addrs()
        .map_err(|e| format!("`{text}` is not a host:port address ({e})"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

fn strip_scheme(text: &str) -> &str {
    text.strip_prefix("http://").unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_as_a_duration_is_read_or_refused_never_a_panic(text in ".{0,40}") {
            let _ = parse_positive_duration(&text);
        }

        #[test]
        fn a_written_duration_reads_back(millis in 1u64..10_000_000_000) {
            let duration = Duration::from_millis(millis);
            let written = humantime::format_duration(duration).to_string();
            proptest::prop_assert_eq!(parse_positive_duration(&written), Ok(duration));
        }
    }

    #[test]
    fn listen_addresses_accept_an_optional_http_scheme() {
        assert_eq!(
            parse_listen_addr("http://127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(parse_listen_addr("127.0.0.1:50051").unwrap().port(), 50051);
        assert!(parse_listen_addr("127.0.0.1").is_err());
        assert!(parse_listen_addr("nonsense:port").is_err());
    }

    #[test]
    fn clap_errors_become_one_line() {
        assert_eq!(first_line("\nerror: bad\n\nUsage: x\n"), "error: bad");
        let missing = "error: the following required arguments were not provided:\n  --tls-key <FILE>\n\nUsage: time-server --tls-cert <FILE> --tls-key <FILE>\n";
        assert_eq!(
            first_line(missing),
            "error: the following required arguments were not provided: --tls-key <FILE>"
        );
    }
}
