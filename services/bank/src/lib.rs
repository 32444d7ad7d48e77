//! The Township bank: ATM banking — accounts with holders, PINs and balances; login, balance,
//! deposit, withdraw, transfer, history and interest — done as real banking software. Money is
//! never lost: every mutation is exactly-once (client request ids), runs under locks from the
//! shared lock service, and commits in one fenced transaction before it is acknowledged, so any
//! number of bank replicas sharing one store (a SQLite file, or a PostgreSQL database) are as
//! safe as one.
//!
//! - [`types`]: validated values (names, PINs, ids, amounts) and exact decimal parsing;
//! - [`rules`]: the money rules (exactly once, fencing, no overdraft), pure and unit-tested;
//! - [`ledger`]: the storage's typed API, fenced and exactly-once. Beneath it, `writer` is the
//!   one writer every mutation goes through, `transfers` its group commit of transfers, `writes`
//!   the SQL of the other mutations and `schema` the tables;
//! - [`bank`]: the bank's behaviour (sessions, logins, locking), with [`logins`] the policy that
//!   throttles PIN guessing (`strikes` its SQL) and [`audit`] the record of every security event;
//! - [`service`]: the gRPC API; [`run`] serves it.

pub mod audit;
pub mod bank;
mod clock;
mod error;
pub mod ledger;
pub mod logins;
mod pin;
mod requests;
pub mod rules;
mod schema;
pub mod service;
mod strikes;
mod syncer;
#[cfg(debug_assertions)]
pub mod test_seam;
mod transfers;
pub mod types;
mod writer;
mod writes;

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use tokio::net::TcpListener;
use township_client::{ClientTlsFiles, Dialer};
use township_kit::{DenialHook, ServeOptions, ServiceSet, Shutdown, config::BadConfig};
use township_lock_client::LockClient;
use township_proto::bank::v1::bank_service_server::BankServiceServer;

pub use bank::{Bank, BankConfig};
pub use error::Error;
pub use service::BankApi;

/// The bank's default gRPC port.
pub const DEFAULT_PORT: u16 = township_proto::town::BANK.port;

/// Everything the bank server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shared server settings.
    pub serve: ServeOptions,
    /// The data directory: `bank.db` on SQLite (shared by every replica), the default admin
    /// token file.
    pub data_dir: PathBuf,
    /// Where the ledger lives: `<data_dir>/bank.db`, or a PostgreSQL database the replicas share.
    pub database: township_store::Database,
    /// The lock service, `host:port`.
    pub lock_addr: String,
    /// TLS to the lock service (mutual with an identity); `None`: plaintext.
    pub lock_tls: Option<ClientTlsFiles>,
    /// How long lock leases live (kept alive while an operation runs).
    pub lock_ttl: Duration,
    /// How long an operation waits for its locks before answering UNAVAILABLE.
    pub lock_wait: Duration,
    /// The staff token for OpenAccount and ApplyInterest.
    pub admin_token: String,
    /// The bank's rules.
    pub bank: BankConfig,
}

/// Serves the bank on `listener` until `shutdown` fires. The lock service is dialled lazily: the
/// bank starts (and answers UNAVAILABLE) while it is down, and recovers by itself when it is back.
/// With TLS toward the lock service, SIGHUP reads its files again, as it does the server's own.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    // On SQLite, shared: replicas on one bank.db in one directory (SQLite's own locks serialize
    // their writes, and every change is fenced by the lock service). On PostgreSQL each replica
    // has a data directory of its own. Any other server pointed here by mistake is kept out.
    let _data_dir = if config.database.is_postgres() {
        township_kit::DataDirLock::exclusive(&config.data_dir).await?
    } else {
        township_kit::DataDirLock::shared(&config.data_dir).await?
    };
    #[cfg(debug_assertions)]
    let ledger =
        ledger::Ledger::open_with_test_delays(&config.database, &config.bank.test_delays).await?;
    #[cfg(not(debug_assertions))]
    let ledger = ledger::Ledger::open(&config.database).await?;
    let owner = format!(
        "bank@{}/{}",
        listener.local_addr().context("listener address")?,
        std::process::id()
    );
    let locks = lock_client(&config, &owner)?;
    let page_tokens = ledger.page_tokens().clone();
    let bank = Arc::new(Bank::new(ledger, locks, config.bank.clone())?);
    if config.lock_tls.is_some() {
        // Installed before the server reports SERVING: SIGHUP would otherwise end the process.
        reload_lock_tls_on_hangup(&bank, &config, owner, &shutdown)?;
    }
    let api = BankApi::new(Arc::clone(&bank), &config.admin_token, page_tokens);
    let server =
        BankServiceServer::new(api).max_decoding_message_size(config.serve.max_message_bytes);
    let services = ServiceSet::new()
        .add_service(server)
        .on_denial(DenialHook::new(move |denial| {
            bank.note(audit::denied_by_policy(denial));
        }));
    township_kit::serve(listener, &config.serve, services, shutdown).await
}

/// A client of the lock service as `config` says, reading its TLS files now; it dials lazily,
/// so that the bank starts while its lock service is down and reconnects by itself.
fn lock_client(config: &Config, owner: &str) -> anyhow::Result<LockClient> {
    let mut dialer = Dialer::new()
        .connect_timeout(Duration::from_secs(1))
        .keepalive(Duration::from_secs(5));
    if let Some(files) = &config.lock_tls {
        dialer = dialer.tls(files.load().map_err(anyhow::Error::msg)?);
    }
    Ok(LockClient::dial(dialer, &config.lock_addr, owner)
        .context("--lock-addr")?
        .with_ttl(config.lock_ttl)
        .with_wait(config.lock_wait))
}

/// On each SIGHUP until shutdown: dials the lock service anew with its TLS files read again, for
/// the operations that start from then on (those running keep their client and their leases).
/// Files that cannot be read or hold no certificate or key keep the client in use, logged.
fn reload_lock_tls_on_hangup(
    bank: &Arc<Bank>,
    config: &Config,
    owner: String,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let (bank, config, shutdown) = (Arc::clone(bank), config.clone(), shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = hangups.recv() => {}
            }
            match lock_client(&config, &owner) {
                Ok(locks) => {
                    bank.replace_locks(locks);
                    tracing::info!("SIGHUP: the lock service's TLS files reloaded");
                }
                Err(err) => tracing::error!(
                    err = format!("{err:#}"),
                    "SIGHUP: the lock service's TLS files not reloaded; the previous ones stay in use"
                ),
            }
        }
    });
    Ok(())
}

/// Reads the admin token from `path`, or creates it (random, mode 0600) if the file is missing.
/// A token file that group or others may read or write is refused ([`BadConfig`]): whoever can
/// read it is staff.
/// The token is written and fsynced under a temporary name, then hard-linked into place, which
/// fails if the file exists: so two replicas starting together agree (only one creates it, the
/// other reads it), and a crash can never leave an empty token file behind.
pub fn load_or_create_admin_token(path: &Path) -> anyhow::Result<String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(token) = read_token(path)? {
        return Ok(token);
    }
    let token = format!("{}", uuid::Uuid::new_v4().simple());
    let temporary = dir.join(format!(
        ".admin-token.{}.{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(token.as_bytes())?;
            file.sync_all()
        });
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
            Ok(token)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            read_token(path)?.with_context(|| format!("{} is empty", path.display()))
        }
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// The token in `path`, or `None` if there is no such file.
fn read_token(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            return Err(BadConfig(format!(
                "{} may be read or written by others than its owner (mode {:o}): chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            ))
            .into());
        }
        _ => {}
    }
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => anyhow::bail!(
            "{} is empty: delete it to have a new token made",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_creating_the_admin_token_together_agree_on_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        let tokens: Vec<String> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| load_or_create_admin_token(&path).unwrap()))
                .collect();
            starts.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert!(tokens.iter().all(|t| t == &tokens[0]), "{tokens:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), tokens[0]);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files are left behind");
    }

    #[test]
    fn an_admin_token_file_others_may_read_or_write_is_refused_as_bad_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "sekrit-token").unwrap();
        for mode in [0o640, 0o604, 0o620, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_or_create_admin_token(&path).unwrap_err();
            assert!(err.is::<BadConfig>(), "{mode:o}: {err:#}");
            assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
            assert!(
                !format!("{err:#}").contains("sekrit"),
                "never echoes the token"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(load_or_create_admin_token(&path).unwrap(), "sekrit-token");
        }
    }

    #[test]
    fn an_empty_admin_token_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_admin_token(&path).unwrap_err();
        assert!(format!("{err:#}").contains("delete it"), "{err:#}");
    }
}
