//! A service's PostgreSQL database: one pool per process, shared by reads and writes (PostgreSQL
//! has no single writer to queue for), migrated at open under an advisory lock so that replicas
//! starting together apply each step once.
//!
//! Durability is the server's: with PostgreSQL's defaults (`fsync`, `synchronous_commit` on) a
//! committed transaction survives a crash or a power loss of the database's machine.
//!
//! Write transactions run at READ COMMITTED and take row locks (`SELECT … FOR UPDATE`) where a
//! check and a write must see the same row; two replicas' transactions may still deadlock, which
//! PostgreSQL breaks by failing one of them: [`is_transient`] tells such a failure, which a
//! service retries.

use std::time::Duration;

use anyhow::Context;
use sqlx::{
    PgPool,
    postgres::{PgConnection, PgPoolOptions},
};
use tokio::time::Instant;

use crate::{Migration, SECRET_BYTES, database::Postgres, migrate};

/// How long a starting server waits for its database to accept connections (it may be starting
/// too, as in a compose file) before giving up.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// How long a query may wait for a connection of the pool: a free one, or a new one while the
/// database cannot be reached (after which the call fails, UNAVAILABLE, rather than hang).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `database` (waiting up to a minute for it to come up: refused connections are
/// retried, wrong credentials or certificates are not) and applies the `schema` steps it has not
/// had, holding sqlx's advisory lock on the database meanwhile, so that replicas starting at once
/// take turns.
pub async fn open(database: &Postgres, schema: &'static [Migration]) -> anyhow::Result<PgPool> {
    let pool = connect(database)
        .await
        .with_context(|| format!("cannot connect to {database}"))?;
    migrate::migrator(schema)
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate the schema of {database}"))?;
    Ok(pool)
}

/// The pool, once one connection works.
async fn connect(database: &Postgres) -> Result<PgPool, sqlx::Error> {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    let mut logged = false;
    loop {
        let pool = PgPoolOptions::new()
            .max_connections(database.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .before_acquire(|conn, _| Box::pin(reusable(conn)))
            .connect_with(database.options.clone())
            .await;
        match pool {
            Err(err) if is_not_up_yet(&err) && Instant::now() < deadline => {
                if !logged {
                    tracing::warn!(database = %database, error = %err, "waiting for the database");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// A second pool of up to `connections` connections to `pool`'s database, with its options,
/// for a hot task that runs on a runtime of its own (the bank's ledger writer): connected
/// lazily, so that its connections are made there and their I/O is driven by that runtime rather
/// than by a busier one; and not pinged before each use (sqlx's `test_before_acquire`), which
/// would cost a round trip per use. A connection that failed as [`is_unreachable`] must
/// therefore be closed by its user (`PoolConnection::close_on_drop`), not returned.
pub fn dedicated(pool: &PgPool, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, _| Box::pin(reusable(conn)))
        .connect_lazy_with((*pool.connect_options()).clone())
}

/// Whether a failed connect may work later by itself: nothing listens yet (sqlx itself retries
/// a refused connection until the pool's acquire timeout), the connection was cut, or PostgreSQL
/// is starting up or shutting down (class 57P). A TLS handshake that fails (an io error of
/// another kind) or wrong credentials will not mend by waiting.
fn is_not_up_yet(err: &sqlx::Error) -> bool {
    use std::io::ErrorKind;
    match err {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Io(err) => matches!(
            err.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::TimedOut
        ),
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("57P")),
        _ => false,
    }
}

/// Whether `err` says the database cannot be reached now, rather than that the statement was
/// wrong: no connection could be had in time, talking to it failed (refused, cut, timed out, its
/// name not found while its container is down: any I/O error but a TLS one, which is
/// `InvalidData`), or the server is shutting down or starting up (class 57P). A service answers
/// UNAVAILABLE: a retry may work, and whether a cut write was applied is unknown, so the retry
/// carries its request id.
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Io(err) => err.kind() != std::io::ErrorKind::InvalidData,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("57P")),
        _ => false,
    }
}

/// Whether a pooled connection may be used again: sqlx (0.9) goes on counting a transaction that
/// PostgreSQL ended by itself (class 40 errors, sqlx issue #3742; the SQLite pools have the same
/// check), so such a connection is closed and the pool opens a fresh one.
async fn reusable(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    if sqlx::Connection::is_in_transaction(conn) {
        tracing::warn!("a connection whose transaction could not be rolled back is replaced");
        return Ok(false);
    }
    Ok(true)
}

/// Whether `err` failed a transaction only because another one ran at the same time (a deadlock
/// PostgreSQL broke, or a serialization failure): the whole transaction may be tried again.
pub fn is_transient(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// [`crate::secret`] for PostgreSQL: [`SECRET_BYTES`] random bytes made by the database the first
/// time `name` is asked for (from two `gen_random_uuid()`s, 244 random bits), kept in its `meta`
/// table, the same for every replica and every later run.
pub async fn secret(pool: &PgPool, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut tx = pool.begin().await.context("cannot read the meta table")?;
    // CREATE TABLE IF NOT EXISTS is not safe against itself in PostgreSQL (two replicas may both
    // try to create the table's type): one at a time.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('township.meta'))")
        .execute(&mut *tx)
        .await
        .context("cannot lock the meta table")?;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)")
        .execute(&mut *tx)
        .await
        .context("cannot create the meta table")?;
    sqlx::query(
        "INSERT INTO meta (name, value) \
         VALUES ($1, uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .execute(&mut *tx)
    .await
    .with_context(|| format!("cannot make the secret {name}"))?;
    let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .with_context(|| format!("cannot read the secret {name}"))?;
    tx.commit().await.context("cannot keep the secret")?;
    anyhow::ensure!(
        value.len() == SECRET_BYTES,
        "the secret {name} has {} bytes, not {SECRET_BYTES}",
        value.len()
    );
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn a_database_that_cannot_be_reached_is_unreachable_and_a_tls_failure_is_not() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::TimedOut,
        ] {
            assert!(is_unreachable(&sqlx::Error::Io(kind.into())), "{kind:?}");
        }
        // What a name lookup gives while the database's container is down.
        let lookup = io::Error::other("failed to lookup address information");
        assert!(is_unreachable(&sqlx::Error::Io(lookup)));
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut));
        let tls = io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate");
        assert!(!is_unreachable(&sqlx::Error::Io(tls)));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
    }
}
