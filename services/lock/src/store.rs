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
pub const MAX_EPOCH: i64 = (1 << 23) - 1;

/// Advances the epoch stored in `<data_dir>/lock.db` to the larger of itself plus 1 and `at_least`
/// (so `at_least` on first start; 1 by default), and returns it. The new epoch is committed with a
/// full fsync before any token of it is issued.
pub async fn next_epoch(data_dir: &Path, at_least: u64) -> anyhow::Result<u64> {
    let at_least = i64::try_from(at_least)
        .ok()
        .filter(|e| (1..=MAX_EPOCH).contains(e))
        .with_context(|| format!("initial epoch {at_least} is out of range (1..={MAX_EPOCH})"))?;
    let pool = township_store::open(data_dir, "lock.db", Durability::Full, 1, SCHEMA).await?;
    let epoch: i64 = sqlx::query_scalar(
        "INSERT INTO epoch (id, value) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET value = max(value + 1, ?1)
         RETURNING value",
    )
    .bind(at_least)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fresh_directory_starts_at_1_and_each_start_advances_by_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_epoch(dir.path(), 1).await.unwrap(), 1);
        assert_eq!(next_epoch(dir.path(), 1).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn an_initial_epoch_raises_the_epoch_but_never_lowers_it() {
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(next_epoch(fresh.path(), 7).await.unwrap(), 7);
        assert_eq!(next_epoch(fresh.path(), 7).await.unwrap(), 8);
        assert_eq!(next_epoch(fresh.path(), 3).await.unwrap(), 9);
        let err = next_epoch(fresh.path(), 1 << 23).await.unwrap_err();
        assert!(format!("{err:#}").contains("out of range"), "{err:#}");
    }
}
