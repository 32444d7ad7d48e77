//! How a room's events reach its live members: in seq order, each once, whichever server
//! stored them. The room remembers the last seq it delivered; an event this server just stored
//! goes straight to the ring when it is the next one, and otherwise (another server's events came
//! in between) after what is missing, read from the store. A wake-up from the database
//! ([`crate::fanout`]) reads the same way.

use std::sync::Arc;

use super::{Room, Rooms};
use crate::{event::Event, store::CATCH_UP_BATCH, types::RoomName};

impl Rooms {
    /// Hands `event`, just stored, to the room's live members, after any events before it that
    /// another server stored and this room has not delivered yet (read from the store). No live
    /// member is not an error: the event is in the transcript.
    pub(super) async fn deliver(&self, room: &Room, event: Event) {
        let mut delivered = room.delivered.lock().await;
        if let Some(last) = *delivered {
            if event.seq <= last {
                return;
            }
            if event.seq > last + 1 {
                let caught_up = self.catch_up_locked(room, last).await;
                if caught_up >= event.seq {
                    *delivered = Some(caught_up);
                    return;
                }
            }
        }
        *delivered = Some(event.seq);
        let _ = room.live.send(Arc::new(event));
    }

    /// Hands the live members of `room` (if it is in memory) every stored event they have not
    /// been given: after a wake-up from the database.
    pub async fn catch_up(&self, room: &RoomName) {
        let Some(room) = self.rooms().get(room).cloned() else {
            return;
        };
        let mut delivered = room.delivered.lock().await;
        if let Some(last) = *delivered {
            *delivered = Some(self.catch_up_locked(&room, last).await);
        }
    }

    /// [`Rooms::catch_up`] for every room in memory: after the wake-ups may have been missed.
    pub async fn catch_up_all(&self) {
        let names: Vec<RoomName> = self.rooms().keys().cloned().collect();
        for name in names {
            self.catch_up(&name).await;
        }
    }

    /// Delivers the stored events of `room` after `last`, and returns the last seq delivered.
    /// A failed read stops there: the members' feeds find the gap and read it themselves.
    async fn catch_up_locked(&self, room: &Room, mut last: u64) -> u64 {
        loop {
            match self.store.after(&room.name, last, CATCH_UP_BATCH).await {
                Ok(batch) if batch.is_empty() => return last,
                Ok(batch) => {
                    for event in batch {
                        last = event.seq;
                        let _ = room.live.send(Arc::new(event));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, room = room.name.as_str(), "cannot catch up");
                    return last;
                }
            }
        }
    }
}
