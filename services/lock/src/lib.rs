//! The Township lock service: readers/writers locks on named resources with leases and fencing
//! tokens, shared by every process that asks (every bank replica first of all) — the classic
//! readers/writers cell, across processes. Its client is a crate of its own,
//! `township-lock-client`, so that callers never link this server.
//!
//! - [`table`]: the lock table itself (no gRPC): admission, leases, expiry, fencing tokens.
//! - [`guard`]: who may lock what (the resource ACL) and how much (per-principal caps).
//! - [`service`]: the gRPC API over the table (requests validated in `convert`); `session` serves
//!   its Session stream.
//! - [`run`]: serves it; `main.rs` only parses config, binds and awaits.

mod convert;
mod error;
pub mod guard;
pub mod service;
mod session;
mod store;
pub mod table;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;

use tokio::net::TcpListener;
use township_kit::{ServeOptions, ServiceSet, Shutdown};
use township_proto::lock::v1::lock_service_server::LockServiceServer;

pub use error::Error;
pub use guard::Caps;
pub use service::LockApi;

/// The lock-server's default deadline for unary calls without one of their own
/// (`--call-deadline`): a minute above the longest wait an Acquire may ask for, so that the
/// deadline never cuts a wait the API allows.
pub const CALL_DEADLINE: std::time::Duration =
    std::time::Duration::from_secs(convert::MAX_WAIT.as_secs() + 60);
pub use store::MAX_EPOCH;
pub use table::LockTable;

use guard::Guard;

/// The lock service's default gRPC port.
pub const DEFAULT_PORT: u16 = township_proto::town::LOCK.port;

/// What the lock service needs beyond the shared server options.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shared server settings (grace period, limits).
    pub serve: ServeOptions,
    /// Where the fencing epoch is kept.
    pub data_dir: PathBuf,
    /// The lowest epoch this run may take (1: just the stored one plus 1).
    pub initial_epoch: u64,
    /// The resource ACL file, re-read on SIGHUP; `None`: every principal may lock anything.
    pub resource_acl: Option<PathBuf>,
    /// Each principal's caps (an ACL rule may lower them for the principals it names).
    pub caps: Caps,
}

/// Serves the lock service on `listener` until `shutdown` fires. Advances the fencing epoch in
/// `config.data_dir` first, so every token of this run is greater than any token of earlier runs.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    // Held until the server stops: a second server on this directory refuses to start (exit 75).
    let _data_dir = township_kit::DataDirLock::exclusive(&config.data_dir).await?;
    let guard = Arc::new(Guard::new(config.resource_acl.clone(), config.caps)?);
    watch_hangups(&guard, &shutdown)?;
    let epoch = store::next_epoch(&config.data_dir, config.initial_epoch).await?;
    tracing::info!(epoch, data_dir = %config.data_dir.display(), "fencing epoch advanced");
    let table = Arc::new(LockTable::new(epoch));
    let reaper = tokio::spawn(table.clone().expire_leases(shutdown.clone()));
    let api = LockApi::new(table, guard, shutdown.clone());
    let services = ServiceSet::new().add_service(
        LockServiceServer::new(api).max_decoding_message_size(config.serve.max_message_bytes),
    );
    let served = township_kit::serve(listener, &config.serve, services, shutdown.clone()).await;
    shutdown.cancel();
    let _ = reaper.await;
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
