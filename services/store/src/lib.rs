//! The one SQL layer every stateful service uses: sqlx over a SQLite file in the service's
//! `--data-dir` (sqlx can target PostgreSQL later with the same queries). Runtime SQL only — no
//! compile-time-checked macros, so no database is needed at build time.
//!
//! Durability: WAL journal with `synchronous = FULL` by default, so a committed transaction survives
//! a process kill *and* a power loss; services with hot write paths may choose `NORMAL` (survives
//! `kill -9`, may lose the last commits on power loss) and say so in their docs.

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
pub use sqlx::{self, SqlitePool};

/// How hard a commit is pushed to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: survives power loss.
    Full,
    /// WAL fsync at checkpoints only: survives a process kill, not necessarily a power loss.
    Normal,
}

/// Opens (creating if missing) `<data_dir>/<file>` with a pool of at most `connections`
/// connections, and runs `schema` (idempotent SQL, e.g. `CREATE TABLE IF NOT EXISTS ...`).
/// Creates `data_dir` too.
///
/// SQLite allows one writer at a time and makes the others sleep-and-retry (`busy_timeout`): a
/// pool of one connection for write transactions makes a process's writers queue in order instead,
/// with no sleeping; readers use a separate, larger pool (WAL readers never wait for the writer).
pub async fn open(
    data_dir: &Path,
    file: &str,
    durability: Durability,
    connections: u32,
    schema: &'static str,
) -> anyhow::Result<SqlitePool> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let path = data_dir.join(file);
    let options = SqliteConnectOptions::from_str("sqlite://")
        .context("sqlite options")?
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(connections.max(1))
        // A ping before each use would be one more round trip to the connection's worker
        // thread, for a local file that cannot have gone away.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open database {}", path.display()))?;
    sqlx::raw_sql(schema)
        .execute(&pool)
        .await
        .with_context(|| format!("cannot create the schema in {}", path.display()))?;
    Ok(pool)
}
