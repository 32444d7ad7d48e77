//! A batch of transfers on SQLite: one `BEGIN IMMEDIATE` transaction on the writer's blocking
//! connection (rusqlite, no hand-off to another thread), one cached statement per lookup and per
//! row. SQLite lets one writer in at a time, so the batch numbers its ledger rows after the last.

use std::collections::{HashMap, HashSet, VecDeque};

use township_store::rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Read, Seen, Transfer, Writes, decide_batch, finish, take_batch};
use crate::{
    Error,
    clock::now_ms,
    rules::{AccountState, PriorRequest, Receipt},
    syncer::Syncer,
};

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

/// Commits the next batch of `waiting` transfers on `conn`, tells `syncer` to flush it, and
/// sends each transfer its outcome. Blocking: the writer's own thread runs it.
pub fn commit_batch(conn: &mut Connection, waiting: &mut VecDeque<Transfer>, syncer: &Syncer) {
    let batch = take_batch(waiting);
    let number = syncer.next_batch();
    let result = commit(conn, &batch);
    finish(batch, number, result, syncer);
}

/// Does `batch` in one `BEGIN IMMEDIATE` transaction and returns each transfer's outcome, in
/// order. Each statement is prepared once per connection and cached; a failure rolls it all
/// back (the transaction's drop).
fn commit(conn: &mut Connection, batch: &[Transfer]) -> Result<Vec<Result<Receipt, Error>>, Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_ms();
    let read = read(&tx, batch, now)?;
    let mut next_id = tx.query_row(LAST_ROW, [], |row| row.get::<_, i64>(0))?;
    let (outcomes, writes) = decide_batch(batch, read, || {
        next_id += 1;
        Ok(next_id)
    })?;
    write(&tx, &writes, now)?;
    tx.commit()?;
    Ok(outcomes)
}

/// Reads what `batch`'s decisions need, one indexed lookup per request id, account and session.
fn read<'a>(
    tx: &township_store::rusqlite::Transaction<'_>,
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

    let mut live = HashSet::new();
    let mut asked = HashSet::new();
    let mut session_holds = tx.prepare_cached(SESSION_HOLDS)?;
    for transfer in batch {
        let pair = (transfer.session.as_str(), transfer.from.as_str());
        if asked.insert(pair)
            && session_holds.query_row(params![pair.0, now, pair.1], |row| row.get(0))?
        {
            live.insert(pair);
        }
    }
    Ok(Read {
        priors,
        accounts,
        live,
    })
}

/// Writes what the batch decided: the ledger rows, the request ids, the changed accounts.
fn write(
    tx: &township_store::rusqlite::Transaction<'_>,
    writes: &Writes<'_>,
    now: i64,
) -> Result<(), Error> {
    let mut insert_row = tx.prepare_cached(INSERT_LEDGER_ROW)?;
    for row in &writes.rows {
        insert_row.execute(params![
            row.id,
            row.account,
            row.request_id,
            row.kind,
            row.amount_cents,
            row.balance_after_cents,
            row.counterparty,
            now
        ])?;
    }
    let mut record_request = tx.prepare_cached(RECORD_REQUEST)?;
    for request in &writes.requests {
        record_request.execute(params![
            request.request_id,
            request.params,
            request.transaction_id,
            request.balance_cents,
            request.rejection,
            now
        ])?;
    }
    let mut update_account = tx.prepare_cached(UPDATE_ACCOUNT)?;
    for (id, s) in &writes.accounts {
        update_account.execute(params![id, s.balance, s.fence_any, s.fence_write])?;
    }
    Ok(())
}
