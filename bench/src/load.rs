//! Closed-loop load, shared by every scenario: each client repeats one operation until the
//! window ends, and only operations begun after the warm-up are recorded (microseconds, HDR).

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::task::JoinHandle;

/// When measuring starts (after the warm-up) and when every client stops.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    measure_from: Instant,
    stop: Instant,
}

impl Window {
    /// A window starting now: `warmup` unmeasured, then `duration` measured.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Self {
            measure_from,
            stop: measure_from + duration,
        }
    }
}

/// Runs `operation` again and again until the window ends; returns the latencies of those begun
/// after the warm-up. The first error ends the client (a benchmark must not hide failures).
pub async fn closed_loop(
    window: Window,
    mut operation: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new(3).context("histogram")?;
    loop {
        let began = Instant::now();
        if began >= window.stop {
            return Ok(histogram);
        }
        operation().await?;
        if began >= window.measure_from {
            histogram
                .record(began.elapsed().as_micros() as u64)
                .context("record")?;
        }
    }
}

/// Waits for every client and merges their histograms.
pub async fn merge(
    clients: Vec<JoinHandle<anyhow::Result<Histogram<u64>>>>,
) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new(3).context("histogram")?;
    for client in clients {
        histogram
            .add(client.await.context("client task")??)
            .context("merge")?;
    }
    Ok(histogram)
}
