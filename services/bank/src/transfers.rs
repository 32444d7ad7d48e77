//! Group commit of transfers, the bank's hottest path. Transfers that arrive while the writer is
//! busy queue up; the writer then takes up to [`MAX_BATCH`] of them and does them all in one
//! `BEGIN IMMEDIATE` transaction of two round trips to SQLite whatever their number (read the
//! request ids, the accounts and the last ledger row; then write the balances, append the ledger
//! rows, record the request ids and commit), so its cost per transfer falls as load rises. Nobody is answered before that transaction commits: every
//! answered transfer survives `kill -9`.
//!
//! Inside the batch each transfer is decided in arrival order against the balances and fences
//! left by the ones before it, by the same rules as a transfer on its own (exactly once per
//! request id, fencing, no overdraft or overflow), so a batch is equivalent to running its
//! transfers one after another. Two transfers with the same request id never share a batch: the
//! later waits for the next one, where it finds the earlier one's outcome. If the transaction
//! fails, none of the batch is applied and each transfer gets the error.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use township_store::{
    SqlitePool,
    sqlx::{self, SqliteConnection},
};

use crate::{
    Error,
    ledger::{
        self, BALANCE_LIMIT, INSUFFICIENT_FUNDS, Receipt, apply, now_ms, prior_outcome,
        refuse_older,
    },
    types::{AccountId, Amount, RequestId},
};

/// Most transfers in one transaction.
pub const MAX_BATCH: usize = 64;

/// One transfer for the writer: the session it is made in (its token's hash), the validated
/// request, the fencing tokens of its WRITE locks (source, destination), and where its outcome
/// goes.
pub struct Transfer {
    pub session: String,
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Amount,
    pub request_id: RequestId,
    pub tokens: (u64, u64),
    pub outcome: oneshot::Sender<Result<Receipt, Error>>,
}

impl Transfer {
    /// What the request id is recorded with, so that a reuse for another transfer is refused.
    fn params(&self) -> String {
        format!("TRANSFER|{}|{}|{}", self.from, self.to, self.amount.cents())
    }
}

/// Starts the writer on the current runtime; it runs until every sender is dropped.
pub fn start_writer(pool: SqlitePool) -> mpsc::UnboundedSender<Transfer> {
    let (queue, queued) = mpsc::unbounded_channel();
    tokio::spawn(write_batches(pool, queued));
    queue
}

async fn write_batches(pool: SqlitePool, mut queued: mpsc::UnboundedReceiver<Transfer>) {
    let mut waiting: VecDeque<Transfer> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match queued.recv().await {
                Some(transfer) => waiting.push_back(transfer),
                None => return,
            }
        }
        while waiting.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(transfer) => waiting.push_back(transfer),
                Err(_) => break,
            }
        }
        let batch = take_batch(&mut waiting);
        let outcomes = match commit(&pool, &batch).await {
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
struct AccountState {
    balance: i64,
    fence_any: i64,
    fence_write: i64,
    changed: bool,
}

/// What the batch does with one transfer.
enum Decision {
    /// Answered without writing: an earlier outcome of its request id, or an error.
    Answered(Result<Receipt, Error>),
    /// Applied: the two balances after it.
    Applied { from_after: i64, to_after: i64 },
    /// Refused by a money rule; recorded so a retry is refused the same way.
    Refused {
        refusal: Error,
        rejection: &'static str,
        balance: i64,
    },
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
    let mut priors: HashMap<String, ledger::PriorRow> =
        serde_json::from_str::<Vec<(String, String, String, i64, String)>>(&requests)
            .map_err(unreadable)?
            .into_iter()
            .map(|(id, params, transaction, balance, rejection)| {
                (id, (params, transaction, balance, rejection))
            })
            .collect();
    let mut accounts: HashMap<String, AccountState> =
        serde_json::from_str::<Vec<(String, i64, i64, i64)>>(&accounts)
            .map_err(unreadable)?
            .into_iter()
            .map(|(id, balance, fence_any, fence_write)| {
                let state = AccountState {
                    balance,
                    fence_any,
                    fence_write,
                    changed: false,
                };
                (id, state)
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
        .filter(|(_, state)| state.changed)
        .map(|(id, s)| json!([id, s.balance, s.fence_any, s.fence_write]))
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
            Decision::Refused {
                refusal,
                rejection,
                balance,
            } => {
                records.push(json!([request_id, params, "", balance, rejection]));
                outcomes.push(Err(refusal));
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
    prior: Option<ledger::PriorRow>,
    accounts: &mut HashMap<String, AccountState>,
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
    let checked = |account: &AccountId, token: u64, field: &'static str| {
        let state = accounts
            .get(account.as_str())
            .ok_or(Error::AccountNotFound { field })?;
        let token = refuse_older(token, state.fence_any)?;
        Ok::<_, Error>((state.balance, token))
    };
    let sides = checked(&transfer.from, from_token, "from_account_id")
        .and_then(|from| Ok((from, checked(&transfer.to, to_token, "to_account_id")?)));
    let ((from_balance, from_token), (to_balance, to_token)) = match sides {
        Ok(sides) => sides,
        Err(err) => return Decision::Answered(Err(err)),
    };
    let cents = transfer.amount.cents();
    let after = apply(from_balance, -cents).and_then(|from| Ok((from, apply(to_balance, cents)?)));
    let (from_after, to_after) = match after {
        Ok(after) => after,
        Err(refusal) => {
            let (rejection, balance) = match &refusal {
                Error::InsufficientFunds { balance_cents } => (INSUFFICIENT_FUNDS, *balance_cents),
                _ => (BALANCE_LIMIT, 0),
            };
            return Decision::Refused {
                refusal,
                rejection,
                balance,
            };
        }
    };
    for (account, balance, token) in [
        (&transfer.from, from_after, from_token),
        (&transfer.to, to_after, to_token),
    ] {
        if let Some(state) = accounts.get_mut(account.as_str()) {
            state.balance = balance;
            state.fence_any = state.fence_any.max(token);
            state.fence_write = state.fence_write.max(token);
            state.changed = true;
        }
    }
    Decision::Applied {
        from_after,
        to_after,
    }
}

#[cfg(test)]
mod tests {
    use tokio::task::JoinSet;

    use super::*;
    use crate::{ledger::Ledger, types::HolderName};

    fn rid() -> RequestId {
        RequestId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
    }

    fn cents(n: i64) -> Amount {
        Amount::parse("amount_cents", n).unwrap()
    }

    /// A fresh ledger with one account of Ada's per balance given.
    async fn ledger_with(balances: &[i64]) -> (tempfile::TempDir, Ledger, Vec<AccountId>) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).await.unwrap();
        let ada = HolderName::parse("holder_name", "Ada").unwrap();
        let mut accounts = Vec::new();
        for (i, balance) in balances.iter().enumerate() {
            let hash = (i == 0).then_some("hash");
            let account = ledger
                .open_account(&rid(), &ada, hash, *balance, 0)
                .await
                .unwrap();
            accounts.push(account);
        }
        ledger
            .create_session(SESSION, &ada, now_ms(), i64::MAX)
            .await
            .unwrap();
        (dir, ledger, accounts)
    }

    /// The token hash of Ada's session in [`ledger_with`].
    const SESSION: &str = "ada-session";

    #[tokio::test]
    async fn concurrent_transfers_are_each_decided_as_if_done_one_after_another() {
        let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
        let (a, b) = (accounts[0].clone(), accounts[1].clone());
        let ids: Vec<RequestId> = (0..30).map(|_| rid()).collect();
        let mut running = JoinSet::new();
        for id in &ids {
            let (ledger, a, b, id) = (ledger.clone(), a.clone(), b.clone(), id.clone());
            running.spawn(async move {
                ledger
                    .transfer(SESSION, &a, &b, cents(50), &id, (5, 5))
                    .await
            });
        }
        let outcomes = running.join_all().await;
        let done = outcomes.iter().filter(|o| o.is_ok()).count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Err(Error::InsufficientFunds { .. })))
            .count();
        assert_eq!((done, refused), (20, 10), "{outcomes:?}");
        assert_eq!(ledger.balance(&a, 5).await.unwrap(), 0);
        assert_eq!(ledger.balance(&b, 5).await.unwrap(), 1_000);
        let receipts: Vec<&Receipt> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        let mut after: Vec<i64> = receipts.iter().map(|r| r.balance_cents).collect();
        after.sort_unstable();
        let expected: Vec<i64> = (0..20).map(|i| i * 50).collect();
        assert_eq!(
            after, expected,
            "each applied transfer saw the ones before it"
        );

        for id in &ids {
            let again = ledger
                .transfer(SESSION, &a, &b, cents(50), id, (5, 5))
                .await;
            match again {
                Ok(receipt) => assert!(receipts.contains(&&receipt)),
                Err(Error::InsufficientFunds { .. }) => {}
                other => panic!("a retry gets its first answer, not {other:?}"),
            }
        }
        assert_eq!(ledger.balance(&a, 5).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_same_request_id_sent_twice_at_once_applies_once() {
        let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
        let id = rid();
        let first = ledger.transfer(SESSION, &accounts[0], &accounts[1], cents(100), &id, (1, 1));
        let second = ledger.transfer(SESSION, &accounts[0], &accounts[1], cents(100), &id, (1, 1));
        let (first, second) = tokio::join!(first, second);
        assert_eq!(first.unwrap(), second.unwrap());
        assert_eq!(ledger.balance(&accounts[0], 1).await.unwrap(), 900);
        assert_eq!(ledger.balance(&accounts[1], 1).await.unwrap(), 100);
    }

    #[tokio::test]
    async fn a_batch_reports_unknown_accounts_and_stale_tokens_per_transfer() {
        let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
        let (a, b) = (&accounts[0], &accounts[1]);
        assert_eq!(
            ledger.balance(a, 9).await.unwrap(),
            1_000,
            "a newer holder reads"
        );
        let nowhere = AccountId::new();
        let ids = [rid(), rid(), rid()];
        let (unknown, stale, fine) = tokio::join!(
            ledger.transfer(SESSION, a, &nowhere, cents(1), &ids[0], (9, 9)),
            ledger.transfer(SESSION, a, b, cents(1), &ids[1], (3, 9)),
            ledger.transfer(SESSION, a, b, cents(1), &ids[2], (9, 9)),
        );
        assert!(matches!(
            unknown,
            Err(Error::AccountNotFound {
                field: "to_account_id"
            })
        ));
        assert!(matches!(stale, Err(Error::StaleLease { token: 3, .. })));
        assert_eq!(fine.unwrap().balance_cents, 999);
    }

    #[tokio::test]
    async fn a_transfer_is_refused_in_its_transaction_once_its_session_has_ended() {
        let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
        let (a, b) = (&accounts[0], &accounts[1]);
        let bob = HolderName::parse("holder_name", "Bob").unwrap();
        ledger
            .create_session("bob-session", &bob, now_ms(), i64::MAX)
            .await
            .unwrap();
        assert!(ledger.delete_session(SESSION).await.unwrap());
        let ids = [rid(), rid()];
        let (ended, not_bobs) = tokio::join!(
            ledger.transfer(SESSION, a, b, cents(1), &ids[0], (1, 1)),
            ledger.transfer("bob-session", a, b, cents(1), &ids[1], (1, 1)),
        );
        for refused in [ended, not_bobs] {
            assert!(
                matches!(refused, Err(Error::Unauthenticated(_))),
                "{refused:?}"
            );
        }
        assert_eq!(ledger.balance(a, 1).await.unwrap(), 1_000);
        assert_eq!(ledger.balance(b, 1).await.unwrap(), 0);
    }
}
