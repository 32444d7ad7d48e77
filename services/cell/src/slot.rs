//! The producer/consumer cells: [`Slot`], one item handed from producers to consumers, and
//! [`BroadcastSlot`], one item that every registered [`Consumer`] takes before the next is put.

use std::sync::Arc;

use crate::monitor::Monitor;

/// A one-item slot between producers and consumers.
///
/// Why: the classic bounded buffer of size one. Guarantees: [`Self::put`] waits while the slot is
/// full and [`Self::take`] waits while it is empty, so every item put is taken exactly once —
/// none is overwritten, none is read twice — and, with one producer, in the order put.
#[derive(Debug)]
pub struct Slot<T> {
    item: Monitor<Option<T>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            item: Monitor::new(None),
        }
    }
}

impl<T> Slot<T> {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until the slot is empty, then puts `item` in it.
    pub fn put(&self, item: T) {
        self.item
            .wait_until(Option::is_none, |slot| *slot = Some(item));
    }

    /// How many threads are blocked in [`Self::put`] or [`Self::take`] (see [`Monitor::parked`]).
    pub fn parked(&self) -> usize {
        self.item.parked()
    }

    /// Waits until the slot holds an item, then takes it out.
    pub fn take(&self) -> T {
        loop {
            // `ready` guarantees an item, so this returns on the first pass.
            if let Some(item) = self.item.wait_until(Option::is_some, Option::take) {
                return item;
            }
        }
    }
}

/// A one-item slot that every registered consumer reads: the producer puts the next item only
/// once each consumer has taken the current one.
///
/// Why: the classic variant of producer/consumer where several consumers each consume every item.
/// Guarantees: each [`Consumer`] takes every item put while it is registered exactly once, in the
/// order put; [`Self::put`] waits until every registered consumer has taken the current item. A
/// dropped consumer (for example one whose thread panicked) is unregistered, so it no longer holds
/// the producer back. With no consumer left, `put` drops the item at once.
#[derive(Debug)]
pub struct BroadcastSlot<T> {
    round: Monitor<Round<T>>,
}

/// The current item and where each consumer stands with it.
#[derive(Debug)]
struct Round<T> {
    /// `Some` exactly while some consumer is [`Turn::Pending`].
    item: Option<T>,
    turns: Vec<Turn>,
}

/// Where one consumer stands with the current item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    Pending,
    Done,
    Unregistered,
}

impl<T> Round<T> {
    fn pending(&self) -> usize {
        self.turns.iter().filter(|t| **t == Turn::Pending).count()
    }
}

/// One registered reader of a [`BroadcastSlot`]; move it to the thread that consumes.
#[derive(Debug)]
pub struct Consumer<T> {
    slot: Arc<BroadcastSlot<T>>,
    index: usize,
}

impl<T> BroadcastSlot<T> {
    /// An empty slot with `consumers` registered consumers, returned with it (one handle each).
    pub fn with_consumers(consumers: usize) -> (Arc<Self>, Vec<Consumer<T>>) {
        let slot = Arc::new(Self {
            round: Monitor::new(Round {
                item: None,
                turns: vec![Turn::Done; consumers],
            }),
        });
        let handles = (0..consumers)
            .map(|index| Consumer {
                slot: Arc::clone(&slot),
                index,
            })
            .collect();
        (slot, handles)
    }

    /// How many threads are blocked in [`Self::put`] or [`Consumer::take`] (see
    /// [`Monitor::parked`]).
    pub fn parked(&self) -> usize {
        self.round.parked()
    }

    /// Waits until every registered consumer has taken the current item, then puts `item`.
    pub fn put(&self, item: T) {
        self.round.wait_until(
            |round| round.item.is_none(),
            |round| {
                for turn in &mut round.turns {
                    if *turn == Turn::Done {
                        *turn = Turn::Pending;
                    }
                }
                if round.pending() > 0 {
                    round.item = Some(item);
                }
            },
        );
    }
}

impl<T: Clone> Consumer<T> {
    /// Waits for an item this consumer has not taken yet, then returns it (a clone, or the item
    /// itself for the last consumer to take it).
    pub fn take(&mut self) -> T {
        let index = self.index;
        loop {
            let taken = self.slot.round.wait_until(
                |round| round.turns[index] == Turn::Pending,
                |round| {
                    // Clone before changing anything: a panicking `clone` leaves the round intact.
                    let item = if round.pending() == 1 {
                        round.item.take()
                    } else {
                        round.item.clone()
                    };
                    round.turns[index] = Turn::Done;
                    item
                },
            );
            // A pending turn guarantees an item, so this returns on the first pass.
            if let Some(item) = taken {
                return item;
            }
        }
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.slot.round.update(|round| {
            round.turns[self.index] = Turn::Unregistered;
            if round.pending() == 0 {
                round.item = None;
            }
        });
    }
}
