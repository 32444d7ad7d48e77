//! Live Joins across chat-servers on one PostgreSQL database: who holds which name in which
//! room (with the hash of their member token, so they may send through any server), and which
//! servers are alive. Each server holds a presence lease that it renews every few seconds, on
//! the database's clock; a server whose lease lapsed (killed, frozen, cut off) is lost, and the
//! first server to notice deletes it with its members and stores each member's Left, in one
//! transaction, so exactly once however many servers notice.
//!
//! Member tokens are compared as their SHA-256 hashes, in the statement that needs them: the
//! tokens are random (244 bits), so the time a hash comparison takes tells nothing that helps to
//! forge one.

use std::time::Duration;

use township_store::{PgPool, sqlx};

use super::{append_on, is_taken_client_id, seq_from_sql};
use crate::{
    Error,
    event::Kind,
    types::{MemberName, RoomName},
};

/// The reason of the Left stored for each member of a lost server.
pub const SERVER_LOST: &str = "server lost";

/// This server's view of the shared members: the pool and its own id.
#[derive(Clone)]
pub struct SharedMembers {
    pool: PgPool,
    server: String,
}

/// Why a send through the shared members was not stored.
pub enum NotSent {
    /// No live Join of the name in the room.
    NotJoined,
    /// The name's live Join has another token.
    NotYourJoin,
}

impl SharedMembers {
    /// Registers this server (a fresh id each start) with a lease of `lease`.
    pub async fn register(pool: PgPool, lease: Duration) -> Result<Self, Error> {
        let members = Self {
            pool,
            server: township_kit::secrets::new_token(),
        };
        members.insert_server(lease).await?;
        Ok(members)
    }

    async fn insert_server(&self, lease: Duration) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO servers (id, lease_until) \
             VALUES ($1, clock_timestamp() + make_interval(secs => $2))",
        )
        .bind(&self.server)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Renews this server's lease for `lease` more. `false` if the server had been declared
    /// lost meanwhile (its members' Lefts are stored): it is registered again, with no members.
    pub async fn renew(&self, lease: Duration) -> Result<bool, Error> {
        let renewed = sqlx::query(
            "UPDATE servers SET lease_until = clock_timestamp() + make_interval(secs => $2) \
             WHERE id = $1",
        )
        .bind(&self.server)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if renewed == 0 {
            self.insert_server(lease).await?;
        }
        Ok(renewed > 0)
    }

    /// Declares lost every other server whose lease lapsed: deletes it and its members and
    /// stores a Left ("server lost") for each, at `time_ms`, in one transaction. Returns the
    /// rooms that got a Left.
    pub async fn sweep(&self, time_ms: i64) -> Result<Vec<RoomName>, Error> {
        let mut tx = self.pool.begin().await?;
        let lost: Vec<(String, String)> = sqlx::query_as(
            "WITH lost AS ( \
                 DELETE FROM servers WHERE lease_until < clock_timestamp() AND id <> $1 \
                 RETURNING id) \
             DELETE FROM members WHERE server IN (SELECT id FROM lost) \
             RETURNING room, name",
        )
        .bind(&self.server)
        .fetch_all(&mut *tx)
        .await?;
        let mut rooms = Vec::new();
        for (room, name) in lost {
            let room = RoomName::from_stored(room);
            let left = Kind::Left {
                name,
                reason: SERVER_LOST.to_owned(),
            };
            append_on(&mut *tx, &room, time_ms, &left, "").await?;
            rooms.push(room);
        }
        tx.commit().await?;
        rooms.sort();
        rooms.dedup();
        Ok(rooms)
    }

    /// Takes `name` in `room` for a Join of this server whose token hashes to `token_hash`, and
    /// stores its Joined at `time_ms`, in one transaction: the Joined's seq. NameTaken if the
    /// name is live in the room on any server.
    pub async fn join(
        &self,
        room: &RoomName,
        name: &MemberName,
        token_hash: &str,
        time_ms: i64,
    ) -> Result<u64, Error> {
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query(
            "INSERT INTO members (room, name_key, name, token_hash, server) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(room.as_str())
        .bind(name.key())
        .bind(name.as_str())
        .bind(token_hash)
        .bind(&self.server)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            return Err(Error::NameTaken(name.as_str().to_owned()));
        }
        let joined = Kind::Joined {
            name: name.as_str().to_owned(),
        };
        let seq = append_on(&mut *tx, room, time_ms, &joined, "").await?;
        tx.commit().await?;
        Ok(seq_from_sql(seq))
    }

    /// Ends the Join of `name_key` in `room` whose token hashes to `token_hash` and stores its
    /// Left with `reason` at `time_ms`, in one transaction: the Left's seq, or `None` if that
    /// Join had ended already (its server was declared lost, say).
    pub async fn leave(
        &self,
        room: &RoomName,
        name_key: &str,
        token_hash: &str,
        reason: &str,
        time_ms: i64,
    ) -> Result<Option<(u64, String)>, Error> {
        let mut tx = self.pool.begin().await?;
        let name: Option<String> = sqlx::query_scalar(
            "DELETE FROM members WHERE room = $1 AND name_key = $2 AND token_hash = $3 \
             RETURNING name",
        )
        .bind(room.as_str())
        .bind(name_key)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = name else {
            return Ok(None);
        };
        let left = Kind::Left {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let seq = append_on(&mut *tx, room, time_ms, &left, "").await?;
        tx.commit().await?;
        Ok(Some((seq_from_sql(seq), name)))
    }

    /// Stores `text` from the live member `name_key` of `room` whose token hashes to
    /// `token_hash`, at `time_ms`: its seq and the name as spelled at join. One statement checks
    /// the Join (holding its row, so a Leave in progress is waited for) and appends.
    pub async fn send(
        &self,
        room: &RoomName,
        name_key: &str,
        token_hash: &str,
        text: &str,
        client_message_id: &str,
        time_ms: i64,
    ) -> Result<Result<(u64, String), NotSent>, Error> {
        let sent: Result<Option<(i64, String)>, sqlx::Error> = sqlx::query_as(
            "WITH sender AS ( \
                 SELECT name FROM members WHERE room = $1 AND name_key = $2 AND token_hash = $3 \
                 FOR SHARE), \
             next AS ( \
                 INSERT INTO rooms (name, last_seq) SELECT $1, 1 FROM sender \
                 ON CONFLICT (name) DO UPDATE SET last_seq = rooms.last_seq + 1 \
                 RETURNING last_seq) \
             INSERT INTO events (room, seq, time_ms, kind, name, text, client_message_id) \
             SELECT $1, next.last_seq, $4, 'message', sender.name, $5, $6 FROM next, sender \
             RETURNING seq, name",
        )
        .bind(room.as_str())
        .bind(name_key)
        .bind(token_hash)
        .bind(time_ms)
        .bind(text)
        .bind(client_message_id)
        .fetch_optional(&self.pool)
        .await;
        match sent {
            Ok(Some((seq, name))) => Ok(Ok((seq_from_sql(seq), name))),
            Ok(None) => {
                let live: Option<String> = sqlx::query_scalar(
                    "SELECT name FROM members WHERE room = $1 AND name_key = $2",
                )
                .bind(room.as_str())
                .bind(name_key)
                .fetch_optional(&self.pool)
                .await?;
                Ok(Err(match live {
                    Some(_) => NotSent::NotYourJoin,
                    None => NotSent::NotJoined,
                }))
            }
            Err(err) if is_taken_client_id(&err) => Err(Error::SentMeanwhile),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes this server's row (its members have left): at a graceful shutdown.
    pub async fn deregister(&self) -> Result<(), Error> {
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(&self.server)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
