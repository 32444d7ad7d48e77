//! [`SharedCell`]: a value that many readers or one writer use at a time, admitted by the same
//! [`RwQueue`] policy as the lock service.

use std::sync::{PoisonError, RwLock};

use crate::admission::{Mode, RwQueue};
use crate::monitor::Monitor;

/// A value shared between threads: any number of readers at once, or one writer alone.
///
/// Why: the classic readers/writers cell, with the lock service's admission policy rather than
/// whatever the platform's `RwLock` happens to do. Guarantees, from [`RwQueue`]:
/// - callers are admitted in arrival order with writer preference: a reader that arrives while a
///   writer writes *or waits* enters after that writer;
/// - the readers queued together behind a writer enter together when it finishes;
/// - so neither readers nor writers starve;
/// - a closure that panics still ends its hold (on unwind), and later callers do not panic: they
///   see the value as the panicking closure left it.
///
/// The calls block (std `Mutex` and `Condvar`). Calling `read` or `write` on the same cell from
/// inside a closure deadlocks, as with any lock.
#[derive(Debug)]
pub struct SharedCell<T> {
    admission: Monitor<Admission>,
    /// Only stores the value safely between threads: admission alone decides who enters, so this
    /// lock is never contended.
    value: RwLock<T>,
}

/// Who holds and who waits, and the id for the next caller.
#[derive(Debug, Default)]
struct Admission {
    queue: RwQueue<u64>,
    next_id: u64,
}

impl<T> SharedCell<T> {
    /// A cell holding `value`, with no reader and no writer.
    pub fn new(value: T) -> Self {
        Self {
            admission: Monitor::default(),
            value: RwLock::new(value),
        }
    }

    /// Waits for its turn as a reader, then returns `reader(&value)`. Other readers may run at the
    /// same time; no writer does.
    pub fn read<R>(&self, reader: impl FnOnce(&T) -> R) -> R {
        let _hold = self.enter(Mode::Read);
        let value = self.value.read().unwrap_or_else(PoisonError::into_inner);
        reader(&value)
    }

    /// Waits for its turn as the writer, then returns `writer(&mut value)`. Nobody else runs at the
    /// same time.
    pub fn write<R>(&self, writer: impl FnOnce(&mut T) -> R) -> R {
        let _hold = self.enter(Mode::Write);
        let mut value = self.value.write().unwrap_or_else(PoisonError::into_inner);
        writer(&mut value)
    }

    /// The modes of the current holders (the writer first, if any): for monitoring and tests.
    pub fn holding(&self) -> Vec<Mode> {
        self.admission
            .inspect(|a| a.queue.holders().map(|(_, mode)| mode).collect())
    }

    /// The modes of the waiting callers, in arrival order: for monitoring and tests.
    pub fn waiting(&self) -> Vec<Mode> {
        self.admission
            .inspect(|a| a.queue.waiters().map(|(_, mode)| mode).collect())
    }

    /// Consumes the cell and returns its value.
    pub fn into_inner(self) -> T {
        self.value
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the caller, then blocks until the policy admits it. The returned guard ends the hold
    /// (or the wait) when dropped, also on unwind.
    fn enter(&self, mode: Mode) -> Hold<'_> {
        let id = self.admission.update(|a| {
            let id = a.next_id;
            a.next_id = a.next_id.wrapping_add(1);
            a.queue.enqueue(id, mode);
            a.queue.admit_ready();
            id
        });
        let hold = Hold {
            admission: &self.admission,
            id,
        };
        self.admission
            .wait_until(|a| a.queue.holders().any(|(k, _)| k == id), |_| ());
        hold
    }
}

/// One caller's place in a cell's admission: holding or still waiting.
struct Hold<'a> {
    admission: &'a Monitor<Admission>,
    id: u64,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.admission.update(|a| {
            if !a.queue.release(self.id) {
                a.queue.withdraw(self.id);
            }
            a.queue.admit_ready();
        });
    }
}
