//! Group commit of transfers, the bank's hottest path. Transfers that arrive while the writer is
//! busy queue up; the writer then takes up to [`MAX_BATCH`] of them and does them all in one
//! `BEGIN IMMEDIATE` transaction of a fixed number of statements (read the request ids, read the
//! accounts, write the balances, append the ledger rows, record the request ids), so its cost per
//! transfer falls as load rises. Nobody is answered before that transaction commits: every
//! answered transfer survives `kill -9`.
//!
//! Inside the batch each transfer is decided in arrival order against the balances and fences
//! left by the ones before it, by the same rules as a transfer on its own (exactly once per
//! request id, fencing, no overdraft or overflow), so a batch is equivalent to running its
//! transfers one after another. Two transfers with the same request id never share a batch: the
//! later waits for the next one, where it finds the earlier one's outcome. If the transaction
//! fails, none of the batch is applied and each transfer gets the error.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::sync::{mpsc, oneshot};
use township_store::{
    SqlitePool,
    sqlx::{self, AssertSqlSafe},
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

/// One transfer for the writer: the validated request, the fencing tokens of its WRITE locks
/// (source, destination), and where its outcome goes.
pub struct Transfer {
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

/// Does `batch` in one transaction and returns each transfer's outcome, in order.
async fn commit(
    pool: &SqlitePool,
    batch: &[Transfer],
) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let params: Vec<String> = batch.iter().map(Transfer::params).collect();

    let sql = format!(
        "SELECT request_id, params, transaction_id, balance_cents, rejection FROM requests
         WHERE request_id IN ({})",
        placeholders(1, batch.len())
    );
    let mut query = sqlx::query_as::<_, (String, String, String, i64, String)>(AssertSqlSafe(sql));
    for transfer in batch {
        query = query.bind(transfer.request_id.as_str());
    }
    let mut priors: HashMap<String, ledger::PriorRow> = query
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(id, params, transaction_id, balance, rejection)| {
            (id, (params, transaction_id, balance, rejection))
        })
        .collect();

    let ids: Vec<&str> = batch
        .iter()
        .flat_map(|t| [t.from.as_str(), t.to.as_str()])
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let sql = format!(
        "SELECT id, balance_cents, fence_any, fence_write FROM accounts WHERE id IN ({})",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query_as::<_, (String, i64, i64, i64)>(AssertSqlSafe(sql));
    for id in &ids {
        query = query.bind(*id);
    }
    let mut accounts: HashMap<String, AccountState> = query
        .fetch_all(&mut *tx)
        .await?
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

    let decisions: Vec<Decision> = batch
        .iter()
        .zip(&params)
        .map(|(transfer, params)| {
            let prior = priors.remove(transfer.request_id.as_str());
            decide(transfer, params, prior, &mut accounts)
        })
        .collect();

    let changed: Vec<(&String, &AccountState)> =
        accounts.iter().filter(|(_, state)| state.changed).collect();
    if !changed.is_empty() {
        let sql = format!(
            "UPDATE accounts SET balance_cents = v.column2, fence_any = v.column3, fence_write = v.column4
             FROM (VALUES {}) AS v WHERE accounts.id = v.column1",
            placeholders(4, changed.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (id, state) in &changed {
            query = query
                .bind(id.as_str())
                .bind(state.balance)
                .bind(state.fence_any)
                .bind(state.fence_write);
        }
        query.execute(&mut *tx).await?;
    }

    let applied: Vec<(&Transfer, i64, i64)> = batch
        .iter()
        .zip(&decisions)
        .filter_map(|(transfer, decision)| match decision {
            Decision::Applied {
                from_after,
                to_after,
            } => Some((transfer, *from_after, *to_after)),
            _ => None,
        })
        .collect();
    let mut out_rows: HashMap<String, i64> = HashMap::new();
    if !applied.is_empty() {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO ledger (account_id, request_id, kind, amount_cents, balance_after_cents, counterparty, time_ms)
             VALUES {} RETURNING id, request_id, kind",
            placeholders(7, 2 * applied.len())
        );
        let mut query = sqlx::query_as::<_, (i64, String, String)>(AssertSqlSafe(sql));
        for (transfer, from_after, to_after) in &applied {
            let cents = transfer.amount.cents();
            let (from, to, id) = (
                transfer.from.as_str(),
                transfer.to.as_str(),
                transfer.request_id.as_str(),
            );
            query = query
                .bind(from)
                .bind(id)
                .bind("TRANSFER_OUT")
                .bind(-cents)
                .bind(*from_after)
                .bind(to)
                .bind(now)
                .bind(to)
                .bind(id)
                .bind("TRANSFER_IN")
                .bind(cents)
                .bind(*to_after)
                .bind(from)
                .bind(now);
        }
        out_rows = query
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .filter(|(_, _, kind)| kind == "TRANSFER_OUT")
            .map(|(row, request_id, _)| (request_id, row))
            .collect();
    }

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut records: Vec<(&str, &str, String, i64, &str)> = Vec::new();
    for ((transfer, params), decision) in batch.iter().zip(&params).zip(decisions) {
        let request_id = transfer.request_id.as_str();
        match decision {
            Decision::Answered(outcome) => outcomes.push(outcome),
            Decision::Applied { from_after, .. } => {
                let row = out_rows.get(request_id).ok_or_else(|| {
                    Error::Internal(format!(
                        "the ledger row of transfer {request_id} is missing"
                    ))
                })?;
                let receipt = Receipt {
                    transaction_id: row.to_string(),
                    balance_cents: from_after,
                };
                records.push((
                    request_id,
                    params,
                    receipt.transaction_id.clone(),
                    from_after,
                    "",
                ));
                outcomes.push(Ok(receipt));
            }
            Decision::Refused {
                refusal,
                rejection,
                balance,
            } => {
                records.push((request_id, params, String::new(), balance, rejection));
                outcomes.push(Err(refusal));
            }
        }
    }
    if !records.is_empty() {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO requests (request_id, params, transaction_id, balance_cents, rejection, created_ms)
             VALUES {}",
            placeholders(6, records.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (request_id, params, transaction_id, balance, rejection) in &records {
            query = query
                .bind(*request_id)
                .bind(*params)
                .bind(transaction_id.as_str())
                .bind(*balance)
                .bind(*rejection)
                .bind(now);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
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

/// `rows` groups of `width` SQL parameters: `(?, ?), (?, ?)`; a single `?` per row is bare. This
/// is the only text ever spliced into this file's SQL, which is why it may be `AssertSqlSafe`.
fn placeholders(width: usize, rows: usize) -> String {
    let row = if width == 1 {
        "?".to_owned()
    } else {
        format!("({})", vec!["?"; width].join(", "))
    };
    vec![row; rows].join(", ")
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
        (dir, ledger, accounts)
    }

    #[tokio::test]
    async fn concurrent_transfers_are_each_decided_as_if_done_one_after_another() {
        let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
        let (a, b) = (accounts[0].clone(), accounts[1].clone());
        let ids: Vec<RequestId> = (0..30).map(|_| rid()).collect();
        let mut running = JoinSet::new();
        for id in &ids {
            let (ledger, a, b, id) = (ledger.clone(), a.clone(), b.clone(), id.clone());
            running.spawn(async move { ledger.transfer(&a, &b, cents(50), &id, (5, 5)).await });
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
            let again = ledger.transfer(&a, &b, cents(50), id, (5, 5)).await;
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
        let first = ledger.transfer(&accounts[0], &accounts[1], cents(100), &id, (1, 1));
        let second = ledger.transfer(&accounts[0], &accounts[1], cents(100), &id, (1, 1));
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
            ledger.transfer(a, &nowhere, cents(1), &ids[0], (9, 9)),
            ledger.transfer(a, b, cents(1), &ids[1], (3, 9)),
            ledger.transfer(a, b, cents(1), &ids[2], (9, 9)),
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

    #[test]
    fn placeholders_make_rows_of_parameters() {
        assert_eq!(placeholders(1, 3), "?, ?, ?");
        assert_eq!(placeholders(2, 2), "(?, ?), (?, ?)");
    }
}
