//! Group commit of transfers, the bank's hottest path. Transfers that arrive while the writer
//! (see [`crate::writer`]) is busy queue up; it then takes up to [`MAX_BATCH`] of them and does
//! them all in one `BEGIN IMMEDIATE` transaction of two round trips to SQLite whatever their
//! number (read the request ids, the accounts and the last ledger row; then write the balances,
//! append the ledger rows, record the request ids and commit), so its cost per transfer falls as
//! load rises. Nobody is answered before that transaction commits: every answered transfer
//! survives `kill -9`.
//!
//! Inside the batch each transfer is decided in arrival order against the balances and fences
//! left by the ones before it, by the same rules as any money movement ([`crate::rules`]:
//! exactly once per request id, fencing, no overdraft or overflow), so a batch is equivalent to
//! running its transfers one after another. Two transfers with the same request id never share a
//! batch: the later waits for the next one, where it finds the earlier one's outcome. If the
//! transaction fails, none of the batch is applied and each transfer gets the error.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use township_store::{
    SqlitePool,
    sqlx::{self, SqliteConnection},
};

use crate::{
    Error,
    clock::now_ms,
    rules::{self, AccountState, Leg, PriorRequest, Receipt, Refusal, Verdict, prior_outcome},
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
    /// Where the outcome goes; answered only once the batch is committed.
    pub outcome: oneshot::Sender<Result<Receipt, Error>>,
}

impl Transfer {
    /// What the request id is recorded with, so that a reuse for another transfer is refused.
    fn params(&self) -> String {
        format!("TRANSFER|{}|{}|{}", self.from, self.to, self.amount.cents())
    }
}

/// Commits the next batch of `waiting` transfers (see [`take_batch`]) and answers each of them.
/// If the transaction fails, none of the batch is applied and each transfer gets the error.
pub async fn commit_batch(pool: &SqlitePool, waiting: &mut VecDeque<Transfer>) {
    let batch = take_batch(waiting);
    let outcomes = match commit(pool, &batch).await {
        Ok(outcomes) => outcomes,
        Err(err) => {
            tracing::error!(error = %err, transfers = batch.len(), "a batch of transfers failed; none was applied");
            batch
                .iter()
                .map(|_| Err(Error::Internal(format!("transfer batch: {err}"))))
                .collect()
        }
    };
    for (transfer, outcome) in batch.into_iter().zip(outcomes) {
        let _ = transfer.outcome.send(outcome);
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

/// The first round trip to SQLite: opens the transaction and reads everything the batch's
/// decisions need, as one row of JSON (each row sent back is a wake-up of the writer thread).
/// `?1` is a JSON array of the request ids, `?2` of the account ids, `?3` of the `[session,
/// source account]` pairs, of which those whose session is live at `?4` and holds the account
/// come back.
const READ: &str = "BEGIN IMMEDIATE;
SELECT
 (SELECT json_group_array(json_array(request_id, params, transaction_id, balance_cents, rejection))
  FROM requests WHERE request_id IN (SELECT value FROM json_each(?1))),
 (SELECT json_group_array(json_array(id, balance_cents, fence_any, fence_write))
  FROM accounts WHERE id IN (SELECT value FROM json_each(?2))),
 (SELECT COALESCE(MAX(id), 0) FROM ledger),
 (SELECT json_group_array(pair.value) FROM json_each(?3) AS pair
  WHERE EXISTS (SELECT 1 FROM sessions s JOIN account_holders h ON h.holder_name = s.holder_name
                WHERE s.token_hash = pair.value ->> 0 AND s.expires_ms > ?4
                  AND h.account_id = pair.value ->> 1));";

/// The second and last round trip: writes the batch's decisions and commits. `?1` is a JSON
/// array of changed accounts `[id, balance, fence_any, fence_write]`, `?2` of ledger rows `[id,
/// account, request, kind, amount, balance after, counterparty]`, `?4` of recorded requests
/// `[request, params, transaction, balance, rejection]`; `?3` is the time.
const WRITE: &str = "UPDATE accounts
 SET balance_cents = change.value ->> 1, fence_any = change.value ->> 2,
     fence_write = change.value ->> 3
 FROM json_each(?1) AS change WHERE accounts.id = change.value ->> 0;
INSERT INTO ledger (id, account_id, request_id, kind, amount_cents, balance_after_cents,
                    counterparty, time_ms)
 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
        value ->> 6, ?3 FROM json_each(?2);
INSERT INTO requests (request_id, params, transaction_id, balance_cents, rejection, created_ms)
 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?3 FROM json_each(?4);
COMMIT;";

/// Does `batch` in one transaction and returns each transfer's outcome, in order. The
/// transaction takes two round trips to SQLite's worker thread whatever the batch's size, each
/// one SQL text that is prepared once and cached: each round trip wakes two threads, and on a
/// busy machine those wake-ups cost more than the SQL.
async fn commit(
    pool: &SqlitePool,
    batch: &[Transfer],
) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let mut conn = pool.acquire().await?;
    let done = in_transaction(&mut conn, batch).await;
    if done.is_err() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
        // Either the transaction never began or the connection is unusable: a fresh one is
        // certain to hold no transaction.
        conn.close_on_drop();
    }
    done
}

async fn in_transaction(
    conn: &mut SqliteConnection,
    batch: &[Transfer],
) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let params: Vec<String> = batch.iter().map(Transfer::params).collect();
    let request_ids: Vec<&str> = batch.iter().map(|t| t.request_id.as_str()).collect();
    let account_ids: HashSet<&str> = batch
        .iter()
        .flat_map(|t| [t.from.as_str(), t.to.as_str()])
        .collect();

    let pairs: HashSet<(&str, &str)> = batch
        .iter()
        .map(|t| (t.session.as_str(), t.from.as_str()))
        .collect();
    let (requests, accounts, last_row, live): (String, String, i64, String) = sqlx::query_as(READ)
        .bind(json!(request_ids).to_string())
        .bind(json!(account_ids).to_string())
        .bind(json!(pairs).to_string())
        .bind(now_ms())
        .fetch_one(&mut *conn)
        .await?;
    let unreadable = |e: serde_json::Error| Error::Internal(format!("transfer batch read: {e}"));
    let live: HashSet<(String, String)> = serde_json::from_str(&live).map_err(unreadable)?;
    let mut priors: HashMap<String, PriorRequest> =
        serde_json::from_str::<Vec<(String, String, String, i64, String)>>(&requests)
            .map_err(unreadable)?
            .into_iter()
            .map(|(id, params, transaction_id, balance_cents, rejection)| {
                let prior = PriorRequest {
                    params,
                    transaction_id,
                    balance_cents,
                    rejection,
                };
                (id, prior)
            })
            .collect();
    let mut accounts: HashMap<String, Seen> =
        serde_json::from_str::<Vec<(String, i64, i64, i64)>>(&accounts)
            .map_err(unreadable)?
            .into_iter()
            .map(|(id, balance, fence_any, fence_write)| {
                let state = AccountState {
                    balance,
                    fence_any,
                    fence_write,
                };
                let seen = Seen {
                    state,
                    changed: false,
                };
                (id, seen)
            })
            .collect();
    let mut next_row = last_row + 1;

    let decisions: Vec<Decision> = batch
        .iter()
        .zip(&params)
        .map(|(transfer, params)| {
            let session = (transfer.session.clone(), transfer.from.as_str().to_owned());
            if !live.contains(&session) {
                // Holdings are never taken away, so it is the session that has ended.
                return Decision::Answered(Err(Error::Unauthenticated(
                    "the session token is unknown or expired",
                )));
            }
            let prior = priors.remove(transfer.request_id.as_str());
            decide(transfer, params, prior, &mut accounts)
        })
        .collect();

    let changes: Vec<Value> = accounts
        .iter()
        .filter(|(_, seen)| seen.changed)
        .map(|(id, Seen { state: s, .. })| json!([id, s.balance, s.fence_any, s.fence_write]))
        .collect();
    let mut ledger_rows: Vec<Value> = Vec::new();
    let mut records: Vec<Value> = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    for ((transfer, params), decision) in batch.iter().zip(&params).zip(decisions) {
        let request_id = transfer.request_id.as_str();
        match decision {
            Decision::Answered(outcome) => outcomes.push(outcome),
            Decision::Applied {
                from_after,
                to_after,
            } => {
                let (from, to, cents) = (
                    transfer.from.as_str(),
                    transfer.to.as_str(),
                    transfer.amount.cents(),
                );
                let out_row = next_row;
                ledger_rows.push(json!([
                    out_row,
                    from,
                    request_id,
                    "TRANSFER_OUT",
                    -cents,
                    from_after,
                    to
                ]));
                ledger_rows.push(json!([
                    out_row + 1,
                    to,
                    request_id,
                    "TRANSFER_IN",
                    cents,
                    to_after,
                    from
                ]));
                next_row += 2;
                let receipt = Receipt {
                    transaction_id: out_row.to_string(),
                    balance_cents: from_after,
                };
                records.push(json!([
                    request_id,
                    params,
                    receipt.transaction_id,
                    from_after,
                    ""
                ]));
                outcomes.push(Ok(receipt));
            }
            Decision::Refused(refusal) => {
                let (rejection, balance) = refusal.stored();
                records.push(json!([request_id, params, "", balance, rejection]));
                outcomes.push(Err(refusal.into()));
            }
        }
    }
    sqlx::query(WRITE)
        .bind(Value::Array(changes).to_string())
        .bind(Value::Array(ledger_rows).to_string())
        .bind(now_ms())
        .bind(Value::Array(records).to_string())
        .execute(&mut *conn)
        .await?;
    Ok(outcomes)
}

/// Decides one transfer against the accounts as the transfers before it left them, and changes
/// them if it applies.
fn decide(
    transfer: &Transfer,
    params: &str,
    prior: Option<PriorRequest>,
    accounts: &mut HashMap<String, Seen>,
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
