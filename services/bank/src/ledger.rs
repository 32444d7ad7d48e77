//! The bank's storage: holders, accounts, the append-only ledger, request ids, sessions and login
//! failures, in one SQLite file (through `township-store`) that every bank replica shares.
//!
//! Every money movement is one `BEGIN IMMEDIATE` transaction that (1) returns the original receipt
//! if its request id was seen before, (2) checks the caller's fencing token against the account's
//! record, (3) checks the rule (no negative balance, no overflow), and (4) writes the balance, the
//! ledger rows and the request id together. So a retry never applies twice, and a replica whose
//! lock lease expired can neither write nor overwrite a newer holder's work.
//!
//! Fencing: each account records `fence_write`, the highest token that changed it, and
//! `fence_any`, the highest token that read or changed it. A change needs a token at least
//! `fence_any` (no newer holder has even looked); a read needs one at least `fence_write` (readers
//! holding the lock together may have tokens in any order).

use std::{path::Path, time::SystemTime};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use township_store::{Checkpoints, Durability, Pools, SqlitePool, sqlx};

use crate::{
    Error,
    transfers::{self, Transfer},
    types::{AccountId, Amount, HolderName, MAX_BALANCE_CENTS, RequestId},
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS holders (
    name       TEXT PRIMARY KEY,
    pin_hash   TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id               TEXT PRIMARY KEY,
    balance_cents    INTEGER NOT NULL CHECK (balance_cents >= 0),
    interest_rate_bp INTEGER NOT NULL,
    fence_any        INTEGER NOT NULL DEFAULT 0,
    fence_write      INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS account_holders (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    holder_name TEXT NOT NULL REFERENCES holders (name),
    PRIMARY KEY (account_id, holder_name)
);
CREATE INDEX IF NOT EXISTS account_holders_by_name ON account_holders (holder_name);
CREATE TABLE IF NOT EXISTS ledger (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id          TEXT NOT NULL REFERENCES accounts (id),
    request_id          TEXT NOT NULL,
    kind                TEXT NOT NULL,
    amount_cents        INTEGER NOT NULL,
    balance_after_cents INTEGER NOT NULL CHECK (balance_after_cents >= 0),
    counterparty        TEXT NOT NULL DEFAULT '',
    time_ms             INTEGER NOT NULL,
    UNIQUE (account_id, request_id)
);
CREATE TRIGGER IF NOT EXISTS ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TABLE IF NOT EXISTS requests (
    request_id     TEXT PRIMARY KEY,
    params         TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    rejection      TEXT NOT NULL DEFAULT '',
    balance_cents  INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash  TEXT PRIMARY KEY,
    holder_name TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    name            TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    locked_until_ms INTEGER NOT NULL
);
";

/// How often the WAL is copied back into the database file, off the writer's path. At 5,000
/// transfers a second that is at most a few thousand pages of WAL.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// What a mutation returns, and what a retry with the same request id returns again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The ledger row of the named account (the source, for a transfer).
    pub transaction_id: String,
    /// That account's balance after the mutation.
    pub balance_cents: i64,
}

/// An account as shown to its holders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountView {
    /// Its id.
    pub id: AccountId,
    /// Its holders' names, sorted.
    pub holders: Vec<String>,
    /// Its balance.
    pub balance_cents: i64,
    /// Its interest rate in basis points.
    pub interest_rate_bp: i32,
}

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

/// A deposit or a withdrawal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Movement {
    /// Adds money.
    Deposit,
    /// Takes money out.
    Withdraw,
}

/// The bank's storage. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// One connection: every write transaction of this process queues here, in order.
    pool: SqlitePool,
    /// Plain reads (sessions, holders, account lists) that never wait for the writer.
    reads: SqlitePool,
    /// The thread that drives the hot transactions (see [`Ledger::on_writer`]).
    writer: tokio::runtime::Handle,
    /// The queue of the transfers' group-commit writer, on that thread.
    transfers: mpsc::UnboundedSender<Transfer>,
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

impl Ledger {
    /// Opens (or creates) `<data_dir>/bank.db`. WAL with `synchronous = NORMAL`: a committed
    /// transaction survives `kill -9` of any process; a power loss may lose the last commits.
    /// Checkpoints run in the background on a reading connection, every [`CHECKPOINT_INTERVAL`],
    /// so the writer's commits never wait for them.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let Pools {
            writes: pool,
            reads,
        } = township_store::open_pools(
            data_dir,
            "bank.db",
            Durability::Normal,
            Checkpoints::InBackground {
                every: CHECKPOINT_INTERVAL,
            },
            4,
            SCHEMA,
        )
        .await
        .context("cannot open the bank's ledger")?;
        let writer = start_writer_thread().context("cannot start the ledger's writer thread")?;
        let transfers = {
            let _on_writer = writer.enter();
            transfers::start_writer(pool.clone())
        };
        Ok(Self {
            pool,
            reads,
            writer,
            transfers,
        })
    }

    /// Runs a transaction on the ledger's own writer thread. Each SQL statement is a hand-off to
    /// SQLite's worker thread and back; on the server's busy gRPC runtime every hand-back would wait
    /// behind other calls while the one write connection sits idle. On a thread of its own the
    /// transaction runs at SQLite's pace. It also runs to its end (commit or rollback) even if the
    /// caller goes away.
    async fn on_writer<R, F, Fut>(&self, work: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(Ledger) -> Fut,
        Fut: Future<Output = Result<R, Error>> + Send + 'static,
    {
        self.writer
            .spawn(work(self.clone()))
            .await
            .map_err(|e| Error::Internal(format!("ledger writer task: {e}")))?
    }

    async fn begin(&self) -> Result<Tx, Error> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    // ----- holders, sessions, login failures -----

    /// The stored PIN hash of `name`, if the holder exists.
    pub async fn pin_hash(&self, name: &HolderName) -> Result<Option<String>, Error> {
        Ok(
            sqlx::query_scalar("SELECT pin_hash FROM holders WHERE name = ?")
                .bind(name.as_str())
                .fetch_optional(&self.reads)
                .await?,
        )
    }

    /// Failed logins in a row for `name` and until when it is locked (Unix ms).
    pub async fn login_failures(&self, name: &HolderName) -> Result<(u32, i64), Error> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT failures, locked_until_ms FROM login_failures WHERE name = ?")
                .bind(name.as_str())
                .fetch_optional(&self.reads)
                .await?;
        let (failures, until) = row.unwrap_or((0, 0));
        Ok((u32::try_from(failures).unwrap_or(u32::MAX), until))
    }

    /// Counts one more failed login for `name`; `lock_for(failures)` says how long (ms) the name is
    /// then refused. Returns the new count.
    pub async fn record_login_failure(
        &self,
        name: &HolderName,
        now_ms: i64,
        lock_for: impl Fn(u32) -> i64,
    ) -> Result<u32, Error> {
        let mut tx = self.begin().await?;
        let failures: Option<i64> =
            sqlx::query_scalar("SELECT failures FROM login_failures WHERE name = ?")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let failures = u32::try_from(failures.unwrap_or(0))
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let until = now_ms.saturating_add(lock_for(failures));
        sqlx::query(
            "INSERT INTO login_failures (name, failures, locked_until_ms) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET failures = excluded.failures,
                                              locked_until_ms = excluded.locked_until_ms",
        )
        .bind(name.as_str())
        .bind(i64::from(failures))
        .bind(until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(failures)
    }

    /// Forgets `name`'s failed logins (after a successful one).
    pub async fn clear_login_failures(&self, name: &HolderName) -> Result<(), Error> {
        sqlx::query("DELETE FROM login_failures WHERE name = ?")
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a session (by the hash of its token) and drops expired ones.
    pub async fn create_session(
        &self,
        token_hash: &str,
        name: &HolderName,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sessions (token_hash, holder_name, expires_ms) VALUES (?, ?, ?)")
            .bind(token_hash)
            .bind(name.as_str())
            .bind(expires_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The holder of a live session.
    pub async fn session_holder(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<HolderName>, Error> {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT holder_name FROM sessions WHERE token_hash = ? AND expires_ms > ?",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.reads)
        .await?;
        name.map(|n| HolderName::parse("holder_name", &n))
            .transpose()
    }

    /// For a live session: its holder's relation to `account` and when the session ends. The
    /// relation is `None` if there is no such account, else whether the holder holds it. `None`
    /// if the session is unknown or expired. One read, as every customer operation on an account
    /// begins with it.
    pub async fn session_holding(
        &self,
        token_hash: &str,
        now_ms: i64,
        account: &AccountId,
    ) -> Result<Option<(Option<bool>, i64)>, Error> {
        let row: Option<(bool, bool, i64)> = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1),
                    EXISTS (SELECT 1 FROM account_holders h
                            WHERE h.account_id = ?1 AND h.holder_name = s.holder_name),
                    s.expires_ms
             FROM sessions s WHERE s.token_hash = ?2 AND s.expires_ms > ?3",
        )
        .bind(account.as_str())
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.map(|(exists, held, expires_ms)| (exists.then_some(held), expires_ms)))
    }

    /// Ends a session. Returns whether it existed.
    pub async fn delete_session(&self, token_hash: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ----- accounts and holders -----

    /// The accounts `name` holds, sorted.
    pub async fn accounts_of(&self, name: &HolderName) -> Result<Vec<AccountId>, Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT account_id FROM account_holders WHERE holder_name = ? ORDER BY account_id",
        )
        .bind(name.as_str())
        .fetch_all(&self.reads)
        .await?;
        Ok(ids.into_iter().map(AccountId::from_stored).collect())
    }

    /// Every account id, sorted.
    pub async fn all_accounts(&self) -> Result<Vec<AccountId>, Error> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM accounts ORDER BY id")
            .fetch_all(&self.reads)
            .await?;
        Ok(ids.into_iter().map(AccountId::from_stored).collect())
    }

    /// An account with its holders (no fencing: for staff replies right after a change).
    pub async fn account(&self, account: &AccountId) -> Result<AccountView, Error> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT balance_cents, interest_rate_bp FROM accounts WHERE id = ?")
                .bind(account.as_str())
                .fetch_optional(&self.reads)
                .await?;
        let (balance_cents, rate) = row.ok_or(Error::AccountNotFound {
            field: "account_id",
        })?;
        let holders: Vec<String> = sqlx::query_scalar(
            "SELECT holder_name FROM account_holders WHERE account_id = ? ORDER BY holder_name",
        )
        .bind(account.as_str())
        .fetch_all(&self.reads)
        .await?;
        Ok(AccountView {
            id: account.clone(),
            holders,
            balance_cents,
            interest_rate_bp: i32::try_from(rate).unwrap_or(0),
        })
    }

    /// Opens an account for `holder` with `initial` cents, creating the holder with `new_pin_hash`
    /// if given. Exactly once per request id: a retry returns the account it opened.
    pub async fn open_account(
        &self,
        request_id: &RequestId,
        holder: &HolderName,
        new_pin_hash: Option<&str>,
        initial_cents: i64,
        interest_rate_bp: i32,
    ) -> Result<AccountId, Error> {
        let params = format!("OPEN|{holder}|{initial_cents}");
        let mut tx = self.begin().await?;
        if let Some(prior) = prior_receipt(&mut tx, request_id, &params).await? {
            return Ok(AccountId::from_stored(prior.transaction_id));
        }
        let now = now_ms();
        if let Some(hash) = new_pin_hash {
            sqlx::query("INSERT INTO holders (name, pin_hash, created_ms) VALUES (?, ?, ?)")
                .bind(holder.as_str())
                .bind(hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let account = AccountId::new();
        sqlx::query(
            "INSERT INTO accounts (id, balance_cents, interest_rate_bp, created_ms) VALUES (?, ?, ?, ?)",
        )
        .bind(account.as_str())
        .bind(initial_cents)
        .bind(interest_rate_bp)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO account_holders (account_id, holder_name) VALUES (?, ?)")
            .bind(account.as_str())
            .bind(holder.as_str())
            .execute(&mut *tx)
            .await?;
        append(
            &mut tx,
            &account,
            request_id,
            "OPEN",
            initial_cents,
            initial_cents,
            "",
        )
        .await?;
        record_request(
            &mut tx,
            request_id,
            &params,
            account.as_str(),
            initial_cents,
        )
        .await?;
        tx.commit().await?;
        Ok(account)
    }

    /// Adds `holder` to `account` (creating the holder with `new_pin_hash` if given).
    pub async fn add_holder(
        &self,
        account: &AccountId,
        holder: &HolderName,
        new_pin_hash: Option<&str>,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        if let Some(hash) = new_pin_hash {
            sqlx::query("INSERT INTO holders (name, pin_hash, created_ms) VALUES (?, ?, ?)")
                .bind(holder.as_str())
                .bind(hash)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT OR IGNORE INTO account_holders (account_id, holder_name) VALUES (?, ?)",
        )
        .bind(account.as_str())
        .bind(holder.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- fenced reads and money movements -----

    /// The balance, read under a READ lock whose grant carried `token`.
    pub async fn balance(&self, account: &AccountId, token: u64) -> Result<i64, Error> {
        let account = account.clone();
        self.on_writer(move |ledger| async move { ledger.balance_now(&account, token).await })
            .await
    }

    async fn balance_now(&self, account: &AccountId, token: u64) -> Result<i64, Error> {
        let mut tx = self.begin().await?;
        let balance = fence_read(&mut tx, account, token, "account_id").await?;
        tx.commit().await?;
        Ok(balance)
    }

    /// Up to `limit` ledger rows older than row `before` (all, if `None`), newest first, read
    /// under a READ lock whose grant carried `token`.
    pub async fn history(
        &self,
        account: &AccountId,
        token: u64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Entry>, Error> {
        let account = account.clone();
        self.on_writer(move |ledger| async move {
            ledger.history_now(&account, token, before, limit).await
        })
        .await
    }

    async fn history_now(
        &self,
        account: &AccountId,
        token: u64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Entry>, Error> {
        let mut tx = self.begin().await?;
        fence_read(&mut tx, account, token, "account_id").await?;
        let rows: Vec<(i64, String, i64, i64, i64, String, String)> = sqlx::query_as(
            "SELECT id, kind, amount_cents, balance_after_cents, time_ms, counterparty, request_id
             FROM ledger WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(account.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    kind,
                    amount_cents,
                    balance_after_cents,
                    time_ms,
                    counterparty,
                    request_id,
                )| Entry {
                    id,
                    kind,
                    amount_cents,
                    balance_after_cents,
                    time_ms,
                    counterparty,
                    request_id,
                },
            )
            .collect())
    }

    /// A deposit or withdrawal under a WRITE lock whose grant carried `token`. Exactly once per
    /// request id.
    pub async fn move_money(
        &self,
        movement: Movement,
        account: &AccountId,
        amount: Amount,
        request_id: &RequestId,
        token: u64,
    ) -> Result<Receipt, Error> {
        let (account, request_id) = (account.clone(), request_id.clone());
        self.on_writer(move |ledger| async move {
            ledger
                .move_money_now(movement, &account, amount, &request_id, token)
                .await
        })
        .await
    }

    async fn move_money_now(
        &self,
        movement: Movement,
        account: &AccountId,
        amount: Amount,
        request_id: &RequestId,
        token: u64,
    ) -> Result<Receipt, Error> {
        let kind = match movement {
            Movement::Deposit => "DEPOSIT",
            Movement::Withdraw => "WITHDRAW",
        };
        let params = format!("{kind}|{account}|{}", amount.cents());
        let mut tx = self.begin().await?;
        if let Some(prior) = prior_receipt(&mut tx, request_id, &params).await? {
            return Ok(prior);
        }
        let balance = fence_write(&mut tx, account, token, "account_id").await?;
        let delta = match movement {
            Movement::Deposit => amount.cents(),
            Movement::Withdraw => -amount.cents(),
        };
        let after = match apply(balance, delta) {
            Ok(after) => after,
            Err(refusal) => return reject(tx, request_id, &params, refusal).await,
        };
        set_balance(&mut tx, account, after, token).await?;
        let id = append(&mut tx, account, request_id, kind, delta, after, "").await?;
        let receipt = Receipt {
            transaction_id: id.to_string(),
            balance_cents: after,
        };
        record_request(&mut tx, request_id, &params, &receipt.transaction_id, after).await?;
        tx.commit().await?;
        Ok(receipt)
    }

    /// Moves `amount` from `from` to `to` under WRITE locks on both (tokens in that order), for
    /// the session whose token hashes to `session`: the transaction itself checks that the
    /// session is live and its holder holds `from`, so a logout on any replica stops every
    /// transfer not yet committed. Exactly once per request id. Committed together with the
    /// transfers queued beside it (group commit, see [`crate::transfers`]); answered only once
    /// committed.
    pub async fn transfer(
        &self,
        session: &str,
        from: &AccountId,
        to: &AccountId,
        amount: Amount,
        request_id: &RequestId,
        tokens: (u64, u64),
    ) -> Result<Receipt, Error> {
        let (outcome, answer) = oneshot::channel();
        let transfer = Transfer {
            session: session.to_owned(),
            from: from.clone(),
            to: to.clone(),
            amount,
            request_id: request_id.clone(),
            tokens,
            outcome,
        };
        self.transfers
            .send(transfer)
            .map_err(|_| Error::Internal("the transfer writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("the transfer writer dropped a transfer".into()))?
    }

    /// Claims `request_id` for an interest run (a retry of the same run may continue it).
    pub async fn begin_interest(&self, request_id: &RequestId) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        if prior_receipt(&mut tx, request_id, "INTEREST")
            .await?
            .is_none()
        {
            record_request(&mut tx, request_id, "INTEREST", "", 0).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Credits `account` with its interest for run `request_id`, under a WRITE lock whose grant
    /// carried `token`: `floor(balance × rate_bp / 10,000)` cents. Returns the amount credited, or
    /// `None` when this run already credited it or the interest rounds to zero.
    pub async fn credit_interest(
        &self,
        account: &AccountId,
        request_id: &RequestId,
        token: u64,
    ) -> Result<Option<i64>, Error> {
        let mut tx = self.begin().await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM ledger WHERE account_id = ? AND request_id = ?")
                .bind(account.as_str())
                .bind(request_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            return Ok(None);
        }
        let balance = fence_write(&mut tx, account, token, "account_id").await?;
        let rate: i64 = sqlx::query_scalar("SELECT interest_rate_bp FROM accounts WHERE id = ?")
            .bind(account.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let interest = interest_cents(balance, rate);
        if interest == 0 {
            return Ok(None);
        }
        let after = apply(balance, interest)?;
        set_balance(&mut tx, account, after, token).await?;
        append(
            &mut tx, account, request_id, "INTEREST", interest, after, "",
        )
        .await?;
        tx.commit().await?;
        Ok(Some(interest))
    }
}

/// Interest for one run: `floor(balance × rate_bp / 10,000)` — rounded down to the cent, so the
/// bank never pays a fraction of a cent. Computed in 128 bits: no overflow.
pub fn interest_cents(balance_cents: i64, rate_bp: i64) -> i64 {
    let interest = i128::from(balance_cents) * i128::from(rate_bp) / 10_000;
    i64::try_from(interest.max(0)).unwrap_or(i64::MAX)
}

pub(crate) fn apply(balance: i64, delta: i64) -> Result<i64, Error> {
    let after = balance.checked_add(delta).ok_or(Error::BalanceLimit)?;
    if after < 0 {
        return Err(Error::InsufficientFunds {
            balance_cents: balance,
        });
    }
    if after > MAX_BALANCE_CENTS {
        return Err(Error::BalanceLimit);
    }
    Ok(after)
}

fn sql_token(token: u64) -> Result<i64, Error> {
    i64::try_from(token)
        .map_err(|_| Error::Internal(format!("fencing token {token} exceeds 63 bits")))
}

/// Reads the balance for a change: refuses `token` if any newer holder has read or changed it.
async fn fence_write(
    tx: &mut Tx,
    account: &AccountId,
    token: u64,
    field: &'static str,
) -> Result<i64, Error> {
    let (balance, fence_any, _) = fences(tx, account, field).await?;
    refuse_older(token, fence_any)?;
    Ok(balance)
}

/// The fencing rule itself: a token older than the one `recorded` on the account is refused.
pub(crate) fn refuse_older(token: u64, recorded: i64) -> Result<i64, Error> {
    let token_sql = sql_token(token)?;
    if token_sql < recorded {
        return Err(Error::StaleLease {
            token,
            recorded: recorded as u64,
        });
    }
    Ok(token_sql)
}

/// Reads the balance for a read: refuses `token` if a newer holder has changed it, and records the
/// token as the newest to have looked.
async fn fence_read(
    tx: &mut Tx,
    account: &AccountId,
    token: u64,
    field: &'static str,
) -> Result<i64, Error> {
    let (balance, fence_any, fence_write) = fences(tx, account, field).await?;
    let token_sql = refuse_older(token, fence_write)?;
    if token_sql > fence_any {
        sqlx::query("UPDATE accounts SET fence_any = ? WHERE id = ?")
            .bind(token_sql)
            .bind(account.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(balance)
}

async fn fences(
    tx: &mut Tx,
    account: &AccountId,
    field: &'static str,
) -> Result<(i64, i64, i64), Error> {
    sqlx::query_as("SELECT balance_cents, fence_any, fence_write FROM accounts WHERE id = ?")
        .bind(account.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(Error::AccountNotFound { field })
}

async fn set_balance(
    tx: &mut Tx,
    account: &AccountId,
    balance: i64,
    token: u64,
) -> Result<(), Error> {
    let token = sql_token(token)?;
    sqlx::query(
        "UPDATE accounts SET balance_cents = ?, fence_any = MAX(fence_any, ?), fence_write = MAX(fence_write, ?)
         WHERE id = ?",
    )
    .bind(balance)
    .bind(token)
    .bind(token)
    .bind(account.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn append(
    tx: &mut Tx,
    account: &AccountId,
    request_id: &RequestId,
    kind: &str,
    amount_cents: i64,
    balance_after_cents: i64,
    counterparty: &str,
) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "INSERT INTO ledger (account_id, request_id, kind, amount_cents, balance_after_cents, counterparty, time_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(account.as_str())
    .bind(request_id.as_str())
    .bind(kind)
    .bind(amount_cents)
    .bind(balance_after_cents)
    .bind(counterparty)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?)
}

/// The outcome of an earlier request with this id: its receipt, or the same refusal it got
/// (refusals are final too, so an old attempt still under way can never apply after its request
/// was answered as refused); [`Error::RequestIdReused`] if that request had other parameters.
async fn prior_receipt(
    tx: &mut Tx,
    request_id: &RequestId,
    params: &str,
) -> Result<Option<Receipt>, Error> {
    let row: Option<PriorRow> = sqlx::query_as(
        "SELECT params, transaction_id, balance_cents, rejection FROM requests WHERE request_id = ?",
    )
    .bind(request_id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    prior_outcome(row, params)
}

/// A request id's stored outcome: params, transaction id, balance, rejection.
pub(crate) type PriorRow = (String, String, i64, String);

/// The answer a request gets again given its id's stored outcome `row` (see [`prior_receipt`]).
pub(crate) fn prior_outcome(row: Option<PriorRow>, params: &str) -> Result<Option<Receipt>, Error> {
    match row {
        None => Ok(None),
        Some((stored, ..)) if stored != params => Err(Error::RequestIdReused),
        Some((_, _, balance_cents, rejection)) if rejection == INSUFFICIENT_FUNDS => {
            Err(Error::InsufficientFunds { balance_cents })
        }
        Some((_, _, _, rejection)) if rejection == BALANCE_LIMIT => Err(Error::BalanceLimit),
        Some((_, transaction_id, balance_cents, _)) => Ok(Some(Receipt {
            transaction_id,
            balance_cents,
        })),
    }
}

pub(crate) const INSUFFICIENT_FUNDS: &str = "INSUFFICIENT_FUNDS";
pub(crate) const BALANCE_LIMIT: &str = "BALANCE_LIMIT";

/// Records that `request_id` was refused by a money rule (so a retry gets the same answer),
/// commits, and returns the refusal.
async fn reject(
    mut tx: Tx,
    request_id: &RequestId,
    params: &str,
    refusal: Error,
) -> Result<Receipt, Error> {
    let (rejection, balance_cents) = match &refusal {
        Error::InsufficientFunds { balance_cents } => (INSUFFICIENT_FUNDS, *balance_cents),
        Error::BalanceLimit => (BALANCE_LIMIT, 0),
        _ => return Err(refusal),
    };
    sqlx::query(
        "INSERT INTO requests (request_id, params, transaction_id, balance_cents, rejection, created_ms)
         VALUES (?, ?, '', ?, ?, ?)",
    )
    .bind(request_id.as_str())
    .bind(params)
    .bind(balance_cents)
    .bind(rejection)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Err(refusal)
}

async fn record_request(
    tx: &mut Tx,
    request_id: &RequestId,
    params: &str,
    transaction_id: &str,
    balance_cents: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO requests (request_id, params, transaction_id, balance_cents, created_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(request_id.as_str())
    .bind(params)
    .bind(transaction_id)
    .bind(balance_cents)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Starts the ledger's writer thread: a single-threaded runtime that only drives transactions.
/// It lives as long as the process.
fn start_writer_thread() -> std::io::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// Now, as Unix milliseconds (UTC).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_rounds_down_to_the_cent() {
        assert_eq!(interest_cents(10_000, 200), 200);
        assert_eq!(interest_cents(149, 200), 2, "2.98 cents pays 2");
        assert_eq!(interest_cents(49, 200), 0);
        assert_eq!(interest_cents(MAX_BALANCE_CENTS, 10_000), MAX_BALANCE_CENTS);
    }

    async fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).await.unwrap();
        (dir, ledger)
    }

    fn rid() -> RequestId {
        RequestId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
    }

    /// A fresh ledger with one account of Ada's holding `initial` cents.
    async fn ledger_with_account(initial: i64) -> (tempfile::TempDir, Ledger, AccountId) {
        let (dir, ledger) = ledger().await;
        let ada = HolderName::parse("holder_name", "Ada").unwrap();
        let account = ledger
            .open_account(&rid(), &ada, Some("hash"), initial, 200)
            .await
            .unwrap();
        (dir, ledger, account)
    }

    #[tokio::test]
    async fn a_retried_request_returns_the_original_receipt_and_applies_once() {
        let (_dir, ledger, account) = ledger_with_account(1_000).await;
        let id = rid();
        let amount = Amount::parse("amount_cents", 250).unwrap();
        let first = ledger
            .move_money(Movement::Withdraw, &account, amount, &id, 1)
            .await
            .unwrap();
        let again = ledger
            .move_money(Movement::Withdraw, &account, amount, &id, 2)
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(ledger.balance(&account, 3).await.unwrap(), 750);
        let other = Amount::parse("amount_cents", 1).unwrap();
        let reused = ledger
            .move_money(Movement::Withdraw, &account, other, &id, 4)
            .await;
        assert!(matches!(reused, Err(Error::RequestIdReused)));
    }

    #[tokio::test]
    async fn a_stale_token_can_neither_write_nor_overwrite_a_newer_holders_work() {
        let (_dir, ledger, account) = ledger_with_account(1_000).await;
        let amount = Amount::parse("amount_cents", 100).unwrap();
        assert_eq!(
            ledger.balance(&account, 20).await.unwrap(),
            1_000,
            "a newer holder reads"
        );
        let stale = ledger
            .move_money(Movement::Deposit, &account, amount, &rid(), 10)
            .await;
        assert!(matches!(
            stale,
            Err(Error::StaleLease {
                token: 10,
                recorded: 20
            })
        ));
        ledger
            .move_money(Movement::Deposit, &account, amount, &rid(), 20)
            .await
            .unwrap();
        assert!(matches!(
            ledger.balance(&account, 15).await,
            Err(Error::StaleLease { .. })
        ));
        assert_eq!(
            ledger.balance(&account, 18).await.ok(),
            None,
            "older than the last write"
        );
        assert_eq!(ledger.balance(&account, 21).await.unwrap(), 1_100);
        assert_eq!(
            ledger.balance(&account, 20).await.unwrap(),
            1_100,
            "readers' tokens may interleave"
        );
    }

    #[tokio::test]
    async fn overdrafts_and_overflows_change_nothing() {
        let (_dir, ledger) = ledger().await;
        let ada = HolderName::parse("holder_name", "Ada").unwrap();
        let a = ledger
            .open_account(&rid(), &ada, Some("hash"), 100, 200)
            .await
            .unwrap();
        let b = ledger
            .open_account(&rid(), &ada, None, MAX_BALANCE_CENTS, 200)
            .await
            .unwrap();
        ledger
            .create_session("ada", &ada, now_ms(), i64::MAX)
            .await
            .unwrap();
        let too_much = Amount::parse("amount_cents", 101).unwrap();
        let over = ledger
            .transfer("ada", &a, &b, too_much, &rid(), (1, 1))
            .await;
        assert!(matches!(
            over,
            Err(Error::InsufficientFunds { balance_cents: 100 })
        ));
        let one = Amount::parse("amount_cents", 1).unwrap();
        assert!(matches!(
            ledger.transfer("ada", &a, &b, one, &rid(), (1, 1)).await,
            Err(Error::BalanceLimit)
        ));
        assert_eq!(ledger.balance(&a, 2).await.unwrap(), 100);
        assert_eq!(
            ledger.history(&a, 2, None, 10).await.unwrap().len(),
            1,
            "only the OPEN row"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_final_for_its_request_id() {
        let (_dir, ledger, account) = ledger_with_account(1_000).await;
        let id = rid();
        let big = Amount::parse("amount_cents", 1_500).unwrap();
        let refused = ledger
            .move_money(Movement::Withdraw, &account, big, &id, 1)
            .await;
        assert!(matches!(
            refused,
            Err(Error::InsufficientFunds {
                balance_cents: 1_000
            })
        ));
        let top_up = Amount::parse("amount_cents", 1_000).unwrap();
        ledger
            .move_money(Movement::Deposit, &account, top_up, &rid(), 2)
            .await
            .unwrap();
        let again = ledger
            .move_money(Movement::Withdraw, &account, big, &id, 3)
            .await;
        assert!(
            matches!(
                again,
                Err(Error::InsufficientFunds {
                    balance_cents: 1_000
                })
            ),
            "the same answer as the first time, not a late withdrawal: {again:?}"
        );
        assert_eq!(ledger.balance(&account, 4).await.unwrap(), 2_000);
    }

    #[tokio::test]
    async fn the_ledger_is_append_only() {
        let (_dir, ledger, _account) = ledger_with_account(100).await;
        let update = sqlx::query("UPDATE ledger SET amount_cents = 0")
            .execute(&ledger.pool)
            .await;
        assert!(update.is_err());
        let delete = sqlx::query("DELETE FROM ledger")
            .execute(&ledger.pool)
            .await;
        assert!(delete.is_err());
    }
}
