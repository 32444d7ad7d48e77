//! A batch of transfers on PostgreSQL, where several bank replicas commit batches at once: one
//! READ COMMITTED transaction of four statements, each over the whole batch (arrays bound as
//! parameters), so a batch costs six round trips (with its begin and commit) however many
//! transfers it holds: lock the request ids, lock the accounts, read the outcomes and sessions,
//! write everything.
//!
//! What keeps replicas apart:
//! - the batch first takes a transaction-scoped advisory lock on each of its request ids, in one
//!   order, so a request retried on another replica waits for the first and reads its outcome;
//! - then it locks its accounts' rows (`FOR UPDATE`, in id order, so two batches never deadlock
//!   on them) and only then reads the outcomes, sessions and balances it decides on;
//! - its ledger rows take ids from the ledger's identity sequence as they are inserted, after
//!   those locks, so each account's rows are numbered in the order they were made (ids are not
//!   gap-free); a receipt names its row by the id the insert returned.
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
/// What the decisions read besides the accounts, in one statement: the stored outcomes of the
/// batch's request ids (`prior`), and the (session, account) pairs whose session is live at `$4`
/// and whose holder holds the account (`live`), as rows of one shape.
const READ_OUTCOMES_AND_SESSIONS: &str = "SELECT 'prior', request_id, params, transaction_id,
 balance_cents, rejection FROM requests WHERE request_id = ANY($1::text[])
 UNION ALL
 SELECT 'live', p.token_hash, p.account_id, '', 0, ''
 FROM unnest($2::text[], $3::text[]) AS p (token_hash, account_id)
 JOIN sessions s ON s.token_hash = p.token_hash AND s.expires_ms > $4
 JOIN account_holders h ON h.holder_name = s.holder_name AND h.account_id = p.account_id";
/// Everything the batch writes, in one statement: its ledger rows in order (ids from the
/// identity), its request ids' outcomes (an applied transfer's transaction id is its
/// TRANSFER_OUT row's id), its accounts' new balances and fences. Returns each applied request
/// id with that row's id.
const WRITE_BATCH: &str = "WITH ledger_rows AS (
   INSERT INTO ledger (account_id, request_id, kind, amount_cents, balance_after_cents,
     counterparty, time_ms)
   SELECT a, r, k, amount, after, c, $7 FROM unnest($1::text[], $2::text[], $3::text[],
     $4::bigint[], $5::bigint[], $6::text[]) WITH ORDINALITY AS t (a, r, k, amount, after, c, n)
   ORDER BY n
   RETURNING id, request_id, kind
 ), outcomes AS (
   INSERT INTO requests (request_id, params, transaction_id, balance_cents, rejection,
     created_ms)
   SELECT x.r, x.p, coalesce((SELECT l.id::text FROM ledger_rows l
     WHERE l.request_id = x.r AND l.kind = 'TRANSFER_OUT'), ''), x.b, x.j, $7
   FROM unnest($8::text[], $9::text[], $10::bigint[], $11::text[]) AS x (r, p, b, j)
 ), balances AS (
   UPDATE accounts AS a SET balance_cents = u.b, fence_any = u.fa, fence_write = u.fw
   FROM unnest($12::text[], $13::bigint[], $14::bigint[], $15::bigint[]) AS u (id, b, fa, fw)
   WHERE a.id = u.id
 )
 SELECT request_id, id FROM ledger_rows WHERE kind = 'TRANSFER_OUT'";

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
    // The rows' ids come from the insert: the decisions number them 0 for now.
    let (mut outcomes, writes) = decide_batch(batch, read, || Ok(0))?;
    let applied = write(&mut tx, &writes, now).await?;
    tx.commit().await?;
    for (transfer, outcome) in batch.iter().zip(&mut outcomes) {
        // Applied by this batch: its receipt names the row the insert numbered.
        if let (Ok(receipt), Some(id)) = (outcome, applied.get(transfer.request_id.as_str())) {
            receipt.transaction_id = id.to_string();
        }
    }
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

    let sessions: Vec<&str> = batch.iter().map(|t| t.session.as_str()).collect();
    let sources: Vec<&str> = batch.iter().map(|t| t.from.as_str()).collect();
    let rows: Vec<(String, String, String, String, i64, String)> =
        sqlx::query_as(READ_OUTCOMES_AND_SESSIONS)
            .bind(&request_ids)
            .bind(&sessions)
            .bind(&sources)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
    let mut stored: HashMap<String, PriorRequest> = HashMap::new();
    let mut pairs: HashSet<(String, String)> = HashSet::new();
    for (what, key, a, b, balance_cents, rejection) in rows {
        if what == "prior" {
            let prior = PriorRequest {
                params: a,
                transaction_id: b,
                balance_cents,
                rejection,
            };
            stored.insert(key, prior);
        } else {
            pairs.insert((key, a));
        }
    }
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

/// Writes what the batch decided, in one statement; returns the id of each applied request's
/// TRANSFER_OUT row.
async fn write(
    tx: &mut sqlx::PgConnection,
    writes: &Writes<'_>,
    now: i64,
) -> Result<HashMap<String, i64>, Error> {
    let (rows, requests, accounts) = (&writes.rows, &writes.requests, &writes.accounts);
    let applied: Vec<(String, i64)> = sqlx::query_as(WRITE_BATCH)
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
        .bind(requests.iter().map(|r| r.request_id).collect::<Vec<_>>())
        .bind(
            requests
                .iter()
                .map(|r| r.params.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(requests.iter().map(|r| r.balance_cents).collect::<Vec<_>>())
        .bind(requests.iter().map(|r| r.rejection).collect::<Vec<_>>())
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
        .fetch_all(&mut *tx)
        .await?;
    Ok(applied.into_iter().collect())
}
