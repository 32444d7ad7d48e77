//! The producer/consumer guarantees of `Slot` and `BroadcastSlot`: every item taken exactly once
//! (by each consumer, for the broadcast slot), in order, with `put` and `take` waiting as they must.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use township_cell::{BroadcastSlot, Slot};

/// How long a thread may take to start and block, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `parked()` counts `threads` blocked threads; fails the test after [`PATIENCE`].
fn wait_until_parked(what: &str, threads: usize, parked: impl Fn() -> usize) {
    let deadline = Instant::now() + PATIENCE;
    while parked() < threads {
        assert!(Instant::now() < deadline, "{what} never blocked");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_slot_hands_over_every_item_exactly_once_in_order() {
    let slot = Slot::new();
    let taken: Vec<u32> = thread::scope(|scope| {
        scope.spawn(|| (1..=500).for_each(|item| slot.put(item)));
        (0..500).map(|_| slot.take()).collect()
    });
    assert!(taken.into_iter().eq(1..=500));
}

#[test]
fn put_waits_while_the_slot_is_full() {
    let slot = Slot::new();
    slot.put("first");
    let second_put = AtomicBool::new(false);
    thread::scope(|scope| {
        scope.spawn(|| {
            slot.put("second");
            second_put.store(true, Ordering::SeqCst);
        });
        wait_until_parked("the second put", 1, || slot.parked());
        assert!(
            !second_put.load(Ordering::SeqCst),
            "put went through a full slot"
        );
        assert_eq!(slot.take(), "first", "not overwritten");
    });
    assert!(second_put.load(Ordering::SeqCst));
    assert_eq!(slot.take(), "second");
}

#[test]
fn take_waits_while_the_slot_is_empty() {
    let slot = Slot::new();
    let taken = AtomicBool::new(false);
    thread::scope(|scope| {
        let taker = scope.spawn(|| {
            let item = slot.take();
            taken.store(true, Ordering::SeqCst);
            item
        });
        wait_until_parked("the take", 1, || slot.parked());
        assert!(
            !taken.load(Ordering::SeqCst),
            "take returned from an empty slot"
        );
        slot.put(42);
        assert_eq!(taker.join().ok(), Some(42));
    });
}

#[test]
fn each_broadcast_consumer_takes_every_item_exactly_once_in_order() {
    let (slot, consumers) = BroadcastSlot::with_consumers(3);
    let received: Vec<Vec<u32>> = thread::scope(|scope| {
        let threads: Vec<_> = consumers
            .into_iter()
            .map(|mut consumer| scope.spawn(move || (0..200).map(|_| consumer.take()).collect()))
            .collect();
        (1..=200).for_each(|item| slot.put(item));
        threads.into_iter().filter_map(|t| t.join().ok()).collect()
    });
    assert_eq!(received.len(), 3);
    for taken in received {
        assert!(taken.into_iter().eq(1..=200));
    }
}

#[test]
fn broadcast_put_waits_until_every_consumer_has_taken() {
    let (slot, mut consumers) = BroadcastSlot::with_consumers(2);
    slot.put(1);
    assert_eq!(consumers[0].take(), 1);
    let second_put = Arc::new(AtomicBool::new(false));
    let producer = {
        let (slot, second_put) = (Arc::clone(&slot), Arc::clone(&second_put));
        thread::spawn(move || {
            slot.put(2);
            second_put.store(true, Ordering::SeqCst);
        })
    };
    wait_until_parked("the second put", 1, || slot.parked());
    assert!(
        !second_put.load(Ordering::SeqCst),
        "put before consumer 2 took item 1"
    );
    assert_eq!(consumers[1].take(), 1);
    assert!(producer.join().is_ok());
    assert_eq!(consumers[0].take(), 2);
    assert_eq!(consumers[1].take(), 2);
}

#[test]
fn a_dropped_consumer_no_longer_holds_the_producer_back() {
    let (slot, mut consumers) = BroadcastSlot::with_consumers(2);
    slot.put(1);
    assert_eq!(consumers[0].take(), 1);
    drop(consumers.pop());
    slot.put(2);
    assert_eq!(consumers[0].take(), 2, "the remaining consumer goes on");
}

#[test]
fn a_broadcast_slot_with_no_consumers_never_blocks_the_producer() {
    let (slot, consumers) = BroadcastSlot::<u8>::with_consumers(0);
    assert!(consumers.is_empty());
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        (0..3).for_each(|item| slot.put(item));
        done.send(()).ok();
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(20)).is_ok(),
        "the producer blocked with nobody to wait for"
    );
}
