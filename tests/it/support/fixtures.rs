//! Data directories made by earlier versions, kept as SQL text in `tests/it/fixtures`: restoring
//! one into a file, and reading which schema versions a file records as applied.

use std::path::Path;

use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};

/// Makes the SQLite file `path` from `dump` (SQL, as `.dump` writes it).
pub async fn restore_dump(path: &Path, dump: &'static str) {
    // A dump creates tables in name order, before the tables they refer to.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(false);
    let mut db = SqliteConnection::connect_with(&options)
        .await
        .expect("create the database");
    sqlx::raw_sql(dump)
        .execute(&mut db)
        .await
        .expect("restore the dump");
    db.close().await.expect("close the database");
}

/// The schema versions the SQLite file `path` records as applied, in order.
pub async fn schema_versions(path: &Path) -> Vec<i64> {
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut db = SqliteConnection::connect_with(&options)
        .await
        .expect("open the database");
    let versions =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut db)
            .await
            .expect("read the applied migrations");
    db.close().await.expect("close the database");
    versions
}
