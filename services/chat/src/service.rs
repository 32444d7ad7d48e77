//! The gRPC face of the chat: reads each request into its domain request (see [`crate::types`]),
//! calls [`Rooms`], and answers; errors leave through [`crate::Error`]'s one
//! `From<Error> for Status`. Each Join stream is a [`Feed`]: the stored transcript, then live
//! events, with no gap and no duplicate.

use std::{pin::Pin, sync::Arc, time::Duration};

use tokio::sync::oneshot;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use township_kit::Shutdown;
use township_proto::chat::v1::{self as pb, chat_service_server::ChatService};

use crate::{
    Error,
    feed::{Feed, event_to_pb},
    rooms::Rooms,
    store::CATCH_UP_BATCH,
    types::{Join, Message, RoomName},
};

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
        // The join runs in a task of its own: if this call is cancelled mid-join, the join still
        // completes (a room's sequence never stops halfway through an append) and the member,
        // whose stream is gone, leaves at once.
        let rooms = self.rooms.clone();
        let (answer, joined) = oneshot::channel();
        tokio::spawn(async move {
            let result = rooms.join(room, name, after_seq).await;
            if let Err(Ok((membership, _))) = answer.send(result)
                && let Err(err) = rooms.leave(&membership, "left").await
            {
                tracing::error!(error = %err, room = membership.room.as_str(), "cannot record a leave");
            }
        });
        let (membership, live) = joined
            .await
            .map_err(|_| Error::Internal("the join task ended without an answer"))??;
        let feed = Feed::new(
            self.rooms.clone(),
            membership,
            live,
            after_seq,
            self.shutdown.clone(),
            self.idle_timeout,
        );
        Ok(Response::new(Box::pin(feed)))
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
