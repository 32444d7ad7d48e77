//! Rooms whose members are shared with the other chat-servers on one PostgreSQL database: a Join
//! takes its name in the database (held once per room across servers), a Send through any
//! server is checked against the database's live Joins, and each server keeps its presence
//! lease, declaring lost the servers whose leases lapsed. On SQLite (one server) the same
//! operations store the events alone, and the room's own map is the truth.

use std::time::{Duration, Instant};

use township_kit::secrets;

use super::{Member, Room, Rooms, now_ms};
use crate::{
    Error,
    event::{Event, Kind},
    store::NotSent,
    types::{MemberName, RoomName},
};

impl Rooms {
    /// Stores the Joined of `name` (whose member token hashes to `secret_hash`) and delivers
    /// it; on PostgreSQL it takes the name across servers first (NameTaken if live elsewhere).
    pub(super) async fn store_joined(
        &self,
        room: &Room,
        name: &MemberName,
        secret_hash: &str,
    ) -> Result<u64, Error> {
        let joined = Kind::Joined {
            name: name.as_str().to_owned(),
        };
        let Some(shared) = &self.shared else {
            return self.append(room, joined, "").await;
        };
        let time_ms = now_ms();
        let seq = shared.join(&room.name, name, secret_hash, time_ms).await?;
        let kind = joined;
        self.deliver(room, Event { seq, time_ms, kind }).await;
        Ok(seq)
    }

    /// Stores the Left of `member` (name key `key`) with `reason` and delivers it; on
    /// PostgreSQL it frees the name across servers, and stores nothing if the Join had ended
    /// already there (its server was declared lost meanwhile).
    pub(super) async fn store_left(
        &self,
        room: &Room,
        key: &str,
        member: Member,
        reason: &str,
    ) -> Result<Option<u64>, Error> {
        let Some(shared) = &self.shared else {
            let left = Kind::Left {
                name: member.name,
                reason: reason.to_owned(),
            };
            return self.append(room, left, "").await.map(Some);
        };
        let time_ms = now_ms();
        let left = shared
            .leave(&room.name, key, &member.secret_hash, reason, time_ms)
            .await?;
        let Some((seq, name)) = left else {
            return Ok(None);
        };
        let reason = reason.to_owned();
        let kind = Kind::Left { name, reason };
        self.deliver(room, Event { seq, time_ms, kind }).await;
        Ok(Some(seq))
    }

    /// [`Rooms::send`] on PostgreSQL: through any server, checked against the live Joins of
    /// every server in the statement that stores it.
    pub(super) async fn send_shared(
        &self,
        room: &RoomName,
        name: &MemberName,
        member_token: &str,
        text: &str,
        client_message_id: &str,
    ) -> Result<u64, Error> {
        let Some(shared) = &self.shared else {
            return Err(Error::Internal("send_shared without shared members"));
        };
        if let Some(seq) = self.sent_before(room, name, client_message_id).await? {
            return Ok(seq);
        }
        let token_hash = secrets::token_hash(member_token);
        let time_ms = now_ms();
        let sent = shared
            .send(
                room,
                name.key(),
                &token_hash,
                text,
                client_message_id,
                time_ms,
            )
            .await;
        let (seq, from) = match sent {
            Ok(Ok(sent)) => sent,
            Ok(Err(NotSent::NotYourJoin)) => return Err(Error::NotYourJoin),
            Ok(Err(NotSent::NotJoined)) => {
                return Err(Error::NotJoined {
                    name: name.as_str().to_owned(),
                    room: room.as_str().to_owned(),
                });
            }
            // Stored meanwhile through another server (the sender's retry raced the original).
            Err(Error::SentMeanwhile) => {
                let sent = self.sent_before(room, name, client_message_id).await?;
                return sent.ok_or(Error::Internal("a client_message_id both taken and not"));
            }
            Err(err) => return Err(err),
        };
        let Some(local) = self.rooms().get(room).cloned() else {
            return Ok(seq);
        };
        let text = text.to_owned();
        let kind = Kind::Message { from, text };
        self.deliver(&local, Event { seq, time_ms, kind }).await;
        let mut state = local.state.lock().await;
        if let Some(member) = state.members.get_mut(name.key())
            && member.secret_hash == token_hash
        {
            member.last_active = Instant::now();
        }
        Ok(seq)
    }

    /// Renews this server's presence lease for `lease` more, and declares lost the servers
    /// whose leases lapsed (their members' Lefts are stored and delivered). If this server had
    /// been declared lost itself (it could not renew in time: frozen, or cut off from the
    /// database), its members' Joins are gone from the database: they are forgotten here too.
    pub async fn keep_presence(&self, lease: Duration) -> Result<(), Error> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        if !shared.renew(lease).await? {
            tracing::warn!(
                "this server was declared lost (its lease lapsed): its members' Joins ended"
            );
            self.forget_members().await;
        }
        for room in shared.sweep(now_ms()).await? {
            self.catch_up(&room).await;
        }
        Ok(())
    }

    /// Forgets every member of this server without storing anything, and retires every room
    /// from memory: once the last task holding a room lets go of it, its members' streams end
    /// (with their Lefts from the server that declared this one lost), and their clients join
    /// again.
    async fn forget_members(&self) {
        let rooms: Vec<_> = self.rooms().values().cloned().collect();
        for room in rooms {
            let mut state = room.state.lock().await;
            state.members.clear();
            self.retire(&room, &mut state);
        }
    }
}
