//! A batch of transfers on PostgreSQL, where several bank replicas commit batches at once.
//!
//! A batch is first tried in two round trips, without a transaction block: one statement reads
//! what its decisions need (the accounts' balances and fences, the stored outcomes of its request
//! ids, which of its sessions are live and hold their source accounts), and after the decisions
//! one call of `bank_write_transfers` (migration 0002) writes them and commits. That call first
//! locks the accounts the decisions read, in id order, and fails, writing nothing, if any of them
//! changed after the read or a session found live has ended since (`40001`), or if another
//! transaction recorded one of the batch's request ids meanwhile (`23505`).
//!
//! A batch that failed so (something the lock service did not keep out touched its accounts, a
//! session was logged out, a retry of one of its requests ran elsewhere) is decided again in a
//! READ COMMITTED transaction that takes its locks before it reads (so only a session ending
//! meanwhile can fail it again, and then the next try sees the session gone):
//! - first a transaction-scoped advisory lock on each of its request ids, in one order, so a
//!   request retried on another replica waits for the first and reads its outcome;
//! - then its accounts' rows (`FOR UPDATE`, in id order, so two batches never deadlock on them);
//! - then the same read, decisions and write.
//!
//! Either way a ledger row's id is drawn after its accounts are locked, so each account's rows
//! are numbered in the order they were made (ids are not gap-free); a receipt names its row by
//! the id the insert returned. A locked batch PostgreSQL fails for running beside another (a
//! deadlock it broke) is tried again, up to [`ATTEMPTS`] times, before its transfers get the
//! error.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    time::Duration,
};

use township_store::{PgPool, postgres::is_transient, sqlx};

use super::{Read, Seen, Transfer, Writes, decide_batch, finish, take_batch};
use crate::{
    Error,
    clock::now_ms,
    rules::{AccountState, PriorRequest, Receipt},
    syncer::Syncer,
};

/// How many times a batch holding its locks is tried when it fails only for running beside
/// another.
const ATTEMPTS: u32 = 5;

/// One advisory lock per request id, taken in hash order.
const LOCK_REQUESTS: &str = "SELECT pg_advisory_xact_lock(k) FROM
 (SELECT DISTINCT hashtextextended(r, 0) AS k FROM unnest($1::text[]) AS r ORDER BY k) AS keys";
/// The batch's accounts, locked in id order.
const LOCK_ACCOUNTS: &str =
    "SELECT id FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE";
/// What the decisions read, in one statement (one snapshot), as rows of one shape: the batch's
/// accounts (`account`: balance and fences), the stored outcomes of its request ids (`prior`),
/// and the (session, account) pairs whose session is live at `$5` and whose holder holds the
/// account (`live`).
const READ: &str = "SELECT 'account', id, '', '', '', balance_cents, fence_any, fence_write
 FROM accounts WHERE id = ANY($1::text[])
 UNION ALL
 SELECT 'prior', request_id, params, transaction_id, rejection, balance_cents, 0, 0
 FROM requests WHERE request_id = ANY($2::text[])
 UNION ALL
 SELECT 'live', p.token_hash, p.account_id, '', '', 0, 0, 0
 FROM unnest($3::text[], $4::text[]) AS p (token_hash, account_id)
 JOIN sessions s ON s.token_hash = p.token_hash AND s.expires_ms > $5
 JOIN account_holders h ON h.holder_name = s.holder_name AND h.account_id = p.account_id";
/// Everything the batch writes, in one call (see migration 0002): checks that the accounts it
/// read are unchanged and its live sessions still live, then writes; returns each applied
/// request id with its TRANSFER_OUT row's id.
const WRITE: &str = "SELECT applied_request, out_row FROM bank_write_transfers($1::text[],
 $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
 $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::text[],
 $16::text[], $17::bigint[], $18::bigint[], $19::bigint[], $20)";

/// Commits the next batch of `waiting` transfers and sends each transfer its outcome (durable
/// once committed: `syncer` has nothing to flush): first without locks on `own` (the writer's
/// connection), pausing `before_write` (tests only) between its read and its write; then, should
/// that fail for a conflict, in a transaction holding its locks on `pool`.
pub async fn commit_batch(
    pool: &PgPool,
    own: &PgPool,
    waiting: &mut VecDeque<Transfer>,
    syncer: &Syncer,
    before_write: Option<Duration>,
) {
    let batch = take_batch(waiting);
    let number = syncer.next_batch();
    let result = match commit_unlocked(own, &batch, before_write).await {
        Err(Error::Storage(err)) if is_conflict(&err) => {
            tracing::debug!(error = %err, "a batch of transfers is decided again under locks");
            commit_locked(pool, &batch).await
        }
        other => other,
    };
    finish(batch, number, result, syncer);
}

/// Whether `err` says that what a batch read without locks changed before it wrote: an account
/// or a session (40001, from `bank_write_transfers`), or a request id recorded meanwhile (23505).
fn is_conflict(err: &sqlx::Error) -> bool {
    is_transient(err)
        || err
            .as_database_error()
            .is_some_and(|db| db.code().is_some_and(|code| code == "23505"))
}

/// Does `batch` without a transaction block: one read, one write that commits.
async fn commit_unlocked(
    pool: &PgPool,
    batch: &[Transfer],
    before_write: Option<Duration>,
) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let mut conn = pool.acquire().await?;
    let result = decide_and_write(&mut conn, batch, before_write).await;
    match &result {
        Ok(_) => {}
        Err(Error::Storage(err)) if is_conflict(err) => {}
        // The connection may be broken, and it is not pinged before its next use (see
        // `dedicated`): a new one is made instead.
        Err(_) => conn.close_on_drop(),
    }
    result
}

/// Does `batch` in a transaction that locks its request ids and accounts before it reads; tried
/// again if PostgreSQL breaks a deadlock with another replica's batch, or a session ended
/// between the read and the write.
async fn commit_locked(
    pool: &PgPool,
    batch: &[Transfer],
) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let mut attempt = 1;
    loop {
        match lock_and_commit(pool, batch).await {
            Err(Error::Storage(err)) if attempt < ATTEMPTS && is_transient(&err) => {
                tracing::debug!(error = %err, attempt, "a batch of transfers is tried again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// One try of [`commit_locked`].
async fn lock_and_commit(
    pool: &PgPool,
    batch: &[Transfer],
) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let mut tx = pool.begin().await?;
    let request_ids: Vec<&str> = batch.iter().map(|t| t.request_id.as_str()).collect();
    sqlx::query(LOCK_REQUESTS)
        .bind(&request_ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query(LOCK_ACCOUNTS)
        .bind(accounts_of(batch))
        .execute(&mut *tx)
        .await?;
    let outcomes = decide_and_write(&mut tx, batch, None).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// The accounts `batch` moves money between, sorted, each once.
fn accounts_of(batch: &[Transfer]) -> Vec<&str> {
    let mut accounts: Vec<&str> = batch
        .iter()
        .flat_map(|t| [t.from.as_str(), t.to.as_str()])
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    accounts
}

/// Reads what `batch`'s decisions need, decides, writes (after `pause`, if any), and returns
/// each transfer's outcome in order (its receipt naming the row the insert numbered).
async fn decide_and_write(
    conn: &mut sqlx::PgConnection,
    batch: &[Transfer],
    pause: Option<Duration>,
) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let now = now_ms();
    let read = read(conn, batch, now).await?;
    // What the write checks is unchanged: the accounts as read, the sessions found live.
    let accounts: Vec<(&str, AccountState)> = read
        .accounts
        .iter()
        .map(|(id, seen)| (*id, seen.state))
        .collect();
    let sessions: BTreeSet<&str> = read.live.iter().map(|(session, _)| *session).collect();
    // The rows' ids come from the insert: the decisions number them 0 for now.
    let (mut outcomes, writes) = decide_batch(batch, read, || Ok(0))?;
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    let applied = write(conn, (&accounts, &sessions), &writes, now).await?;
    for (transfer, outcome) in batch.iter().zip(&mut outcomes) {
        // Applied by this batch: its receipt names the row the insert numbered.
        if let (Ok(receipt), Some(id)) = (outcome, applied.get(transfer.request_id.as_str())) {
            receipt.transaction_id = id.to_string();
        }
    }
    Ok(outcomes)
}

/// Reads what `batch`'s decisions need at `now`, in one statement.
async fn read<'a>(
    conn: &mut sqlx::PgConnection,
    batch: &'a [Transfer],
    now: i64,
) -> Result<Read<'a>, Error> {
    let wanted = accounts_of(batch);
    let request_ids: Vec<&str> = batch.iter().map(|t| t.request_id.as_str()).collect();
    let sessions: Vec<&str> = batch.iter().map(|t| t.session.as_str()).collect();
    let sources: Vec<&str> = batch.iter().map(|t| t.from.as_str()).collect();
    type Row = (String, String, String, String, String, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(READ)
        .bind(&wanted)
        .bind(&request_ids)
        .bind(&sessions)
        .bind(&sources)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
    let mut found: HashMap<String, AccountState> = HashMap::new();
    let mut stored: HashMap<String, PriorRequest> = HashMap::new();
    let mut pairs: HashSet<(String, String)> = HashSet::new();
    for (what, key, a, b, c, x, y, z) in rows {
        match what.as_str() {
            "account" => {
                let state = AccountState {
                    balance: x,
                    fence_any: y,
                    fence_write: z,
                };
                found.insert(key, state);
            }
            "prior" => {
                let prior = PriorRequest {
                    params: a,
                    transaction_id: b,
                    balance_cents: x,
                    rejection: c,
                };
                stored.insert(key, prior);
            }
            _ => {
                pairs.insert((key, a));
            }
        }
    }
    let accounts = wanted
        .into_iter()
        .filter_map(|id| {
            let state = found.remove(id)?;
            let changed = false;
            Some((id, Seen { state, changed }))
        })
        .collect();
    let priors = request_ids
        .iter()
        .filter_map(|id| Some((*id, stored.remove(*id)?)))
        .collect();
    let live = sessions
        .into_iter()
        .zip(sources)
        .filter(|(session, from)| pairs.contains(&((*session).to_owned(), (*from).to_owned())))
        .collect();
    Ok(Read {
        priors,
        accounts,
        live,
    })
}

/// Writes what the batch decided, in one call, if the accounts it read are still as `seen` and
/// the sessions it found live still are; returns the id of each applied request's TRANSFER_OUT
/// row.
async fn write(
    conn: &mut sqlx::PgConnection,
    (seen, live): (&[(&str, AccountState)], &BTreeSet<&str>),
    writes: &Writes<'_>,
    now: i64,
) -> Result<HashMap<String, i64>, Error> {
    let (rows, requests, accounts) = (&writes.rows, &writes.requests, &writes.accounts);
    let applied: Vec<(String, i64)> = sqlx::query_as(WRITE)
        .bind(ids(seen))
        .bind(field(seen, |s| s.balance))
        .bind(field(seen, |s| s.fence_any))
        .bind(field(seen, |s| s.fence_write))
        .bind(live.iter().copied().collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.account).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.request_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.amount_cents).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.balance_after_cents)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.counterparty).collect::<Vec<_>>())
        .bind(requests.iter().map(|r| r.request_id).collect::<Vec<_>>())
        .bind(
            requests
                .iter()
                .map(|r| r.params.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(requests.iter().map(|r| r.balance_cents).collect::<Vec<_>>())
        .bind(requests.iter().map(|r| r.rejection).collect::<Vec<_>>())
        .bind(ids(accounts))
        .bind(field(accounts, |s| s.balance))
        .bind(field(accounts, |s| s.fence_any))
        .bind(field(accounts, |s| s.fence_write))
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
    Ok(applied.into_iter().collect())
}

/// The ids of `accounts`.
fn ids<'a>(accounts: &[(&'a str, AccountState)]) -> Vec<&'a str> {
    accounts.iter().map(|(id, _)| *id).collect()
}

/// One field of each of `accounts`' states.
fn field(accounts: &[(&str, AccountState)], get: fn(&AccountState) -> i64) -> Vec<i64> {
    accounts.iter().map(|(_, state)| get(state)).collect()
}
