//! The SQL of every write transaction but the transfers' batch (see [`crate::transfers`]). Each
//! function is one write transaction ([`Db::begin_write`]: SQLite's `BEGIN IMMEDIATE`, or
//! PostgreSQL's row locks on the accounts it changes and a lock on its request id) and is run
//! only as a job of the writer ([`crate::writer`]); the decisions in it are [`crate::rules`]'.
//! One SQL text serves both backends (`township_store::either!`).
//! The session writes (logins, logouts, PIN changes) are in `sessions`.
//!
//! A money movement (1) returns the original outcome if its request id was seen before, (2)
//! admits the caller's fencing token against the account's record, (3) checks the money rules,
//! and (4) writes the balance, the ledger row and the request id together. So a retry never
//! applies twice, and a replica whose lock lease expired can neither write nor overwrite a newer
//! holder's work. A fenced read writes too: it records the newest token to have looked.

use township_store::{Db, Tx, either, sqlx};

use crate::{
    Error,
    audit::{self, Event},
    clock::now_ms,
    rules::{
        self, AccountState, Leg, Movement, PriorRequest, Receipt, Refusal, Verdict, prior_outcome,
    },
    types::{AccountId, Amount, HolderName, RequestId},
};

mod sessions;

pub use sessions::{change_pin, create_session, delete_session, end_sessions};

/// One ledger row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The row's id (increasing).
    pub id: i64,
    /// OPEN, DEPOSIT, WITHDRAW, TRANSFER_IN, TRANSFER_OUT or INTEREST.
    pub kind: String,
    /// Signed: credits positive, debits negative.
    pub amount_cents: i64,
    /// The balance after this row.
    pub balance_after_cents: i64,
    /// Unix time in milliseconds.
    pub time_ms: i64,
    /// The other account of a transfer, else empty.
    pub counterparty: String,
    /// The request that wrote it.
    pub request_id: String,
}

async fn begin(db: &Db) -> Result<Tx, Error> {
    Ok(db.begin_write().await?)
}

/// Opens an account for `holder` with `initial_cents`, creating the holder with `new_pin_hash`
/// if given, and records `event` with the new account. Exactly once per request id: a retry
/// returns the account it opened (and records nothing more).
pub async fn open_account(
    db: &Db,
    request_id: &RequestId,
    holder: &HolderName,
    new_pin_hash: Option<&str>,
    initial_cents: i64,
    interest_rate_bp: i32,
    event: Event,
) -> Result<AccountId, Error> {
    let params = format!("OPEN|{holder}|{initial_cents}");
    let mut tx = begin(db).await?;
    if let Some(prior) = prior_outcome(prior_request(&mut tx, request_id).await?, &params)? {
        return Ok(AccountId::from_stored(prior.transaction_id));
    }
    let now = now_ms();
    if let Some(hash) = new_pin_hash {
        insert_holder(&mut tx, holder, hash).await?;
    }
    let account = AccountId::new();
    either!(&mut tx, |conn| {
        sqlx::query(
        "INSERT INTO accounts (id, balance_cents, interest_rate_bp, created_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(account.as_str())
    .bind(initial_cents)
    .bind(interest_rate_bp)
    .bind(now)
    .execute(conn).await?.rows_affected()
    });
    either!(&mut tx, |conn| sqlx::query(
        "INSERT INTO account_holders (account_id, holder_name) VALUES ($1, $2)"
    )
    .bind(account.as_str())
    .bind(holder.as_str())
    .execute(conn)
    .await?
    .rows_affected());
    let row = Row {
        account: &account,
        request_id,
        kind: "OPEN",
        amount_cents: initial_cents,
        balance_after_cents: initial_cents,
    };
    append(&mut tx, row).await?;
    let receipt = Receipt {
        transaction_id: account.as_str().to_owned(),
        balance_cents: initial_cents,
    };
    record(&mut tx, request_id, &params, Ok(&receipt)).await?;
    let event = event
        .account(account.as_str())
        .detail(if new_pin_hash.is_some() {
            "a new holder"
        } else {
            "an existing holder"
        });
    audit::append(&mut tx, now, &event, 1).await?;
    tx.commit().await?;
    Ok(account)
}

/// Adds `holder` to `account` (creating the holder with `new_pin_hash` if given), and records
/// `event` if they did not hold it already.
pub async fn add_holder(
    db: &Db,
    account: &AccountId,
    holder: &HolderName,
    new_pin_hash: Option<&str>,
    event: &Event,
) -> Result<(), Error> {
    let mut tx = begin(db).await?;
    if let Some(hash) = new_pin_hash {
        insert_holder(&mut tx, holder, hash).await?;
    }
    let added = either!(&mut tx, |conn| sqlx::query(
        "INSERT INTO account_holders (account_id, holder_name) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(account.as_str())
    .bind(holder.as_str())
    .execute(conn)
    .await?
    .rows_affected());
    if added > 0 {
        audit::append(&mut tx, now_ms(), event, 1).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Creates `holder`, or fails with [`Error::HolderCreatedMeanwhile`] if another request did since
/// this one found no such holder (their PIN, not this one's, is then the holder's).
async fn insert_holder(tx: &mut Tx, holder: &HolderName, pin_hash: &str) -> Result<(), Error> {
    let inserted = either!(tx, |conn| sqlx::query(
        "INSERT INTO holders (name, pin_hash, created_ms) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING"
    )
    .bind(holder.as_str())
    .bind(pin_hash)
    .bind(now_ms())
    .execute(conn)
    .await?
    .rows_affected());
    if inserted == 0 {
        return Err(Error::HolderCreatedMeanwhile);
    }
    Ok(())
}

// ----- fenced reads -----

/// The balance, read under a READ lock whose grant carried `token`.
pub async fn balance(db: &Db, account: &AccountId, token: u64) -> Result<i64, Error> {
    let mut tx = begin(db).await?;
    let balance = admit_read(&mut tx, account, token).await?;
    tx.commit().await?;
    Ok(balance)
}

/// Up to `limit` ledger rows older than row `before` (all, if `None`), newest first, read under
/// a READ lock whose grant carried `token`.
pub async fn history(
    db: &Db,
    account: &AccountId,
    token: u64,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Entry>, Error> {
    let mut tx = begin(db).await?;
    admit_read(&mut tx, account, token).await?;
    let rows: Vec<(i64, String, i64, i64, i64, String, String)> =
        either!(&mut tx, |conn| sqlx::query_as(
            "SELECT id, kind, amount_cents, balance_after_cents, time_ms, counterparty, request_id
         FROM ledger WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(account.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?);
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, kind, amount_cents, balance_after_cents, time_ms, counterparty, request_id)| {
                Entry {
                    id,
                    kind,
                    amount_cents,
                    balance_after_cents,
                    time_ms,
                    counterparty,
                    request_id,
                }
            },
        )
        .collect())
}

/// The account's balance for a read under `token` (see [`AccountState::admit_read`]), recording
/// the token as the newest to have looked if it is.
async fn admit_read(tx: &mut Tx, account: &AccountId, token: u64) -> Result<i64, Error> {
    let state = account_state(tx, account)
        .await?
        .ok_or(Error::AccountNotFound {
            field: "account_id",
        })?;
    if let Some(fence_any) = state.admit_read(token)? {
        either!(tx, |conn| sqlx::query(
            "UPDATE accounts SET fence_any = $1 WHERE id = $2"
        )
        .bind(fence_any)
        .bind(account.as_str())
        .execute(conn)
        .await?
        .rows_affected());
    }
    Ok(state.balance)
}

// ----- money movements -----

/// A deposit or withdrawal under a WRITE lock whose grant carried `token`. Exactly once per
/// request id, refusals included.
pub async fn move_money(
    db: &Db,
    movement: Movement,
    account: &AccountId,
    amount: Amount,
    request_id: &RequestId,
    token: u64,
) -> Result<Receipt, Error> {
    let kind = movement.kind();
    let params = format!("{kind}|{account}|{}", amount.cents());
    let mut tx = begin(db).await?;
    if let Some(prior) = prior_outcome(prior_request(&mut tx, request_id).await?, &params)? {
        return Ok(prior);
    }
    let delta = movement.delta(amount);
    let leg = Leg {
        account: account_state(&mut tx, account).await?,
        field: "account_id",
        delta,
        token,
    };
    let after = match rules::decide([leg])? {
        Verdict::Applied([after]) => after,
        Verdict::Refused(refusal) => {
            record(&mut tx, request_id, &params, Err(refusal)).await?;
            tx.commit().await?;
            return Err(refusal.into());
        }
    };
    store_account(&mut tx, account, after).await?;
    let row = Row {
        account,
        request_id,
        kind,
        amount_cents: delta,
        balance_after_cents: after.balance,
    };
    let receipt = Receipt {
        transaction_id: append(&mut tx, row).await?.to_string(),
        balance_cents: after.balance,
    };
    record(&mut tx, request_id, &params, Ok(&receipt)).await?;
    tx.commit().await?;
    Ok(receipt)
}

/// Claims `request_id` for an interest run (a retry of the same run may continue it), and
/// records `event`.
pub async fn begin_interest(db: &Db, request_id: &RequestId, event: &Event) -> Result<(), Error> {
    const PARAMS: &str = "INTEREST";
    let mut tx = begin(db).await?;
    audit::append(&mut tx, now_ms(), event, 1).await?;
    if prior_outcome(prior_request(&mut tx, request_id).await?, PARAMS)?.is_none() {
        let claim = Receipt {
            transaction_id: String::new(),
            balance_cents: 0,
        };
        record(&mut tx, request_id, PARAMS, Ok(&claim)).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Credits `account` with its interest for run `request_id`, under a WRITE lock whose grant
/// carried `token`. Returns the amount credited, or `None` when this run already credited it or
/// the interest rounds to zero.
pub async fn credit_interest(
    db: &Db,
    account: &AccountId,
    request_id: &RequestId,
    token: u64,
) -> Result<Option<i64>, Error> {
    let mut tx = begin(db).await?;
    // The account first: on PostgreSQL its row lock makes a second credit of this run, from any
    // replica, wait and then see the first one's ledger row.
    let state = account_state(&mut tx, account)
        .await?
        .ok_or(Error::AccountNotFound {
            field: "account_id",
        })?;
    let done: Option<i64> = either!(&mut tx, |conn| sqlx::query_scalar(
        "SELECT id FROM ledger WHERE account_id = $1 AND request_id = $2"
    )
    .bind(account.as_str())
    .bind(request_id.as_str())
    .fetch_optional(conn)
    .await?);
    if done.is_some() {
        return Ok(None);
    }
    state.admit_change(token)?;
    let rate: i64 = either!(&mut tx, |conn| sqlx::query_scalar(
        "SELECT interest_rate_bp FROM accounts WHERE id = $1"
    )
    .bind(account.as_str())
    .fetch_one(conn)
    .await?);
    let interest = rules::interest_cents(state.balance, rate);
    if interest == 0 {
        return Ok(None);
    }
    let leg = Leg {
        account: Some(state),
        field: "account_id",
        delta: interest,
        token,
    };
    let after = match rules::decide([leg])? {
        Verdict::Applied([after]) => after,
        Verdict::Refused(refusal) => return Err(refusal.into()),
    };
    store_account(&mut tx, account, after).await?;
    let row = Row {
        account,
        request_id,
        kind: "INTEREST",
        amount_cents: interest,
        balance_after_cents: after.balance,
    };
    append(&mut tx, row).await?;
    tx.commit().await?;
    Ok(Some(interest))
}

// ----- the rows every mutation reads and writes -----

/// The stored outcome of `request_id`, if it was seen before.
async fn prior_request(tx: &mut Tx, request_id: &RequestId) -> Result<Option<PriorRequest>, Error> {
    if tx.is_postgres() {
        // Two replicas given one request id take turns: the second reads the first's outcome.
        either!(tx, |conn| sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
        )
        .bind(request_id.as_str())
        .execute(conn)
        .await?
        .rows_affected());
    }
    let row: Option<(String, String, i64, String)> = either!(tx, |conn| {
        sqlx::query_as(
        "SELECT params, transaction_id, balance_cents, rejection FROM requests WHERE request_id = $1",
    )
    .bind(request_id.as_str())
    .fetch_optional(conn).await?
    });
    Ok(row.map(
        |(params, transaction_id, balance_cents, rejection)| PriorRequest {
            params,
            transaction_id,
            balance_cents,
            rejection,
        },
    ))
}

/// Records `request_id`'s outcome — its receipt, or its refusal as [`Refusal::stored`] — so a
/// retry gets it again.
async fn record(
    tx: &mut Tx,
    request_id: &RequestId,
    params: &str,
    outcome: Result<&Receipt, Refusal>,
) -> Result<(), Error> {
    let (transaction_id, balance_cents, rejection) = match outcome {
        Ok(receipt) => (receipt.transaction_id.as_str(), receipt.balance_cents, ""),
        Err(refusal) => {
            let (rejection, balance_cents) = refusal.stored();
            ("", balance_cents, rejection)
        }
    };
    either!(tx, |conn| {
        sqlx::query(
        "INSERT INTO requests (request_id, params, transaction_id, balance_cents, rejection, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(request_id.as_str())
    .bind(params)
    .bind(transaction_id)
    .bind(balance_cents)
    .bind(rejection)
    .bind(now_ms())
    .execute(conn).await?.rows_affected()
    });
    Ok(())
}

/// The account's balance and fences, `None` if there is no such account.
async fn account_state(tx: &mut Tx, account: &AccountId) -> Result<Option<AccountState>, Error> {
    let sql = format!(
        "SELECT balance_cents, fence_any, fence_write FROM accounts WHERE id = $1{}",
        tx.for_update()
    );
    let row: Option<(i64, i64, i64)> =
        either!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(account.as_str())
            .fetch_optional(conn)
            .await?);
    Ok(row.map(|(balance, fence_any, fence_write)| AccountState {
        balance,
        fence_any,
        fence_write,
    }))
}

/// Writes the account as a money movement left it.
async fn store_account(tx: &mut Tx, account: &AccountId, state: AccountState) -> Result<(), Error> {
    either!(tx, |conn| sqlx::query(
        "UPDATE accounts SET balance_cents = $1, fence_any = $2, fence_write = $3 WHERE id = $4",
    )
    .bind(state.balance)
    .bind(state.fence_any)
    .bind(state.fence_write)
    .bind(account.as_str())
    .execute(conn)
    .await?
    .rows_affected());
    Ok(())
}

/// A ledger row to append (of no transfer: no counterparty).
struct Row<'a> {
    account: &'a AccountId,
    request_id: &'a RequestId,
    kind: &'static str,
    amount_cents: i64,
    balance_after_cents: i64,
}

/// Appends `row`; returns its id.
async fn append(tx: &mut Tx, row: Row<'_>) -> Result<i64, Error> {
    Ok(either!(tx, |conn| {
        sqlx::query_scalar(
        "INSERT INTO ledger (account_id, request_id, kind, amount_cents, balance_after_cents, time_ms)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(row.account.as_str())
    .bind(row.request_id.as_str())
    .bind(row.kind)
    .bind(row.amount_cents)
    .bind(row.balance_after_cents)
    .bind(now_ms())
    .fetch_one(conn).await?
    }))
}
