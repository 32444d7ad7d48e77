//! What the lock service keeps on disk: only its start epoch, the high bits of every fencing token.
//! Locks themselves live in memory; a restarted server starts empty, and its higher epoch makes
//! every new token greater than any token issued before the restart.

use std::path::Path;

use anyhow::{Context, bail};
use township_store::{Durability, Migration, sqlx};

/// The lock's migrations, in order (see township_store::Migration).
const SCHEMA: &[Migration] = &[Migration {
    version: 1,
    description: "baseline",
    sql: include_str!("../migrations/0001_baseline.sql"),
}];

/// The largest epoch: 23 bits, so that every token `(epoch << 40) | count` fits in an SQL
/// INTEGER (a signed 64-bit number) wherever fenced storage records it.
const MAX_EPOCH: i64 = (1 << 23) - 1;

/// Increments and returns the epoch stored in `<data_dir>/lock.db` (1 on first start). The
/// increment is committed with a full fsync before any token of the new epoch is issued.
pub async fn next_epoch(data_dir: &Path) -> anyhow::Result<u64> {
    let pool = township_store::open(data_dir, "lock.db", Durability::Full, 1, SCHEMA).await?;
    let epoch: i64 = sqlx::query_scalar(
        "INSERT INTO epoch (id, value) VALUES (1, 1)
         ON CONFLICT (id) DO UPDATE SET value = value + 1
         RETURNING value",
    )
    .fetch_one(&pool)
    .await
    .context("cannot advance the fencing epoch")?;
    pool.close().await;
    if !(1..=MAX_EPOCH).contains(&epoch) {
        bail!(
            "fencing epoch {epoch} is out of range (1..={MAX_EPOCH}); the lock database is damaged"
        );
    }
    Ok(epoch as u64)
}
