//! [`Monitor`]: the one waiting core that every cell in this crate is built on — a state behind a
//! mutex, and a condition variable that wakes every waiter whenever the state changes.

use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError,
    atomic::{AtomicUsize, Ordering},
};

/// Shared state `S` that threads wait on until it suits them, and then change.
///
/// Why: the readers/writers cell and the producer/consumer slots differ only in their state and in
/// what each caller waits for; this is the part they share. Guarantees:
/// - `ready` and `act` run under the lock, and `act` sees a state for which `ready` returned `true`;
/// - after every [`Self::wait_until`] or [`Self::update`] (even one that panicked), every waiter
///   is woken and re-checks its own condition, so no change goes unnoticed;
/// - a panic under the lock does not make later calls panic: the state is recovered as it was left
///   (`PoisonError::into_inner`). Code that runs under the lock must therefore leave the state
///   consistent before doing anything that may panic.
#[derive(Debug, Default)]
pub struct Monitor<S> {
    state: Mutex<S>,
    changed: Condvar,
    /// How many callers are parked on `changed`; changed only under the `state` lock.
    parked: AtomicUsize,
}

impl<S> Monitor<S> {
    /// A monitor over `state`.
    pub fn new(state: S) -> Self {
        Self {
            state: Mutex::new(state),
            changed: Condvar::new(),
            parked: AtomicUsize::new(0),
        }
    }

    /// Blocks until `ready(&state)` holds, then runs `act` on the state (still under the lock),
    /// wakes every waiter and returns what `act` returned.
    pub fn wait_until<R>(
        &self,
        mut ready: impl FnMut(&S) -> bool,
        act: impl FnOnce(&mut S) -> R,
    ) -> R {
        // Declared before the guard so that it drops after it: waiters are woken once the lock is
        // free, also when `act` panics.
        let _wake_all = WakeAllOnDrop(&self.changed);
        let mut state = self.lock();
        // A hand-written loop rather than `Condvar::wait_while`: on poison, `wait_while` returns
        // without re-checking the condition; here it is always re-checked.
        while !ready(&state) {
            self.parked.fetch_add(1, Ordering::SeqCst);
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            self.parked.fetch_sub(1, Ordering::SeqCst);
        }
        act(&mut state)
    }

    /// Runs `act` on the state without waiting, then wakes every waiter.
    pub fn update<R>(&self, act: impl FnOnce(&mut S) -> R) -> R {
        self.wait_until(|_| true, act)
    }

    /// How many threads are parked in [`Self::wait_until`], waiting for the state to change.
    ///
    /// Why: to tell a thread that is really blocked from one that has merely not run yet (tests,
    /// diagnostics). Guarantee: a thread counted here found its condition false under the lock
    /// and cannot return before a later `wait_until` or `update` changes the state.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// Looks at the state without changing it (no one is woken).
    pub fn inspect<R>(&self, look: impl FnOnce(&S) -> R) -> R {
        look(&self.lock())
    }

    /// Consumes the monitor and returns its state.
    pub fn into_inner(self) -> S {
        self.state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wakes every waiter of a condition variable when dropped.
struct WakeAllOnDrop<'a>(&'a Condvar);

impl Drop for WakeAllOnDrop<'_> {
    fn drop(&mut self) {
        self.0.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn parked_counts_a_waiter_from_when_it_blocks_until_a_change_lets_it_through() {
        let monitor = Arc::new(Monitor::new(false));
        assert_eq!(monitor.parked(), 0);
        let waiter = {
            let monitor = Arc::clone(&monitor);
            thread::spawn(move || monitor.wait_until(|open| *open, |_| ()))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while monitor.parked() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the waiter never blocked"
            );
            thread::yield_now();
        }
        assert!(!waiter.is_finished(), "a parked waiter has not returned");
        monitor.update(|open| *open = true);
        assert!(waiter.join().is_ok());
        assert_eq!(monitor.parked(), 0, "no longer parked once through");
    }

    #[test]
    fn wait_until_blocks_until_the_condition_holds_then_acts() {
        let monitor = Arc::new(Monitor::new(0u32));
        let waiter = {
            let monitor = Arc::clone(&monitor);
            thread::spawn(move || {
                monitor.wait_until(
                    |n| *n >= 3,
                    |n| {
                        let seen = *n;
                        *n = 100;
                        seen
                    },
                )
            })
        };
        for _ in 0..3 {
            monitor.update(|n| *n += 1);
        }
        assert_eq!(
            waiter.join().ok(),
            Some(3),
            "acted exactly when the count reached 3"
        );
        assert_eq!(monitor.inspect(|n| *n), 100);
    }

    #[test]
    fn a_panic_under_the_lock_does_not_make_later_calls_panic() {
        let monitor = Monitor::new(vec![1]);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            monitor.update(|v| {
                v.push(2);
                panic!("a closure fails under the lock");
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(
            monitor.inspect(Vec::clone),
            vec![1, 2],
            "state recovered as it was left"
        );
        monitor.wait_until(|v| v.len() == 2, |v| v.push(3));
        assert_eq!(monitor.into_inner(), vec![1, 2, 3]);
    }
}
