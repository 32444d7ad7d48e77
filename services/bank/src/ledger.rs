//! The bank's storage, as the rest of the bank sees it: holders, accounts, the append-only
//! ledger, request ids, sessions and login failures, in one SQLite file or one PostgreSQL
//! database (through `township-store`) that every bank replica shares.
//!
//! Reads that need no fence run here, on a pool of reading connections, and never wait for the
//! writer. Everything else — every mutation, and the fenced reads, which record their token —
//! is a job for the one writer ([`crate::writer`]): transfers group-committed
//! ([`crate::transfers`]), the others one transaction each ([`crate::writes`]), all decided by
//! [`crate::rules`]. So each runs to its end even if its caller goes away.

use anyhow::Context;
use tokio::sync::oneshot;
use township_kit::paging::PageTokens;
use township_store::{Checkpoints, Database, Db, Durability, Pools, either, sqlx};

use crate::{
    Error,
    audit::{self, Event, Filter, Notes, Record},
    logins::LoginPolicy,
    schema::{POSTGRES_SCHEMA, SQLITE_SCHEMA},
    strikes::{self, Stakes},
    transfers::Transfer,
    types::{AccountId, Amount, HolderName, RequestId},
    writer::Writer,
    writes,
};
pub use crate::{
    clock::now_ms,
    rules::{Movement, Receipt},
    transfers::Committed,
    writes::Entry,
};

/// How often the WAL is copied back into the database file, off the writer's path. At 5,000
/// transfers a second that is at most a few thousand pages of WAL.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Every commit is fsynced: an answered operation survives a power loss. The transfer batches
/// commit without (`NORMAL`), and are answered only once flushed (see [`crate::syncer`]).
const DURABILITY: Durability = Durability::Full;

/// Checkpoints run in the background, every [`CHECKPOINT_INTERVAL`].
const CHECKPOINTS: Checkpoints = Checkpoints::InBackground {
    every: CHECKPOINT_INTERVAL,
};

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

/// The bank's storage. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// Plain reads (sessions, holders, account lists) that never wait for the writer: SQLite's
    /// reading pool, or the PostgreSQL pool.
    reads: Db,
    /// The one writer: every mutation and fenced read.
    writer: Writer,
    /// Audit events that go with no change, written in batches through the writer.
    notes: Notes,
    /// Signs ListTransactions' page tokens, with a key kept in the database (so every replica
    /// checks what another signed, and tokens outlive a restart).
    page_tokens: PageTokens,
}

impl Ledger {
    /// Opens (or creates) the ledger in `database`, migrated to this version.
    ///
    /// On SQLite (`<data_dir>/bank.db`): WAL, every answer sent only once its commit is flushed:
    /// it survives `kill -9` of any process and a power loss (`synchronous = FULL`, and for the
    /// group commit of transfers one flush per batch or more, see [`crate::syncer`]).
    /// Checkpoints run in the background on a reading connection, every [`CHECKPOINT_INTERVAL`],
    /// so the writer's commits never wait for them.
    ///
    /// On PostgreSQL: one pool for reads and writes; every commit is durable when it returns
    /// (the server's `synchronous_commit`), and replicas of the bank share the database.
    pub async fn open(database: &Database) -> anyhow::Result<Self> {
        Self::open_pausing(database, None, None).await
    }

    /// [`Ledger::open`] with the integration tests' pauses, if `delays` has them (debug builds
    /// only, see [`crate::test_seam`]): before each flush of the transfers' WAL (SQLite), and
    /// between the read and the write of a batch tried without locks (PostgreSQL).
    #[cfg(debug_assertions)]
    pub async fn open_with_test_delays(
        database: &Database,
        delays: &crate::test_seam::TestDelays,
    ) -> anyhow::Result<Self> {
        Self::open_pausing(database, delays.before_flush, delays.before_write).await
    }

    /// [`Ledger::open`], pausing `before_flush` (if any) before each flush of the transfers' WAL,
    /// and `before_write` (if any) before the write of a batch tried without locks.
    async fn open_pausing(
        database: &Database,
        before_flush: Option<std::time::Duration>,
        before_write: Option<std::time::Duration>,
    ) -> anyhow::Result<Self> {
        let (reads, writer, key) = match database {
            Database::Sqlite { dir, file } => {
                let Pools { writes, reads } = township_store::open_pools(
                    dir,
                    file,
                    DURABILITY,
                    CHECKPOINTS,
                    4,
                    SQLITE_SCHEMA,
                )
                .await
                .context("cannot open the bank's ledger")?;
                let key = township_store::secret(&writes, "page_token_key").await?;
                let (dir, file) = (dir.clone(), file.clone());
                // The WAL file exists as long as any connection is open, and the writer's stays
                // open.
                let wal = dir.join(format!("{file}-wal"));
                let open = Box::new(move || {
                    township_store::open_blocking(&dir, &file, Durability::Normal, CHECKPOINTS)
                });
                let sync = Box::new(move || {
                    if let Some(pause) = before_flush {
                        std::thread::sleep(pause);
                    }
                    std::fs::File::open(&wal)?.sync_data()
                });
                let writer = Writer::start(writes, open, sync)
                    .context("cannot start the ledger's writer thread")?;
                (Db::Sqlite(reads), writer, key)
            }
            Database::Postgres(postgres) => {
                // The writer's own connection is one of those the operator allows.
                let mut shared = (**postgres).clone();
                shared.max_connections = postgres.max_connections.saturating_sub(1).max(1);
                let pool = township_store::postgres::open(&shared, POSTGRES_SCHEMA)
                    .await
                    .context("cannot open the bank's ledger")?;
                let key = township_store::postgres::secret(&pool, "page_token_key").await?;
                let writer = Writer::start_postgres(pool.clone(), before_write)
                    .context("cannot start the ledger's writer")?;
                (Db::Postgres(pool), writer, key)
            }
        };
        let page_tokens = PageTokens::new(&key).context("the stored page token key")?;
        let notes = Notes::start(writer.clone());
        Ok(Self {
            reads,
            writer,
            notes,
            page_tokens,
        })
    }

    /// Whether the ledger is on PostgreSQL (shared by replicas that each have their own data
    /// directory) rather than in a SQLite file.
    pub fn is_postgres(&self) -> bool {
        self.reads.is_postgres()
    }

    /// Signs and checks ListTransactions' page tokens.
    pub fn page_tokens(&self) -> &PageTokens {
        &self.page_tokens
    }

    // ----- the audit -----

    /// Records `event`, which goes with no change, soon (see [`Notes`]).
    pub fn note(&self, event: Event) {
        self.notes.note(event);
    }

    /// Up to `limit` audit events matching `filter`, older than event `before`, newest first.
    pub async fn audit(
        &self,
        filter: &Filter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Record>, Error> {
        audit::page(&self.reads, filter, before, limit).await
    }

    // ----- holders, sessions, login failures -----

    /// The stored PIN hash of `name`, if the holder exists.
    pub async fn pin_hash(&self, name: &HolderName) -> Result<Option<String>, Error> {
        Ok(either!(pool & self.reads, |pool| sqlx::query_scalar(
            "SELECT pin_hash FROM holders WHERE name = $1"
        )
        .bind(name.as_str())
        .fetch_optional(pool)
        .await?))
    }

    /// Counts a login attempt on `name` from `source` as a failure before its PIN is checked,
    /// unless a lockout refuses it ([`Error::LockedOut`]); see [`crate::logins`]. Returns the
    /// lockouts that follow if the attempt fails.
    pub async fn reserve_login(
        &self,
        name: &HolderName,
        source: &str,
        now_ms: i64,
        policy: LoginPolicy,
    ) -> Result<Stakes, Error> {
        let (name, source) = (name.clone(), source.to_owned());
        self.writer
            .run(move |db| async move {
                strikes::reserve(&db, &name, &source, now_ms, policy).await
            })
            .await
    }

    /// Forgets the failed logins of `name` from `source` (after a right PIN).
    pub async fn clear_login_strikes(&self, name: &HolderName, source: &str) -> Result<(), Error> {
        let (name, source) = (name.clone(), source.to_owned());
        self.writer
            .run(move |db| async move { strikes::clear(&db, &name, &source).await })
            .await
    }

    /// Stores a session (by the hash of its token) with its audit `event`, and drops expired
    /// sessions.
    pub async fn create_session(
        &self,
        token_hash: &str,
        name: &HolderName,
        now_ms: i64,
        expires_ms: i64,
        event: Event,
    ) -> Result<(), Error> {
        let (token_hash, name) = (token_hash.to_owned(), name.clone());
        self.writer
            .run(move |db| async move {
                writes::create_session(&db, &token_hash, &name, now_ms, expires_ms, &event).await
            })
            .await
    }

    /// The holder of a live session.
    pub async fn session_holder(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<HolderName>, Error> {
        let name: Option<String> = either!(pool & self.reads, |pool| sqlx::query_scalar(
            "SELECT holder_name FROM sessions WHERE token_hash = $1 AND expires_ms > $2",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?);
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
        let row: Option<(bool, bool, i64)> = either!(pool & self.reads, |pool| sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1),
                    EXISTS (SELECT 1 FROM account_holders h
                            WHERE h.account_id = $1 AND h.holder_name = s.holder_name),
                    s.expires_ms
             FROM sessions s WHERE s.token_hash = $2 AND s.expires_ms > $3",
        )
        .bind(account.as_str())
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?);
        Ok(row.map(|(exists, held, expires_ms)| (exists.then_some(held), expires_ms)))
    }

    /// Ends a session, with its audit `event`. Returns whether it existed.
    pub async fn delete_session(&self, token_hash: &str, event: Event) -> Result<bool, Error> {
        let token_hash = token_hash.to_owned();
        self.writer
            .run(move |db| async move { writes::delete_session(&db, &token_hash, &event).await })
            .await
    }

    /// Ends every session of `holder`, with its audit `event`. Returns how many.
    pub async fn end_sessions(&self, holder: &HolderName, event: Event) -> Result<u32, Error> {
        let holder = holder.clone();
        self.writer
            .run(move |db| async move { writes::end_sessions(&db, &holder, event).await })
            .await
    }

    /// Gives `holder` the PIN hash `pin_hash` and ends their sessions but the one of `keep` (a
    /// token hash), with the audit `event`, at once. Returns how many sessions ended.
    pub async fn change_pin(
        &self,
        holder: &HolderName,
        pin_hash: &str,
        keep: &str,
        event: Event,
    ) -> Result<u32, Error> {
        let (holder, pin_hash, keep) = (holder.clone(), pin_hash.to_owned(), keep.to_owned());
        self.writer
            .run(move |db| async move {
                writes::change_pin(&db, &holder, &pin_hash, &keep, event).await
            })
            .await
    }

    /// Forgets every failed login and lockout of `name` (staff's Unlock), with its audit
    /// `event`. Returns how many sources had some.
    pub async fn clear_all_login_strikes(
        &self,
        name: &HolderName,
        event: Event,
    ) -> Result<u32, Error> {
        let name = name.clone();
        self.writer
            .run(move |db| async move { strikes::clear_all(&db, &name, event).await })
            .await
    }

    // ----- accounts and holders -----

    /// The accounts `name` holds, in the order they were opened.
    pub async fn accounts_of(&self, name: &HolderName) -> Result<Vec<AccountId>, Error> {
        // The order the accounts were opened in: SQLite's rowid (the one file's commit order;
        // an account is never deleted, so rowids are never reused), PostgreSQL's identity.
        let opened = if self.is_postgres() {
            "a.opened"
        } else {
            "a.rowid"
        };
        let sql = format!(
            "SELECT h.account_id FROM account_holders h JOIN accounts a ON a.id = h.account_id
             WHERE h.holder_name = $1 ORDER BY {opened}"
        );
        let ids: Vec<String> = either!(pool & self.reads, |pool| sqlx::query_scalar(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(name.as_str())
        .fetch_all(pool)
        .await?);
        Ok(ids.into_iter().map(AccountId::from_stored).collect())
    }

    /// The smallest fencing epoch whose every token is above every fence stored on an account
    /// (tokens are `epoch << 40 | count`): what a lock service that lost its state must restart
    /// at. 1 while no account has a fence.
    pub async fn required_epoch(&self) -> Result<u64, Error> {
        let highest: i64 = either!(pool & self.reads, |pool| {
            sqlx::query_scalar(
            "SELECT coalesce(max(CASE WHEN fence_any > fence_write THEN fence_any ELSE fence_write END), 0)
             FROM accounts",
        )
        .fetch_one(pool).await?
        });
        Ok(((highest.max(0) as u64) >> 40) + 1)
    }

    /// Every account id, sorted.
    pub async fn all_accounts(&self) -> Result<Vec<AccountId>, Error> {
        let ids: Vec<String> = either!(pool & self.reads, |pool| sqlx::query_scalar(
            "SELECT id FROM accounts ORDER BY id"
        )
        .fetch_all(pool)
        .await?);
        Ok(ids.into_iter().map(AccountId::from_stored).collect())
    }

    /// An account with its holders (no fencing: for staff replies right after a change).
    pub async fn account(&self, account: &AccountId) -> Result<AccountView, Error> {
        let row: Option<(i64, i64)> = either!(pool & self.reads, |pool| sqlx::query_as(
            "SELECT balance_cents, interest_rate_bp FROM accounts WHERE id = $1"
        )
        .bind(account.as_str())
        .fetch_optional(pool)
        .await?);
        let (balance_cents, rate) = row.ok_or(Error::AccountNotFound {
            field: "account_id",
        })?;
        let holders: Vec<String> = either!(pool & self.reads, |pool| {
            sqlx::query_scalar(
            "SELECT holder_name FROM account_holders WHERE account_id = $1 ORDER BY holder_name",
        )
        .bind(account.as_str())
        .fetch_all(pool).await?
        });
        // The balance may come from a batch of transfers not yet flushed.
        self.writer.durable().await;
        Ok(AccountView {
            id: account.clone(),
            holders,
            balance_cents,
            interest_rate_bp: i32::try_from(rate).unwrap_or(0),
        })
    }

    /// Opens an account for `holder` with `initial_cents`, creating the holder with
    /// `new_pin_hash` if given, with the audit `event`. Exactly once per request id: a retry
    /// returns the account it opened.
    pub async fn open_account(
        &self,
        request_id: &RequestId,
        holder: &HolderName,
        new_pin_hash: Option<&str>,
        initial_cents: i64,
        interest_rate_bp: i32,
        event: Event,
    ) -> Result<AccountId, Error> {
        let (request_id, holder) = (request_id.clone(), holder.clone());
        let new_pin_hash = new_pin_hash.map(str::to_owned);
        self.writer
            .run(move |db| async move {
                let hash = new_pin_hash.as_deref();
                writes::open_account(
                    &db,
                    &request_id,
                    &holder,
                    hash,
                    initial_cents,
                    interest_rate_bp,
                    event,
                )
                .await
            })
            .await
    }

    /// Adds `holder` to `account` (creating the holder with `new_pin_hash` if given), with the
    /// audit `event` (recorded only if they did not hold it already).
    pub async fn add_holder(
        &self,
        account: &AccountId,
        holder: &HolderName,
        new_pin_hash: Option<&str>,
        event: Event,
    ) -> Result<(), Error> {
        let (account, holder) = (account.clone(), holder.clone());
        let new_pin_hash = new_pin_hash.map(str::to_owned);
        self.writer
            .run(move |db| async move {
                let hash = new_pin_hash.as_deref();
                writes::add_holder(&db, &account, &holder, hash, &event).await
            })
            .await
    }

    // ----- fenced reads and money movements -----

    /// The balance, read under a READ lock whose grant carried `token`.
    pub async fn balance(&self, account: &AccountId, token: u64) -> Result<i64, Error> {
        let account = account.clone();
        self.writer
            .run(move |db| async move { writes::balance(&db, &account, token).await })
            .await
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
        self.writer
            .run(
                move |db| async move { writes::history(&db, &account, token, before, limit).await },
            )
            .await
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
        self.writer
            .run(move |db| async move {
                writes::move_money(&db, movement, &account, amount, &request_id, token).await
            })
            .await
    }

    /// Moves `amount` from `from` to `to` under WRITE locks on both (tokens in that order), for
    /// the session whose token hashes to `session`: the transaction itself checks that the
    /// session is live and its holder holds `from`, so a logout on any replica stops every
    /// transfer not yet committed. Exactly once per request id. Committed together with the
    /// transfers queued beside it (group commit, see [`crate::transfers`]); answered only once
    /// that commit is on the disk.
    pub async fn transfer(
        &self,
        session: &str,
        from: &AccountId,
        to: &AccountId,
        amount: Amount,
        request_id: &RequestId,
        tokens: (u64, u64),
    ) -> Result<Receipt, Error> {
        let committed = self
            .commit_transfer(session, from, to, amount, request_id, tokens)
            .await?;
        self.once_durable(committed).await
    }

    /// [`Ledger::transfer`] in two steps, for a caller holding the accounts' locks: this one
    /// returns as soon as the transfer's batch is committed, when the locks may go (whoever takes
    /// them next commits after it, see [`crate::bank::Bank::transfer`]); the outcome is an answer
    /// only after [`Ledger::once_durable`].
    pub async fn commit_transfer(
        &self,
        session: &str,
        from: &AccountId,
        to: &AccountId,
        amount: Amount,
        request_id: &RequestId,
        tokens: (u64, u64),
    ) -> Result<Committed, Error> {
        let (outcome, committed) = oneshot::channel();
        self.writer.queue_transfer(Transfer {
            session: session.to_owned(),
            from: from.clone(),
            to: to.clone(),
            amount,
            request_id: request_id.clone(),
            tokens,
            outcome,
        })?;
        committed
            .await
            .map_err(|_| Error::Internal("the ledger writer dropped a transfer".into()))
    }

    /// The outcome of a committed transfer, once its commit is on the disk.
    pub async fn once_durable(&self, committed: Committed) -> Result<Receipt, Error> {
        self.writer.durable_through(committed.batch).await?;
        committed.outcome
    }

    /// Claims `request_id` for an interest run (a retry of the same run may continue it), with
    /// the audit `event`.
    pub async fn begin_interest(&self, request_id: &RequestId, event: Event) -> Result<(), Error> {
        let request_id = request_id.clone();
        self.writer
            .run(move |db| async move { writes::begin_interest(&db, &request_id, &event).await })
            .await
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
        let (account, request_id) = (account.clone(), request_id.clone());
        self.writer
            .run(move |db| async move {
                writes::credit_interest(&db, &account, &request_id, token).await
            })
            .await
    }
}

#[cfg(test)]
mod tests;
