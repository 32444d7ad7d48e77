//! Versioned schema migrations: each service lists its [`Migration`]s for each dialect (SQL files
//! embedded in the binary, `migrations/sqlite/` and `migrations/postgres/`), and opening a database applies the ones it has not had yet, in version order, each in
//! its own transaction with its record in sqlx's `_sqlx_migrations` table. Processes opening the
//! same SQLite file at once take turns on a lock file beside it, and on PostgreSQL on sqlx's
//! advisory lock, so each migration runs once.
//!
//! sqlx's `migrate!` macro would embed the same files, but it needs sqlx's `macros` feature, which
//! builds sqlx's SQLite driver (bundled C) a second time for the compiler; `include_str!` of the
//! same files gives the same migrator, checksums and table without that build.

use std::{fs::File, path::Path};

use anyhow::Context;
use sqlx::{
    SqlSafeStr, SqlitePool,
    migrate::{MigrationType, Migrator},
};

/// One step of a service's schema: applied once per database, in `version` order, never edited
/// once released (a changed step is refused at open, by its checksum). Add a new step instead.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its place in the order, from 1; unique within a service.
    pub version: i64,
    /// What it does, in a few words (recorded beside it).
    pub description: &'static str,
    /// Its SQL, typically `include_str!("../migrations/0002_what.sql")`.
    pub sql: &'static str,
}

/// Takes the lock file `path` (created if missing), waiting for another process to release it;
/// released when the file is dropped. Held while a database is opened and migrated, so that
/// processes starting together create and migrate it one at a time.
pub(crate) async fn lock(path: &Path) -> anyhow::Result<File> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<File> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&owned)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .context("the migration lock's thread")?
    .with_context(|| format!("cannot lock {}", path.display()))
}

/// Applies what of `steps` the database behind `pool` has not had yet (hold [`lock`]). Refuses
/// a database that records a step `steps` lacks (made by a newer version) or whose recorded
/// step differs from the one in `steps`.
pub(crate) async fn migrate(pool: &SqlitePool, steps: &'static [Migration]) -> anyhow::Result<()> {
    migrator(steps)
        .run(pool)
        .await
        .context("cannot migrate the schema")
}

/// sqlx's migrator for `steps`. On PostgreSQL its `run` holds an advisory lock on the database
/// while it migrates (replicas starting at once take turns); on SQLite the caller holds [`lock`].
pub(crate) fn migrator(steps: &'static [Migration]) -> Migrator {
    Migrator::with_migrations(
        steps
            .iter()
            .map(|step| {
                sqlx::migrate::Migration::new(
                    step.version,
                    step.description.into(),
                    MigrationType::Simple,
                    step.sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}
