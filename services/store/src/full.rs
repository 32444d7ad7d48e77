//! A full disk, as every service meets it. SQLite says `SQLITE_FULL` when the disk has no room
//! for a write (or the file reached its `max_page_count`), PostgreSQL `53100 disk_full`; [`is_full`] and [`is_full_blocking`]
//! tell it from other storage errors, so that a service answers "storage full, nothing was
//! stored, retry later" (`township_kit::status::storage_full`) instead of an opaque INTERNAL.
//!
//! What a service may rely on: the transaction that met it is rolled back whole (by SQLite, or
//! by the caller dropping it), so nothing of it was applied and nobody was told it was; the
//! pools go on working (they replace a connection that lost count of its transaction, see
//! `reusable` in this crate's root); and the next transaction succeeds as soon as there is room
//! again, with no restart.
//!
//! Debug builds also carry the integration tests' way to fill a disk without the privileges a
//! small filesystem needs to be mounted: the servers' hidden flag `--test-storage-pages-file`
//! ([`apply_test_flags`]) names a file holding the most pages the database may have, which
//! every connection applies (as SQLite's `max_page_count`) before each use. A release build has
//! neither the file nor the flag.

use rusqlite::Connection;

/// SQLite's primary result code `SQLITE_FULL`.
const SQLITE_FULL: i32 = 13;

/// PostgreSQL's SQLSTATE `disk_full`.
const POSTGRES_DISK_FULL: &str = "53100";

/// Whether `err` (from a pool) is SQLite's "database or disk is full" or PostgreSQL's
/// `disk_full`.
pub fn is_full(err: &sqlx::Error) -> bool {
    let code = err.as_database_error().and_then(|db| db.code());
    if code.as_deref() == Some(POSTGRES_DISK_FULL) {
        return true;
    }
    let code = code.and_then(|code| code.parse::<i32>().ok());
    // Extended result codes carry the primary one in the low byte.
    code.is_some_and(|code| code & 0xff == SQLITE_FULL)
}

/// Whether `err` (from a blocking connection) is SQLite's "database or disk is full".
pub fn is_full_blocking(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Applies the test seam's page limit (see [`apply_test_flags`]) to a blocking connection: call
/// it before each write transaction on one. Does nothing in a release build, or when no limit
/// file was named.
pub fn apply_test_limit(conn: &Connection) {
    #[cfg(debug_assertions)]
    if let Some(pages) = seam::pages() {
        // A pragma with a value answers with the limit it set: a query, not an execute.
        let set = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()));
        if let Err(err) = set {
            tracing::warn!(error = %err, "cannot apply the test page limit");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = conn;
}

/// Applies the servers' hidden test flag (`--test-storage-pages-file`, debug builds only): call
/// it first thing in a server's `serve`, before its databases are opened. Does nothing in a
/// release build, or without the flag.
pub fn apply_test_flags(server: &township_kit::ServerArgs) {
    #[cfg(debug_assertions)]
    if let Some(file) = &server.test_storage_pages_file {
        seam::limit_pages_from(file.clone());
    }
    #[cfg(not(debug_assertions))]
    let _ = server;
}

#[cfg(debug_assertions)]
pub(crate) use seam::{apply_to_connection, apply_to_pool};

/// The test seam itself (debug builds only).
#[cfg(debug_assertions)]
mod seam {
    use std::{
        path::{Path, PathBuf},
        sync::OnceLock,
    };

    use sqlx::{SqliteConnection, sqlite::SqlitePoolOptions};

    /// SQLite's own largest `max_page_count`: no limit.
    const UNLIMITED: u32 = 0xFFFF_FFFE;

    /// The limit file, once named.
    static LIMIT_FILE: OnceLock<PathBuf> = OnceLock::new();

    /// From now on, every database this process opens may hold at most as many pages as `file`
    /// says (a decimal number), read again each time a connection is used, so a test fills the "disk" by writing `1` (SQLite keeps the limit at the file's size, so
    /// nothing more fits) and gives the space back by deleting the file. Call it before the
    /// databases are opened; a second call changes nothing.
    pub(super) fn limit_pages_from(file: PathBuf) {
        let _ = LIMIT_FILE.set(file);
    }

    /// The limit now, if a limit file was named: its number, or no limit when it is missing or
    /// holds no number.
    pub(super) fn pages() -> Option<u32> {
        LIMIT_FILE.get().map(|file| read(file))
    }

    fn read(file: &Path) -> u32 {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(UNLIMITED)
    }

    /// `options` with the limit applied to each connection when it is made; `options` as they
    /// are if no limit file was named. (The pool applies it again each time a connection is
    /// taken, with [`apply_to_connection`].)
    pub(crate) fn apply_to_pool(options: SqlitePoolOptions) -> SqlitePoolOptions {
        if LIMIT_FILE.get().is_none() {
            return options;
        }
        options.after_connect(|conn, _| Box::pin(async move { apply_to_connection(conn).await }))
    }

    /// Applies the limit now to `conn`, if a limit file was named.
    pub(crate) async fn apply_to_connection(
        conn: &mut SqliteConnection,
    ) -> Result<(), sqlx::Error> {
        if let Some(pages) = pages() {
            // A number, not text from anyone: nothing to inject.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA max_page_count = {pages}"
            )))
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, Migration, open};

    const SCHEMA: &[Migration] = &[Migration {
        version: 1,
        description: "t",
        sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
    }];

    /// A row small enough to need no overflow page: a full disk then ends the whole transaction.
    const INSERT: &str = "INSERT INTO t (v) VALUES (randomblob(200))";

    #[tokio::test]
    async fn a_full_database_is_told_apart_rolls_back_whole_and_takes_transactions_again_with_room()
    {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(dir.path(), "t.db", Durability::Full, 1, SCHEMA)
            .await
            .unwrap();
        let pages: u32 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&pool)
            .await
            .unwrap();
        let limit = format!("PRAGMA max_page_count = {}", pages + 4);
        sqlx::query(sqlx::AssertSqlSafe(limit))
            .execute(&pool)
            .await
            .unwrap();

        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let mut err = None;
        for _ in 0..1_000 {
            if let Err(e) = sqlx::query(INSERT).execute(&mut *tx).await {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("the file fills up");
        assert!(is_full(&err), "{err:?}");
        assert!(!is_full(&sqlx::Error::RowNotFound));
        drop(tx);

        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 0, "nothing of the failed transaction stayed");
        sqlx::query("PRAGMA max_page_count = 100000")
            .execute(&pool)
            .await
            .unwrap();
        // SQLite rolled the transaction back itself; the pool's one connection must not go on
        // counting it (see `reusable`).
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("a transaction once there is room");
        sqlx::query(INSERT).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_blocking_connection_tells_a_full_database_apart_too() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), "t.db", Durability::Full, 1, SCHEMA)
            .await
            .unwrap();
        let conn = crate::open_blocking(
            dir.path(),
            "t.db",
            Durability::Full,
            crate::Checkpoints::OnCommit,
        )
        .unwrap();
        let pages: u32 = conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap();
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .unwrap();
        let err = (0..1_000)
            .find_map(|_| conn.execute(INSERT, []).err())
            .expect("the file is full");
        assert!(is_full_blocking(&err), "{err:?}");
        assert!(!is_full_blocking(&rusqlite::Error::InvalidQuery));
    }
}
