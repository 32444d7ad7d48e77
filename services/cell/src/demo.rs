//! The classic thread demonstrations as library code, with real threads: the examples in
//! `examples/` print them, and the tests run them with small parameters and check what each one
//! guarantees. Also the small helpers they share: classic prompts and a seeded xorshift generator.

use std::collections::HashSet;
use std::io::{self, BufRead, IsTerminal, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread::{self, ScopedJoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{BroadcastSlot, SharedCell, Slot};

/// Where a demonstration writes its lines; called from several threads, one whole line per call.
pub type Log<'a> = &'a (dyn Fn(String) + Sync);

/// How fast a demonstration runs and which random sleeps it draws.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// The length of one of the classic demonstrations' "seconds" (a whole second by default in the
    /// examples, a millisecond in the tests).
    pub time_unit: Duration,
    /// Seed of the sleep times; each thread draws from its own stream derived from it.
    pub seed: u64,
}

impl Pace {
    fn sleep(&self, units: u64) {
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        thread::sleep(self.time_unit.saturating_mul(units));
    }

    fn rng(&self, stream: usize) -> Xorshift {
        Xorshift::new(self.seed.wrapping_add(stream as u64))
    }
}

/// A tiny xorshift64 pseudo-random generator: enough to vary sleep times, with no dependency.
/// Not for anything that needs unpredictability. The same seed gives the same sequence.
#[derive(Clone, Debug)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator seeded with `seed` (any value, including 0; nearby seeds give unrelated
    /// sequences).
    pub fn new(seed: u64) -> Self {
        // SplitMix64 scrambling of the seed; xorshift only needs a non-zero state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `low..=high` (`low` when `high <= low`).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        match (high - low).checked_add(1) {
            Some(span) => low + self.next_u64() % span,
            None => self.next_u64(),
        }
    }
}

/// A seed from the clock, for runs that are not asked to repeat.
pub fn seed_from_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// Whether an example should ask the classic questions: it was started with no arguments at all,
/// from an interactive terminal.
pub fn wants_prompts() -> bool {
    std::env::args_os().len() <= 1 && io::stdin().is_terminal()
}

/// Writes `prompt` (e.g. "Enter the number of threads: ") and reads an answer, asking again until
/// the answer parses. Fails at the end of the input.
pub fn ask<T: FromStr>(
    prompt: &str,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> io::Result<T> {
    loop {
        write!(output, "{prompt}")?;
        output.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no answer given",
            ));
        }
        match line.trim().parse() {
            Ok(answer) => return Ok(answer),
            Err(_) => writeln!(output, "Please enter a whole number.")?,
        }
    }
}

/// Sleepy threads: starts `threads` threads; thread *n* draws a sleep interval of 1 to `max_sleep`
/// time units, logs "Thread *n* starting, with sleep interval: *i* seconds", sleeps, and logs
/// "Thread *n* waking up". Returns the intervals, thread 1's first. Guarantees each thread logs
/// exactly those two lines, in that order; the threads interleave freely.
pub fn sleepy_threads(threads: usize, max_sleep: u64, pace: Pace, log: Log) -> Vec<u64> {
    thread::scope(|scope| {
        let sleepers = (1..=threads)
            .map(|number| {
                scope.spawn(move || {
                    let interval = pace.rng(number).between(1, max_sleep);
                    log(format!(
                        "Thread {number} starting, with sleep interval: {interval} seconds"
                    ));
                    pace.sleep(interval);
                    log(format!("Thread {number} waking up"));
                    interval
                })
            })
            .collect();
        join_all(sleepers)
    })
}

/// The two cells the producer/consumer demonstration can share its data through.
trait Handoff: Sync {
    fn set(&self, data: i64);
    fn get(&self) -> i64;
}

impl Handoff for Slot<i64> {
    fn set(&self, data: i64) {
        self.put(data);
    }

    fn get(&self) -> i64 {
        self.take()
    }
}

/// The deliberately unsynchronized cell: a lone atomic, so there is no undefined behaviour, but
/// nobody waits — the consumer may read before the producer writes or read the same data twice,
/// and the producer may overwrite data nobody read.
struct Unsynchronized(AtomicI64);

impl Handoff for Unsynchronized {
    fn set(&self, data: i64) {
        self.0.store(data, Ordering::SeqCst);
    }

    fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the producer/consumer demonstration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConsumerReport {
    /// How many items the producer wrote: 1, 2, … up to this.
    pub produced: u32,
    /// What the consumer read, in order (`-1`: nothing had been written yet).
    pub consumed: Vec<i64>,
    /// What it missed and repeated.
    pub tally: Tally,
}

impl ProducerConsumerReport {
    /// The closing line the example prints.
    pub fn summary(&self) -> String {
        format!(
            "Summary: produced {}, consumed {}, missed {}, repeated {}",
            self.produced,
            self.consumed.len(),
            self.tally.missed,
            self.tally.repeated
        )
    }
}

/// How far a consumer's reads were from "every item exactly once".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Items produced that the consumer never read.
    pub missed: usize,
    /// Reads that brought nothing new: an item already read, or nothing written yet.
    pub repeated: usize,
}

/// Tallies `consumed` against the items `1..=produced`.
pub fn tally(produced: u32, consumed: &[i64]) -> Tally {
    let items = 1..=i64::from(produced);
    let mut seen = HashSet::new();
    let repeated = consumed
        .iter()
        .filter(|&&data| !items.contains(&data) || !seen.insert(data))
        .count();
    let missed = items.filter(|item| !seen.contains(item)).count();
    Tally { missed, repeated }
}

/// Producer/consumer: the producer writes 1 to `accesses`, the consumer reads `accesses` times,
/// each sleeping 1 to 4 time units before every access and logging it ("Producer setting data to
/// 3", "Consumer accessing data 3"). `synchronized` shares the data through a [`Slot`], so nothing
/// is missed or repeated; otherwise through a cell nobody waits on, which shows both.
pub fn producer_consumer(
    accesses: u32,
    synchronized: bool,
    pace: Pace,
    log: Log,
) -> ProducerConsumerReport {
    let consumed = if synchronized {
        run_producer_consumer(&Slot::new(), accesses, pace, log)
    } else {
        run_producer_consumer(&Unsynchronized(AtomicI64::new(-1)), accesses, pace, log)
    };
    ProducerConsumerReport {
        produced: accesses,
        tally: tally(accesses, &consumed),
        consumed,
    }
}

fn run_producer_consumer(cell: &impl Handoff, accesses: u32, pace: Pace, log: Log) -> Vec<i64> {
    thread::scope(|scope| {
        let consumer = scope.spawn(move || {
            let mut rng = pace.rng(1);
            log("Consumer starting up".to_string());
            let consumed = (0..accesses)
                .map(|_| {
                    pace.sleep(rng.between(1, 4));
                    let data = cell.get();
                    log(format!("Consumer accessing data {data}"));
                    data
                })
                .collect();
            log("Consumer is done consuming".to_string());
            consumed
        });
        let mut rng = pace.rng(0);
        log("Producer starting up".to_string());
        for data in 1..=accesses {
            pace.sleep(rng.between(1, 4));
            cell.set(i64::from(data));
            log(format!("Producer setting data to {data}"));
        }
        log("Producer is done producing".to_string());
        join(consumer)
    })
}

/// What the readers/writers demonstration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadersWritersReport {
    /// The counter at the end.
    pub final_count: u64,
    /// How many increments the writers made in all.
    pub writes: u64,
    /// Reads that saw the counter's two fields differ: a half-done write (never, with a
    /// [`SharedCell`]).
    pub torn_reads: u64,
    /// The counts each reader saw, reader 1's first, in order.
    pub reads: Vec<Vec<u64>>,
}

/// The readers/writers demonstration's shared value: a count and its copy, always written together
/// (with a pause between them), so a reader that sees them differ has seen a half-done write.
#[derive(Debug, Default)]
struct Counter {
    count: u64,
    copy: u64,
}

/// Readers/writers over a counter in a [`SharedCell`]: each reader reads `accesses` times and each
/// writer increments `accesses` times, sleeping 1 to 4 time units before every access and logging
/// it ("Reader1 is done getting 0", "Writer2 is done incrementing to 1").
pub fn readers_writers(
    readers: usize,
    writers: usize,
    accesses: u32,
    pace: Pace,
    log: Log,
) -> ReadersWritersReport {
    let cell = SharedCell::new(Counter::default());
    let torn_reads = AtomicU64::new(0);
    let reads = thread::scope(|scope| {
        let (cell, torn_reads) = (&cell, &torn_reads);
        let reader_threads = (1..=readers)
            .map(|number| {
                scope.spawn(move || {
                    let mut rng = pace.rng(number);
                    log(format!("Reader{number} starting up"));
                    let seen = (0..accesses)
                        .map(|_| {
                            pace.sleep(rng.between(1, 4));
                            let (count, whole) = cell.read(|c| (c.count, c.count == c.copy));
                            if !whole {
                                torn_reads.fetch_add(1, Ordering::SeqCst);
                            }
                            log(format!("Reader{number} is done getting {count}"));
                            count
                        })
                        .collect();
                    log(format!("Reader{number} is done reading"));
                    seen
                })
            })
            .collect();
        for number in 1..=writers {
            scope.spawn(move || {
                let mut rng = pace.rng(readers + number);
                log(format!("Writer{number} starting up"));
                for _ in 0..accesses {
                    pace.sleep(rng.between(1, 4));
                    let count = cell.write(|c| {
                        c.count += 1;
                        thread::sleep(pace.time_unit / 10);
                        c.copy = c.count;
                        c.count
                    });
                    log(format!("Writer{number} is done incrementing to {count}"));
                }
                log(format!("Writer{number} is done writing"));
            });
        }
        join_all(reader_threads)
    });
    ReadersWritersReport {
        final_count: cell.into_inner().count,
        writes: writers as u64 * u64::from(accesses),
        torn_reads: torn_reads.into_inner(),
        reads,
    }
}

/// What the multi-consumer demonstration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiConsumerReport {
    /// How many items the producer put: 1, 2, … up to this.
    pub produced: u32,
    /// What each consumer took, consumer 1's first, in order.
    pub received: Vec<Vec<u32>>,
}

impl MultiConsumerReport {
    /// Whether every consumer took every item exactly once, in the order produced.
    pub fn each_took_every_item_once(&self) -> bool {
        self.received
            .iter()
            .all(|taken| taken.iter().copied().eq(1..=self.produced))
    }
}

/// One producer, several consumers: the producer puts 1 to `accesses` in a [`BroadcastSlot`] and
/// each of the `consumers` takes every item, each sleeping 1 to 4 time units before every access
/// and logging it ("Producer setting data to 3", "Consumer2 accessing data 3").
pub fn multi_consumer(
    consumers: usize,
    accesses: u32,
    pace: Pace,
    log: Log,
) -> MultiConsumerReport {
    let (slot, handles) = BroadcastSlot::with_consumers(consumers);
    let received = thread::scope(|scope| {
        let consumer_threads = handles
            .into_iter()
            .zip(1..)
            .map(|(mut consumer, number)| {
                scope.spawn(move || {
                    let mut rng = pace.rng(number);
                    log(format!("Consumer{number} starting up"));
                    let taken = (0..accesses)
                        .map(|_| {
                            pace.sleep(rng.between(1, 4));
                            let data = consumer.take();
                            log(format!("Consumer{number} accessing data {data}"));
                            data
                        })
                        .collect();
                    log(format!("Consumer{number} is done consuming"));
                    taken
                })
            })
            .collect();
        let mut rng = pace.rng(0);
        log("Producer starting up".to_string());
        for data in 1..=accesses {
            pace.sleep(rng.between(1, 4));
            slot.put(data);
            log(format!("Producer setting data to {data}"));
        }
        log("Producer is done producing".to_string());
        join_all(consumer_threads)
    });
    MultiConsumerReport {
        produced: accesses,
        received,
    }
}

/// Joins scoped threads in order.
fn join_all<T>(threads: Vec<ScopedJoinHandle<'_, T>>) -> Vec<T> {
    threads.into_iter().map(join).collect()
}

/// Joins a scoped thread; its panic is passed on to the caller.
fn join<T>(thread: ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
