//! One SQL text for both backends. A service whose SQL is the same on SQLite and PostgreSQL
//! (written with `$1`-style placeholders, which both of sqlx's drivers read) keeps a [`Db`] and
//! runs each statement through [`either!`]: the statement is compiled once per backend, with
//! that backend's typed connection, so nothing goes through sqlx's `Any` driver.

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// A pool on either backend. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    /// A SQLite file's pool.
    Sqlite(SqlitePool),
    /// A PostgreSQL database's pool.
    Postgres(PgPool),
}

/// A transaction on either backend.
pub enum Tx {
    /// On SQLite.
    Sqlite(Transaction<'static, Sqlite>),
    /// On PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
}

impl Db {
    /// Begins a write transaction: on SQLite `BEGIN IMMEDIATE` (it holds the whole database's
    /// write lock from its first statement, so what it reads stays true until it commits); on
    /// PostgreSQL a plain READ COMMITTED one, whose statements take the row locks they need
    /// (see [`Tx::for_update`]).
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

impl Tx {
    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    /// What a `SELECT` that reads rows this transaction goes on to change ends with: on
    /// PostgreSQL ` FOR UPDATE` (the rows stay as read until the commit, and another replica's
    /// transaction waits for them); on SQLite nothing, as `BEGIN IMMEDIATE` holds them all.
    pub fn for_update(&self) -> &'static str {
        match self {
            Tx::Sqlite(_) => "",
            Tx::Postgres(_) => " FOR UPDATE",
        }
    }
}

/// Runs `$body` with `$conn` bound to the typed connection of `$on`, whichever backend it is:
/// `either!(&mut tx, |conn| …)` for a [`Tx`] (`conn` is `&mut SqliteConnection` or
/// `&mut PgConnection`), `either!(pool &db, |conn| …)` for a [`Db`] (`conn` is the pool). The
/// body is compiled once per backend, so one text of SQL and binding serves both.
#[macro_export]
macro_rules! either {
    (pool $db:expr, |$conn:ident| $body:expr) => {
        match $db {
            $crate::Db::Sqlite(pool) => {
                let $conn = pool;
                $body
            }
            $crate::Db::Postgres(pool) => {
                let $conn = pool;
                $body
            }
        }
    };
    ($on:expr, |$conn:ident| $body:expr) => {
        match $on {
            $crate::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}
