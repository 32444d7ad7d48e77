//! A blocking connection, for a service's own writing thread.
//!
//! Every statement on a sqlx connection is a hand-off to that connection's worker thread and a
//! wake-up of the caller when it is done. A service whose commits are its bottleneck (the bank's
//! group commit of transfers) loses more to those wake-ups, on a busy machine, than it spends in
//! SQLite. A plain connection used on the thread that owns it has none: [`open_blocking`] makes
//! one with the settings of [`crate::open_pools`]' write pool, so both write alike.

use std::{path::Path, time::Duration};

use anyhow::Context;
pub use rusqlite;
use rusqlite::{Connection, OpenFlags};

use crate::{Checkpoints, Durability, FALLBACK_CHECKPOINT_PAGES};

/// How long a write waits for another process's write lock before failing (as the pools wait).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A blocking connection on `<data_dir>/<file>`, which [`crate::open_pools`] has already opened
/// (and migrated): WAL, `durability`, foreign keys on, waiting up to 5 s for another process's
/// write lock, and checkpointing as `checkpoints` says, like the pools' connections. Use it
/// on one thread of its own, and, beside the write pool, only for transactions that thread
/// runs in turn with the pool's (two writers of one process would wait on each other).
pub fn open_blocking(
    data_dir: &Path,
    file: &str,
    durability: Durability,
    checkpoints: Checkpoints,
) -> anyhow::Result<Connection> {
    let path = data_dir.join(file);
    let open = || -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidQuery);
        }
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
        ))?;
        if let Checkpoints::InBackground { .. } = checkpoints {
            conn.pragma_update(None, "wal_autocheckpoint", FALLBACK_CHECKPOINT_PAGES)?;
        }
        Ok(conn)
    };
    open().with_context(|| format!("cannot open database {} for writing", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Migration, Pools, open_pools};

    const SCHEMA: &[Migration] = &[Migration {
        version: 1,
        description: "t",
        sql: "CREATE TABLE p (id INTEGER PRIMARY KEY);
              CREATE TABLE c (p INTEGER NOT NULL REFERENCES p (id));",
    }];

    #[tokio::test]
    async fn a_blocking_connection_writes_as_the_write_pool_does() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::InBackground {
            every: Duration::from_secs(3600),
        };
        let Pools { reads, .. } =
            open_pools(dir.path(), "t.db", Durability::Full, checkpoints, 1, SCHEMA)
                .await
                .unwrap();
        let conn = open_blocking(dir.path(), "t.db", Durability::Full, checkpoints).unwrap();
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, rusqlite::types::Value>(0)
            })
            .map(|value| format!("{value:?}"))
            .unwrap()
        };
        assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
        assert_eq!(pragma("synchronous"), "Integer(2)", "FULL");
        assert_eq!(pragma("busy_timeout"), "Integer(5000)");
        assert_eq!(pragma("wal_autocheckpoint"), "Integer(10000)");

        conn.execute("INSERT INTO p (id) VALUES (1)", []).unwrap();
        let orphan = conn.execute("INSERT INTO c (p) VALUES (2)", []);
        assert!(orphan.is_err(), "foreign keys are enforced");
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM p")
            .fetch_one(&reads)
            .await
            .unwrap();
        assert_eq!(seen, 1, "the pools read what it committed");
    }

    #[test]
    fn a_database_that_was_never_opened_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::OnCommit;
        let err = open_blocking(dir.path(), "t.db", Durability::Full, checkpoints).unwrap_err();
        assert!(format!("{err:#}").contains("t.db"), "{err:#}");
        assert!(!dir.path().join("t.db").exists());
    }
}
