//! The doctor's case notes: every patient, visit, exchange and memory, append-only, in a SQLite
//! file (`doctor.db` in the data directory) or in a PostgreSQL database that several doctors
//! share.
//!
//! An exchange (what the patient said, what the doctor answered, the engine's state after it) is
//! one transaction that first takes the patient: SQLite's `BEGIN IMMEDIATE` (one writer at a
//! time), PostgreSQL's lock on the patient's row (`FOR UPDATE`, so one writer per patient across
//! every replica). It then reads the patient's shared memory queue, so two sessions of one
//! patient at the same time, on one server or two, interleave without losing an input or a
//! memory, and recall each memory once: the engine runs inside the transaction, with the queue
//! as stored, and what it lays down or recalls is written with the exchange. A reply is sent only
//! after its transaction commits.
//!
//! The SQL is written once, with `$1`-style placeholders that both of sqlx's drivers read;
//! `either!` runs it on whichever connection the records have.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use township_kit::{paging::PageTokens, secrets};
use township_store::{
    Checkpoints, Database, Durability, Migration, PgPool, Pools, SqlitePool, Tx, sqlx,
};

use crate::error::Error;

/// The doctor's SQLite migrations, in order (see township_store::Migration).
const SQLITE_SCHEMA: &[Migration] = &[
    Migration {
        version: 1,
        description: "baseline",
        sql: include_str!("../migrations/sqlite/0001_baseline.sql"),
    },
    Migration {
        version: 2,
        description: "patient keys",
        sql: include_str!("../migrations/sqlite/0002_patient_keys.sql"),
    },
];

/// The doctor's PostgreSQL migrations, in order.
const POSTGRES_SCHEMA: &[Migration] = &[Migration {
    version: 1,
    description: "baseline",
    sql: include_str!("../migrations/postgres/0001_baseline.sql"),
}];

/// What the records know about a patient when a visit starts.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Sessions before this one.
    pub previous_visits: i64,
    /// The engine's state after the patient's latest exchange (JSON), if any.
    pub last_mind: Option<String>,
    /// A new patient's key, to be shown to them once.
    pub new_key: Option<String>,
}

/// One stored exchange.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// Its position in the records (for paging).
    pub id: i64,
    /// When the visit it belongs to began, ms since the Unix epoch (UTC).
    pub session_started_ms: i64,
    /// When, ms since the Unix epoch (UTC).
    pub time_ms: i64,
    /// What the patient said.
    pub patient_text: String,
    /// What the doctor answered.
    pub doctor_text: String,
}

/// What the engine did in one exchange, to be written with it.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The reply text.
    pub reply: String,
    /// The engine's state after the exchange (JSON, memories left out: they live in the queue).
    pub mind: String,
    /// Whether the engine recalled the oldest memory of the queue it was given.
    pub recalled_oldest: bool,
    /// Memories the engine laid down, oldest first.
    pub laid_down: Vec<String>,
}

/// The doctor's records.
#[derive(Clone)]
pub enum Records {
    /// A SQLite file: one connection for write transactions, a pool for reads.
    Sqlite {
        writes: SqlitePool,
        reads: SqlitePool,
    },
    /// A PostgreSQL database, one pool for both.
    Postgres(PgPool),
}

/// Runs `$body` with `$conn` bound to the connection of `$on`, whichever backend it is: a
/// [`Tx`] (through `township_store::either!`), or with `reads` the records' pool for a read
/// outside a transaction. The body is compiled once per backend, so one text of SQL and binding
/// serves both.
macro_rules! either {
    (reads $records:expr, |$conn:ident| $body:expr) => {
        match $records {
            Records::Sqlite { reads, .. } => {
                let $conn = reads;
                $body
            }
            Records::Postgres(pool) => {
                let $conn = pool;
                $body
            }
        }
    };
    ($on:expr, |$conn:ident| $body:expr) => {
        township_store::either!($on, |$conn| $body)
    };
}

impl Records {
    /// Opens (creating if missing) the records in `database`, migrated to this version.
    pub async fn open(database: &Database) -> anyhow::Result<Self> {
        match database {
            Database::Sqlite { dir, file } => {
                let Pools { writes, reads } = township_store::open_pools(
                    dir,
                    file,
                    Durability::Full,
                    Checkpoints::OnCommit,
                    4,
                    SQLITE_SCHEMA,
                )
                .await
                .context("cannot open the doctor's records")?;
                Ok(Records::Sqlite { writes, reads })
            }
            Database::Postgres(postgres) => {
                let pool = township_store::postgres::open(postgres, POSTGRES_SCHEMA)
                    .await
                    .context("cannot open the doctor's records")?;
                Ok(Records::Postgres(pool))
            }
        }
    }

    /// Signs and checks GetHistory's page tokens with the key kept in the records (created with
    /// them), so that tokens outlive a restart and every replica honours every other's.
    pub async fn page_tokens(&self) -> anyhow::Result<PageTokens> {
        let key = match self {
            Records::Sqlite { writes, .. } => {
                township_store::secret(writes, "page_token_key").await?
            }
            Records::Postgres(pool) => {
                township_store::postgres::secret(pool, "page_token_key").await?
            }
        };
        PageTokens::new(&key).context("the stored page token key")
    }

    /// A write transaction that holds the patient with match key `key` (if known) until it
    /// ends: on SQLite the whole database (`BEGIN IMMEDIATE`), on PostgreSQL the patient's row.
    async fn begin_with_patient(&self, key: &str) -> Result<(Tx, Stored), sqlx::Error> {
        let mut tx = match self {
            Records::Sqlite { writes, .. } => {
                Tx::Sqlite(writes.begin_with("BEGIN IMMEDIATE").await?)
            }
            Records::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        };
        let lock = tx.for_update();
        let sql = format!("SELECT key_hash FROM patients WHERE name_key = $1{lock}");
        let row: Option<Option<String>> = either!(&mut tx, |conn| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(key)
                .fetch_optional(conn)
                .await?
        });
        Ok((tx, Stored::from(row)))
    }

    /// Records a new visit of the patient with match key `key` (shown as `name`) and returns
    /// their chart. A new patient gets a patient key (in the chart, once); a known one must
    /// present theirs (`presented`), else [`Error::Denied`]. `admit` has the last word, once the
    /// patient is known to be who they say (it bounds their open sessions); nothing is recorded
    /// when it refuses.
    pub async fn start_visit(
        &self,
        key: &str,
        name: &str,
        session_id: &str,
        presented: &str,
        admit: impl FnOnce() -> Result<(), Error>,
    ) -> Result<Chart, Error> {
        let now = now_ms();
        let (mut tx, stored) = self.begin_with_patient(key).await?;
        let new_key = match stored {
            Stored::Unknown => {
                let new_key = secrets::new_token();
                // Another replica may have added the patient since the lookup: then they are
                // someone else's, and this caller has no key for them.
                let added = either!(&mut tx, |conn| {
                    sqlx::query(
                        "INSERT INTO patients (name_key, name, first_visit_ms, key_hash) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (name_key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(name)
                    .bind(now)
                    .bind(secrets::token_hash(&new_key))
                    .execute(conn)
                    .await?
                    .rows_affected()
                });
                if added == 0 {
                    return Err(Error::Denied);
                }
                Some(new_key)
            }
            Stored::Hash(hash) if secrets::token_matches(presented, &hash) => None,
            Stored::Hash(_) | Stored::NoKey => return Err(Error::Denied),
        };
        admit()?;
        let (previous_visits, last_mind) = either!(&mut tx, |conn| {
            let visits: i64 = sqlx::query_scalar("SELECT count(*) FROM visits WHERE name_key = $1")
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
            let mind: Option<String> = sqlx::query_scalar(
                "SELECT mind FROM exchanges WHERE name_key = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO visits (session_id, name_key, started_ms) VALUES ($1, $2, $3)",
            )
            .bind(session_id)
            .bind(key)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            (visits, mind)
        });
        tx.commit().await?;
        Ok(Chart {
            previous_visits,
            last_mind,
            new_key,
        })
    }

    /// Whether `presented` is the key of the patient with match key `key`: [`Error::Denied`]
    /// when it is not, and for a name the records do not know, so that the answer tells a
    /// stranger nothing.
    pub async fn check_key(&self, key: &str, presented: &str) -> Result<(), Error> {
        let row: Option<Option<String>> = either!(reads self, |pool| {
            sqlx::query_scalar("SELECT key_hash FROM patients WHERE name_key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        match Stored::from(row) {
            Stored::Hash(hash) if secrets::token_matches(presented, &hash) => Ok(()),
            _ => Err(Error::Denied),
        }
    }

    /// Gives the known patient with match key `key` a new key, which replaces any they had, and
    /// returns it: the operator's way to admit a patient stored before keys existed, or one who
    /// lost theirs. `None` when no such patient is known.
    pub async fn issue_key(&self, key: &str) -> Result<Option<String>, Error> {
        let new_key = secrets::new_token();
        let (mut tx, _) = self.begin_with_patient(key).await?;
        let updated = either!(&mut tx, |conn| {
            sqlx::query("UPDATE patients SET key_hash = $1 WHERE name_key = $2")
                .bind(secrets::token_hash(&new_key))
                .bind(key)
                .execute(conn)
                .await?
                .rows_affected()
        });
        tx.commit().await?;
        Ok((updated == 1).then_some(new_key))
    }

    /// Runs one exchange: `think` gets the patient's memory queue (oldest first) and returns what
    /// the engine did; the exchange, the state and the memory changes are committed together.
    pub async fn exchange<F>(
        &self,
        key: &str,
        session_id: &str,
        patient_text: &str,
        think: F,
    ) -> Result<Outcome, Error>
    where
        F: FnOnce(Vec<String>) -> Outcome,
    {
        let now = now_ms();
        let (mut tx, _) = self.begin_with_patient(key).await?;
        let queue: Vec<(i64, String)> = either!(&mut tx, |conn| {
            sqlx::query_as(
                "SELECT id, text FROM memories WHERE name_key = $1 \
                 AND id NOT IN (SELECT memory_id FROM recalls) ORDER BY id",
            )
            .bind(key)
            .fetch_all(conn)
            .await?
        });
        let oldest = queue.first().map(|(id, _)| *id);
        let outcome = think(queue.into_iter().map(|(_, text)| text).collect());
        either!(&mut tx, |conn| {
            let exchange_id: i64 = sqlx::query_scalar(
                "INSERT INTO exchanges \
                 (name_key, session_id, time_ms, patient_text, doctor_text, mind) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(key)
            .bind(session_id)
            .bind(now)
            .bind(patient_text)
            .bind(&outcome.reply)
            .bind(&outcome.mind)
            .fetch_one(&mut *conn)
            .await?;
            if let (true, Some(memory)) = (outcome.recalled_oldest, oldest) {
                sqlx::query("INSERT INTO recalls (memory_id, exchange_id) VALUES ($1, $2)")
                    .bind(memory)
                    .bind(exchange_id)
                    .execute(&mut *conn)
                    .await?;
            }
            for memory in &outcome.laid_down {
                sqlx::query(
                    "INSERT INTO memories (name_key, text, laid_down_by) VALUES ($1, $2, $3)",
                )
                .bind(key)
                .bind(memory)
                .bind(exchange_id)
                .execute(&mut *conn)
                .await?;
            }
        });
        tx.commit().await?;
        Ok(outcome)
    }

    /// Up to `limit` exchanges of the patient after the exchange `after` (`None`: from the first;
    /// ids start at 1), oldest first.
    pub async fn history(
        &self,
        key: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Exchange>, Error> {
        let rows: Vec<(i64, i64, String, String, i64)> = either!(reads self, |pool| {
            sqlx::query_as(
                "SELECT e.id, e.time_ms, e.patient_text, e.doctor_text, v.started_ms \
                 FROM exchanges e JOIN visits v ON v.session_id = e.session_id \
                 WHERE e.name_key = $1 AND e.id > $2 ORDER BY e.id LIMIT $3",
            )
            .bind(key)
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, time_ms, patient_text, doctor_text, session_started_ms)| Exchange {
                    id,
                    session_started_ms,
                    time_ms,
                    patient_text,
                    doctor_text,
                },
            )
            .collect())
    }
}

/// What the records hold of a patient's key.
enum Stored {
    /// No such patient.
    Unknown,
    /// A patient stored before keys existed, not yet given one by the operator.
    NoKey,
    /// The hash of the patient's key.
    Hash(String),
}

impl From<Option<Option<String>>> for Stored {
    /// The patient's row's `key_hash`, if there is a row.
    fn from(row: Option<Option<String>>) -> Self {
        match row {
            None => Stored::Unknown,
            Some(None) => Stored::NoKey,
            Some(Some(hash)) => Stored::Hash(hash),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
