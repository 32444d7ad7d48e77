//! A batch of transfers on PostgreSQL, where several bank replicas commit batches at once: one
//! READ COMMITTED transaction of a few statements, each over the whole batch (arrays bound as
//! parameters), so a batch costs about ten round trips however many transfers it holds.
//!
//! What keeps replicas apart:
//! - the batch first takes a transaction-scoped advisory lock on each of its request ids, in one
//!   order, so a request retried on another replica waits for the first and reads its outcome;
//! - then it locks its accounts' rows (`FOR UPDATE`, in id order, so two batches never deadlock
//!   on them) and only then reads the outcomes, sessions and balances it decides on;
//! - its ledger rows take ids from the ledger's identity sequence after those locks, so each
//!   account's rows are numbered in the order they were made (ids are not gap-free).
//!
//! A batch PostgreSQL fails for running beside another (a deadlock it broke, a serialization
//! failure) is tried again, up to [`ATTEMPTS`] times, before its transfers get the error.

use std::collections::{HashMap, HashSet, VecDeque};

use township_store::{PgPool, postgres::is_transient, sqlx};

use super::{Read, Seen, Transfer, Writes, decide_batch, finish, take_batch};
use crate::{
    Error,
    clock::now_ms,
    rules::{AccountState, PriorRequest, Receipt},
    syncer::Syncer,
};

/// How many times a batch is tried when it fails only for running beside another.
const ATTEMPTS: u32 = 5;

/// One advisory lock per request id, taken in hash order.
const LOCK_REQUESTS: &str = "SELECT pg_advisory_xact_lock(k) FROM
 (SELECT DISTINCT hashtextextended(r, 0) AS k FROM unnest($1::text[]) AS r ORDER BY k) AS keys";
/// The batch's accounts, locked in id order.
const LOCK_ACCOUNTS: &str = "SELECT id, balance_cents, fence_any, fence_write FROM accounts
 WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE";
/// The stored outcomes of the batch's request ids.
const FIND_REQUESTS: &str = "SELECT request_id, params, transaction_id, balance_cents, rejection
 FROM requests WHERE request_id = ANY($1::text[])";
/// The (session, account) pairs whose session is live at `$3` and whose holder holds the account.
const LIVE_PAIRS: &str = "SELECT p.token_hash, p.account_id
 FROM unnest($1::text[], $2::text[]) AS p (token_hash, account_id)
 JOIN sessions s ON s.token_hash = p.token_hash AND s.expires_ms > $3
 JOIN account_holders h ON h.holder_name = s.holder_name AND h.account_id = p.account_id";
/// `$1` ids for ledger rows, from the ledger's own sequence.
const TAKE_IDS: &str =
    "SELECT nextval(pg_get_serial_sequence('ledger', 'id')) FROM generate_series(1, $1)";
/// The batch's ledger rows.
const INSERT_LEDGER_ROWS: &str = "INSERT INTO ledger (id, account_id, request_id, kind,
 amount_cents, balance_after_cents, counterparty, time_ms)
 SELECT id, a, r, k, amount, after, c, $8 FROM unnest($1::bigint[], $2::text[], $3::text[],
 $4::text[], $5::bigint[], $6::bigint[], $7::text[]) AS t (id, a, r, k, amount, after, c)";
/// The batch's request ids and their outcomes.
const RECORD_REQUESTS: &str = "INSERT INTO requests (request_id, params, transaction_id,
 balance_cents, rejection, created_ms)
 SELECT r, p, t, b, j, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
 $5::text[]) AS x (r, p, t, b, j)";
/// The changed accounts' balances and fences.
const UPDATE_ACCOUNTS: &str = "UPDATE accounts AS a
 SET balance_cents = u.b, fence_any = u.fa, fence_write = u.fw
 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u (id, b, fa, fw)
 WHERE a.id = u.id";

/// Commits the next batch of `waiting` transfers on `pool` and sends each transfer its outcome
/// (durable once committed: `syncer` has nothing to flush).
pub async fn commit_batch(pool: &PgPool, waiting: &mut VecDeque<Transfer>, syncer: &Syncer) {
    let batch = take_batch(waiting);
    let number = syncer.next_batch();
    let mut attempt = 1;
    let result = loop {
        match commit(pool, &batch).await {
            Err(Error::Storage(err)) if attempt < ATTEMPTS && is_transient(&err) => {
                tracing::debug!(error = %err, attempt, "a batch of transfers is tried again");
                attempt += 1;
            }
            other => break other,
        }
    };
    finish(batch, number, result, syncer);
}

/// Does `batch` in one transaction and returns each transfer's outcome, in order.
async fn commit(pool: &PgPool, batch: &[Transfer]) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let mut tx = pool.begin().await?;
    let now = now_ms();
    let read = read(&mut tx, batch, now).await?;
    let count = i64::try_from(2 * batch.len()).unwrap_or(i64::MAX);
    let mut ids: Vec<i64> = sqlx::query_scalar(TAKE_IDS)
        .bind(count)
        .fetch_all(&mut *tx)
        .await?;
    ids.sort_unstable();
    let mut ids = ids.into_iter();
    let (outcomes, writes) = decide_batch(batch, read, || {
        ids.next()
            .ok_or_else(|| Error::Internal("the batch ran out of ledger ids".into()))
    })?;
    write(&mut tx, &writes, now).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Takes the batch's locks, then reads what its decisions need.
async fn read<'a>(
    tx: &mut sqlx::PgConnection,
    batch: &'a [Transfer],
    now: i64,
) -> Result<Read<'a>, Error> {
    let request_ids: Vec<&str> = batch.iter().map(|t| t.request_id.as_str()).collect();
    sqlx::query(LOCK_REQUESTS)
        .bind(&request_ids)
        .execute(&mut *tx)
        .await?;

    let mut wanted: Vec<&'a str> = batch
        .iter()
        .flat_map(|t| [t.from.as_str(), t.to.as_str()])
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(LOCK_ACCOUNTS)
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?;
    let mut found: HashMap<String, AccountState> = rows
        .into_iter()
        .map(|(id, balance, fence_any, fence_write)| {
            let state = AccountState {
                balance,
                fence_any,
                fence_write,
            };
            (id, state)
        })
        .collect();
    let accounts = wanted
        .into_iter()
        .filter_map(|id| {
            let state = found.remove(id)?;
            Some((
                id,
                Seen {
                    state,
                    changed: false,
                },
            ))
        })
        .collect();

    let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(FIND_REQUESTS)
        .bind(&request_ids)
        .fetch_all(&mut *tx)
        .await?;
    let mut stored: HashMap<String, PriorRequest> = rows
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
    let priors = request_ids
        .iter()
        .filter_map(|id| Some((*id, stored.remove(*id)?)))
        .collect();

    let sessions: Vec<&str> = batch.iter().map(|t| t.session.as_str()).collect();
    let sources: Vec<&str> = batch.iter().map(|t| t.from.as_str()).collect();
    let pairs: Vec<(String, String)> = sqlx::query_as(LIVE_PAIRS)
        .bind(&sessions)
        .bind(&sources)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    let pairs: HashSet<(String, String)> = pairs.into_iter().collect();
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

/// Writes what the batch decided, one statement per table.
async fn write(tx: &mut sqlx::PgConnection, writes: &Writes<'_>, now: i64) -> Result<(), Error> {
    let rows = &writes.rows;
    if !rows.is_empty() {
        sqlx::query(INSERT_LEDGER_ROWS)
            .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
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
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    let requests = &writes.requests;
    if !requests.is_empty() {
        sqlx::query(RECORD_REQUESTS)
            .bind(requests.iter().map(|r| r.request_id).collect::<Vec<_>>())
            .bind(
                requests
                    .iter()
                    .map(|r| r.params.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                requests
                    .iter()
                    .map(|r| r.transaction_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(requests.iter().map(|r| r.balance_cents).collect::<Vec<_>>())
            .bind(requests.iter().map(|r| r.rejection).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    let accounts = &writes.accounts;
    if !accounts.is_empty() {
        sqlx::query(UPDATE_ACCOUNTS)
            .bind(accounts.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .bind(accounts.iter().map(|(_, s)| s.balance).collect::<Vec<_>>())
            .bind(
                accounts
                    .iter()
                    .map(|(_, s)| s.fence_any)
                    .collect::<Vec<_>>(),
            )
            .bind(
                accounts
                    .iter()
                    .map(|(_, s)| s.fence_write)
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
