//! The SQL of the session writes: a login's session, a logout, staff ending a holder's
//! sessions, and a PIN change (which ends the holder's other sessions). Each is one transaction
//! with its audit event.

use township_store::{Db, Tx, either, sqlx};

use super::begin;
use crate::{
    Error,
    audit::{self, Event},
    clock::now_ms,
    types::HolderName,
};

/// Stores a session (by the hash of its token), records `event`, and drops expired sessions.
pub async fn create_session(
    db: &Db,
    token_hash: &str,
    name: &HolderName,
    now_ms: i64,
    expires_ms: i64,
    event: &Event,
) -> Result<(), Error> {
    let mut tx = begin(db).await?;
    either!(&mut tx, |conn| sqlx::query(
        "DELETE FROM sessions WHERE expires_ms <= $1"
    )
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected());
    either!(&mut tx, |conn| sqlx::query(
        "INSERT INTO sessions (token_hash, holder_name, expires_ms) VALUES ($1, $2, $3)"
    )
    .bind(token_hash)
    .bind(name.as_str())
    .bind(expires_ms)
    .execute(conn)
    .await?
    .rows_affected());
    audit::append(&mut tx, now_ms, event, 1).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends a session and records `event`. Returns whether it existed.
pub async fn delete_session(db: &Db, token_hash: &str, event: &Event) -> Result<bool, Error> {
    let mut tx = begin(db).await?;
    let done = either!(&mut tx, |conn| sqlx::query(
        "DELETE FROM sessions WHERE token_hash = $1"
    )
    .bind(token_hash)
    .execute(conn)
    .await?
    .rows_affected());
    audit::append(&mut tx, now_ms(), event, 1).await?;
    tx.commit().await?;
    Ok(done > 0)
}

/// Ends every session of `holder` and records `event`, with how many ended (returned).
pub async fn end_sessions(db: &Db, holder: &HolderName, event: Event) -> Result<u32, Error> {
    let mut tx = begin(db).await?;
    let ended = delete_sessions(&mut tx, holder, "").await?;
    let event = event.detail(format!("{ended} sessions ended"));
    audit::append(&mut tx, now_ms(), &event, 1).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Replaces `holder`'s PIN hash and ends their sessions but the one of `keep`, and records
/// `event`, in one transaction. Returns how many sessions ended.
pub async fn change_pin(
    db: &Db,
    holder: &HolderName,
    pin_hash: &str,
    keep: &str,
    event: Event,
) -> Result<u32, Error> {
    let mut tx = begin(db).await?;
    either!(&mut tx, |conn| sqlx::query(
        "UPDATE holders SET pin_hash = $1 WHERE name = $2"
    )
    .bind(pin_hash)
    .bind(holder.as_str())
    .execute(conn)
    .await?
    .rows_affected());
    let ended = delete_sessions(&mut tx, holder, keep).await?;
    let event = event.detail(format!("{ended} other sessions ended"));
    audit::append(&mut tx, now_ms(), &event, 1).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Deletes `holder`'s sessions but the one whose token hash is `keep` ("" keeps none).
async fn delete_sessions(tx: &mut Tx, holder: &HolderName, keep: &str) -> Result<u32, Error> {
    let done = either!(tx, |conn| sqlx::query(
        "DELETE FROM sessions WHERE holder_name = $1 AND token_hash != $2"
    )
    .bind(holder.as_str())
    .bind(keep)
    .execute(conn)
    .await?
    .rows_affected());
    Ok(u32::try_from(done).unwrap_or(u32::MAX))
}
