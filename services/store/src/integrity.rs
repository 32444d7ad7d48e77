//! Damaged database files, refused at start. A file that is not a database, or whose pages SQLite
//! finds damaged, becomes [`BadData`], which a server built on the kit reports in one line naming
//! the file, then exits 65: restarting cannot mend it, so a supervisor must not loop on it.
//!
//! The check is SQLite's `quick_check`: every page of the file is read and its structure checked
//! (not whether each index matches its table, which `integrity_check` adds at a far higher cost).
//! It reads the whole file once per start: about a second per few hundred MB.

use sqlx::SqlitePool;
use township_kit::config::BadData;

/// SQLite's primary result codes for damage: `SQLITE_CORRUPT` and `SQLITE_NOTADB`.
const DAMAGE: [i32; 2] = [11, 26];

/// `err` as [`BadData`] when SQLite says the file is damaged or not a database; otherwise as it
/// is.
pub(crate) fn refuse_damaged(err: sqlx::Error) -> anyhow::Error {
    let code = err
        .as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok());
    // Extended result codes (e.g. SQLITE_CORRUPT_INDEX) carry the primary one in the low byte.
    match code {
        Some(code) if DAMAGE.contains(&(code & 0xff)) => BadData(format!(
            "the file is damaged ({err}); restore it from a backup"
        ))
        .into(),
        _ => err.into(),
    }
}

/// Runs `quick_check` on the database of `pool`: anything but "ok" is [`BadData`].
pub(crate) async fn quick_check(pool: &SqlitePool) -> anyhow::Result<()> {
    let found: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(1)")
        .fetch_all(pool)
        .await
        .map_err(refuse_damaged)?;
    match found.first().map(String::as_str) {
        Some("ok") => Ok(()),
        first => Err(BadData(format!(
            "the file is damaged (SQLite's quick_check: {}); restore it from a backup",
            first.unwrap_or("no answer")
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Seek, SeekFrom, Write},
        path::Path,
    };

    use crate::{Durability, Migration, open};

    const SCHEMA: &[Migration] = &[Migration {
        version: 1,
        description: "t",
        sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
              CREATE INDEX t_by_v ON t (v);",
    }];

    /// Whether opening `dir`'s `t.db` fails with [`super::BadData`].
    async fn refused_as_damaged(dir: &Path) -> bool {
        match open(dir, "t.db", Durability::Full, 1, SCHEMA).await {
            Ok(_) => false,
            Err(err) => err.chain().any(|cause| cause.is::<super::BadData>()),
        }
    }

    #[tokio::test]
    async fn a_sound_file_opens() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), "t.db", Durability::Full, 1, SCHEMA)
            .await
            .unwrap()
            .close()
            .await;
        assert!(!refused_as_damaged(dir.path()).await);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_refused_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.db"), vec![0xAB; 8192]).unwrap();
        assert!(refused_as_damaged(dir.path()).await);
    }

    #[tokio::test]
    async fn a_database_with_a_damaged_page_is_refused_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(dir.path(), "t.db", Durability::Full, 1, SCHEMA)
            .await
            .unwrap();
        for i in 0..2_000 {
            sqlx::query("INSERT INTO t (v) VALUES (?)")
                .bind(format!("row {i} of enough text to fill several pages"))
                .execute(&pool)
                .await
                .unwrap();
        }
        // Closing the last connection copies the WAL into the file and removes it.
        pool.close().await;
        assert!(!dir.path().join("t.db-wal").exists());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("t.db"))
            .unwrap();
        file.seek(SeekFrom::Start(4096 * 3)).unwrap();
        file.write_all(&[0xFF; 4096]).unwrap();
        drop(file);

        assert!(refused_as_damaged(dir.path()).await);
    }
}
