//! The SQL of the session writes: a login's session, a logout, staff ending a holder's
//! sessions, and a PIN change (which ends the holder's other sessions). Each is one transaction
//! with its audit event.

use township_store::{SqlitePool, sqlx};

use super::begin;
use crate::{
    Error,
    audit::{self, Event},
    clock::now_ms,
    types::HolderName,
};

/// Stores a session (by the hash of its token), records `event`, and drops expired sessions.
pub async fn create_session(
    pool: &SqlitePool,
    token_hash: &str,
    name: &HolderName,
    now_ms: i64,
    expires_ms: i64,
    event: &Event,
) -> Result<(), Error> {
    let mut tx = begin(pool).await?;
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
    audit::append(&mut tx, now_ms, event, 1).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends a session and records `event`. Returns whether it existed.
pub async fn delete_session(
    pool: &SqlitePool,
    token_hash: &str,
    event: &Event,
) -> Result<bool, Error> {
    let mut tx = begin(pool).await?;
    let done = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
    audit::append(&mut tx, now_ms(), event, 1).await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// Ends every session of `holder` and records `event`, with how many ended (returned).
pub async fn end_sessions(
    pool: &SqlitePool,
    holder: &HolderName,
    event: Event,
) -> Result<u32, Error> {
    let mut tx = begin(pool).await?;
    let ended = delete_sessions(&mut tx, holder, "").await?;
    let event = event.detail(format!("{ended} sessions ended"));
    audit::append(&mut tx, now_ms(), &event, 1).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Replaces `holder`'s PIN hash and ends their sessions but the one of `keep`, and records
/// `event`, in one transaction. Returns how many sessions ended.
pub async fn change_pin(
    pool: &SqlitePool,
    holder: &HolderName,
    pin_hash: &str,
    keep: &str,
    event: Event,
) -> Result<u32, Error> {
    let mut tx = begin(pool).await?;
    sqlx::query("UPDATE holders SET pin_hash = ? WHERE name = ?")
        .bind(pin_hash)
        .bind(holder.as_str())
        .execute(&mut *tx)
        .await?;
    let ended = delete_sessions(&mut tx, holder, keep).await?;
    let event = event.detail(format!("{ended} other sessions ended"));
    audit::append(&mut tx, now_ms(), &event, 1).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Deletes `holder`'s sessions but the one whose token hash is `keep` ("" keeps none).
async fn delete_sessions(
    conn: &mut sqlx::SqliteConnection,
    holder: &HolderName,
    keep: &str,
) -> Result<u32, Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE holder_name = ? AND token_hash != ?")
        .bind(holder.as_str())
        .bind(keep)
        .execute(conn)
        .await?;
    Ok(u32::try_from(done.rows_affected()).unwrap_or(u32::MAX))
}

// ----- accounts and holders -----
