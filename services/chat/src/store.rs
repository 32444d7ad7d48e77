//! Transcripts: every room's events, append-only, in one SQLite file (`chat.db` in the data
//! directory, WAL, `synchronous = FULL`) or in PostgreSQL (`--database-url`). An event is
//! committed before anyone hears of it.
//!
//! The store gives each event its seq, in the statement that stores it: the room's next, taken
//! on SQLite from the room's last event (one process writes the file, through one connection)
//! and on PostgreSQL from the room's row in `rooms`, which that statement advances and holds
//! until it commits. So a room's sequence has no gap and no repeat whichever server appends, and
//! a failed append takes no number. On SQLite, checkpoints run in the background, so no message
//! waits for one.

mod members;

use std::time::Duration;

use anyhow::Context;
use township_kit::paging::PageTokens;
use township_store::{
    Checkpoints, Database, Durability, Migration, PgPool, Pools, SqlitePool, sqlx,
};

use crate::{
    Error,
    event::{Event, Kind},
    types::RoomName,
};

pub use members::{NotSent, SERVER_LOST, SharedMembers};

/// The chat's SQLite migrations, in order (see township_store::Migration).
const SQLITE_SCHEMA: &[Migration] = &[Migration {
    version: 1,
    description: "baseline",
    sql: include_str!("../migrations/sqlite/0001_baseline.sql"),
}];

/// The chat's PostgreSQL migrations, in order.
const POSTGRES_SCHEMA: &[Migration] = &[Migration {
    version: 1,
    description: "baseline",
    sql: include_str!("../migrations/postgres/0001_baseline.sql"),
}];

/// How often the WAL is copied back into the database, on a reading connection. SQLite's default,
/// a checkpoint by the commit that fills 1,000 pages, made one message in several hundred wait
/// for it (milliseconds of writes and an fsync of the database file) before reaching anyone.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Events read per query when catching a member up.
pub const CATCH_UP_BATCH: u32 = 500;

/// Every room's transcript.
#[derive(Clone)]
pub enum Store {
    /// A SQLite file: one connection writes, several read.
    Sqlite {
        /// At most one connection.
        writes: SqlitePool,
        /// The readers.
        reads: SqlitePool,
    },
    /// A PostgreSQL database, shared by every chat-server on it.
    Postgres(PgPool),
}

impl Store {
    /// Opens (creating if missing) the transcripts in `database`, migrated to this version.
    pub async fn open(database: &Database) -> anyhow::Result<Self> {
        match database {
            Database::Sqlite { dir, file } => {
                let Pools { writes, reads } = township_store::open_pools(
                    dir,
                    file,
                    Durability::Full,
                    Checkpoints::InBackground {
                        every: CHECKPOINT_INTERVAL,
                    },
                    4,
                    SQLITE_SCHEMA,
                )
                .await
                .context("cannot open the transcripts")?;
                Ok(Store::Sqlite { writes, reads })
            }
            Database::Postgres(postgres) => {
                let pool = township_store::postgres::open(postgres, POSTGRES_SCHEMA)
                    .await
                    .context("cannot open the transcripts")?;
                Ok(Store::Postgres(pool))
            }
        }
    }

    /// A SQLite store, `chat.db` in `dir` (for unit tests).
    #[cfg(test)]
    pub async fn in_dir(dir: &std::path::Path) -> Self {
        let database = Database::sqlite(dir, "chat.db");
        Store::open(&database).await.expect("a store in a temp dir")
    }

    /// Signs and checks GetTranscript's page tokens with the key kept in the transcripts
    /// (created with them), so that tokens outlive a restart and every server honours every
    /// other's.
    pub async fn page_tokens(&self) -> anyhow::Result<PageTokens> {
        let key = match self {
            Store::Sqlite { writes, .. } => {
                township_store::secret(writes, "page_token_key").await?
            }
            Store::Postgres(pool) => {
                township_store::postgres::secret(pool, "page_token_key").await?
            }
        };
        PageTokens::new(&key).context("the stored page token key")
    }

    /// Appends an event of `kind` at `time_ms` to `room` with the room's next seq, and returns
    /// it (the room's first event is 1). [`Error::SentMeanwhile`] if another server stored a
    /// message with this `client_message_id` since the caller looked: nothing is stored.
    pub async fn append(
        &self,
        room: &RoomName,
        time_ms: i64,
        kind: &Kind,
        client_message_id: &str,
    ) -> Result<u64, Error> {
        let seq: i64 = match self {
            Store::Sqlite { writes, .. } => {
                let (kind, name, text) = stored_kind(kind);
                sqlx::query_scalar(
                    "INSERT INTO events (room, seq, time_ms, kind, name, text, client_message_id) \
                     SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4, $5, $6 \
                     FROM events WHERE room = $1 \
                     RETURNING seq",
                )
                .bind(room.as_str())
                .bind(time_ms)
                .bind(kind)
                .bind(name)
                .bind(text)
                .bind(client_message_id)
                .fetch_one(writes)
                .await?
            }
            Store::Postgres(pool) => {
                let appended = append_on(pool, room, time_ms, kind, client_message_id).await;
                match appended {
                    Err(err) if is_taken_client_id(&err) => return Err(Error::SentMeanwhile),
                    appended => appended?,
                }
            }
        };
        Ok(seq_from_sql(seq))
    }

    /// The seq of the room's latest event (0 for a room with none).
    pub async fn last_seq(&self, room: &RoomName) -> Result<u64, Error> {
        let last: Option<i64> = match self {
            Store::Sqlite { reads, .. } => {
                sqlx::query_scalar("SELECT max(seq) FROM events WHERE room = $1")
                    .bind(room.as_str())
                    .fetch_one(reads)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar("SELECT last_seq FROM rooms WHERE name = $1")
                    .bind(room.as_str())
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(last.map_or(0, seq_from_sql))
    }

    /// The seq and sender of the message sent with this client id, if any.
    pub async fn sent_with(
        &self,
        room: &RoomName,
        client_message_id: &str,
    ) -> Result<Option<(u64, String)>, Error> {
        const SQL: &str = "SELECT seq, name FROM events WHERE room = $1 AND client_message_id = $2";
        let row: Option<(i64, String)> = match self {
            Store::Sqlite { writes, .. } => {
                sqlx::query_as(SQL)
                    .bind(room.as_str())
                    .bind(client_message_id)
                    .fetch_optional(writes)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as(SQL)
                    .bind(room.as_str())
                    .bind(client_message_id)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(row.map(|(seq, name)| (seq_from_sql(seq), name)))
    }

    /// Up to `limit` events of `room` after `after`, in order. On SQLite they come back as one
    /// JSON array: every row of a result is a round trip to SQLite's thread, and members
    /// catching up read thousands.
    pub async fn after(
        &self,
        room: &RoomName,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        let rows: Vec<(i64, i64, String, String, String)> = match self {
            Store::Sqlite { reads, .. } => {
                let json: String = sqlx::query_scalar(
                    "SELECT json_group_array(json_array(seq, time_ms, kind, name, text) ORDER BY seq) \
                     FROM (SELECT seq, time_ms, kind, name, text FROM events \
                           WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3)",
                )
                .bind(room.as_str())
                .bind(seq_to_sql(after))
                .bind(i64::from(limit))
                .fetch_one(reads)
                .await?;
                serde_json::from_str(&json)
                    .map_err(|err| sqlx::Error::Decode(format!("stored events: {err}").into()))?
            }
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT seq, time_ms, kind, name, text FROM events \
                     WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(room.as_str())
                .bind(seq_to_sql(after))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(seq, time_ms, kind, name, text)| Event {
                seq: seq_from_sql(seq),
                time_ms,
                kind: kind_from_stored(&kind, name, text),
            })
            .collect())
    }

    /// Every room that has events, by name, with its latest seq and, on PostgreSQL, its live
    /// members on every server (on SQLite only the server itself knows them).
    pub async fn rooms(&self) -> Result<Vec<(RoomName, u64, Option<u64>)>, Error> {
        let rows: Vec<(String, i64, Option<i64>)> = match self {
            Store::Sqlite { reads, .. } => {
                sqlx::query_as(
                    "SELECT room, max(seq), NULL FROM events GROUP BY room ORDER BY room",
                )
                .fetch_all(reads)
                .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT r.name, r.last_seq, \
                            (SELECT count(*) FROM members m WHERE m.room = r.name) \
                     FROM rooms r ORDER BY r.name",
                )
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(room, last, members)| {
                let members = members.map(|n| u64::try_from(n).unwrap_or(0));
                (RoomName::from_stored(room), seq_from_sql(last), members)
            })
            .collect())
    }
}

/// Stores an event in PostgreSQL (through a pool, or a transaction's connection) with the
/// room's next seq, taken from its row in `rooms`, which the statement holds until its
/// transaction ends; returns the seq.
pub(crate) async fn append_on<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    room: &RoomName,
    time_ms: i64,
    kind: &Kind,
    client_message_id: &str,
) -> Result<i64, sqlx::Error> {
    let (kind, name, text) = stored_kind(kind);
    sqlx::query_scalar(
        "WITH next AS ( \
             INSERT INTO rooms (name, last_seq) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET last_seq = rooms.last_seq + 1 \
             RETURNING last_seq) \
         INSERT INTO events (room, seq, time_ms, kind, name, text, client_message_id) \
         SELECT $1, last_seq, $2, $3, $4, $5, $6 FROM next \
         RETURNING seq",
    )
    .bind(room.as_str())
    .bind(time_ms)
    .bind(kind)
    .bind(name)
    .bind(text)
    .bind(client_message_id)
    .fetch_one(executor)
    .await
}

/// Whether `err` is PostgreSQL refusing a second message with one client message id in a room.
pub(crate) fn is_taken_client_id(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|err| err.constraint() == Some("events_by_client_id"))
}

/// An event's kind, name and text columns.
fn stored_kind(kind: &Kind) -> (&'static str, &str, &str) {
    match kind {
        Kind::Message { from, text } => ("message", from.as_str(), text.as_str()),
        Kind::Joined { name } => ("joined", name.as_str(), ""),
        Kind::Left { name, reason } => ("left", name.as_str(), reason.as_str()),
    }
}

/// Seqs count from 1 and stay far below 2^63 (one room would need centuries of messages).
fn seq_to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_from_sql(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn kind_from_stored(kind: &str, name: String, text: String) -> Kind {
    match kind {
        "message" => Kind::Message { from: name, text },
        "joined" => Kind::Joined { name },
        _ => Kind::Left { name, reason: text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_get_consecutive_seqs_and_read_back_exactly_in_order_and_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_dir(dir.path()).await;
        let room = RoomName::parse("lobby").unwrap();
        let texts = [
            "plain",
            "quote \" and \\ backslash",
            "line\nbreak\ttab",
            "Zoë 李 🙂",
            "[1,2]",
        ];
        let mut kinds = vec![(1_000, Kind::Joined { name: "ada".into() })];
        for (i, text) in texts.iter().enumerate() {
            let from = "ada".into();
            let text = (*text).into();
            kinds.push((2_000 + i as i64, Kind::Message { from, text }));
        }
        let (name, reason) = ("ada".into(), "idle".into());
        kinds.push((9_000, Kind::Left { name, reason }));
        let mut written = Vec::new();
        for (time_ms, kind) in kinds {
            let seq = store.append(&room, time_ms, &kind, "").await.unwrap();
            written.push(Event { seq, time_ms, kind });
        }
        let seqs: Vec<u64> = written.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<u64>>());
        assert_eq!(store.after(&room, 0, 100).await.unwrap(), written);
        assert_eq!(
            store.after(&room, 2, 3).await.unwrap(),
            written[2..5].to_vec()
        );
        assert!(store.after(&room, 7, 100).await.unwrap().is_empty());
        assert_eq!(store.last_seq(&room).await.unwrap(), 7);
        let other = RoomName::parse("other").unwrap();
        let joined = Kind::Joined { name: "bob".into() };
        assert_eq!(store.append(&other, 1, &joined, "").await.unwrap(), 1);
        assert_eq!(
            store.rooms().await.unwrap(),
            [(room, 7, None), (other, 1, None)]
        );
    }
}
