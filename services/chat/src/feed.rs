//! One member's Join stream: the stored transcript after `after_seq`, then the room's live events
//! read straight from the room's broadcast ring. The connection's stream task polls it, so a live
//! event costs each member one poll, not a task, a channel and a second task. It ends, once the
//! member's Left is stored, on shutdown or when the member goes idle; dropped (the client went
//! away), it stores the Left in the background.

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
    rooms::{Live, Membership, Rooms},
    store::CATCH_UP_BATCH,
};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a member's stream ended (the Left event's reason).
type Reason = &'static str;

/// A member's events, in seq order with no gap and no duplicate, as a gRPC response stream.
pub struct Feed {
    rooms: Arc<Rooms>,
    /// `None` once the member's Left is on its way.
    membership: Option<Membership>,
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
    /// dropped); the stream ends once it is stored.
    Leaving(JoinHandle<()>),
    Ended,
}

impl Feed {
    /// The feed of a member who just joined: the stored events after `after_seq`, then `live`.
    pub fn new(
        rooms: Arc<Rooms>,
        membership: Membership,
        live: Live,
        after_seq: u64,
        shutdown: Shutdown,
        idle_timeout: Option<Duration>,
    ) -> Self {
        let mut feed = Self {
            rooms,
            membership: Some(membership),
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
        let room = self.membership.as_ref().map(|m| m.room.clone());
        let after = self.last;
        Step::Reading(Box::pin(async move {
            match room {
                Some(room) => rooms.store().after(&room, after, CATCH_UP_BATCH).await,
                None => Ok(Vec::new()),
            }
        }))
    }

    /// Starts storing the member's Left (once); the stream ends when it is stored.
    fn leave(&mut self, reason: Reason) {
        self.step = match self.membership.take() {
            Some(membership) => Step::Leaving(spawn_leave(self.rooms.clone(), membership, reason)),
            None => Step::Ended,
        };
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

    /// `event` as the member's next one, or `None` if they already have it.
    fn hand_out(&mut self, event: Event) -> Option<pb::ChatEvent> {
        (event.seq > self.last).then(|| {
            self.last = event.seq;
            event_to_pb(event)
        })
    }
}

impl Stream for Feed {
    type Item = Result<pb::ChatEvent, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.step {
                Step::Reading(read) => match read.as_mut().poll(cx) {
                    Poll::Pending if this.shutting_down(cx) => this.leave("server shutdown"),
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(batch)) if batch.is_empty() => this.step = Step::Live,
                    Poll::Ready(Ok(batch)) => this.step = Step::Replaying(batch.into_iter()),
                    Poll::Ready(Err(err)) => {
                        tracing::error!(error = %err, "cannot read the transcript");
                        this.leave("disconnected");
                        return Poll::Ready(Some(Err(Status::from(err))));
                    }
                },
                Step::Replaying(batch) => match batch.next() {
                    Some(event) => {
                        if let Some(event) = this.hand_out(event) {
                            return Poll::Ready(Some(Ok(event)));
                        }
                    }
                    None if this.shutdown.is_cancelled() => this.leave("server shutdown"),
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
                    Poll::Ready(None) => this.leave("server shutdown"),
                    Poll::Pending if this.shutting_down(cx) => this.leave("server shutdown"),
                    Poll::Pending if this.idle_check_due(cx) => this.step = this.check_idle(),
                    Poll::Pending => return Poll::Pending,
                },
                Step::CheckingIdle(check) => match check.as_mut().poll(cx) {
                    Poll::Pending if this.shutting_down(cx) => this.leave("server shutdown"),
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
                            _ => this.leave("idle"),
                        }
                    }
                },
                Step::Leaving(left) => {
                    if let Err(err) = ready!(Pin::new(left).poll(cx)) {
                        tracing::error!(error = %err, "the task storing a leave failed");
                    }
                    this.step = Step::Ended;
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
/// through an append, whatever becomes of the stream.
fn spawn_leave(rooms: Arc<Rooms>, membership: Membership, reason: Reason) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(err) = rooms.leave(&membership, reason).await {
            tracing::error!(error = %err, room = membership.room.as_str(), "cannot record a leave");
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
