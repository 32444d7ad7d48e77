//! The Session stream shared by a [`crate::LockClient`] and its clones: one driver task opens
//! it on the leader (following the servers' redirects), numbers the requests, routes each answer
//! to its caller, and releases a grant that arrives for a caller who gave up.

use std::{collections::HashMap, time::Duration};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Code, Status, Streaming};
use township_proto::lock::v1::{
    self as pb, session_request::Op, session_response::Result as Answer,
};

use crate::servers::Servers;

/// A request for the Session driver: the operation, and where its answer goes (none for a release
/// nobody waits for; a failure is then logged).
type Call = (Op, Option<oneshot::Sender<Result<Answer, Status>>>);

/// The handle of the Session stream shared by a [`LockClient`] and its clones. The driver task
/// (re)opens the stream on the leader when a call comes and none is open, numbers and sends the
/// requests, and routes each answer to its caller. When the stream breaks, calls in flight fail UNAVAILABLE
/// and the service releases the stream's leases (their holders' tokens are then refused by fenced
/// storage). The task ends when the last handle is dropped, which ends the stream.
#[derive(Clone, Debug)]
pub(crate) struct SessionLink {
    calls: mpsc::UnboundedSender<Call>,
}

impl SessionLink {
    pub(crate) fn start(servers: Servers) -> Self {
        let (calls, queued) = mpsc::unbounded_channel();
        tokio::spawn(drive_session(servers, queued));
        Self { calls }
    }

    /// Sends `op` and waits up to `timeout` for its answer; a failed request comes back as the
    /// status its RPC would have returned.
    pub(crate) async fn call(&self, op: Op, timeout: Duration) -> Result<Answer, Status> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send((op, Some(reply)))
            .map_err(|_| Status::unavailable("the lock client's session task has stopped"))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Status::unavailable("the lock session ended")),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "lock-server did not answer within {timeout:?}"
            ))),
        }
    }

    /// Sends a release and does not wait: a failure is logged, and the lease then ends at its
    /// expiry or with the stream.
    pub(crate) fn release_later(&self, lease_id: String) {
        let release = Op::Release(pb::ReleaseRequest { lease_id });
        let _ = self.calls.send((release, None));
    }
}

/// The Session driver (see [`SessionLink`]).
async fn drive_session(servers: Servers, mut calls: mpsc::UnboundedReceiver<Call>) {
    while let Some(first) = calls.recv().await {
        let (addr, requests, mut answers) = match open_session(&servers).await {
            Ok(opened) => opened,
            Err(status) => {
                if let (_, Some(reply)) = first {
                    let _ = reply.send(Err(status));
                }
                continue;
            }
        };
        let mut waiting: HashMap<u64, oneshot::Sender<Result<Answer, Status>>> = HashMap::new();
        let mut next_id = 0u64;
        let mut call = Some(first);
        loop {
            if let Some((op, reply)) = call.take() {
                next_id += 1;
                if let Some(reply) = reply {
                    waiting.insert(next_id, reply);
                }
                let request = pb::SessionRequest {
                    request_id: next_id,
                    op: Some(op),
                };
                if requests.send(request).is_err() {
                    break;
                }
            }
            tokio::select! {
                next = calls.recv() => match next {
                    Some(next) => call = Some(next),
                    None => return,
                },
                answer = answers.message() => match answer {
                    Ok(Some(answer)) => {
                        if let Some(undelivered) = deliver(&mut waiting, answer) {
                            let _ = requests.send(undelivered);
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
            }
        }
        let broken = Status::unavailable("the lock session broke; its leases are released");
        for (_, reply) in waiting.drain() {
            let _ = reply.send(Err(broken.clone()));
        }
        // The server may be gone, or no longer lead: the next stream starts with the next one.
        servers.failed(&addr, &broken);
    }
}

/// The requests' sender and the answers of a Session stream, and the server it is open on.
type OpenSession = (
    String,
    mpsc::UnboundedSender<pb::SessionRequest>,
    Streaming<pb::SessionResponse>,
);

/// Opens a Session stream on the leader, following the servers' redirects: at most one try per
/// known server, and one more.
async fn open_session(servers: &Servers) -> Result<OpenSession, Status> {
    let mut tries = servers.len() + 1;
    loop {
        let (addr, mut rpc) = servers.leader();
        let (requests, outbound) = mpsc::unbounded_channel();
        match rpc.session(UnboundedReceiverStream::new(outbound)).await {
            Ok(answers) => return Ok((addr, requests, answers.into_inner())),
            Err(status) => {
                tries -= 1;
                if tries == 0 || !servers.failed(&addr, &status) {
                    return Err(status);
                }
            }
        }
    }
}

/// Hands `answer` to its caller. A lease nobody is waiting for any more (the caller gave up or was
/// cancelled) comes back as the release to send, so that no grant is left behind.
fn deliver(
    waiting: &mut HashMap<u64, oneshot::Sender<Result<Answer, Status>>>,
    answer: pb::SessionResponse,
) -> Option<pb::SessionRequest> {
    let result = match answer.result {
        Some(Answer::Error(error)) => Err(Status::new(Code::from(error.code), error.message)),
        Some(result) => Ok(result),
        None => Err(Status::internal("lock-server sent an empty answer")),
    };
    let undelivered = match waiting.remove(&answer.request_id) {
        Some(reply) => reply.send(result).err()?,
        None => {
            match &result {
                // Already gone (its keep-alive stream ended first, or it expired): as wanted.
                Err(status) if status.code() == Code::NotFound => {
                    tracing::debug!(%status, "lock released before its release arrived");
                }
                Err(status) => {
                    tracing::warn!(%status, "lock release failed; the lease ends at its expiry");
                }
                Ok(_) => {}
            }
            result
        }
    };
    match undelivered {
        Ok(Answer::Lease(lease)) => Some(pb::SessionRequest {
            request_id: 0,
            op: Some(Op::Release(pb::ReleaseRequest {
                lease_id: lease.lease_id,
            })),
        }),
        _ => None,
    }
}
