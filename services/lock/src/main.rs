//! `lock-server`: parses its config, starts tracing, binds, announces and serves until a signal.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use township_client::ClientTlsFiles;
use township_kit::config::BadConfig;
use township_kit::{ServeOptions, ServerArgs, config, net, shutdown};
use township_lock::{CALL_DEADLINE, Caps, Config, DEFAULT_PORT, ElectionConfig};

/// The Township lock service (gRPC `township.lock.v1.LockService`).
#[derive(Debug, Parser)]
#[command(name = "lock-server", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// Who may lock what: JSON rules of principals, resource prefixes and modes, with optional
    /// per-principal caps; with it, anything no rule allows is PERMISSION_DENIED. Re-read on
    /// SIGHUP. Without it, every caller may lock anything.
    #[arg(long, env = "TOWNSHIP_LOCK_RESOURCE_ACL", value_name = "FILE")]
    resource_acl: Option<PathBuf>,

    /// Most live leases one principal may hold (callers without a certificate count as one).
    #[arg(long, env = "TOWNSHIP_LOCK_MAX_LEASES_PER_PRINCIPAL", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_leases_per_principal: u32,

    /// Most acquires one principal may have waiting at once.
    #[arg(long, env = "TOWNSHIP_LOCK_MAX_WAITERS_PER_PRINCIPAL", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_waiters_per_principal: u32,

    /// The longest lease lifetime (ttl) a principal may ask for (at most 5m, the API's limit).
    #[arg(long, env = "TOWNSHIP_LOCK_MAX_TTL", value_name = "DURATION", default_value = "5m",
          value_parser = humantime::parse_duration)]
    max_ttl: Duration,

    /// The lowest fencing epoch this start may take: the epoch becomes the larger of this and
    /// the stored one plus 1. For recovery after lock.db was lost: give the `required_epoch` the
    /// bank reports with LOCK_LOST. A fresh data directory otherwise starts at 1.
    #[arg(long, env = "TOWNSHIP_LOCK_INITIAL_EPOCH", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=township_lock::MAX_EPOCH as i64))]
    initial_epoch: u32,

    /// etcd's client endpoints (HOST:PORT, comma-separated). With them, several lock-servers run
    /// and one leads at a time, elected on etcd; the others answer UNAVAILABLE naming it. Needs
    /// --advertise-addr. Without them, this is the only lock-server, its epoch in --data-dir.
    #[arg(
        long,
        env = "TOWNSHIP_LOCK_ETCD_ENDPOINTS",
        value_name = "HOST:PORT,...",
        requires = "advertise_addr"
    )]
    etcd_endpoints: Option<String>,

    /// This server's address as clients reach it (HOST:PORT): what the others name while it
    /// leads. With --etcd-endpoints only.
    #[arg(
        long,
        env = "TOWNSHIP_LOCK_ADVERTISE_ADDR",
        value_name = "HOST:PORT",
        requires = "etcd_endpoints"
    )]
    advertise_addr: Option<String>,

    /// With --etcd-endpoints: the time to live of the leader's etcd lease, in whole seconds, at
    /// least 2s (etcd's shortest). A leader that dies leaves the service without one for about
    /// this long; one that cannot renew stops granting within nine tenths of it.
    #[arg(long, env = "TOWNSHIP_LOCK_LEADER_LEASE", value_name = "DURATION", default_value = "5s",
          value_parser = humantime::parse_duration)]
    leader_lease: Duration,

    /// With --etcd-endpoints: reach etcd over TLS, trusting this CA (PEM) for its certificate.
    #[arg(
        long,
        env = "TOWNSHIP_LOCK_ETCD_CA",
        value_name = "FILE",
        requires = "etcd_endpoints"
    )]
    etcd_ca: Option<PathBuf>,

    /// With --etcd-ca: the client certificate (PEM) shown to etcd, for etcd's
    /// --client-cert-auth (e.g. the lock's from `township certs init`).
    #[arg(long, env = "TOWNSHIP_LOCK_ETCD_CERT", value_name = "FILE", requires_all = ["etcd_ca", "etcd_key"])]
    etcd_cert: Option<PathBuf>,

    /// The key (PEM) of --etcd-cert.
    #[arg(
        long,
        env = "TOWNSHIP_LOCK_ETCD_KEY",
        value_name = "FILE",
        requires = "etcd_cert"
    )]
    etcd_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    config::run_server(|args: &Args| &args.server, serve).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    township_store::full::apply_test_flags(&args.server);
    let listener = net::bind(args.server.listen_or(DEFAULT_PORT)).await?;
    let mut serve = ServeOptions::from(&args.server);
    serve.limits.call_deadline = args.server.call_deadline.unwrap_or(CALL_DEADLINE);
    let election = election(&args)?;
    let config = Config {
        serve,
        data_dir: args.server.data_dir_or("lock"),
        election,
        resource_acl: args.resource_acl,
        initial_epoch: u64::from(args.initial_epoch),
        caps: Caps {
            max_leases: args.max_leases_per_principal as usize,
            max_waiters: args.max_waiters_per_principal as usize,
            max_ttl: args.max_ttl,
        },
    };
    let shutdown = shutdown::on_signals();
    // Calls that arrive before `run` has advanced the fencing epoch wait in the listen backlog:
    // no token of an old epoch is ever issued.
    net::announce("", &listener)?;
    township_lock::run(listener, config, shutdown).await
}

/// The election settings, checked: an advertised HOST:PORT, and a lease of whole seconds, at
/// least 2.
fn election(args: &Args) -> anyhow::Result<Option<ElectionConfig>> {
    let (Some(endpoints), Some(advertise)) = (&args.etcd_endpoints, &args.advertise_addr) else {
        return Ok(None);
    };
    township_client::addr_list(endpoints)
        .map_err(|reason| BadConfig(format!("--etcd-endpoints: {reason}")))?;
    township_client::endpoint_uri(advertise)
        .map_err(|reason| BadConfig(format!("--advertise-addr: {reason}")))?;
    let lease = args.leader_lease;
    if lease < Duration::from_secs(2) || lease.subsec_nanos() != 0 {
        return Err(BadConfig(format!(
            "--leader-lease: {} is not whole seconds of at least 2s",
            humantime::format_duration(lease)
        ))
        .into());
    }
    let etcd_tls = args.etcd_ca.clone().map(|ca| ClientTlsFiles {
        ca,
        identity: args.etcd_cert.clone().zip(args.etcd_key.clone()),
    });
    Ok(Some(ElectionConfig {
        etcd_endpoints: endpoints.clone(),
        advertise: advertise.trim().to_owned(),
        lease,
        etcd_tls,
    }))
}
