//! Redis as a reference for the lock benchmark: the usual single-node Redis lock, `SET key token
//! NX PX ttl` to take it and a compare-and-delete Lua script to release it, through the
//! maintained `redis` crate used as its documentation recommends. The server itself is started by
//! `township-references`, in memory or durable.
//!
//! Redis's lock is single-node and not fenced (no token a protected resource could check), and
//! has no queue (a client that finds it taken can only retry), so it promises less than
//! Township's lock service.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use redis::aio::MultiplexedConnection;

use crate::load::{self, Window};

/// How long a Redis lock lives unless released (ms), the lock-server's lease TTL.
const REDIS_TTL_MS: u64 = 10_000;

/// How long a Redis client waits before asking again for a lock that is held. Redis has no
/// queue: a client that finds the lock taken can only retry. A fixed short delay is the usual
/// pattern; 1 ms is the finest a tokio timer resolves, so it is the most favourable delay that
/// does not busy-spin (spinning would steal the one load-generator thread, and Redis's one core,
/// from the holder's release).
const REDIS_RETRY_DELAY: Duration = Duration::from_millis(1);

/// A Redis client still refused the lock after this long fails the benchmark (the lock-server's
/// `wait_timeout`), so a retry loop can never outlive its window by more.
const REDIS_GIVE_UP: Duration = Duration::from_secs(30);

/// Deletes the lock key only if it still holds the caller's token, atomically; 1 if it did.
const RELEASE_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// Connects to Redis at `url` the way the `redis` crate's documentation recommends: one
/// multiplexed connection, to be cloned into every client (their commands are pipelined on it),
/// and the release script, which `redis::Script` sends by EVALSHA (loading it once if Redis
/// answers NOSCRIPT).
pub async fn connect(url: &str) -> anyhow::Result<(MultiplexedConnection, redis::Script)> {
    let client = redis::Client::open(url).context("Redis URL")?;
    let connection = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connect to Redis at {url}"))?;
    Ok((connection, redis::Script::new(RELEASE_SCRIPT)))
}

/// One closed-loop Redis client (number `index`): `SET key token NX PX 10000`, retried after
/// [`REDIS_RETRY_DELAY`] while the lock is held, then the compare-and-delete script, which must
/// answer 1. Each cycle's token is unique (client index and counter), and its latency includes
/// its retries; only completed cycles are counted.
pub async fn cycles(
    mut connection: MultiplexedConnection,
    key: String,
    index: usize,
    release: redis::Script,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut counter: u64 = 0;
    load::closed_loop(window, async || {
        counter += 1;
        let token = format!("bench-{index}-{counter}");
        let asked = Instant::now();
        loop {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(REDIS_TTL_MS)
                .query_async(&mut connection)
                .await
                .context("Redis SET NX")?;
            match set.as_deref() {
                Some("OK") => break,
                None if asked.elapsed() < REDIS_GIVE_UP => {
                    tokio::time::sleep(REDIS_RETRY_DELAY).await;
                }
                None => bail!("Redis lock {key} still held after {REDIS_GIVE_UP:?}"),
                Some(other) => bail!("Redis SET NX answered {other:?}"),
            }
        }
        let released: i64 = release
            .key(&key)
            .arg(&token)
            .invoke_async(&mut connection)
            .await
            .context("Redis release")?;
        if released != 1 {
            bail!("Redis release of {key} answered {released}: the lock was lost");
        }
        Ok(())
    })
    .await
}
