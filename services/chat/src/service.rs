//! The gRPC face of the chat: reads each request into its domain request (see [`crate::types`]),
//! calls [`Rooms`], and answers; errors leave through [`crate::Error`]'s one
//! `From<Error> for Status`. Each Join stream is fed by a task of its own that delivers the stored
//! transcript, then live events, with no gap and no duplicate.

use std::{pin::Pin, sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast::error::RecvError, mpsc, oneshot},
    time::Instant,
};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use township_kit::Shutdown;
use township_proto::chat::v1::{self as pb, chat_service_server::ChatService};

use crate::{
    Error,
    event::{Event, Kind},
    rooms::{Membership, Rooms},
    store::CATCH_UP_BATCH,
    types::{Join, Message, RoomName},
};

/// Events buffered between a member's task and its gRPC stream.
const STREAM_BUFFER: usize = 64;

/// Implements `township.chat.v1.ChatService`.
#[derive(Clone)]
pub struct ChatApi {
    rooms: Arc<Rooms>,
    shutdown: Shutdown,
    idle_timeout: Option<Duration>,
}

impl ChatApi {
    /// Serves `rooms`; members who send nothing for `idle_timeout` are let go (`None`: never);
    /// every stream ends cleanly when `shutdown` fires.
    pub fn new(rooms: Arc<Rooms>, shutdown: Shutdown, idle_timeout: Option<Duration>) -> Self {
        Self {
            rooms,
            shutdown,
            idle_timeout,
        }
    }
}

#[tonic::async_trait]
impl ChatService for ChatApi {
    type JoinStream = Pin<Box<dyn Stream<Item = Result<pb::ChatEvent, Status>> + Send>>;

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<Self::JoinStream>, Status> {
        let Join {
            room,
            name,
            after_seq,
        } = Join::try_from(request.into_inner())?;
        let (events, stream) = mpsc::channel(STREAM_BUFFER);
        let member = Member {
            rooms: self.rooms.clone(),
            events,
            shutdown: self.shutdown.clone(),
            idle_timeout: self.idle_timeout,
        };
        // The join and the member's whole stay run in a task of their own: if this call is
        // cancelled mid-join, the join still completes (a room's sequence never stops halfway
        // through an append) and the member, whose stream is gone, leaves at once.
        let (joined, join_result) = oneshot::channel();
        tokio::spawn(async move {
            match member.rooms.join(room, name, after_seq).await {
                Ok(membership) => {
                    let _ = joined.send(Ok(()));
                    member.serve(membership, after_seq).await;
                }
                Err(err) => {
                    let _ = joined.send(Err(err));
                }
            }
        });
        join_result
            .await
            .map_err(|_| Error::Internal("the join task ended without an answer"))??;
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }

    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let Message {
            room,
            name,
            text,
            client_message_id,
        } = Message::try_from(request.into_inner())?;
        let rooms = self.rooms.clone();
        let seq =
            tokio::spawn(async move { rooms.send(&room, &name, &text, &client_message_id).await })
                .await
                .map_err(Error::from)??;
        Ok(Response::new(pb::SendResponse { seq }))
    }

    async fn get_transcript(
        &self,
        request: Request<pb::GetTranscriptRequest>,
    ) -> Result<Response<pb::GetTranscriptResponse>, Status> {
        let room = RoomName::try_from(request.get_ref())?;
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let batch = self
                .rooms
                .store()
                .after(&room, after, CATCH_UP_BATCH)
                .await?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            events.extend(batch);
        }
        let text = events.iter().map(|e| e.line() + "\n").collect();
        Ok(Response::new(pb::GetTranscriptResponse {
            events: events.into_iter().map(event_to_pb).collect(),
            text,
        }))
    }

    async fn list_rooms(
        &self,
        _request: Request<pb::ListRoomsRequest>,
    ) -> Result<Response<pb::ListRoomsResponse>, Status> {
        let rooms = self.rooms.list().await?;
        Ok(Response::new(pb::ListRoomsResponse {
            rooms: rooms
                .into_iter()
                .map(|(name, members, last_seq)| pb::Room {
                    name: name.as_str().to_owned(),
                    members,
                    last_seq,
                })
                .collect(),
        }))
    }
}

/// Why a member's stream ended (the Left event's reason).
type Reason = &'static str;

/// What one member's task needs.
struct Member {
    rooms: Arc<Rooms>,
    events: mpsc::Sender<Result<pb::ChatEvent, Status>>,
    shutdown: Shutdown,
    idle_timeout: Option<Duration>,
}

impl Member {
    /// Delivers the room to the member until the stream ends, then appends Left.
    async fn serve(mut self, mut membership: Membership, after_seq: u64) {
        let reason = self.deliver(&mut membership, after_seq).await;
        if let Err(err) = self.rooms.leave(&membership, reason).await {
            tracing::error!(error = %err, room = membership.room.as_str(), "cannot record a leave");
        }
    }

    /// The transcript after `after_seq`, then live events; returns why it stopped.
    async fn deliver(&mut self, membership: &mut Membership, after_seq: u64) -> Reason {
        let mut last = after_seq;
        if let Err(reason) = self.catch_up(&membership.room, &mut last).await {
            return reason;
        }
        // Checked only when due: the room's lock is not touched on every event.
        let mut idle_check = self.idle_timeout.map(|timeout| Instant::now() + timeout);
        loop {
            tokio::select! {
                received = membership.live.recv() => {
                    let outcome = match received {
                        Ok(event) if event.seq <= last => Ok(()),
                        Ok(event) if event.seq == last + 1 => self.forward(&event, &mut last).await,
                        // A gap (or a lag): what is missing is in the store.
                        Ok(_) | Err(RecvError::Lagged(_)) => self.catch_up(&membership.room, &mut last).await,
                        Err(RecvError::Closed) => Err("server shutdown"),
                    };
                    if let Err(reason) = outcome {
                        return reason;
                    }
                }
                () = self.events.closed() => return "left",
                () = self.shutdown.cancelled() => return "server shutdown",
                () = sleep_until(idle_check) => {
                    match self.next_idle_check(membership).await {
                        Some(next) => idle_check = Some(next),
                        None => return "idle",
                    }
                }
            }
        }
    }

    /// When to check again whether the member is idle, or `None` if they are idle now.
    async fn next_idle_check(&self, membership: &Membership) -> Option<Instant> {
        let timeout = self.idle_timeout?;
        let due = Instant::from_std(self.rooms.last_active(membership).await?) + timeout;
        (due > Instant::now()).then_some(due)
    }

    /// Sends the stored events after `*last`, moving it on.
    async fn catch_up(&mut self, room: &RoomName, last: &mut u64) -> Result<(), Reason> {
        loop {
            let batch = match self.rooms.store().after(room, *last, CATCH_UP_BATCH).await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::error!(error = %err, room = room.as_str(), "cannot read the transcript");
                    let _ = self.events.send(Err(Status::from(err))).await;
                    return Err("disconnected");
                }
            };
            if batch.is_empty() {
                return Ok(());
            }
            for event in &batch {
                self.forward(event, last).await?;
            }
        }
    }

    /// Sends one event to the member (waiting while their stream is full, but not past shutdown).
    async fn forward(&mut self, event: &Event, last: &mut u64) -> Result<(), Reason> {
        tokio::select! {
            sent = self.events.send(Ok(event_to_pb(event.clone()))) => {
                sent.map_err(|_| "left")?;
                *last = event.seq;
                Ok(())
            }
            () = self.shutdown.cancelled() => Err("server shutdown"),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn event_to_pb(event: Event) -> pb::ChatEvent {
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
