//! Load generation, shared by every scenario, in two modes. Closed loop: each client repeats one
//! operation until the window ends. Open loop (wrk2 style): operations start at a fixed rate
//! whatever the server is doing, and each latency counts from the intended start, so a stall is
//! charged to every operation it delayed (no coordinated omission). Only operations due after the
//! warm-up are recorded (microseconds, HDR); every loop is bounded in time.

use std::{
    cell::RefCell,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::{sync::Semaphore, task::JoinHandle};

use crate::row::Rounds;

/// How long an open-loop run waits for its last operations after the window ends.
const DRAIN: Duration = Duration::from_secs(30);

/// How each scenario is measured: its systems take turns for `rounds` rounds, each round a
/// warm-up and then a measured `round`, so a machine that gets busier for a while slows them
/// alike, and the spread of the rounds shows how far a figure can be trusted.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub rounds: u32,
    pub warmup: Duration,
    pub round: Duration,
}

impl Plan {
    /// A window for one round, starting now.
    pub fn window(&self) -> Window {
        Window::starting_now(self.warmup, self.round)
    }

    /// Runs one round of each of `systems` in turn, [`Plan::rounds`] times; `measure` runs a
    /// round of one system within the window it is given and returns its latencies (µs).
    /// Returns each system's rounds, in the order of `systems`.
    pub async fn alternate<S>(
        &self,
        systems: &[S],
        mut measure: impl AsyncFnMut(&S, Window) -> anyhow::Result<Histogram<u64>>,
    ) -> anyhow::Result<Vec<Rounds>> {
        let mut measured: Vec<Rounds> = systems.iter().map(|_| Rounds::default()).collect();
        for _ in 0..self.rounds {
            for (system, rounds) in systems.iter().zip(&mut measured) {
                rounds.add(measure(system, self.window()).await?, self.round)?;
            }
        }
        Ok(measured)
    }
}

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

    /// When measuring starts.
    pub fn measure_from(&self) -> Instant {
        self.measure_from
    }

    /// When every client stops.
    pub fn stop(&self) -> Instant {
        self.stop
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

/// Connects `clients` clients with `connect` (given each client's index), then runs `run` on
/// every one of them, each as its own local task, over one window, and returns their latencies.
/// Every client is connected before any starts, so no connect is measured.
pub async fn each_client<C, F>(
    clients: usize,
    window: Window,
    mut connect: impl AsyncFnMut(usize) -> anyhow::Result<C>,
    run: impl Fn(C, Window) -> F,
) -> anyhow::Result<Histogram<u64>>
where
    F: Future<Output = anyhow::Result<Histogram<u64>>> + 'static,
{
    let mut connected = Vec::with_capacity(clients);
    for i in 0..clients {
        connected.push(connect(i).await?);
    }
    let tasks = connected
        .into_iter()
        .map(|client| tokio::task::spawn_local(run(client, window)))
        .collect();
    merge(tasks).await
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

/// Starts `operation(n)` for n = 0, 1, 2, ... at `rate` per second until the window ends, each
/// as its own local task, with at most `max_in_flight` running (a start that finds them all busy
/// waits, and that wait counts as latency). Latency is measured from the intended start time.
/// The first failed operation fails the run; so does an operation still running 30 s after the
/// window ends.
pub async fn open_loop<F, Fut>(
    window: Window,
    rate: f64,
    max_in_flight: usize,
    mut operation: F,
) -> anyhow::Result<Histogram<u64>>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    if !(rate.is_finite() && rate > 0.0) || max_in_flight == 0 {
        bail!("an open loop needs a positive rate and room for one operation in flight");
    }
    let histogram = Rc::new(RefCell::new(Histogram::<u64>::new(3).context("histogram")?));
    let failure: Rc<RefCell<Option<anyhow::Error>>> = Rc::default();
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let begin = Instant::now();
    for n in 0u64.. {
        let intended = begin + Duration::from_secs_f64(n as f64 / rate);
        if intended >= window.stop || failure.borrow().is_some() {
            break;
        }
        wait_until(intended).await;
        let slot = slots.clone().acquire_owned().await.context("slots")?;
        let started = operation(n);
        let (histogram, failure) = (histogram.clone(), failure.clone());
        let measured = intended >= window.measure_from;
        tokio::task::spawn_local(async move {
            match started.await {
                Ok(()) if measured => {
                    let micros = intended.elapsed().as_micros() as u64;
                    if let Err(err) = histogram.borrow_mut().record(micros) {
                        failure.borrow_mut().get_or_insert(err.into());
                    }
                }
                Ok(()) => {}
                Err(err) => {
                    failure.borrow_mut().get_or_insert(err);
                }
            }
            drop(slot);
        });
    }
    let all = u32::try_from(max_in_flight).context("too many in flight")?;
    tokio::time::timeout(DRAIN, slots.acquire_many(all))
        .await
        .context("open-loop operations still running 30 s after the window")?
        .context("slots")?
        .forget();
    if let Some(err) = failure.borrow_mut().take() {
        return Err(err);
    }
    let histogram = histogram.borrow().clone();
    Ok(histogram)
}

/// Waits until `instant` more precisely than tokio's 1 ms timer: sleeps until a millisecond
/// before, then yields to the other tasks until it is due, so an open loop's starts are not
/// bunched at millisecond ticks (which would add up to 1 ms to every measured latency).
async fn wait_until(instant: Instant) {
    let coarse = instant.checked_sub(Duration::from_millis(1));
    if let Some(coarse) = coarse.filter(|c| *c > Instant::now()) {
        tokio::time::sleep_until(coarse.into()).await;
    }
    while Instant::now() < instant {
        tokio::task::yield_now().await;
    }
}
