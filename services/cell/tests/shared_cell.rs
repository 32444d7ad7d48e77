//! The readers/writers guarantees of `SharedCell`: sharing and exclusion, writer preference,
//! readers entering together, no starvation under load, and holds released on panic.
//!
//! Threads are held inside their closures by gates, and the tests watch the cell's queue, so the
//! order of events is forced rather than hoped for; timeouts are generous and only catch hangs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use township_cell::{Mode, Monitor, SharedCell};

const PATIENCE: Duration = Duration::from_secs(20);

/// Holds threads until opened.
#[derive(Default)]
struct Gate(Monitor<bool>);

impl Gate {
    fn open(&self) {
        self.0.update(|open| *open = true);
    }

    fn pass(&self) {
        self.0.wait_until(|open| *open, |_| ());
    }
}

/// Waits until `condition` holds; fails the test after `PATIENCE`.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Reads the cell on a new thread once `gate` opens (after entering), returning what it saw.
fn spawn_reader(cell: &Arc<SharedCell<u32>>, gate: &Arc<Gate>) -> JoinHandle<u32> {
    let (cell, gate) = (Arc::clone(cell), Arc::clone(gate));
    thread::spawn(move || {
        cell.read(|value| {
            gate.pass();
            *value
        })
    })
}

/// Increments the cell on a new thread once `gate` opens (after entering), returning the new value.
fn spawn_writer(cell: &Arc<SharedCell<u32>>, gate: &Arc<Gate>) -> JoinHandle<u32> {
    let (cell, gate) = (Arc::clone(cell), Arc::clone(gate));
    thread::spawn(move || {
        cell.write(|value| {
            gate.pass();
            *value += 1;
            *value
        })
    })
}

fn joined<T>(thread: JoinHandle<T>) -> T {
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[test]
fn many_readers_hold_the_cell_at_once() {
    let cell = Arc::new(SharedCell::new(7));
    let gate = Arc::new(Gate::default());
    let readers: Vec<_> = (0..3).map(|_| spawn_reader(&cell, &gate)).collect();
    eventually("three readers hold the cell", || {
        cell.holding() == [Mode::Read; 3]
    });
    gate.open();
    for reader in readers {
        assert_eq!(joined(reader), 7);
    }
    assert!(cell.holding().is_empty() && cell.waiting().is_empty());
}

#[test]
fn a_writer_holds_the_cell_alone() {
    let cell = Arc::new(SharedCell::new(0));
    let gate = Arc::new(Gate::default());
    let writer = spawn_writer(&cell, &gate);
    eventually("the writer holds the cell", || {
        cell.holding() == [Mode::Write]
    });
    let later = Arc::new(Gate::default());
    let reader = spawn_reader(&cell, &later);
    let second_writer = spawn_writer(&cell, &later);
    eventually("a reader and a writer wait", || cell.waiting().len() == 2);
    assert_eq!(cell.holding(), [Mode::Write], "nobody joins a writer");
    gate.open();
    assert_eq!(joined(writer), 1);
    eventually("the next caller is admitted", || !cell.holding().is_empty());
    assert_eq!(
        cell.holding().len(),
        1,
        "the reader and the second writer never overlap"
    );
    assert_eq!(cell.waiting().len(), 1);
    later.open();
    assert_eq!(joined(second_writer), 2);
    assert!([1, 2].contains(&joined(reader)));
}

#[test]
fn a_reader_arriving_while_a_writer_waits_enters_after_it() {
    let cell = Arc::new(SharedCell::new(0));
    let first_reader_gate = Arc::new(Gate::default());
    let first_reader = spawn_reader(&cell, &first_reader_gate);
    eventually("the first reader holds", || cell.holding() == [Mode::Read]);
    let open = Arc::new(Gate::default());
    open.open();
    let writer = spawn_writer(&cell, &open);
    eventually("the writer waits", || cell.waiting() == [Mode::Write]);
    let late_reader = spawn_reader(&cell, &open);
    eventually("the late reader waits behind the writer", || {
        cell.waiting() == [Mode::Write, Mode::Read]
    });
    assert_eq!(
        cell.holding(),
        [Mode::Read],
        "the late reader did not join the reader holding the cell"
    );
    first_reader_gate.open();
    assert_eq!(joined(first_reader), 0);
    assert_eq!(joined(writer), 1);
    assert_eq!(
        joined(late_reader),
        1,
        "the late reader saw the waiting writer's write"
    );
}

#[test]
fn readers_queued_together_behind_a_writer_enter_together() {
    let cell = Arc::new(SharedCell::new(0));
    let writer_gate = Arc::new(Gate::default());
    let first_writer = spawn_writer(&cell, &writer_gate);
    eventually("the first writer holds", || cell.holding() == [Mode::Write]);
    let batch_gate = Arc::new(Gate::default());
    let batch = [
        spawn_reader(&cell, &batch_gate),
        spawn_reader(&cell, &batch_gate),
    ];
    eventually("two readers wait", || cell.waiting().len() == 2);
    let open = Arc::new(Gate::default());
    open.open();
    let second_writer = spawn_writer(&cell, &open);
    eventually("the second writer waits", || cell.waiting().len() == 3);
    let last_reader = spawn_reader(&cell, &open);
    eventually("everyone queues", || {
        cell.waiting() == [Mode::Read, Mode::Read, Mode::Write, Mode::Read]
    });

    writer_gate.open();
    eventually("the two queued readers hold together", || {
        cell.holding() == [Mode::Read; 2]
    });
    assert_eq!(
        cell.waiting(),
        [Mode::Write, Mode::Read],
        "the reader behind the second writer stays behind it"
    );
    batch_gate.open();
    for reader in batch {
        assert_eq!(
            joined(reader),
            1,
            "the batch read after the first writer only"
        );
    }
    assert_eq!(joined(first_writer), 1);
    assert_eq!(joined(second_writer), 2);
    assert_eq!(
        joined(last_reader),
        2,
        "the last reader entered after the second writer"
    );
}

#[test]
fn no_one_starves_under_continuous_mixed_load() {
    const READERS: usize = 4;
    const WRITERS: usize = 2;
    const TURNS: u32 = 20;
    const THREADS: usize = READERS + WRITERS;
    let cell = Arc::new(SharedCell::new(0u64));
    let satisfied = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|index| {
            let (cell, satisfied, stop) =
                (Arc::clone(&cell), Arc::clone(&satisfied), Arc::clone(&stop));
            thread::spawn(move || {
                let (mut turns, mut longest_wait) = (0u32, Duration::ZERO);
                // Staggered readers holding longer than their gaps overlap all the time: under a
                // reader-preference policy the writers would never get in.
                thread::sleep(Duration::from_millis(index as u64));
                // Everyone keeps the cell busy until every thread has had its turns.
                while satisfied.load(Ordering::SeqCst) < THREADS && !stop.load(Ordering::SeqCst) {
                    let asked = Instant::now();
                    let waited = if index < WRITERS {
                        cell.write(|value| {
                            *value += 1;
                            thread::sleep(Duration::from_millis(1));
                            asked.elapsed()
                        })
                    } else {
                        cell.read(|_| {
                            thread::sleep(Duration::from_millis(4));
                            asked.elapsed()
                        })
                    };
                    longest_wait = longest_wait.max(waited);
                    turns += 1;
                    if turns == TURNS {
                        satisfied.fetch_add(1, Ordering::SeqCst);
                    }
                }
                (turns, longest_wait)
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(30);
    while satisfied.load(Ordering::SeqCst) < THREADS && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let results: Vec<_> = threads.into_iter().map(joined).collect();
    assert_eq!(
        satisfied.load(Ordering::SeqCst),
        THREADS,
        "some thread did not get {TURNS} turns within 30 s: {results:?}"
    );
    for (index, (turns, longest_wait)) in results.iter().enumerate() {
        assert!(*turns >= TURNS, "thread {index} had {turns} turns");
        assert!(
            *longest_wait < Duration::from_secs(10),
            "thread {index} waited {longest_wait:?} for one turn"
        );
    }
    let writes: u32 = results.iter().take(WRITERS).map(|(turns, _)| turns).sum();
    assert_eq!(
        Arc::try_unwrap(cell).ok().map(SharedCell::into_inner),
        Some(u64::from(writes))
    );
}

#[test]
fn a_panicking_writer_releases_its_hold_and_leaves_the_value_usable() {
    let cell = SharedCell::new((0, 0));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        cell.write(|pair| {
            pair.0 = 1;
            panic!("the writer fails halfway");
        })
    }));
    assert!(outcome.is_err());
    assert!(
        cell.holding().is_empty() && cell.waiting().is_empty(),
        "hold released"
    );
    assert_eq!(
        cell.read(|pair| *pair),
        (1, 0),
        "readable as the writer left it, no panic"
    );
    cell.write(|pair| pair.1 = 1);
    assert_eq!(cell.into_inner(), (1, 1));
}

#[test]
fn a_panicking_reader_lets_the_waiting_writer_in() {
    let cell = Arc::new(SharedCell::new(0));
    let gate = Arc::new(Gate::default());
    let reader = {
        let (cell, gate) = (Arc::clone(&cell), Arc::clone(&gate));
        thread::spawn(move || {
            cell.read(|_| {
                gate.pass();
                panic!("the reader fails");
            })
        })
    };
    eventually("the reader holds", || cell.holding() == [Mode::Read]);
    let open = Arc::new(Gate::default());
    open.open();
    let writer = spawn_writer(&cell, &open);
    eventually("the writer waits", || cell.waiting() == [Mode::Write]);
    gate.open();
    assert!(reader.join().is_err(), "the reader panicked");
    assert_eq!(joined(writer), 1, "the writer got in after the panic");
}

#[test]
fn concurrent_writers_lose_no_increment() {
    let cell = SharedCell::new(0u32);
    let log = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..250 {
                    let now = cell.write(|value| {
                        *value += 1;
                        *value
                    });
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(now);
                }
            });
        }
    });
    let mut seen = log.into_inner().unwrap_or_else(|e| e.into_inner());
    seen.sort_unstable();
    assert!(
        seen.iter().copied().eq(1..=1000),
        "each write saw a distinct count"
    );
    assert_eq!(cell.into_inner(), 1000);
}
