//! The gRPC face of the chat: reads each request into its domain request (see [`crate::types`]),
//! calls [`Rooms`], and answers; errors leave through [`crate::Error`]'s one
//! `From<Error> for Status`. Each Join stream is a [`Feed`]: the stored transcript, then live
//! events, with no gap and no duplicate.

use std::{pin::Pin, sync::Arc, time::Duration};

use tokio::sync::oneshot;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use township_kit::{Caller, Shutdown, paging::PageTokens};
use township_proto::chat::v1::{self as pb, chat_service_server::ChatService};

use crate::{
    Error,
    feed::{Feed, event_to_pb},
    quota::RoomQuota,
    rooms::Rooms,
    types::{Join, Message, TranscriptQuery},
};

/// Implements `township.chat.v1.ChatService`.
#[derive(Clone)]
pub struct ChatApi {
    rooms: Arc<Rooms>,
    tokens: PageTokens,
    quota: Arc<RoomQuota>,
    shutdown: Shutdown,
    idle_timeout: Option<Duration>,
}

impl ChatApi {
    /// Serves `rooms`, signing transcript page tokens with `tokens` and holding each caller to
    /// `quota` of new rooms; members who send nothing for `idle_timeout` are let go (`None`:
    /// never); every stream ends cleanly when `shutdown` fires.
    pub fn new(
        rooms: Arc<Rooms>,
        tokens: PageTokens,
        quota: RoomQuota,
        shutdown: Shutdown,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Self {
            rooms,
            tokens,
            quota: Arc::new(quota),
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
        let caller = caller(&request);
        let Join {
            room,
            name,
            after_seq,
        } = Join::try_from(request.into_inner())?;
        if self.shutdown.is_cancelled() {
            return Err(Error::Draining.into());
        }
        // The join runs in a task of its own: if this call is cancelled mid-join, the join still
        // completes (a room's sequence never stops halfway through an append) and the member,
        // whose stream is gone, leaves at once.
        let rooms = self.rooms.clone();
        let quota = self.quota.clone();
        let (answer, joined) = oneshot::channel();
        tokio::spawn(async move {
            let new_room = || quota.take(&caller);
            let result = rooms.join(room, name, after_seq, new_room).await;
            if let Err(Ok(joined)) = answer.send(result)
                && let Err(err) = rooms.leave(&joined.membership, "left").await
            {
                tracing::error!(error = %err, room = joined.membership.room.as_str(), "cannot record a leave");
            }
        });
        let joined = joined
            .await
            .map_err(|_| Error::Internal("the join task ended without an answer"))??;
        let feed = Feed::new(
            self.rooms.clone(),
            joined,
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
            member_token,
        } = Message::try_from(request.into_inner())?;
        let rooms = self.rooms.clone();
        let seq = tokio::spawn(async move {
            rooms
                .send(&room, &name, &member_token, &text, &client_message_id)
                .await
        })
        .await
        .map_err(Error::from)??;
        Ok(Response::new(pb::SendResponse { seq }))
    }

    async fn get_transcript(
        &self,
        request: Request<pb::GetTranscriptRequest>,
    ) -> Result<Response<pb::GetTranscriptResponse>, Status> {
        let TranscriptQuery { room, page } =
            TranscriptQuery::parse(request.get_ref(), &self.tokens)?;
        let after = page.after.map_or(0, |seq| u64::try_from(seq).unwrap_or(0));
        let mut events = self
            .rooms
            .store()
            .after(&room, after, page.lookahead())
            .await?;
        let next_page_token = page.finish(&self.tokens, &mut events, |last| {
            i64::try_from(last.seq).unwrap_or(i64::MAX)
        });
        let text = events.iter().map(|e| e.line() + "\n").collect();
        Ok(Response::new(pb::GetTranscriptResponse {
            events: events.into_iter().map(event_to_pb).collect(),
            text,
            next_page_token,
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

/// Who is calling, for their quota of new rooms: their certificate's principal, else their IP
/// address (not the port: one machine is one caller).
fn caller<T>(request: &Request<T>) -> String {
    match Caller::of(request) {
        Some(caller) => format!("principal:{}", caller.principal()),
        None => request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |addr| format!("ip:{}", addr.ip())),
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn a_draining_server_refuses_new_joins_with_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let rooms = Arc::new(Rooms::new(Store::in_dir(dir.path()).await));
        let shutdown = Shutdown::new();
        let tokens = rooms.store().page_tokens().await.unwrap();
        let api = ChatApi::new(
            rooms.clone(),
            tokens,
            RoomQuota::new(60),
            shutdown.clone(),
            None,
        );
        let join = || {
            Request::new(pb::JoinRequest {
                room: "lobby".into(),
                name: "ada".into(),
                after_seq: 0,
            })
        };
        drop(api.join(join()).await.expect("joins while serving"));
        shutdown.cancel();
        let refused = api.join(join()).await.err().expect("refused once draining");
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    }
}
