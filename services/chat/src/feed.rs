//! One member's Join stream: the Welcome with the member token, the stored transcript after
//! `after_seq`, then the room's live events read straight from the room's broadcast ring. The
//! connection's stream task polls it, so a live event costs each member one poll, not a task, a
//! channel and a second task. On shutdown or when the member goes idle it stores the member's
//! Left, hands out everything up to and including it (so the member learns why), and ends;
//! dropped (the client went away), it stores the Left in the background.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    task::JoinHandle,
    time::{Instant, Sleep},
};
use tokio_stream::{
    Stream,
    wrappers::{BroadcastStream, errors::BroadcastStreamRecvError},
};
use tonic::Status;
use township_kit::Shutdown;
use township_proto::chat::v1 as pb;

use crate::{
    Error,
    event::{Event, Kind},
    rooms::{Joined, Membership, Rooms},
    store::CATCH_UP_BATCH,
    types::RoomName,
};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a member's stream ended (the Left event's reason).
type Reason = &'static str;

/// A member's events, in seq order with no gap and no duplicate, as a gRPC response stream.
pub struct Feed {
    rooms: Arc<Rooms>,
    room: RoomName,
    /// The first message, until it is handed out.
    welcome: Option<pb::ChatEvent>,
    /// `None` once the member's Left is on its way.
    membership: Option<Membership>,
    /// Once the member's own Left is stored: its seq, the last event the stream hands out.
    stop_at: Option<u64>,
    /// The seq of the last event handed out.
    last: u64,
    live: BroadcastStream<Arc<Event>>,
    shutdown: Shutdown,
    /// Fires once shutdown begins; polled in place, so it stays registered between events.
    shutdown_begun: BoxFuture<()>,
    idle_timeout: Option<Duration>,
    /// When to look again whether the member is idle: checked only when due, so the room's lock
    /// is not touched on every event.
    idle_check: Option<Pin<Box<Sleep>>>,
    step: Step,
}

enum Step {
    /// Reading the stored events after `last`.
    Reading(BoxFuture<Result<Vec<Event>, Error>>),
    /// Handing out a batch read from the store.
    Replaying(std::vec::IntoIter<Event>),
    /// Handing out live events.
    Live,
    /// Asking when the member last joined or sent.
    CheckingIdle(BoxFuture<Option<std::time::Instant>>),
    /// Storing the member's Left (in a task of its own, so it completes even if the stream is
    /// dropped); then, when the member is to be told, the stream hands out the events through
    /// it, and ends.
    Leaving {
        left: JoinHandle<Option<u64>>,
        tell_member: bool,
    },
    Ended,
}

impl Feed {
    /// The feed of a member who just joined: their Welcome, the stored events after
    /// `after_seq`, then the room's live events.
    pub fn new(
        rooms: Arc<Rooms>,
        joined: Joined,
        after_seq: u64,
        shutdown: Shutdown,
        idle_timeout: Option<Duration>,
    ) -> Self {
        let Joined {
            membership,
            member_token,
            live,
        } = joined;
        let welcome = pb::ChatEvent {
            seq: 0,
            time: None,
            kind: Some(pb::chat_event::Kind::Welcome(pb::Welcome { member_token })),
        };
        let mut feed = Self {
            rooms,
            room: membership.room.clone(),
            welcome: Some(welcome),
            membership: Some(membership),
            stop_at: None,
            last: after_seq,
            live: BroadcastStream::new(live),
            shutdown_begun: Box::pin(shutdown.clone().cancelled_owned()),
            shutdown,
            idle_timeout,
            idle_check: idle_timeout.map(|timeout| Box::pin(tokio::time::sleep(timeout))),
            step: Step::Live,
        };
        feed.step = feed.read();
        feed
    }

    /// Starts reading the stored events after `last`.
    fn read(&self) -> Step {
        let rooms = self.rooms.clone();
        let room = self.room.clone();
        let after = self.last;
        Step::Reading(Box::pin(async move {
            rooms.store().after(&room, after, CATCH_UP_BATCH).await
        }))
    }

    /// Starts storing the member's Left (once); once it is stored, the stream hands out the
    /// events through it when `tell_member`, and ends.
    fn leave(&mut self, reason: Reason, tell_member: bool) {
        self.step = match self.membership.take() {
            Some(membership) => Step::Leaving {
                left: spawn_leave(self.rooms.clone(), membership, reason),
                tell_member,
            },
            None => Step::Ended,
        };
    }

    /// Whether the member's own Left has been handed out.
    fn told_left(&self) -> bool {
        self.stop_at.is_some_and(|stop| self.last >= stop)
    }

    /// Asks when the member was last active.
    fn check_idle(&self) -> Step {
        let rooms = self.rooms.clone();
        let membership = self.membership.clone();
        Step::CheckingIdle(Box::pin(async move {
            match membership {
                Some(membership) => rooms.last_active(&membership).await,
                None => None,
            }
        }))
    }

    /// Whether shutdown has begun for a member who has not left yet (registering the wake-up
    /// when it has not).
    fn shutting_down(&mut self, cx: &mut Context<'_>) -> bool {
        self.membership.is_some() && self.shutdown_begun.as_mut().poll(cx).is_ready()
    }

    /// Whether it is time to look whether the member is idle (registering the wake-up when it
    /// is not).
    fn idle_check_due(&mut self, cx: &mut Context<'_>) -> bool {
        self.idle_check
            .as_mut()
            .is_some_and(|due| due.as_mut().poll(cx).is_ready())
    }

    /// `event` as the member's next one, or `None` if they already have it (or it comes after
    /// their own Left).
    fn hand_out(&mut self, event: Event) -> Option<pb::ChatEvent> {
        let after_left = self.stop_at.is_some_and(|stop| event.seq > stop);
        (event.seq > self.last && !after_left).then(|| {
            self.last = event.seq;
            event_to_pb(event)
        })
    }
}

impl Stream for Feed {
    type Item = Result<pb::ChatEvent, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(welcome) = this.welcome.take() {
            return Poll::Ready(Some(Ok(welcome)));
        }
        loop {
            match &mut this.step {
                Step::Reading(read) => match read.as_mut().poll(cx) {
                    Poll::Pending if this.shutting_down(cx) => this.leave("server shutdown", true),
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(batch)) if batch.is_empty() && this.stop_at.is_some() => {
                        this.step = Step::Ended;
                    }
                    Poll::Ready(Ok(batch)) if batch.is_empty() => this.step = Step::Live,
                    Poll::Ready(Ok(batch)) => this.step = Step::Replaying(batch.into_iter()),
                    Poll::Ready(Err(err)) => {
                        tracing::error!(error = %err, "cannot read the transcript");
                        this.leave("disconnected", false);
                        return Poll::Ready(Some(Err(Status::from(err))));
                    }
                },
                Step::Replaying(batch) => match batch.next() {
                    Some(event) => {
                        if let Some(event) = this.hand_out(event) {
                            return Poll::Ready(Some(Ok(event)));
                        }
                    }
                    None if this.told_left() => this.step = Step::Ended,
                    None if this.shutting_down(cx) => this.leave("server shutdown", true),
                    None => this.step = this.read(),
                },
                // Shutdown and the idle check are looked at (and their wake-ups registered) each
                // time the ring has nothing more, not once per event.
                Step::Live => match Pin::new(&mut this.live).poll_next(cx) {
                    Poll::Ready(Some(Ok(event))) if event.seq <= this.last => {}
                    Poll::Ready(Some(Ok(event))) if event.seq == this.last + 1 => {
                        this.last = event.seq;
                        return Poll::Ready(Some(Ok(event_to_pb(Event::clone(&event)))));
                    }
                    // A gap (or a lag): what is missing is in the store.
                    Poll::Ready(Some(Ok(_) | Err(BroadcastStreamRecvError::Lagged(_)))) => {
                        this.step = this.read();
                    }
                    Poll::Ready(None) => this.leave("server shutdown", true),
                    Poll::Pending if this.shutting_down(cx) => this.leave("server shutdown", true),
                    Poll::Pending if this.idle_check_due(cx) => this.step = this.check_idle(),
                    Poll::Pending => return Poll::Pending,
                },
                Step::CheckingIdle(check) => match check.as_mut().poll(cx) {
                    Poll::Pending if this.shutting_down(cx) => this.leave("server shutdown", true),
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(last_active) => {
                        let due = last_active
                            .zip(this.idle_timeout)
                            .map(|(at, timeout)| Instant::from_std(at) + timeout)
                            .filter(|due| *due > Instant::now());
                        match (due, &mut this.idle_check) {
                            (Some(due), Some(check)) => {
                                check.as_mut().reset(due);
                                this.step = Step::Live;
                            }
                            _ => this.leave("idle", true),
                        }
                    }
                },
                Step::Leaving { left, tell_member } => {
                    let tell_member = *tell_member;
                    this.step = match ready!(Pin::new(left).poll(cx)) {
                        Ok(Some(seq)) if tell_member => {
                            this.stop_at = Some(seq);
                            this.read()
                        }
                        Ok(_) => Step::Ended,
                        Err(err) => {
                            tracing::error!(error = %err, "the task storing a leave failed");
                            Step::Ended
                        }
                    };
                }
                Step::Ended => return Poll::Ready(None),
            }
        }
    }
}

impl Drop for Feed {
    /// The stream is gone before its member left (the client ended it or its connection died, or
    /// the server cut it at the end of a shutdown): the Left is stored in the background.
    fn drop(&mut self) {
        // Outside a runtime (never in the server) there is nothing to store it with.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if let Some(membership) = self.membership.take() {
            let reason = if self.shutdown.is_cancelled() {
                "server shutdown"
            } else {
                "left"
            };
            drop(spawn_leave(self.rooms.clone(), membership, reason));
        }
    }
}

/// Stores the Left of `membership` in a task of its own: a room's sequence never stops halfway
/// through an append, whatever becomes of the stream. Resolves to the Left's seq, if stored.
fn spawn_leave(
    rooms: Arc<Rooms>,
    membership: Membership,
    reason: Reason,
) -> JoinHandle<Option<u64>> {
    tokio::spawn(async move {
        match rooms.leave(&membership, reason).await {
            Ok(seq) => seq,
            Err(err) => {
                tracing::error!(error = %err, room = membership.room.as_str(), "cannot record a leave");
                None
            }
        }
    })
}

/// The API's form of an event.
pub fn event_to_pb(event: Event) -> pb::ChatEvent {
    let kind = match event.kind {
        Kind::Message { from, text } => pb::chat_event::Kind::Message(pb::Message { from, text }),
        Kind::Joined { name } => pb::chat_event::Kind::Joined(pb::Joined { name }),
        Kind::Left { name, reason } => pb::chat_event::Kind::Left(pb::Left { name, reason }),
    };
    pb::ChatEvent {
        seq: event.seq,
        time: Some(prost_types::Timestamp {
            seconds: event.time_ms.div_euclid(1000),
            nanos: i32::try_from(event.time_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        kind: Some(kind),
    }
}
