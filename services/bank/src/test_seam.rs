//! Test-only pauses around a locked operation, before a flush of the transfers' WAL, and before
//! the write of a batch of transfers tried without locks, so the integration tests can kill a
//! server, look at it, or change what it read, at a chosen moment. This module exists only in
//! debug builds (`cfg(debug_assertions)`), which is what the integration tests run: a release
//! build has neither these pauses nor the hidden `--test-delay-*` flags that set them.

use std::time::Duration;

use crate::Error;

/// Pauses to put around each locked operation. None by default.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestDelays {
    /// A pause between a lock grant and the operation (so its commit), so tests can kill a
    /// server in between.
    pub after_grant: Option<Duration>,
    /// A pause between a successful operation's commit and its reply (the window in which a
    /// crash loses the answer of an applied request), so tests can kill a server in between.
    pub after_commit: Option<Duration>,
    /// A pause before each flush of the transfers' WAL (see `crate::syncer`), so tests can see
    /// what a committed transfer that is not yet durable holds and shows.
    pub before_flush: Option<Duration>,
    /// On PostgreSQL, a pause between the read and the write of a batch of transfers tried
    /// without locks (see `crate::transfers::postgres`), so tests can change what it read.
    pub before_write: Option<Duration>,
}

impl TestDelays {
    /// Runs `work` with the locks' fencing `tokens`, with the pauses around it (the caller
    /// still holds the locks).
    pub(crate) async fn around<R>(
        self,
        work: impl AsyncFnOnce(Vec<u64>) -> Result<R, Error>,
        tokens: Vec<u64>,
    ) -> Result<R, Error> {
        if let Some(delay) = self.after_grant {
            tokio::time::sleep(delay).await;
        }
        let done = work(tokens).await;
        if let (Ok(_), Some(delay)) = (&done, self.after_commit) {
            tokio::time::sleep(delay).await;
        }
        done
    }
}
