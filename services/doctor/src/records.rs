//! The doctor's case notes: every patient, visit, exchange and memory, in one SQLite file
//! (`doctor.db` in the data directory), append-only.
//!
//! An exchange (what the patient said, what the doctor answered, the engine's state after it) is
//! one `BEGIN IMMEDIATE` transaction that also takes the patient's shared memory queue, so two
//! sessions of one patient at the same time interleave without losing an input or a memory: the
//! engine runs inside the transaction, with the queue as stored, and what it lays down or recalls
//! is written with the exchange. A reply is sent only after its transaction commits.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use township_kit::{paging::PageTokens, secrets};
use township_store::{
    Checkpoints, Durability, Migration, Pools, SqlitePool,
    sqlx::{self, Row, SqliteConnection},
};

use crate::error::Error;

/// The doctor's migrations, in order (see township_store::Migration).
const SCHEMA: &[Migration] = &[
    Migration {
        version: 1,
        description: "baseline",
        sql: include_str!("../migrations/0001_baseline.sql"),
    },
    Migration {
        version: 2,
        description: "patient keys",
        sql: include_str!("../migrations/0002_patient_keys.sql"),
    },
];

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
pub struct Records {
    writes: SqlitePool,
    reads: SqlitePool,
}

impl Records {
    /// Opens (creating if missing) `<data_dir>/doctor.db`.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let Pools { writes, reads } = township_store::open_pools(
            data_dir,
            "doctor.db",
            Durability::Full,
            Checkpoints::OnCommit,
            4,
            SCHEMA,
        )
        .await
        .context("cannot open the doctor's records")?;
        Ok(Self { writes, reads })
    }

    /// Signs and checks GetHistory's page tokens with the key kept in the records (created with
    /// them), so that tokens outlive a restart.
    pub async fn page_tokens(&self) -> anyhow::Result<PageTokens> {
        let key = township_store::secret(&self.writes, "page_token_key").await?;
        PageTokens::new(&key).context("the stored page token key")
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
        let mut tx = self.writes.begin_with("BEGIN IMMEDIATE").await?;
        let new_key = match stored_key(&mut tx, key).await? {
            Stored::Unknown => {
                let new_key = secrets::new_token();
                sqlx::query(
                    "INSERT INTO patients (name_key, name, first_visit_ms, key_hash) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(key)
                .bind(name)
                .bind(now)
                .bind(secrets::token_hash(&new_key))
                .execute(&mut *tx)
                .await?;
                Some(new_key)
            }
            Stored::Hash(hash) if secrets::token_matches(presented, &hash) => None,
            Stored::Hash(_) | Stored::NoKey => return Err(Error::Denied),
        };
        admit()?;
        let previous_visits: i64 =
            sqlx::query_scalar("SELECT count(*) FROM visits WHERE name_key = ?")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        let last_mind: Option<String> = sqlx::query_scalar(
            "SELECT mind FROM exchanges WHERE name_key = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO visits (session_id, name_key, started_ms) VALUES (?, ?, ?)")
            .bind(session_id)
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
        let mut conn = self.reads.acquire().await?;
        match stored_key(&mut conn, key).await? {
            Stored::Hash(hash) if secrets::token_matches(presented, &hash) => Ok(()),
            _ => Err(Error::Denied),
        }
    }

    /// Gives the known patient with match key `key` a new key, which replaces any they had, and
    /// returns it: the operator's way to admit a patient stored before keys existed, or one who
    /// lost theirs. `None` when no such patient is known.
    pub async fn issue_key(&self, key: &str) -> Result<Option<String>, Error> {
        let new_key = secrets::new_token();
        let updated = sqlx::query("UPDATE patients SET key_hash = ? WHERE name_key = ?")
            .bind(secrets::token_hash(&new_key))
            .bind(key)
            .execute(&self.writes)
            .await?
            .rows_affected();
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
        let mut tx = self.writes.begin_with("BEGIN IMMEDIATE").await?;
        let queue = memory_queue(&mut tx, key).await?;
        let oldest = queue.first().map(|(id, _)| *id);
        let outcome = think(queue.into_iter().map(|(_, text)| text).collect());
        let exchange_id: i64 = sqlx::query_scalar(
            "INSERT INTO exchanges (name_key, session_id, time_ms, patient_text, doctor_text, mind) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(key)
        .bind(session_id)
        .bind(now)
        .bind(patient_text)
        .bind(&outcome.reply)
        .bind(&outcome.mind)
        .fetch_one(&mut *tx)
        .await?;
        if let (true, Some(memory)) = (outcome.recalled_oldest, oldest) {
            sqlx::query("INSERT INTO recalls (memory_id, exchange_id) VALUES (?, ?)")
                .bind(memory)
                .bind(exchange_id)
                .execute(&mut *tx)
                .await?;
        }
        for memory in &outcome.laid_down {
            sqlx::query("INSERT INTO memories (name_key, text, laid_down_by) VALUES (?, ?, ?)")
                .bind(key)
                .bind(memory)
                .bind(exchange_id)
                .execute(&mut *tx)
                .await?;
        }
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
        let rows = sqlx::query(
            "SELECT e.id, e.time_ms, e.patient_text, e.doctor_text, v.started_ms \
             FROM exchanges e JOIN visits v ON v.session_id = e.session_id \
             WHERE e.name_key = ? AND e.id > ? ORDER BY e.id LIMIT ?",
        )
        .bind(key)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Exchange {
                    id: row.try_get("id")?,
                    session_started_ms: row.try_get("started_ms")?,
                    time_ms: row.try_get("time_ms")?,
                    patient_text: row.try_get("patient_text")?,
                    doctor_text: row.try_get("doctor_text")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
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

async fn stored_key(conn: &mut SqliteConnection, key: &str) -> Result<Stored, sqlx::Error> {
    let row: Option<Option<String>> =
        sqlx::query_scalar("SELECT key_hash FROM patients WHERE name_key = ?")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        None => Stored::Unknown,
        Some(None) => Stored::NoKey,
        Some(Some(hash)) => Stored::Hash(hash),
    })
}

/// The patient's memories not yet recalled, oldest first.
async fn memory_queue(
    conn: &mut SqliteConnection,
    key: &str,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, text FROM memories WHERE name_key = ? \
         AND id NOT IN (SELECT memory_id FROM recalls) ORDER BY id",
    )
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("text")?)))
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
