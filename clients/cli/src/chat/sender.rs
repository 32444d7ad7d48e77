//! The lines a chat member types, sent one at a time in order, each retried under its client
//! message id until the chat acknowledges it, so none is appended twice.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tonic::{Code, Status, transport::Channel};
use township_client::Backoff;
use township_proto::chat::v1::{SendRequest, chat_service_client::ChatServiceClient};

use super::{SERVICE, is_local};
use crate::error::CliError;

/// A line to send, with the client message id it keeps through every retry.
pub(super) struct Outgoing {
    pub(super) id: String,
    pub(super) text: String,
}

/// The session's current Join, as the sender needs it.
#[derive(Clone)]
pub(super) struct Joined {
    /// How many Welcomes came: a new one means the session joined again.
    pub(super) welcomes: u64,
    /// The member token of the latest Welcome.
    pub(super) token: String,
    /// A client on the server that sent it: after a server is lost, the session may join
    /// through another one of the `--addr` list.
    pub(super) client: ChatServiceClient<Channel>,
}

/// Whether a failed Send is worth trying again (with the same client message id): the chat was
/// not reached, the answer was lost, or the member is not joined yet after a restart (or its
/// member token is the lost Join's, until the new Welcome comes).
fn worth_resending(status: &Status) -> bool {
    is_local(status)
        || matches!(
            status.code(),
            Code::Unavailable
                | Code::Unknown
                | Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::FailedPrecondition
                | Code::PermissionDenied
        )
}

/// Sends the typed lines one at a time, in order, each until the chat acknowledges it.
pub(super) struct LineSender {
    /// The `--addr` list, as errors name it.
    pub(super) addr: String,
    pub(super) room: String,
    pub(super) name: String,
    pub(super) timeout: Duration,
    /// A line still not sent this long after its first failure is given up.
    pub(super) give_up_after: Duration,
}

impl LineSender {
    /// Sends every line of `outgoing` until it closes, each with the member token of the
    /// session's current Join and to its server (`joins`); publishes
    /// the highest seq acknowledged on `acked`. A line that fails because the chat was not
    /// reached, or before the session rejoined, is sent again — at once when a new Welcome came,
    /// else after a backoff — with the same client message id. A line the chat refuses is
    /// reported on stderr and dropped.
    pub(super) async fn run(
        self,
        mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
        mut joins: watch::Receiver<Joined>,
        acked: watch::Sender<u64>,
    ) {
        while let Some(line) = outgoing.recv().await {
            let mut request = SendRequest {
                room: self.room.clone(),
                name: self.name.clone(),
                text: line.text,
                client_message_id: line.id,
                member_token: String::new(),
            };
            let mut backoff = Backoff::new();
            let mut failing_since = None;
            if joins.wait_for(|joined| joined.welcomes > 0).await.is_err() {
                return; // The session is over.
            }
            loop {
                let Joined {
                    welcomes,
                    token,
                    mut client,
                } = joins.borrow_and_update().clone();
                request.member_token = token;
                let mut call = tonic::Request::new(request.clone());
                call.set_timeout(self.timeout);
                let status = match client.send(call).await {
                    Ok(reply) => {
                        let seq = reply.into_inner().seq;
                        acked.send_modify(|highest| *highest = (*highest).max(seq));
                        break;
                    }
                    Err(status) => status,
                };
                let since = *failing_since.get_or_insert_with(Instant::now);
                if !worth_resending(&status) || since.elapsed() > self.give_up_after {
                    let err = CliError::from_status(SERVICE, &self.addr, status);
                    eprintln!("township: not sent: {err}");
                    break;
                }
                tokio::select! {
                    changed = joins.wait_for(|joined| joined.welcomes > welcomes) => {
                        if changed.is_err() {
                            return; // The session is over.
                        }
                    }
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}
