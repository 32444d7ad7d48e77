//! The one SQL layer every stateful service uses: sqlx over a SQLite file in the service's
//! `--data-dir`, or over PostgreSQL ([`postgres`]) when `--database-url` names one
//! ([`database`]). Each service writes its SQL once per dialect, on typed pools (`SqlitePool`,
//! `PgPool`): sqlx's `Any` driver rewrites neither placeholders nor transaction syntax. Runtime
//! SQL only — no compile-time-checked macros, so no database is needed at build time.
//!
//! Durability: WAL journal with `synchronous = FULL` by default, so a committed transaction survives
//! a process kill *and* a power loss; services with hot write paths may choose `NORMAL` (survives
//! `kill -9`, may lose the last commits on power loss) and say so in their docs.
//!
//! Schemas are versioned: each service lists its [`Migration`]s, and opening a database applies
//! those it has not had, once, even when several processes open it together (see [`migrate`]).
//!
//! Checkpoints (copying the WAL back into the database file, with its fsyncs) are SQLite's default
//! for most services: the commit that takes the WAL past 1,000 pages does it, and waits for it.
//! A service whose commits are its bottleneck moves them off that path with
//! [`Checkpoints::InBackground`].
//!
//! Such a service may also write on a thread of its own through a plain blocking connection
//! ([`open_blocking`], rusqlite), with no hand-off to a worker thread per statement.
//!
//! A damaged file is refused when it is opened (the `integrity` module), so the server exits
//! with one line naming it instead of failing query by query. A full disk is told apart from
//! other failures ([`full`]), so a service answers it clearly and works again once there is room.

mod blocking;
pub mod database;
mod either;
pub mod full;
mod integrity;
mod migrate;
pub mod postgres;

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
pub use blocking::{open_blocking, rusqlite};
pub use database::{Database, DatabaseArgs};
pub use either::{Db, Tx};
pub use migrate::Migration;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
pub use sqlx::{self, PgPool, SqlitePool};

/// How hard a commit is pushed to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: survives power loss.
    Full,
    /// WAL fsync at checkpoints only: survives a process kill, not necessarily a power loss.
    Normal,
}

/// Who copies the WAL back into the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoints {
    /// SQLite's default: the commit that takes the WAL past 1,000 pages (4 MiB).
    OnCommit,
    /// A task on a reading connection, every `every` (see [`checkpoint_in_background`]); a
    /// commit does it itself only once the WAL passes [`FALLBACK_CHECKPOINT_PAGES`], should that
    /// task fall behind.
    InBackground { every: Duration },
}

/// With [`Checkpoints::InBackground`], the WAL size (pages of 4 KiB) at which a commit
/// checkpoints after all.
pub const FALLBACK_CHECKPOINT_PAGES: u32 = 10_000;

/// A service's database: one connection for write transactions and several for reads.
///
/// SQLite allows one writer at a time and makes the others sleep-and-retry (`busy_timeout`): a
/// pool of one connection for write transactions makes a process's writers queue in order instead,
/// with no sleeping; readers use a separate, larger pool (WAL readers never wait for the writer).
#[derive(Clone, Debug)]
pub struct Pools {
    /// At most one connection.
    pub writes: SqlitePool,
    /// At most `readers` connections.
    pub reads: SqlitePool,
}

/// Opens (creating if missing) `<data_dir>/<file>` as [`Pools`] with `readers` reading
/// connections, and applies the `schema` steps it has not had yet. With [`Checkpoints::InBackground`] it also starts the
/// checkpointing task on the current runtime; the task ends when the pools are closed.
pub async fn open_pools(
    data_dir: &Path,
    file: &str,
    durability: Durability,
    checkpoints: Checkpoints,
    readers: u32,
    schema: &'static [Migration],
) -> anyhow::Result<Pools> {
    let autocheckpoint = match checkpoints {
        Checkpoints::OnCommit => None,
        Checkpoints::InBackground { .. } => Some(FALLBACK_CHECKPOINT_PAGES),
    };
    let writes = open_migrated(data_dir, file, durability, autocheckpoint, 1, schema)
        .await
        .context("for writing")?;
    let reads = open_pool(data_dir, file, durability, None, readers)
        .await
        .context("for reading")?;
    if let Checkpoints::InBackground { every } = checkpoints {
        tokio::spawn(checkpoint_in_background(reads.clone(), every));
    }
    Ok(Pools { writes, reads })
}

/// Opens (creating if missing) `<data_dir>/<file>` with a pool of at most `connections`
/// connections, and applies the `schema` steps it has not had yet. Creates `data_dir` too.
/// Services that write and read use [`open_pools`].
pub async fn open(
    data_dir: &Path,
    file: &str,
    durability: Durability,
    connections: u32,
    schema: &'static [Migration],
) -> anyhow::Result<SqlitePool> {
    open_migrated(data_dir, file, durability, None, connections, schema).await
}

/// [`open_pool`], then migrated to `schema`, holding `<data_dir>/<file>.migrate-lock` meanwhile:
/// processes opening the same file together take turns, so that the file is created (and put in
/// WAL mode) once and each migration runs once.
async fn open_migrated(
    data_dir: &Path,
    file: &str,
    durability: Durability,
    autocheckpoint: Option<u32>,
    connections: u32,
    schema: &'static [Migration],
) -> anyhow::Result<SqlitePool> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let _turn = migrate::lock(&data_dir.join(format!("{file}.migrate-lock"))).await?;
    let pool = open_pool(data_dir, file, durability, autocheckpoint, connections).await?;
    let path = data_dir.join(file);
    integrity::quick_check(&pool)
        .await
        .with_context(|| format!("cannot open database {}", path.display()))?;
    migrate::migrate(&pool, schema)
        .await
        .with_context(|| format!("in {}", data_dir.join(file).display()))?;
    Ok(pool)
}

/// A pool of at most `connections` on `<data_dir>/<file>` (both created if missing), where
/// `autocheckpoint` (WAL pages) replaces SQLite's 1,000 if given.
async fn open_pool(
    data_dir: &Path,
    file: &str,
    durability: Durability,
    autocheckpoint: Option<u32>,
    connections: u32,
) -> anyhow::Result<SqlitePool> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let path = data_dir.join(file);
    let mut options = SqliteConnectOptions::from_str("sqlite://")
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
    if let Some(pages) = autocheckpoint {
        options = options.pragma("wal_autocheckpoint", pages.to_string());
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(connections.max(1))
        // A ping before each use would be one more round trip to the connection's worker
        // thread, for a local file that cannot have gone away.
        .test_before_acquire(false)
        .before_acquire(|conn, _| Box::pin(reusable(conn)));
    #[cfg(debug_assertions)]
    let pool = full::apply_to_pool(pool);
    pool.connect_with(options)
        .await
        .map_err(integrity::refuse_damaged)
        .with_context(|| format!("cannot open database {}", path.display()))
}

/// Whether a pooled connection may be used again (and, in a test build, the test's page limit
/// applied to it, see [`full`]).
///
/// SQLite rolls a transaction back by itself on some errors, a full disk among them. sqlx (0.9)
/// then fails its own ROLLBACK when the transaction is dropped, and goes on counting a
/// transaction that no longer exists (as for PostgreSQL's class 40 errors, sqlx issue #3742):
/// every later `begin_with` on that connection fails ("attempted to call begin_with at non-zero
/// transaction depth"), and a plain `begin` would make a savepoint instead. A connection that still counts one when it
/// is taken from the pool (sqlx pings it on release, so any rollback it was sent has run by
/// then) is closed instead, and the pool opens a fresh one: the next write works.
async fn reusable(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    if sqlx::Connection::is_in_transaction(conn) {
        tracing::warn!("a connection whose transaction could not be rolled back is replaced");
        return Ok(false);
    }
    #[cfg(debug_assertions)]
    full::apply_to_connection(conn).await?;
    Ok(true)
}

/// Bytes in a [`secret`].
pub const SECRET_BYTES: usize = 32;

/// A secret of this database, e.g. the key that signs its page tokens: [`SECRET_BYTES`] random
/// bytes that SQLite makes the first time `name` is asked for, kept in the database's `meta`
/// table. Every process that opens the file, and every later run, gets the same bytes, so what
/// one replica signed another can check, and a restart invalidates nothing; two processes asking
/// at once agree (`INSERT OR IGNORE`). Give it the write pool. The secret is as private as the
/// database file is.
pub async fn secret(writes: &SqlitePool, name: &str) -> anyhow::Result<Vec<u8>> {
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
        .execute(writes)
        .await
        .context("cannot create the meta table")?;
    sqlx::query("INSERT OR IGNORE INTO meta (name, value) VALUES (?, randomblob(?))")
        .bind(name)
        .bind(SECRET_BYTES as i64)
        .execute(writes)
        .await
        .with_context(|| format!("cannot make the secret {name}"))?;
    sqlx::query_scalar("SELECT value FROM meta WHERE name = ?")
        .bind(name)
        .fetch_one(writes)
        .await
        .with_context(|| format!("cannot read the secret {name}"))
}

/// Checkpoints `pool`'s database every `interval` (PASSIVE: it never waits for, nor blocks,
/// readers or writers) until the pool is closed, on one of `pool`'s connections, so that writers
/// opened with [`Checkpoints::InBackground`] neither copy pages nor wait for fsyncs when they
/// commit. A failed checkpoint is logged and tried again at the next tick.
pub async fn checkpoint_in_background(pool: SqlitePool, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        ticks.tick().await;
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %err, "background checkpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: Migration = Migration {
        version: 1,
        description: "t",
        sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
    };
    /// A step that fails if it runs twice.
    const COLUMN: Migration = Migration {
        version: 2,
        description: "t.note",
        sql: "ALTER TABLE t ADD COLUMN note TEXT NOT NULL DEFAULT '';",
    };
    const SCHEMA: &[Migration] = &[TABLE];
    const SCHEMA_2: &[Migration] = &[TABLE, COLUMN];

    async fn versions(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_reopen_applies_only_the_new_steps_and_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(dir.path(), "t.db", Durability::Full, 1, SCHEMA)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (x'01')")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        for _ in 0..2 {
            let pool = open(dir.path(), "t.db", Durability::Full, 1, SCHEMA_2)
                .await
                .unwrap();
            assert_eq!(versions(&pool).await, [1, 2]);
            let row: (Vec<u8>, String) = sqlx::query_as("SELECT v, note FROM t")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(row, (vec![1], String::new()));
            pool.close().await;
        }
    }

    #[tokio::test]
    async fn processes_opening_one_file_together_apply_each_step_once() {
        let dir = tempfile::tempdir().unwrap();
        // Each open has its own connections and its own descriptor of the lock file, as
        // separate processes would.
        let opens = (0..8).map(|_| {
            let dir = dir.path().to_owned();
            tokio::spawn(async move {
                open_pools(
                    &dir,
                    "t.db",
                    Durability::Full,
                    Checkpoints::OnCommit,
                    1,
                    SCHEMA_2,
                )
                .await
            })
        });
        for open in opens.collect::<Vec<_>>() {
            let pools = open.await.unwrap().expect("every open succeeds");
            assert_eq!(versions(&pools.reads).await, [1, 2]);
        }
    }

    #[tokio::test]
    async fn a_database_from_a_newer_version_or_with_an_edited_step_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), "t.db", Durability::Full, 1, SCHEMA_2)
            .await
            .unwrap()
            .close()
            .await;
        let err = open(dir.path(), "t.db", Durability::Full, 1, SCHEMA)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("migration 2"), "{err:#}");

        const EDITED: &[Migration] = &[
            TABLE,
            Migration {
                sql: "ALTER TABLE t ADD COLUMN note TEXT;",
                ..COLUMN
            },
        ];
        let err = open(dir.path(), "t.db", Durability::Full, 1, EDITED)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("migration 2"), "{err:#}");
    }

    #[tokio::test]
    async fn a_database_made_before_migrations_takes_an_idempotent_baseline_in_place() {
        let dir = tempfile::tempdir().unwrap();
        const OLD: &str = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);";
        let pool = open(dir.path(), "t.db", Durability::Full, 1, &[])
            .await
            .unwrap();
        sqlx::raw_sql(OLD).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (x'02')")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::raw_sql("DROP TABLE _sqlx_migrations")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        const BASELINE: &[Migration] = &[
            Migration {
                version: 1,
                description: "baseline",
                sql: OLD,
            },
            COLUMN,
        ];
        let pool = open(dir.path(), "t.db", Durability::Full, 1, BASELINE)
            .await
            .unwrap();
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE v = x'02'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((versions(&pool).await, count), (vec![1, 2], 1));
    }

    /// Commits about 2,000 pages (8 MiB), one transaction of 16 rows of 4 KiB at a time.
    async fn write_2000_pages(pool: &SqlitePool) {
        for _ in 0..125 {
            let mut tx = pool.begin().await.unwrap();
            for _ in 0..16 {
                sqlx::query("INSERT INTO t (v) VALUES (zeroblob(4000))")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
    }

    fn file_size(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("t.db")).unwrap().len()
    }

    #[tokio::test]
    async fn a_secret_is_made_once_and_the_same_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let pool = open(dir.path(), "t.db", Durability::Full, 1, SCHEMA)
                .await
                .unwrap();
            let key = secret(&pool, "page_token_key").await.unwrap();
            assert_eq!(secret(&pool, "page_token_key").await.unwrap(), key);
            let other = secret(&pool, "another").await.unwrap();
            assert_ne!(other, key, "each name has its own secret");
            pool.close().await;
            key
        };
        assert_eq!(first.len(), SECRET_BYTES);
        assert_ne!(first, vec![0; SECRET_BYTES]);
        let pool = open(dir.path(), "t.db", Durability::Full, 1, SCHEMA)
            .await
            .unwrap();
        assert_eq!(secret(&pool, "page_token_key").await.unwrap(), first);
    }

    #[tokio::test]
    async fn commits_leave_checkpoints_to_the_background_task_when_asked_to() {
        let dir = tempfile::tempdir().unwrap();
        let every = Duration::from_secs(3600);
        let Pools { writes, reads } = open_pools(
            dir.path(),
            "t.db",
            Durability::Normal,
            Checkpoints::InBackground { every },
            1,
            SCHEMA,
        )
        .await
        .unwrap();
        write_2000_pages(&writes).await;
        assert!(
            file_size(dir.path()) < 1 << 20,
            "past 1,000 pages of WAL, commits did not copy them into the database file"
        );

        let background = tokio::spawn(checkpoint_in_background(
            reads.clone(),
            Duration::from_millis(10),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while file_size(dir.path()) < 7 << 20 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the background task checkpoints within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        reads.close().await;
        tokio::time::timeout(Duration::from_secs(30), background)
            .await
            .expect("the task ends once its pool is closed")
            .unwrap();
    }

    #[tokio::test]
    async fn by_default_a_commit_checkpoints_once_the_wal_passes_1000_pages() {
        let dir = tempfile::tempdir().unwrap();
        let Pools { writes, .. } = open_pools(
            dir.path(),
            "t.db",
            Durability::Normal,
            Checkpoints::OnCommit,
            1,
            SCHEMA,
        )
        .await
        .unwrap();
        write_2000_pages(&writes).await;
        assert!(file_size(dir.path()) > 4 << 20);
    }
}
