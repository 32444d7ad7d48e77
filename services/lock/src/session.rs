//! The Session RPC: many acquires and releases over one bidirectional stream, for clients that
//! lock often (the bank). Requests are taken in the order sent: a release is done at once, an
//! acquire waits in its own task so that one slow grant never holds up the stream. Answers carry
//! the request's id. Every lease granted here and not yet released ends with the stream, however
//! it ends (client gone, broken connection, shutdown) — including a grant that lands as the
//! stream ends.

use std::{collections::HashSet, sync::Arc};

use tokio::{sync::mpsc, task::JoinSet};
use tonic::{Status, Streaming};
use township_kit::Shutdown;
use township_proto::lock::v1 as pb;

use crate::{
    Error,
    convert::{MAX_WAIT, lease_to_pb, parse_acquire, parse_lease_id},
    guard::Guard,
    table::{Granted, LeaseId, LockTable},
};

/// What a waiting acquire task hands back: its request id and the outcome.
type Waited = (u64, Result<Granted, Error>);

/// Serves one Session stream until the client ends it, it breaks, or the server shuts down; then
/// releases every lease it still holds.
pub(crate) async fn serve(
    table: Arc<LockTable>,
    guard: Arc<Guard>,
    principal: String,
    mut inbound: Streaming<pb::SessionRequest>,
    tx: mpsc::Sender<Result<pb::SessionResponse, Status>>,
    shutdown: Shutdown,
) {
    let mut held: HashSet<LeaseId> = HashSet::new();
    let mut waiting: JoinSet<Waited> = JoinSet::new();
    loop {
        let answer = tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(request)) => match take(&table, &guard, &principal, request, &mut held, &mut waiting) {
                    Some(answer) => answer,
                    None => continue,
                },
                _ => break,
            },
            Some(done) = waiting.join_next() => match done {
                Ok(waited) => granted(waited, &mut held),
                Err(err) => {
                    tracing::error!(error = %err, "a session's acquire task failed");
                    continue;
                }
            },
            () = tx.closed() => break,
            () = shutdown.cancelled() => break,
        };
        if tx.send(Ok(answer)).await.is_err() {
            break;
        }
    }
    // Withdraw every wait; a grant that landed in the meantime is released with the rest.
    waiting.abort_all();
    while let Some(done) = waiting.join_next().await {
        if let Ok((_, Ok(granted))) = done {
            held.insert(granted.lease);
        }
    }
    let released = held
        .into_iter()
        .filter(|id| table.release(*id, &principal).is_ok())
        .count();
    if released > 0 {
        tracing::info!(released, "session ended: its leases are released");
    }
}

/// Takes one request: a release is answered now; an acquire starts waiting (answered later).
fn take(
    table: &Arc<LockTable>,
    guard: &Guard,
    principal: &str,
    request: pb::SessionRequest,
    held: &mut HashSet<LeaseId>,
    waiting: &mut JoinSet<Waited>,
) -> Option<pb::SessionResponse> {
    let id = request.request_id;
    let result = match request.op {
        None => Err(Error::invalid("op", "give an acquire or a release")),
        Some(pb::session_request::Op::Release(release)) => parse_lease_id(&release.lease_id)
            .and_then(|lease| {
                let released = table.release(lease, principal);
                if released.is_ok() {
                    held.remove(&lease);
                }
                released
            }),
        Some(pb::session_request::Op::Acquire(acquire)) => {
            match parse_acquire(acquire, principal)
                .and_then(|(acquire, wait)| Ok((guard.check(&acquire)?, acquire, wait)))
            {
                Err(err) => Err(err),
                Ok((caps, acquire, wait_timeout)) => {
                    let table = table.clone();
                    let wait = wait_timeout.unwrap_or(MAX_WAIT);
                    waiting.spawn(async move { (id, table.acquire(acquire, wait, caps).await) });
                    return None;
                }
            }
        }
    };
    Some(answer(
        id,
        result.map(|()| pb::session_response::Result::Released(pb::ReleaseResponse {})),
    ))
}

/// The answer to a finished acquire; a granted lease joins those the stream holds.
fn granted((id, result): Waited, held: &mut HashSet<LeaseId>) -> pb::SessionResponse {
    answer(
        id,
        result.map(|granted| {
            held.insert(granted.lease);
            pb::session_response::Result::Lease(lease_to_pb(granted))
        }),
    )
}

fn answer(
    request_id: u64,
    result: Result<pb::session_response::Result, Error>,
) -> pb::SessionResponse {
    let result = result.unwrap_or_else(|err| {
        let status = Status::from(err);
        pb::session_response::Result::Error(pb::SessionError {
            code: status.code() as i32,
            message: status.message().to_owned(),
        })
    });
    pb::SessionResponse {
        request_id,
        result: Some(result),
    }
}
