//! The Township lock service: readers/writers locks on named resources with leases and fencing
//! tokens, shared by every process that asks (every bank replica first of all) — the classic
//! readers/writers cell, across processes. Its client is a crate of its own,
//! `township-lock-client`, so that callers never link this server.
//!
//! - [`table`]: the lock table itself (no gRPC): admission, leases, expiry, fencing tokens.
//! - [`guard`]: who may lock what (the resource ACL) and how much (per-principal caps).
//! - [`service`]: the gRPC API over the table (requests validated in `convert`); `session` serves
//!   its Session stream.
//! - [`leader`]: who leads — a single lock-server always, or one of several elected on etcd
//!   ([`election`]), each term with its own table and epoch.
//! - [`run`]: serves it; `main.rs` only parses config, binds and awaits.

mod convert;
pub mod election;
mod error;
pub mod guard;
pub mod leader;
pub mod service;
mod session;
mod store;
pub mod table;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;

use tokio::net::TcpListener;
use township_kit::{ServeOptions, ServiceSet, Shutdown};
use township_proto::lock::v1::lock_service_server::LockServiceServer;

pub use error::{Error, LEADER_TRAILER};
pub use guard::Caps;
pub use service::LockApi;

/// The lock-server's default deadline for unary calls without one of their own
/// (`--call-deadline`): a minute above the longest wait an Acquire may ask for, so that the
/// deadline never cuts a wait the API allows.
pub const CALL_DEADLINE: std::time::Duration =
    std::time::Duration::from_secs(convert::MAX_WAIT.as_secs() + 60);
pub use store::MAX_EPOCH;
pub use table::LockTable;

use election::Election;
use guard::Guard;
use leader::Leadership;
use township_client::{ClientTlsFiles, Dialer};
use township_etcd::Etcd;
use township_kit::config::BadConfig;

/// The lock service's default gRPC port.
pub const DEFAULT_PORT: u16 = township_proto::town::LOCK.port;

/// What the lock service needs beyond the shared server options.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shared server settings (grace period, limits).
    pub serve: ServeOptions,
    /// Where the fencing epoch is kept (a single lock-server).
    pub data_dir: PathBuf,
    /// With etcd: several lock-servers, one elected to lead; `None`: this is the only one.
    pub election: Option<ElectionConfig>,
    /// The lowest epoch this run may take (1: just the stored one plus 1).
    pub initial_epoch: u64,
    /// The resource ACL file, re-read on SIGHUP; `None`: every principal may lock anything.
    pub resource_acl: Option<PathBuf>,
    /// Each principal's caps (an ACL rule may lower them for the principals it names).
    pub caps: Caps,
}

/// The election on etcd (`--etcd-endpoints`).
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// etcd's client endpoints, `HOST:PORT,...`.
    pub etcd_endpoints: String,
    /// This server's address as callers reach it, `HOST:PORT`.
    pub advertise: String,
    /// The etcd lease's time to live.
    pub lease: Duration,
    /// TLS to etcd: the CA trusted for etcd's certificate, and the client certificate shown.
    pub etcd_tls: Option<ClientTlsFiles>,
}

/// Serves the lock service on `listener` until `shutdown` fires. A single lock-server advances
/// the fencing epoch in `config.data_dir` first, so every token of this run is greater than any
/// token of earlier runs; with etcd, each elected leader takes the next epoch from etcd.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let guard = Arc::new(Guard::new(config.resource_acl.clone(), config.caps)?);
    watch_hangups(&guard, &shutdown)?;
    // Held until the server stops: a second single server on this directory refuses to start
    // (exit 75). An elected server keeps nothing on disk, and takes no lock.
    let mut _data_dir = None;
    let (leadership, background) = match &config.election {
        None => {
            _data_dir = Some(township_kit::DataDirLock::exclusive(&config.data_dir).await?);
            let epoch = store::next_epoch(&config.data_dir, config.initial_epoch).await?;
            tracing::info!(epoch, data_dir = %config.data_dir.display(), "fencing epoch advanced");
            let table = Arc::new(LockTable::new(epoch));
            let reaper = tokio::spawn(table.clone().expire_leases(shutdown.clone()));
            (Leadership::single(epoch, table, shutdown.clone()), reaper)
        }
        Some(election) => {
            // A call to etcd that takes a third of the lease is as good as failed: the leader
            // must hear of its renewals well within its hold.
            let patience = (election.lease / 3).max(Duration::from_millis(500));
            let mut dialer = Dialer::new().connect_timeout(patience);
            if let Some(files) = &election.etcd_tls {
                // Read now: a missing or garbled file is a configuration error, named.
                let tls = files.load().map_err(|reason| {
                    BadConfig(format!("--etcd-ca/--etcd-cert/--etcd-key: {reason}"))
                })?;
                dialer = dialer.tls(tls);
            }
            let etcd = Etcd::new(&election.etcd_endpoints, dialer)
                .context("--etcd-endpoints")?
                .call_timeout(patience);
            tracing::info!(etcd = %election.etcd_endpoints, advertise = %election.advertise, "campaigning on etcd");
            Election {
                etcd,
                advertise: election.advertise.clone(),
                lease: election.lease,
                initial_epoch: config.initial_epoch,
            }
            .start(shutdown.clone())
        }
    };
    let advertise = config.election.as_ref().map(|e| e.advertise.clone());
    let api = LockApi::new(leadership, guard, shutdown.clone(), advertise);
    let services = ServiceSet::new().add_service(
        LockServiceServer::new(api).max_decoding_message_size(config.serve.max_message_bytes),
    );
    let served = township_kit::serve(listener, &config.serve, services, shutdown.clone()).await;
    shutdown.cancel();
    let _ = background.await;
    served
}

/// On each SIGHUP until shutdown, re-reads the resource ACL (a broken file keeps the one in
/// force, logged). Installed before the server reports SERVING.
fn watch_hangups(guard: &Arc<Guard>, shutdown: &Shutdown) -> anyhow::Result<()> {
    if !guard.has_acl() {
        return Ok(());
    }
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let (guard, shutdown) = (guard.clone(), shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = hangups.recv() => {}
            }
            match guard.reload() {
                Ok(()) => tracing::info!("SIGHUP: resource ACL reloaded"),
                Err(err) => tracing::error!(
                    err = format!("{err:#}"),
                    "SIGHUP: resource ACL not reloaded; the previous one stays in force"
                ),
            }
        }
    });
    Ok(())
}
