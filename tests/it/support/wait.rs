//! Waiting for an event instead of sleeping for it: a future bounded by a deadline, and a
//! condition polled until it holds. The bounds are generous (seconds): the tests share a loaded
//! machine, and a bound only matters when something is really wrong.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// `future`, which must finish within `limit` (`what` names it if it does not).
pub async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
