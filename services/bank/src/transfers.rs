//! Group commit of transfers, the bank's hottest path. Transfers that arrive while the writer
//! (see [`crate::writer`]) is busy queue up; it then takes up to [`MAX_BATCH`] of them and does
//! them all in one `BEGIN IMMEDIATE` transaction on its own blocking connection (read the request
//! ids, the accounts, the sessions and the last ledger row; then write the balances, append the
//! ledger rows, record the request ids and commit), so that they share one commit and its flush.
//! Each transfer's outcome is handed back as soon as the transaction commits, as a
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

use std::collections::{HashMap, HashSet, VecDeque, hash_map::Entry};

use tokio::sync::oneshot;
use township_store::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior, params};

use crate::{
    Error,
    clock::now_ms,
    rules::{self, AccountState, Leg, PriorRequest, Receipt, Refusal, Verdict, prior_outcome},
    syncer::{Batch, Syncer},
    types::{AccountId, Amount, RequestId},
};

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

/// Commits the next batch of `waiting` transfers (see [`take_batch`]) on `conn`, tells `syncer`
/// to flush it, and sends each transfer its [`Committed`] outcome. If the transaction fails, none
/// of the batch is applied and each transfer gets the error ([`Error::StorageFull`] if the disk
/// is full, else an internal one).
/// Blocking: the writer's own thread runs it.
pub fn commit_batch(conn: &mut Connection, waiting: &mut VecDeque<Transfer>, syncer: &Syncer) {
    let batch = take_batch(waiting);
    let number = syncer.next_batch();
    let outcomes = match commit(conn, &batch) {
        Ok(outcomes) => outcomes,
        Err(Error::StorageFull) => batch.iter().map(|_| Err(Error::StorageFull)).collect(),
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

/// The stored outcome of a request id.
const FIND_REQUEST: &str =
    "SELECT params, transaction_id, balance_cents, rejection FROM requests WHERE request_id = ?1";
/// An account's balance and fences.
const FIND_ACCOUNT: &str =
    "SELECT balance_cents, fence_any, fence_write FROM accounts WHERE id = ?1";
/// The last ledger row: the batch numbers its rows after it.
const LAST_ROW: &str = "SELECT COALESCE(MAX(id), 0) FROM ledger";
/// Whether the session `?1` is live at `?2` and its holder holds account `?3`.
const SESSION_HOLDS: &str = "SELECT EXISTS (SELECT 1 FROM sessions s
 JOIN account_holders h ON h.holder_name = s.holder_name
 WHERE s.token_hash = ?1 AND s.expires_ms > ?2 AND h.account_id = ?3)";
/// An account's new balance and fences.
const UPDATE_ACCOUNT: &str =
    "UPDATE accounts SET balance_cents = ?2, fence_any = ?3, fence_write = ?4 WHERE id = ?1";
/// A row of the ledger, numbered by the batch.
const INSERT_LEDGER_ROW: &str = "INSERT INTO ledger (id, account_id, request_id, kind,
 amount_cents, balance_after_cents, counterparty, time_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
/// A request id's outcome, so that a retry gets the same answer.
const RECORD_REQUEST: &str = "INSERT INTO requests (request_id, params, transaction_id,
 balance_cents, rejection, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Does `batch` in one `BEGIN IMMEDIATE` transaction and returns each transfer's outcome, in
/// order. Each statement is prepared once per connection and cached; a failure rolls it all
/// back (the transaction's drop).
fn commit(conn: &mut Connection, batch: &[Transfer]) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = decide_and_write(&tx, batch, now_ms())?;
    tx.commit()?;
    Ok(outcomes)
}

/// What a batch's decisions start from, as read inside its transaction.
struct Read<'a> {
    /// The stored outcomes of the batch's request ids that have one.
    priors: HashMap<&'a str, PriorRequest>,
    /// The batch's accounts that exist.
    accounts: HashMap<&'a str, Seen>,
    /// For each (session, source account) pair: whether the session is live and holds it.
    live: HashMap<(&'a str, &'a str), bool>,
    /// The last ledger row's id.
    last_row: i64,
}

/// Reads what `batch`'s decisions need, one indexed lookup per request id, account and session.
fn read<'a>(
    tx: &rusqlite::Transaction<'_>,
    batch: &'a [Transfer],
    now: i64,
) -> Result<Read<'a>, Error> {
    let mut priors = HashMap::new();
    let mut find_request = tx.prepare_cached(FIND_REQUEST)?;
    for transfer in batch {
        let id = transfer.request_id.as_str();
        let prior = find_request
            .query_row([id], |row| {
                Ok(PriorRequest {
                    params: row.get(0)?,
                    transaction_id: row.get(1)?,
                    balance_cents: row.get(2)?,
                    rejection: row.get(3)?,
                })
            })
            .optional()?;
        if let Some(prior) = prior {
            priors.insert(id, prior);
        }
    }

    let mut accounts = HashMap::new();
    let mut find_account = tx.prepare_cached(FIND_ACCOUNT)?;
    for id in batch.iter().flat_map(|t| [t.from.as_str(), t.to.as_str()]) {
        if accounts.contains_key(id) {
            continue;
        }
        let state = find_account
            .query_row([id], |row| {
                Ok(AccountState {
                    balance: row.get(0)?,
                    fence_any: row.get(1)?,
                    fence_write: row.get(2)?,
                })
            })
            .optional()?;
        if let Some(state) = state {
            let seen = Seen {
                state,
                changed: false,
            };
            accounts.insert(id, seen);
        }
    }

    let mut live = HashMap::new();
    let mut session_holds = tx.prepare_cached(SESSION_HOLDS)?;
    for transfer in batch {
        let (session, from) = (transfer.session.as_str(), transfer.from.as_str());
        if let Entry::Vacant(pair) = live.entry((session, from)) {
            pair.insert(session_holds.query_row(params![session, now, from], |row| row.get(0))?);
        }
    }
    let last_row = tx.query_row(LAST_ROW, [], |row| row.get(0))?;
    Ok(Read {
        priors,
        accounts,
        live,
        last_row,
    })
}

/// Decides each transfer of `batch` in turn and writes the outcome: the ledger rows and the
/// request id of each, then the changed balances.
fn decide_and_write(
    tx: &rusqlite::Transaction<'_>,
    batch: &[Transfer],
    now: i64,
) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let Read {
        mut priors,
        mut accounts,
        live,
        last_row,
    } = read(tx, batch, now)?;
    let mut insert_row = tx.prepare_cached(INSERT_LEDGER_ROW)?;
    let mut record_request = tx.prepare_cached(RECORD_REQUEST)?;
    let mut next_row = last_row + 1;
    let mut outcomes = Vec::with_capacity(batch.len());
    for transfer in batch {
        let (request_id, params) = (transfer.request_id.as_str(), transfer.params());
        if !live[&(transfer.session.as_str(), transfer.from.as_str())] {
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
                let out_row = next_row;
                let out = (out_row, from, "TRANSFER_OUT", -cents, from_after, to);
                let into = (out_row + 1, to, "TRANSFER_IN", cents, to_after, from);
                for (id, account, kind, amount, after, counterparty) in [out, into] {
                    insert_row.execute(params![
                        id,
                        account,
                        request_id,
                        kind,
                        amount,
                        after,
                        counterparty,
                        now
                    ])?;
                }
                next_row += 2;
                let receipt = Receipt {
                    transaction_id: out_row.to_string(),
                    balance_cents: from_after,
                };
                let id = &receipt.transaction_id;
                record_request.execute(params![request_id, params, id, from_after, "", now])?;
                outcomes.push(Ok(receipt));
            }
            Decision::Refused(refusal) => {
                let (rejection, balance) = refusal.stored();
                record_request.execute(params![request_id, params, "", balance, rejection, now])?;
                outcomes.push(Err(refusal.into()));
            }
        }
    }
    let mut update_account = tx.prepare_cached(UPDATE_ACCOUNT)?;
    for (id, Seen { state: s, .. }) in accounts.iter().filter(|(_, seen)| seen.changed) {
        update_account.execute(params![id, s.balance, s.fence_any, s.fence_write])?;
    }
    Ok(outcomes)
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
