//! Transcripts on disk: every room's events in one SQLite file (`chat.db` in the data directory,
//! WAL, `synchronous = FULL`), append-only. An event is committed before anyone hears of it.
//! Checkpoints run in the background, so no message waits for one.

use std::{path::Path, time::Duration};

use anyhow::Context;
use township_kit::paging::PageTokens;
use township_store::{
    Checkpoints, Durability, Migration, Pools, SqlitePool,
    sqlx::{self, Row},
};

use crate::{
    Error,
    event::{Event, Kind},
    types::RoomName,
};

/// The chat's migrations, in order (see township_store::Migration).
const SCHEMA: &[Migration] = &[Migration {
    version: 1,
    description: "baseline",
    sql: include_str!("../migrations/0001_baseline.sql"),
}];

/// How often the WAL is copied back into the database, on a reading connection. SQLite's default,
/// a checkpoint by the commit that fills 1,000 pages, made one message in several hundred wait
/// for it (milliseconds of writes and an fsync of the database file) before reaching anyone.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Events read per query when catching a member up.
pub const CATCH_UP_BATCH: u32 = 500;

/// Every room's transcript.
#[derive(Clone)]
pub struct Store {
    writes: SqlitePool,
    reads: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) `<data_dir>/chat.db`.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let Pools { writes, reads } = township_store::open_pools(
            data_dir,
            "chat.db",
            Durability::Full,
            Checkpoints::InBackground {
                every: CHECKPOINT_INTERVAL,
            },
            4,
            SCHEMA,
        )
        .await
        .context("cannot open the transcripts")?;
        Ok(Self { writes, reads })
    }

    /// Signs and checks GetTranscript's page tokens with the key kept in the transcripts
    /// (created with them), so that tokens outlive a restart.
    pub async fn page_tokens(&self) -> anyhow::Result<PageTokens> {
        let key = township_store::secret(&self.writes, "page_token_key").await?;
        PageTokens::new(&key).context("the stored page token key")
    }

    /// Appends `event` to `room` (its seq must be the next one; the caller holds the room).
    pub async fn append(
        &self,
        room: &RoomName,
        event: &Event,
        client_message_id: &str,
    ) -> Result<(), Error> {
        let (kind, name, text) = match &event.kind {
            Kind::Message { from, text } => ("message", from.as_str(), text.as_str()),
            Kind::Joined { name } => ("joined", name.as_str(), ""),
            Kind::Left { name, reason } => ("left", name.as_str(), reason.as_str()),
        };
        sqlx::query(
            "INSERT INTO events (room, seq, time_ms, kind, name, text, client_message_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(room.as_str())
        .bind(seq_to_sql(event.seq))
        .bind(event.time_ms)
        .bind(kind)
        .bind(name)
        .bind(text)
        .bind(client_message_id)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    /// The seq of the room's latest event (0 for a room with none).
    pub async fn last_seq(&self, room: &RoomName) -> Result<u64, Error> {
        let last: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM events WHERE room = ?")
            .bind(room.as_str())
            .fetch_one(&self.reads)
            .await?;
        Ok(last.map_or(0, seq_from_sql))
    }

    /// The seq and sender of the message sent with this client id, if any.
    pub async fn sent_with(
        &self,
        room: &RoomName,
        client_message_id: &str,
    ) -> Result<Option<(u64, String)>, Error> {
        let row =
            sqlx::query("SELECT seq, name FROM events WHERE room = ? AND client_message_id = ?")
                .bind(room.as_str())
                .bind(client_message_id)
                .fetch_optional(&self.writes)
                .await?;
        row.map(|row| Ok((seq_from_sql(row.try_get("seq")?), row.try_get("name")?)))
            .transpose()
            .map_err(|err: sqlx::Error| Error::from(err))
    }

    /// Up to `limit` events of `room` after `after`, in order. They come back from SQLite as one
    /// JSON array: every row of a result is a round trip to SQLite's thread, and members catching
    /// up read thousands.
    pub async fn after(
        &self,
        room: &RoomName,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        let json: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(seq, time_ms, kind, name, text) ORDER BY seq) \
             FROM (SELECT seq, time_ms, kind, name, text FROM events \
                   WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?)",
        )
        .bind(room.as_str())
        .bind(seq_to_sql(after))
        .bind(i64::from(limit))
        .fetch_one(&self.reads)
        .await?;
        let rows: Vec<(i64, i64, String, String, String)> = serde_json::from_str(&json)
            .map_err(|err| sqlx::Error::Decode(format!("stored events: {err}").into()))?;
        Ok(rows
            .into_iter()
            .map(|(seq, time_ms, kind, name, text)| Event {
                seq: seq_from_sql(seq),
                time_ms,
                kind: kind_from_stored(&kind, name, text),
            })
            .collect())
    }

    /// Every room that has events, with its latest seq, by name.
    pub async fn rooms(&self) -> Result<Vec<(RoomName, u64)>, Error> {
        let rows =
            sqlx::query("SELECT room, max(seq) AS last FROM events GROUP BY room ORDER BY room")
                .fetch_all(&self.reads)
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    RoomName::from_stored(row.try_get("room")?),
                    seq_from_sql(row.try_get("last")?),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
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
    async fn events_read_back_exactly_in_order_and_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let room = RoomName::parse("lobby").unwrap();
        let texts = [
            "plain",
            "quote \" and \\ backslash",
            "line\nbreak\ttab",
            "Zoë 李 🙂",
            "[1,2]",
        ];
        let mut written = vec![Event {
            seq: 1,
            time_ms: 1_000,
            kind: Kind::Joined { name: "ada".into() },
        }];
        for (i, text) in texts.iter().enumerate() {
            written.push(Event {
                seq: i as u64 + 2,
                time_ms: 2_000 + i as i64,
                kind: Kind::Message {
                    from: "ada".into(),
                    text: (*text).into(),
                },
            });
        }
        written.push(Event {
            seq: 7,
            time_ms: 9_000,
            kind: Kind::Left {
                name: "ada".into(),
                reason: "idle".into(),
            },
        });
        for event in &written {
            store.append(&room, event, "").await.unwrap();
        }
        assert_eq!(store.after(&room, 0, 100).await.unwrap(), written);
        assert_eq!(
            store.after(&room, 2, 3).await.unwrap(),
            written[2..5].to_vec()
        );
        assert!(store.after(&room, 7, 100).await.unwrap().is_empty());
        assert_eq!(store.last_seq(&room).await.unwrap(), 7);
    }
}
