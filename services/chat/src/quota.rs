//! How many new rooms one caller may create per minute: a room costs memory while it has
//! members and a row of history for ever, so a caller who invents room names in a loop is
//! refused (RESOURCE_EXHAUSTED with a RetryInfo) instead of filling the server. Joining a room
//! that exists costs nothing here.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::Error;

/// The window a caller's count of new rooms covers.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Each caller's new rooms in their current window (a fixed window per caller, from their first
/// new room in it).
pub struct RoomQuota {
    per_window: u32,
    callers: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RoomQuota {
    /// At most `per_window` new rooms per caller per [`WINDOW`].
    pub fn new(per_window: u32) -> Self {
        Self {
            per_window,
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one new room for `caller`, or refuses with how long until they may create one.
    pub fn take(&self, caller: &str) -> Result<(), Error> {
        let now = Instant::now();
        let mut callers = self
            .callers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Windows that are over are forgotten, so the map holds only this minute's creators.
        callers.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
        let (since, count) = callers.entry(caller.to_owned()).or_insert((now, 0));
        if *count >= self.per_window {
            return Err(Error::TooManyRooms(
                WINDOW.saturating_sub(now.duration_since(*since)),
            ));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_own_count_of_new_rooms() {
        let quota = RoomQuota::new(2);
        quota.take("ip:10.0.0.1").unwrap();
        quota.take("ip:10.0.0.1").unwrap();
        match quota.take("ip:10.0.0.1") {
            Err(Error::TooManyRooms(wait)) => assert!(wait > Duration::ZERO && wait <= WINDOW),
            other => panic!("refused with a wait: {other:?}"),
        }
        quota.take("ip:10.0.0.2").expect("another caller");
    }
}
