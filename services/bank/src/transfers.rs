//! Group commit of transfers, the bank's hottest path. Transfers that arrive while the writer
//! (see [`crate::writer`]) is busy queue up; it then takes up to [`MAX_BATCH`] of them and does
//! them all in one transaction (read the request ids, the accounts, the sessions; then write the
//! balances, append the ledger rows, record the request ids and commit), so that they share one
//! commit and its flush. Each backend reads and writes its own way (`sqlite`: `BEGIN IMMEDIATE`
//! on the writer's blocking connection, one cached statement per row; `postgres`: one read and
//! one write of the whole batch with arrays, the write checking that what the decisions read is
//! unchanged, else the batch decided again under row locks); the decisions, here, are the same. Each transfer's outcome is handed back as soon as the transaction commits, as a
//! [`Committed`], so that its caller can release the accounts' locks; nobody is answered before
//! the transaction is on the disk (see [`crate::syncer`]): every answered transfer survives
//! `kill -9` and a power loss.
//!
//! Inside the batch each transfer is decided in arrival order against the balances and fences
//! left by the ones before it, by the same rules as any money movement ([`crate::rules`]:
//! exactly once per request id, fencing, no overdraft or overflow), so a batch is equivalent to
//! running its transfers one after another. Two transfers with the same request id never share a
//! batch: the later waits for the next one, where it finds the earlier one's outcome. If the
//! transaction fails, none of the batch is applied and each transfer gets the error.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::sync::oneshot;

use crate::{
    Error,
    rules::{self, AccountState, Leg, PriorRequest, Receipt, Refusal, Verdict, prior_outcome},
    syncer::{Batch, Syncer},
    types::{AccountId, Amount, RequestId},
};

pub mod postgres;
pub mod sqlite;

/// Most transfers in one transaction.
pub const MAX_BATCH: usize = 64;

/// One transfer for the writer: the session it is made in (its token's hash), the validated
/// request, the fencing tokens of its WRITE locks (source, destination), and where its outcome
/// goes.
pub struct Transfer {
    /// The hash of the session's token.
    pub session: String,
    /// The source account.
    pub from: AccountId,
    /// The destination account.
    pub to: AccountId,
    /// How much moves.
    pub amount: Amount,
    /// The client's request id: the transfer applies once per id.
    pub request_id: RequestId,
    /// The fencing tokens of the WRITE locks on (source, destination).
    pub tokens: (u64, u64),
    /// Where the outcome goes, once the batch's transaction has ended.
    pub outcome: oneshot::Sender<Committed>,
}

/// A transfer's outcome once its batch's transaction has ended, which may not be on the disk
/// yet: it is an answer only after [`Syncer::durable_through`] its batch.
#[derive(Debug)]
pub struct Committed {
    /// The receipt, or why the transfer was not made.
    pub(crate) outcome: Result<Receipt, Error>,
    /// The batch whose flush makes the outcome durable.
    pub(crate) batch: Batch,
}

impl Transfer {
    /// What the request id is recorded with, so that a reuse for another transfer is refused.
    fn params(&self) -> String {
        format!("TRANSFER|{}|{}|{}", self.from, self.to, self.amount.cents())
    }
}

/// Sends each transfer of `batch` its outcome from the transaction that ended as `result`
/// (each transfer's own outcome, or the transaction's error for all: [`Error::StorageFull`] if
/// the disk is full, [`Error::StorageUnavailable`] if the database cannot be reached, else an
/// internal one), after telling `syncer` that batch `number` ended.
fn finish(
    batch: Vec<Transfer>,
    number: Batch,
    result: Result<Vec<Result<Receipt, Error>>, Error>,
    syncer: &Syncer,
) {
    let outcomes = match result {
        Ok(outcomes) => outcomes,
        Err(Error::StorageFull) => batch.iter().map(|_| Err(Error::StorageFull)).collect(),
        Err(Error::StorageUnavailable(cause)) => batch
            .iter()
            .map(|_| Err(Error::StorageUnavailable(cause.clone())))
            .collect(),
        Err(err) => {
            tracing::error!(error = %err, transfers = batch.len(), "a batch of transfers failed; none was applied");
            batch
                .iter()
                .map(|_| Err(Error::Internal(format!("transfer batch: {err}"))))
                .collect()
        }
    };
    syncer.committed(number);
    for (transfer, outcome) in batch.into_iter().zip(outcomes) {
        let committed = Committed {
            outcome,
            batch: number,
        };
        // Nobody waits if the call was cancelled; the outcome stands all the same.
        let _ = transfer.outcome.send(committed);
    }
}

/// Up to [`MAX_BATCH`] waiting transfers with distinct request ids, in arrival order; the others
/// keep their place for the next batch.
fn take_batch(waiting: &mut VecDeque<Transfer>) -> Vec<Transfer> {
    let mut batch = Vec::new();
    let mut ids = HashSet::new();
    let mut later = VecDeque::new();
    for transfer in waiting.drain(..) {
        if batch.len() < MAX_BATCH && ids.insert(transfer.request_id.clone()) {
            batch.push(transfer);
        } else {
            later.push_back(transfer);
        }
    }
    *waiting = later;
    batch
}

/// An account as the batch sees it: as read, then as changed by the transfers before.
struct Seen {
    state: AccountState,
    changed: bool,
}

/// What the batch does with one transfer.
enum Decision {
    /// Answered without writing: an earlier outcome of its request id, or an error.
    Answered(Result<Receipt, Error>),
    /// Applied: the two balances after it.
    Applied { from_after: i64, to_after: i64 },
    /// Refused by a money rule; recorded so a retry is refused the same way.
    Refused(Refusal),
}

/// What a batch's decisions start from, as read inside its transaction.
#[derive(Default)]
struct Read<'a> {
    /// The stored outcomes of the batch's request ids that have one.
    priors: HashMap<&'a str, PriorRequest>,
    /// The batch's accounts that exist.
    accounts: HashMap<&'a str, Seen>,
    /// The (session, source account) pairs whose session is live and holds the account.
    live: HashSet<(&'a str, &'a str)>,
}

/// A ledger row the batch appends.
struct LedgerRow<'a> {
    id: i64,
    account: &'a str,
    request_id: &'a str,
    kind: &'static str,
    amount_cents: i64,
    balance_after_cents: i64,
    counterparty: &'a str,
}

/// A request id's outcome the batch records, so that a retry gets the same answer.
struct RequestRow<'a> {
    request_id: &'a str,
    params: String,
    transaction_id: String,
    balance_cents: i64,
    rejection: &'static str,
}

/// What a batch writes, once decided.
struct Writes<'a> {
    rows: Vec<LedgerRow<'a>>,
    requests: Vec<RequestRow<'a>>,
    /// The accounts whose balance or fences changed, as they end.
    accounts: Vec<(&'a str, AccountState)>,
}

/// Decides each transfer of `batch` in turn against `read`, numbering the ledger rows with
/// `next_id` (ascending), and returns each transfer's outcome and what to write. (On PostgreSQL
/// the insert numbers the rows: `next_id` gives placeholders there, and the receipts are named
/// after the insert.)
fn decide_batch<'a>(
    batch: &'a [Transfer],
    read: Read<'a>,
    mut next_id: impl FnMut() -> Result<i64, Error>,
) -> Result<(Vec<Result<Receipt, Error>>, Writes<'a>), Error> {
    let Read {
        mut priors,
        mut accounts,
        live,
    } = read;
    let mut writes = Writes {
        rows: Vec::new(),
        requests: Vec::new(),
        accounts: Vec::new(),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for transfer in batch {
        let (request_id, params) = (transfer.request_id.as_str(), transfer.params());
        if !live.contains(&(transfer.session.as_str(), transfer.from.as_str())) {
            // Holdings are never taken away, so it is the session that has ended.
            outcomes.push(Err(Error::Unauthenticated(
                "the session token is unknown or expired",
            )));
            continue;
        }
        let prior = priors.remove(request_id);
        match decide(transfer, &params, prior, &mut accounts) {
            Decision::Answered(outcome) => outcomes.push(outcome),
            Decision::Applied {
                from_after,
                to_after,
            } => {
                let (from, to) = (transfer.from.as_str(), transfer.to.as_str());
                let cents = transfer.amount.cents();
                let (out_id, in_id) = (next_id()?, next_id()?);
                let out = (out_id, from, "TRANSFER_OUT", -cents, from_after, to);
                let into = (in_id, to, "TRANSFER_IN", cents, to_after, from);
                for (id, account, kind, amount_cents, balance_after_cents, counterparty) in
                    [out, into]
                {
                    writes.rows.push(LedgerRow {
                        id,
                        account,
                        request_id,
                        kind,
                        amount_cents,
                        balance_after_cents,
                        counterparty,
                    });
                }
                let receipt = Receipt {
                    transaction_id: out_id.to_string(),
                    balance_cents: from_after,
                };
                writes.requests.push(RequestRow {
                    request_id,
                    params,
                    transaction_id: receipt.transaction_id.clone(),
                    balance_cents: from_after,
                    rejection: "",
                });
                outcomes.push(Ok(receipt));
            }
            Decision::Refused(refusal) => {
                let (rejection, balance_cents) = refusal.stored();
                writes.requests.push(RequestRow {
                    request_id,
                    params,
                    transaction_id: String::new(),
                    balance_cents,
                    rejection,
                });
                outcomes.push(Err(refusal.into()));
            }
        }
    }
    writes.accounts = accounts
        .into_iter()
        .filter(|(_, seen)| seen.changed)
        .map(|(id, seen)| (id, seen.state))
        .collect();
    Ok((outcomes, writes))
}

/// Decides one transfer against the accounts as the transfers before it left them, and changes
/// them if it applies.
fn decide(
    transfer: &Transfer,
    params: &str,
    prior: Option<PriorRequest>,
    accounts: &mut HashMap<&str, Seen>,
) -> Decision {
    match prior_outcome(prior, params) {
        Ok(Some(receipt)) => return Decision::Answered(Ok(receipt)),
        Err(err) => return Decision::Answered(Err(err)),
        Ok(None) => {}
    }
    if transfer.from == transfer.to {
        return Decision::Answered(Err(Error::SameAccount));
    }
    let (from_token, to_token) = transfer.tokens;
    let cents = transfer.amount.cents();
    let state = |account: &AccountId| accounts.get(account.as_str()).map(|seen| seen.state);
    let legs = [
        Leg {
            account: state(&transfer.from),
            field: "from_account_id",
            delta: -cents,
            token: from_token,
        },
        Leg {
            account: state(&transfer.to),
            field: "to_account_id",
            delta: cents,
            token: to_token,
        },
    ];
    let after = match rules::decide(legs) {
        Ok(Verdict::Applied(after)) => after,
        Ok(Verdict::Refused(refusal)) => return Decision::Refused(refusal),
        Err(err) => return Decision::Answered(Err(err)),
    };
    for (account, state) in [&transfer.from, &transfer.to].into_iter().zip(after) {
        if let Some(seen) = accounts.get_mut(account.as_str()) {
            seen.state = state;
            seen.changed = true;
        }
    }
    let [from_after, to_after] = after.map(|state| state.balance);
    Decision::Applied {
        from_after,
        to_after,
    }
}
