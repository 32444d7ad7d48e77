//! The SQL of login strikes (the policy is in `logins`): reserving an attempt, which counts it
//! as a failure in the same transaction that checks the lockouts, and clearing a source's count
//! after a right PIN. Old rows are pruned as attempts come, so the table holds only the sources
//! that failed within the longest lockout.

use std::time::Duration;

use township_store::{Db, either, sqlx};

use crate::{
    Error,
    audit::{self, Event},
    clock::now_ms,
    logins::{LoginPolicy, NAME_STRIKES, STRIKES},
    types::HolderName,
};

/// Rows pruned at most per attempt (an index on `last_ms` finds them).
const PRUNE_BATCH: i64 = 64;

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The lockouts an attempt starts if its PIN turns out wrong (it was counted as a failure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stakes {
    /// How long its source is then refused the name (zero: not at all).
    pub source_lockout: Duration,
    /// How long the name is then refused to everyone (zero: not at all).
    pub name_lockout: Duration,
}

/// Counts an attempt on `name` from `source` at `now_ms` as a failure, unless `source` or the
/// whole name is locked out, which is [`Error::LockedOut`] with the wait (and counts nothing).
/// Returns the lockouts that follow if the attempt fails.
pub async fn reserve(
    db: &Db,
    name: &HolderName,
    source: &str,
    now_ms: i64,
    policy: LoginPolicy,
) -> Result<Stakes, Error> {
    let remembered_since = now_ms.saturating_sub(ms(policy.max_lockout));
    let mut tx = db.begin_write().await?;
    if tx.is_postgres() {
        // Replicas count one name's failures in turn (no row to lock before the first).
        either!(&mut tx, |conn| sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('login:' || $1, 0))"
        )
        .bind(name.as_str())
        .execute(conn)
        .await?
        .rows_affected());
    }
    // On PostgreSQL, rows another replica is pruning are left to it.
    let prune = format!(
        "DELETE FROM login_strikes WHERE (name, source) IN
         (SELECT name, source FROM login_strikes WHERE last_ms < $1 LIMIT $2{})",
        if tx.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    );
    either!(&mut tx, |conn| sqlx::query(sqlx::AssertSqlSafe(
        prune.clone()
    ))
    .bind(remembered_since)
    .bind(PRUNE_BATCH)
    .execute(conn)
    .await?
    .rows_affected());

    let row: Option<(i64, i64)> = either!(&mut tx, |conn| sqlx::query_as(
        "SELECT failures, locked_until_ms FROM login_strikes WHERE name = $1 AND source = $2",
    )
    .bind(name.as_str())
    .bind(source)
    .fetch_optional(conn)
    .await?);
    let (failures, locked_until) = row.unwrap_or((0, 0));
    let (name_failures, latest): (i64, i64) = either!(&mut tx, |conn| {
        sqlx::query_as(
        "SELECT CAST(coalesce(sum(failures), 0) AS BIGINT), coalesce(max(last_ms), 0) FROM login_strikes
         WHERE name = $1 AND last_ms >= $2",
    )
    .bind(name.as_str())
    .bind(remembered_since)
    .fetch_one(conn)
    .await?
    });
    let name_locked_until = if name_failures >= i64::from(NAME_STRIKES) {
        latest.saturating_add(ms(policy.name_lockout))
    } else {
        0
    };
    let until = locked_until.max(name_locked_until);
    if until > now_ms {
        return Err(Error::LockedOut(Duration::from_millis(
            (until - now_ms) as u64,
        )));
    }

    let failures = u32::try_from(failures)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let locked_until = if failures >= STRIKES {
        now_ms.saturating_add(ms(policy.source_lockout(failures)))
    } else {
        0
    };
    either!(&mut tx, |conn| sqlx::query(
        "INSERT INTO login_strikes (name, source, failures, locked_until_ms, last_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name, source) DO UPDATE SET failures = excluded.failures,
             locked_until_ms = excluded.locked_until_ms, last_ms = excluded.last_ms",
    )
    .bind(name.as_str())
    .bind(source)
    .bind(i64::from(failures))
    .bind(locked_until)
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected());
    tx.commit().await?;
    let name_locks = name_failures.saturating_add(1) >= i64::from(NAME_STRIKES);
    Ok(Stakes {
        source_lockout: policy.source_lockout(failures),
        name_lockout: if name_locks {
            policy.name_lockout
        } else {
            Duration::ZERO
        },
    })
}

/// Forgets the failures of `name` from `source` (its PIN was right).
pub async fn clear(db: &Db, name: &HolderName, source: &str) -> Result<(), Error> {
    either!(pool db, |pool| sqlx::query("DELETE FROM login_strikes WHERE name = $1 AND source = $2")
        .bind(name.as_str())
        .bind(source)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

/// Forgets every failure and lockout of `name`, from every source (staff's Unlock), and records
/// `event` with how many sources had some (returned).
pub async fn clear_all(db: &Db, name: &HolderName, event: Event) -> Result<u32, Error> {
    let mut tx = db.begin_write().await?;
    let done = either!(&mut tx, |conn| sqlx::query(
        "DELETE FROM login_strikes WHERE name = $1"
    )
    .bind(name.as_str())
    .execute(conn)
    .await?
    .rows_affected());
    let cleared = u32::try_from(done).unwrap_or(u32::MAX);
    let event = event.detail(format!("failures from {cleared} sources forgotten"));
    audit::append(&mut tx, now_ms(), &event, 1).await?;
    tx.commit().await?;
    Ok(cleared)
}
