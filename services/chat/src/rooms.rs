//! The rooms: who is joined where, and the one order of each room's events.
//!
//! A room is in memory only while it has members: the last one's Left retires it (under its
//! lock, so a Join waiting for that lock sees it retired and takes the room afresh), and its
//! history stays on disk. A new room (one with no events yet) counts against its creator's
//! quota of rooms per minute, checked as its first Join goes through.
//!
//! Each room appends under its own lock: the event is committed to the store, which gives it
//! the room's next seq, and only then broadcast to the room's live members. So every member
//! sees the same events in the same order, and everything anyone saw is on disk. The broadcast
//! is a bounded ring: a member that falls behind is told it lagged and catches up from the
//! store, so a slow reader never slows the room and never silently misses an event.
//!
//! Events reach a room's ring in seq order, each once: the room remembers the last seq it
//! delivered. Where several chat-servers share one database, another server's events come in
//! between: an append that finds a gap before its own event, and every wake-up from the
//! database ([`crate::fanout`]), read what is missing from the store first.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{Mutex as AsyncMutex, broadcast};
use township_kit::secrets;

mod delivery;
mod shared;

use crate::{
    Error,
    event::{Event, Kind},
    store::{SharedMembers, Store},
    types::{MemberName, RoomName},
};

/// Events each room keeps for live members before a slow one must catch up from the store.
pub const LIVE_BUFFER: usize = 1024;

struct Member {
    token: u64,
    /// The hash of the member token its Join's Welcome carried (what Send must present).
    secret_hash: String,
    /// The name as spelled at join (messages show it so, whatever the sender's spelling).
    name: String,
    last_active: Instant,
}

#[derive(Default)]
struct RoomState {
    /// Live members by name key.
    members: HashMap<String, Member>,
    /// Its last member left and it is no longer in the map: take the room afresh.
    retired: bool,
}

struct Room {
    name: RoomName,
    state: AsyncMutex<RoomState>,
    live: broadcast::Sender<Arc<Event>>,
    /// The seq of the last event handed to `live`; `None` until the room's first Join has read
    /// where the room is.
    delivered: AsyncMutex<Option<u64>>,
}

/// A member's place in a room, from Join until its Left. A clone names the same membership (for
/// the task that stores its Left).
#[derive(Clone)]
pub struct Membership {
    /// The room.
    pub room: RoomName,
    /// The member's name.
    pub name: MemberName,
    token: u64,
}

/// A Join that went through: the membership, its member token (for the Welcome; the room keeps
/// only its hash) and the room's live events from its Joined on.
pub struct Joined {
    /// The member's place.
    pub membership: Membership,
    /// What Send must present, told to the member once.
    pub member_token: String,
    /// The room's live events.
    pub live: Live,
}

/// The room's live events from the moment of joining (the Joined event included).
pub type Live = broadcast::Receiver<Arc<Event>>;

/// Every room of the server.
pub struct Rooms {
    store: Store,
    /// On PostgreSQL, every server's live Joins: names, tokens and presence (see `shared`).
    shared: Option<SharedMembers>,
    rooms: Mutex<HashMap<RoomName, Arc<Room>>>,
    tokens: AtomicU64,
}

impl Rooms {
    /// Rooms backed by `store`, this server's alone (SQLite).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            shared: None,
            rooms: Mutex::new(HashMap::new()),
            tokens: AtomicU64::new(1),
        }
    }

    /// Rooms backed by `store` whose members are `shared` with the other servers on its
    /// database (PostgreSQL).
    pub fn shared(store: Store, shared: SharedMembers) -> Self {
        Self {
            shared: Some(shared),
            ..Self::new(store)
        }
    }

    /// The transcripts.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, Arc<Room>>> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn room(&self, name: &RoomName) -> Arc<Room> {
        self.rooms()
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(Room {
                    name: name.clone(),
                    state: AsyncMutex::new(RoomState::default()),
                    live: broadcast::channel(LIVE_BUFFER).0,
                    delivered: AsyncMutex::new(None),
                })
            })
            .clone()
    }

    /// Joins `name` to `room` (created on first join, which `new_room` must allow): appends
    /// Joined and returns the membership, its member token and its live events, from that
    /// Joined on. ALREADY_EXISTS if the name is live there; INVALID_ARGUMENT if `after_seq` is
    /// beyond the room's last event.
    pub async fn join(
        &self,
        room: RoomName,
        name: MemberName,
        after_seq: u64,
        new_room: impl FnOnce() -> Result<(), Error>,
    ) -> Result<Joined, Error> {
        let mut shared = self.room(&room);
        let mut state = shared.state.lock().await;
        while state.retired {
            drop(state);
            shared = self.room(&room);
            state = shared.state.lock().await;
        }
        let joined = self
            .join_locked(&shared, &mut state, room, name, after_seq, new_room)
            .await;
        // A Join that failed leaves no empty room behind in memory.
        if joined.is_err() && state.members.is_empty() {
            self.retire(&shared, &mut state);
        }
        joined
    }

    /// [`Rooms::join`] once the room's lock is held.
    async fn join_locked(
        &self,
        shared: &Room,
        state: &mut RoomState,
        room: RoomName,
        name: MemberName,
        after_seq: u64,
        new_room: impl FnOnce() -> Result<(), Error>,
    ) -> Result<Joined, Error> {
        if state.members.contains_key(name.key()) {
            return Err(Error::NameTaken(name.as_str().to_owned()));
        }
        let last = self.store.last_seq(&room).await?;
        shared.delivered.lock().await.get_or_insert(last);
        if after_seq > last {
            return Err(Error::invalid(
                "after_seq",
                format!("the room's last event is {last}: resume from a seq you received"),
            ));
        }
        if last == 0 {
            new_room()?;
        }
        let live = shared.live.subscribe();
        let member_token = secrets::new_token();
        let secret_hash = secrets::token_hash(&member_token);
        self.store_joined(shared, &name, &secret_hash).await?;
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        state.members.insert(
            name.key().to_owned(),
            Member {
                token,
                secret_hash,
                name: name.as_str().to_owned(),
                last_active: Instant::now(),
            },
        );
        Ok(Joined {
            membership: Membership { room, name, token },
            member_token,
            live,
        })
    }

    /// Appends a message from a live member, who presents their Join's `member_token`, and
    /// returns its seq; a retry with a `client_message_id` already used in the room returns the
    /// original seq.
    pub async fn send(
        &self,
        room: &RoomName,
        name: &MemberName,
        member_token: &str,
        text: &str,
        client_message_id: &str,
    ) -> Result<u64, Error> {
        if self.shared.is_some() {
            return self
                .send_shared(room, name, member_token, text, client_message_id)
                .await;
        }
        let not_joined = || Error::NotJoined {
            name: name.as_str().to_owned(),
            room: room.as_str().to_owned(),
        };
        let shared = self.rooms().get(room).cloned().ok_or_else(not_joined)?;
        let mut state = shared.state.lock().await;
        let from = match state.members.get(name.key()) {
            Some(member) if secrets::token_matches(member_token, &member.secret_hash) => {
                member.name.clone()
            }
            Some(_) => return Err(Error::NotYourJoin),
            None => return Err(not_joined()),
        };
        if let Some(seq) = self.sent_before(room, name, client_message_id).await? {
            return Ok(seq);
        }
        let message = Kind::Message {
            from,
            text: text.to_owned(),
        };
        let seq = self.append(&shared, message, client_message_id).await?;
        if let Some(member) = state.members.get_mut(name.key()) {
            member.last_active = Instant::now();
        }
        Ok(seq)
    }

    /// The seq of the message `name` sent to `room` with `client_message_id` (none for an empty
    /// id); IdTaken if another member sent one with it.
    async fn sent_before(
        &self,
        room: &RoomName,
        name: &MemberName,
        client_message_id: &str,
    ) -> Result<Option<u64>, Error> {
        if client_message_id.is_empty() {
            return Ok(None);
        }
        match self.store.sent_with(room, client_message_id).await? {
            Some((seq, sender)) if sender.to_lowercase() == name.key() => Ok(Some(seq)),
            Some(_) => Err(Error::IdTaken),
            None => Ok(None),
        }
    }

    /// Ends a membership: appends Left with `reason` and returns its seq; the last member's
    /// Left retires the room from memory. A membership already replaced (the name rejoined)
    /// changes nothing (`None`).
    pub async fn leave(&self, membership: &Membership, reason: &str) -> Result<Option<u64>, Error> {
        let Some(shared) = self.rooms().get(&membership.room).cloned() else {
            return Ok(None);
        };
        let mut state = shared.state.lock().await;
        let key = membership.name.key();
        if state.members.get(key).map(|m| m.token) != Some(membership.token) {
            return Ok(None);
        }
        let Some(member) = state.members.remove(key) else {
            return Ok(None);
        };
        let seq = self.store_left(&shared, key, member, reason).await;
        if state.members.is_empty() {
            self.retire(&shared, &mut state);
        }
        seq
    }

    /// Drops an empty room from memory (its history stays in the store); the caller holds its
    /// lock, so whoever waits for it next sees it retired.
    fn retire(&self, room: &Arc<Room>, state: &mut RoomState) {
        state.retired = true;
        let mut rooms = self.rooms();
        if rooms
            .get(&room.name)
            .is_some_and(|kept| Arc::ptr_eq(kept, room))
        {
            rooms.remove(&room.name);
        }
    }

    /// How many rooms are in memory (those with live members).
    pub fn in_memory(&self) -> usize {
        self.rooms().len()
    }

    /// Appends a Left with `reason` for every member still live, room by room: the last word on
    /// shutdown for members whose streams could not end by themselves (a client that stopped
    /// reading holds its stream open until the server cuts it).
    pub async fn leave_everyone(&self, reason: &str) {
        let rooms: Vec<Arc<Room>> = self.rooms().values().cloned().collect();
        for room in rooms {
            let mut state = room.state.lock().await;
            let leaving: Vec<(String, Member)> = state.members.drain().collect();
            for (key, member) in leaving {
                if let Err(err) = self.store_left(&room, &key, member, reason).await {
                    tracing::error!(error = %err, room = room.name.as_str(), "cannot record a leave");
                }
            }
        }
        if let Some(shared) = &self.shared
            && let Err(err) = shared.deregister().await
        {
            tracing::warn!(error = %err, "cannot end this server's presence");
        }
    }

    /// When the member last joined or sent (`None` once the membership ended).
    pub async fn last_active(&self, membership: &Membership) -> Option<Instant> {
        let shared = self.rooms().get(&membership.room).cloned()?;
        let state = shared.state.lock().await;
        state
            .members
            .get(membership.name.key())
            .filter(|m| m.token == membership.token)
            .map(|m| m.last_active)
    }

    /// Every room with events: name, live members, latest seq.
    pub async fn list(&self) -> Result<Vec<(RoomName, u32, u64)>, Error> {
        let stored = self.store.rooms().await?;
        let mut listed = Vec::with_capacity(stored.len());
        for (name, last_seq, everywhere) in stored {
            let here = self.rooms().get(&name).cloned();
            let members = match (everywhere, here) {
                (Some(everywhere), _) => everywhere,
                (None, Some(room)) => room.state.lock().await.members.len() as u64,
                (None, None) => 0,
            };
            listed.push((name, u32::try_from(members).unwrap_or(u32::MAX), last_seq));
        }
        Ok(listed)
    }

    /// Stores an event of `kind` in `room` (the caller holds the room's lock, so this server's
    /// events are delivered in the order of their seqs), then delivers it to the room's live
    /// members.
    async fn append(&self, room: &Room, kind: Kind, client_message_id: &str) -> Result<u64, Error> {
        let time_ms = now_ms();
        let seq = self
            .store
            .append(&room.name, time_ms, &kind, client_message_id)
            .await?;
        self.deliver(room, Event { seq, time_ms, kind }).await;
        Ok(seq)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn everyone_still_live_at_shutdown_gets_a_left_and_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let rooms = Rooms::new(Store::in_dir(dir.path()).await);
        let room = RoomName::parse("lobby").unwrap();
        for name in ["ada", "bob"] {
            let member = MemberName::parse(name).unwrap();
            rooms
                .join(room.clone(), member, 0, || Ok(()))
                .await
                .unwrap();
        }
        rooms.leave_everyone("server shutdown").await;
        let events = rooms.store().after(&room, 2, 10).await.unwrap();
        let mut left: Vec<(String, String)> = events
            .into_iter()
            .map(|event| match event.kind {
                Kind::Left { name, reason } => (name, reason),
                other => panic!("not a Left: {other:?}"),
            })
            .collect();
        left.sort();
        let shutdown = |name: &str| (name.to_owned(), "server shutdown".to_owned());
        assert_eq!(left, [shutdown("ada"), shutdown("bob")]);
        assert_eq!(rooms.list().await.unwrap(), [(room, 0, 4)]);
    }

    async fn rooms() -> (tempfile::TempDir, Arc<Rooms>) {
        let dir = tempfile::tempdir().unwrap();
        let rooms = Arc::new(Rooms::new(Store::in_dir(dir.path()).await));
        (dir, rooms)
    }

    fn named(name: &str) -> MemberName {
        MemberName::parse(name).unwrap()
    }

    #[tokio::test]
    async fn an_empty_room_leaves_memory_and_keeps_its_history() {
        let (_dir, rooms) = rooms().await;
        let room = RoomName::parse("brief").unwrap();
        let ada = rooms
            .join(room.clone(), named("ada"), 0, || Ok(()))
            .await
            .unwrap();
        assert_eq!(rooms.in_memory(), 1);
        rooms.leave(&ada.membership, "left").await.unwrap();
        assert_eq!(rooms.in_memory(), 0, "the last leave drops the room");
        let again = rooms
            .join(room.clone(), named("bob"), 0, || Ok(()))
            .await
            .unwrap();
        rooms.leave(&again.membership, "left").await.unwrap();
        let seqs: Vec<u64> = rooms
            .store()
            .after(&room, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4], "the history goes on where it was");

        // A Join that fails leaves nothing behind either.
        let refused = rooms.join(
            RoomName::parse("never").unwrap(),
            named("eve"),
            9,
            || Ok(()),
        );
        assert!(refused.await.is_err());
        assert_eq!(rooms.in_memory(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn joins_racing_the_last_leave_keep_one_sequence() {
        let (_dir, rooms) = rooms().await;
        let room = RoomName::parse("race").unwrap();
        for round in 0..50 {
            let first = rooms
                .join(room.clone(), named("ada"), 0, || Ok(()))
                .await
                .unwrap();
            let leaving = {
                let rooms = rooms.clone();
                tokio::spawn(async move { rooms.leave(&first.membership, "left").await })
            };
            let joining = {
                let (rooms, room) = (rooms.clone(), room.clone());
                tokio::spawn(async move {
                    rooms
                        .join(room, named(&format!("bob{round}")), 0, || Ok(()))
                        .await
                })
            };
            leaving.await.unwrap().unwrap();
            let bob = joining.await.unwrap().unwrap();
            rooms.leave(&bob.membership, "left").await.unwrap();
        }
        let seqs: Vec<u64> = rooms
            .store()
            .after(&room, 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=200).collect::<Vec<u64>>(),
            "no seq twice, none missing"
        );
        assert_eq!(rooms.in_memory(), 0);
    }

    #[tokio::test]
    async fn a_new_room_must_be_allowed_and_an_old_one_needs_no_allowance() {
        let (_dir, rooms) = rooms().await;
        let room = RoomName::parse("fresh").unwrap();
        let refuse = || Err(Error::TooManyRooms(std::time::Duration::from_secs(1)));
        let refused = rooms.join(room.clone(), named("ada"), 0, refuse).await;
        assert!(matches!(refused, Err(Error::TooManyRooms(_))));
        assert_eq!(rooms.in_memory(), 0);
        let ada = rooms
            .join(room.clone(), named("ada"), 0, || Ok(()))
            .await
            .unwrap();
        rooms.leave(&ada.membership, "left").await.unwrap();
        rooms
            .join(room, named("bob"), 0, refuse)
            .await
            .expect("an old room");
    }
}
