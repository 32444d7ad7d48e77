//! `bank-server`: parses its config, starts tracing, binds, announces and serves until a signal.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use township_bank::{
    BankConfig, Config, DEFAULT_PORT, load_or_create_admin_token, logins::LoginPolicy,
};
use township_client::ClientTlsFiles;
use township_kit::{ServerArgs, config, net, shutdown};
use township_proto::town;
use township_store::DatabaseArgs;

/// The Township bank (gRPC `township.bank.v1.BankService`).
#[derive(Debug, Parser)]
#[command(name = "bank-server", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    /// The shared lock service, host:port; or several lock-servers elected on etcd,
    /// comma-separated, of which the leader is found and followed.
    #[arg(long, env = town::LOCK.addr_env, default_value = town::LOCK.default_addr)]
    lock_addr: String,

    /// Reach the lock service over TLS, trusting this CA (PEM). Default: --tls-client-ca (the
    /// CA this bank trusts for its own clients); neither: plaintext.
    #[arg(long, env = "TOWNSHIP_BANK_LOCK_CA", value_name = "FILE")]
    lock_ca: Option<PathBuf>,

    /// The certificate (PEM) the bank shows the lock service. Default: --tls-cert.
    #[arg(long, env = "TOWNSHIP_BANK_LOCK_CERT", value_name = "FILE")]
    lock_cert: Option<PathBuf>,

    /// The key (PEM) of --lock-cert. Default: --tls-key.
    #[arg(long, env = "TOWNSHIP_BANK_LOCK_KEY", value_name = "FILE")]
    lock_key: Option<PathBuf>,

    /// File holding the staff token (created with a random token if missing).
    /// Default: <data-dir>/admin-token.
    #[arg(long, env = "TOWNSHIP_BANK_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,

    /// How long a customer's session token lives.
    #[arg(long, env = "TOWNSHIP_BANK_SESSION_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    session_ttl: Duration,

    /// Interest rate of new accounts, in basis points per ApplyInterest (200 = 2 %).
    #[arg(long, env = "TOWNSHIP_BANK_INTEREST_RATE_BP", default_value_t = 200,
          value_parser = clap::value_parser!(i32).range(0..=10_000))]
    interest_rate_bp: i32,

    /// How long one source (a client certificate's principal, else an IP address) is refused a
    /// name after its third failed login in a row; each further failure doubles it.
    #[arg(long, env = "TOWNSHIP_BANK_LOGIN_LOCKOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    login_lockout: Duration,

    /// The longest such refusal; also how long failed logins are remembered.
    #[arg(long, env = "TOWNSHIP_BANK_LOGIN_MAX_LOCKOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    login_max_lockout: Duration,

    /// How long a name is refused to everyone once 10 failed logins from all sources together
    /// are remembered for it.
    #[arg(long, env = "TOWNSHIP_BANK_LOGIN_NAME_LOCKOUT", default_value = "1m", value_parser = humantime::parse_duration)]
    login_name_lockout: Duration,

    /// Lease lifetime of the account locks (kept alive while an operation runs).
    #[arg(long, env = "TOWNSHIP_BANK_LOCK_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    lock_ttl: Duration,

    /// How long an operation waits for its account locks before answering UNAVAILABLE.
    #[arg(long, env = "TOWNSHIP_BANK_LOCK_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    lock_wait: Duration,

    #[cfg(debug_assertions)]
    #[command(flatten)]
    test_delays: TestDelayArgs,
}

/// The integration tests' hidden flags; debug builds only (see `township_bank::test_seam`).
#[cfg(debug_assertions)]
#[derive(Debug, clap::Args)]
struct TestDelayArgs {
    /// Test only: pause this long between a lock grant and the commit, so tests can kill the
    /// server in between.
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    test_delay_after_grant: Option<Duration>,

    /// Test only: pause this long between a commit and its reply, so tests can kill the server
    /// after a request is applied and before it is answered.
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    test_delay_after_commit: Option<Duration>,

    /// Test only: pause this long before each flush of the transfers' WAL, so tests can look at
    /// a transfer committed and not yet durable.
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    test_delay_before_flush: Option<Duration>,

    /// Test only: on PostgreSQL, pause this long between the read and the write of a batch of
    /// transfers tried without locks, so tests can change what it read.
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    test_delay_before_write: Option<Duration>,
}

/// How the bank reaches its lock service: the --lock-* files, each defaulting to the bank's own
/// server setting; TLS when a CA is known, mutual TLS when a certificate and key are too.
fn lock_tls(args: &Args) -> anyhow::Result<Option<ClientTlsFiles>> {
    let server = &args.server;
    let Some(ca) = args
        .lock_ca
        .clone()
        .or_else(|| server.tls_client_ca.clone())
    else {
        anyhow::ensure!(
            args.lock_cert.is_none() && args.lock_key.is_none(),
            "--lock-cert and --lock-key need --lock-ca (or --tls-client-ca)"
        );
        return Ok(None);
    };
    let cert = args.lock_cert.clone().or_else(|| server.tls_cert.clone());
    let key = args.lock_key.clone().or_else(|| server.tls_key.clone());
    anyhow::ensure!(
        cert.is_some() == key.is_some(),
        "--lock-cert and --lock-key go together"
    );
    Ok(Some(ClientTlsFiles {
        ca,
        identity: cert.zip(key),
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    config::run_server(|args: &Args| &args.server, serve).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    township_store::full::apply_test_flags(&args.server);
    let data_dir = args.server.data_dir_or("bank");
    let token_file = args
        .admin_token_file
        .clone()
        .unwrap_or_else(|| data_dir.join("admin-token"));
    let admin_token = load_or_create_admin_token(&token_file)?;
    let listener = net::bind(args.server.listen_or(DEFAULT_PORT)).await?;
    let config = Config {
        serve: (&args.server).into(),
        database: args.database.database(&data_dir, "bank.db")?,
        data_dir,
        lock_tls: lock_tls(&args)?,
        lock_addr: args.lock_addr,
        lock_ttl: args.lock_ttl,
        lock_wait: args.lock_wait,
        admin_token,
        bank: BankConfig {
            session_ttl: args.session_ttl,
            interest_rate_bp: args.interest_rate_bp,
            logins: LoginPolicy {
                lockout: args.login_lockout,
                max_lockout: args.login_max_lockout,
                name_lockout: args.login_name_lockout,
            },
            #[cfg(debug_assertions)]
            test_delays: township_bank::test_seam::TestDelays {
                after_grant: args.test_delays.test_delay_after_grant,
                after_commit: args.test_delays.test_delay_after_commit,
                before_flush: args.test_delays.test_delay_before_flush,
                before_write: args.test_delays.test_delay_before_write,
            },
        },
    };
    let shutdown = shutdown::on_signals();
    net::announce("", &listener)?;
    township_bank::run(listener, config, shutdown).await
}
