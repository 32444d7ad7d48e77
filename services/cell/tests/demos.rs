//! The classic demonstrations, run through the library with small parameters and a one-millisecond
//! "second", each checked against what it is meant to show; and their helpers (prompts, xorshift).

use std::io::Cursor;
use std::sync::Mutex;
use std::time::Duration;

use township_cell::demo::{self, Pace, Tally, Xorshift};

fn fast(seed: u64) -> Pace {
    Pace {
        time_unit: Duration::from_millis(1),
        seed,
    }
}

/// Runs `demo` with a log that keeps its lines, and returns its result and the lines.
fn logged<R>(demo: impl FnOnce(demo::Log) -> R) -> (R, Vec<String>) {
    let lines = Mutex::new(Vec::new());
    let result = demo(&|line| lines.lock().unwrap_or_else(|e| e.into_inner()).push(line));
    (
        result,
        lines.into_inner().unwrap_or_else(|e| e.into_inner()),
    )
}

#[test]
fn sleepy_threads_each_start_then_wake_exactly_once() {
    let (intervals, lines) = logged(|log| demo::sleepy_threads(4, 3, fast(7), log));
    assert_eq!(intervals.len(), 4);
    assert_eq!(lines.len(), 8);
    for (index, interval) in intervals.iter().enumerate() {
        let number = index + 1;
        assert!((1..=3).contains(interval));
        let start = format!("Thread {number} starting, with sleep interval: {interval} seconds");
        let wake = format!("Thread {number} waking up");
        let start_at = lines.iter().position(|l| *l == start);
        let wake_at = lines.iter().position(|l| *l == wake);
        assert!(start_at.is_some() && wake_at.is_some(), "{lines:?}");
        assert!(start_at < wake_at, "thread {number} woke before it started");
    }
}

#[test]
fn synchronized_producer_consumer_hands_over_every_item_once() {
    let (report, lines) = logged(|log| demo::producer_consumer(8, true, fast(1), log));
    assert!(report.consumed.iter().copied().eq(1..=8));
    assert_eq!(report.tally, Tally::default());
    assert!(lines.contains(&"Producer setting data to 8".to_string()));
    assert!(lines.contains(&"Consumer accessing data 8".to_string()));
    assert_eq!(
        report.summary(),
        "Summary: produced 8, consumed 8, missed 0, repeated 0"
    );
}

#[test]
fn unsynchronized_producer_consumer_accounts_for_every_item_and_read() {
    let (report, lines) = logged(|log| demo::producer_consumer(10, false, fast(2), log));
    assert_eq!(report.consumed.len(), 10);
    assert!(
        report
            .consumed
            .iter()
            .all(|data| *data == -1 || (1..=10).contains(data))
    );
    assert!(
        report.consumed.windows(2).all(|w| w[0] <= w[1]),
        "the producer only counts up, so reads never go back: {:?}",
        report.consumed
    );
    let new_reads = report.consumed.len() - report.tally.repeated;
    assert_eq!(
        new_reads + report.tally.missed,
        10,
        "each item is either read or missed"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("Consumer accessing data"))
            .count(),
        10
    );
}

#[test]
fn tally_counts_missed_and_repeated_data() {
    assert_eq!(demo::tally(3, &[1, 2, 3]), Tally::default());
    assert_eq!(
        demo::tally(3, &[-1, 2, 2]),
        Tally {
            missed: 2,
            repeated: 2
        }
    );
    assert_eq!(
        demo::tally(4, &[2, 4]),
        Tally {
            missed: 2,
            repeated: 0
        }
    );
}

#[test]
fn readers_writers_counter_ends_at_the_writes_and_no_read_is_torn() {
    let (report, lines) = logged(|log| demo::readers_writers(3, 2, 5, fast(3), log));
    assert_eq!(report.writes, 10);
    assert_eq!(report.final_count, 10);
    assert_eq!(report.torn_reads, 0);
    assert_eq!(report.reads.len(), 3);
    for seen in &report.reads {
        assert_eq!(seen.len(), 5);
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "a reader saw the count go back: {seen:?}"
        );
        assert!(seen.iter().all(|count| *count <= 10));
    }
    assert!(
        lines.contains(&"Writer1 is done incrementing to 1".to_string())
            ^ lines.contains(&"Writer2 is done incrementing to 1".to_string())
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Reader1 is done getting "))
    );
}

#[test]
fn multi_consumer_each_consumer_takes_every_item_once() {
    let (report, lines) = logged(|log| demo::multi_consumer(3, 6, fast(4), log));
    assert_eq!(report.received.len(), 3);
    assert!(report.each_took_every_item_once(), "{:?}", report.received);
    for number in 1..=3 {
        let accessed = lines
            .iter()
            .filter(|l| l.starts_with(&format!("Consumer{number} accessing data ")))
            .count();
        assert_eq!(accessed, 6);
    }
}

#[test]
fn a_report_with_a_missed_or_repeated_item_fails_the_multi_consumer_check() {
    let report = demo::MultiConsumerReport {
        produced: 3,
        received: vec![vec![1, 2, 3], vec![1, 3, 3]],
    };
    assert!(!report.each_took_every_item_once());
}

#[test]
fn ask_repeats_the_prompt_until_it_gets_a_number() {
    let mut input = Cursor::new("three\n 3 \n");
    let mut output = Vec::new();
    let answer: usize =
        demo::ask("Enter the number of threads: ", &mut input, &mut output).unwrap_or(0);
    assert_eq!(answer, 3);
    assert_eq!(
        String::from_utf8_lossy(&output),
        "Enter the number of threads: Please enter a whole number.\nEnter the number of threads: "
    );
}

#[test]
fn ask_fails_at_the_end_of_the_input() {
    let mut output = Vec::new();
    let answer = demo::ask::<u32>(
        "Enter the number of accesses: ",
        &mut Cursor::new(""),
        &mut output,
    );
    assert!(answer.is_err());
}

#[test]
fn xorshift_repeats_for_a_seed_and_stays_in_bounds() {
    let draw = |seed| {
        let mut rng = Xorshift::new(seed);
        (0..100).map(|_| rng.between(1, 4)).collect::<Vec<_>>()
    };
    assert_eq!(draw(0), draw(0));
    assert_ne!(draw(0), draw(1));
    assert!(draw(5).iter().all(|n| (1..=4).contains(n)));
    assert!(
        (1..=4).all(|n| draw(5).contains(&n)),
        "every value comes up"
    );
    assert_eq!(Xorshift::new(9).between(3, 3), 3);
    assert_eq!(Xorshift::new(9).between(5, 1), 5);
}
