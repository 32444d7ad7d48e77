//! The readers/writers admission policy — one piece of code for the in-process
//! [`SharedCell`](crate::SharedCell) and the lock service's lock table.
//!
//! Per resource: any number of readers or exactly one writer hold it, never both. Waiters are
//! served in arrival order with writer preference, as in the classic algorithm: a reader that
//! arrives while a writer writes *or waits* queues behind it, and the readers queued together behind
//! a writer enter together when it finishes. So neither readers nor writers starve.
//!
//! [`RwQueue`] only decides; it never blocks. Callers keep it behind their own lock and wake the
//! waiters it admits.

use std::collections::VecDeque;

/// How a resource is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Shared: any number of readers at once.
    Read,
    /// Exclusive: one writer, no readers.
    Write,
}

/// The holders of one resource and its waiters in arrival order. `K` identifies a request.
#[derive(Clone, Debug)]
pub struct RwQueue<K> {
    readers: Vec<K>,
    writer: Option<K>,
    waiting: VecDeque<(K, Mode)>,
}

impl<K> Default for RwQueue<K> {
    fn default() -> Self {
        Self {
            readers: Vec::new(),
            writer: None,
            waiting: VecDeque::new(),
        }
    }
}

impl<K: Copy + Eq> RwQueue<K> {
    /// A free resource with no waiters.
    pub fn new() -> Self {
        Self::default()
    }

    /// No holder and no waiter: the caller may forget this resource.
    pub fn is_idle(&self) -> bool {
        self.readers.is_empty() && self.writer.is_none() && self.waiting.is_empty()
    }

    /// Puts `id` at the back of the queue.
    pub fn enqueue(&mut self, id: K, mode: Mode) {
        self.waiting.push_back((id, mode));
    }

    /// Whether waiter `id` may enter now: it is compatible with the holders, and nobody ahead of
    /// it in the queue must go first (only readers may be ahead of a reader; nobody ahead of a
    /// writer). `false` when `id` is not waiting here.
    pub fn admissible(&self, id: K) -> bool {
        let Some(position) = self.waiting.iter().position(|(k, _)| *k == id) else {
            return false;
        };
        match self.waiting[position].1 {
            Mode::Write => position == 0 && self.writer.is_none() && self.readers.is_empty(),
            Mode::Read => {
                self.writer.is_none()
                    && self
                        .waiting
                        .iter()
                        .take(position)
                        .all(|(_, m)| *m == Mode::Read)
            }
        }
    }

    /// Moves waiter `id` from the queue to the holders. The caller checks [`Self::admissible`]
    /// first (for every resource it wants, when it wants several at once). Returns `false` when
    /// `id` was not waiting.
    pub fn admit(&mut self, id: K) -> bool {
        let Some(position) = self.waiting.iter().position(|(k, _)| *k == id) else {
            return false;
        };
        let Some((_, mode)) = self.waiting.remove(position) else {
            return false;
        };
        match mode {
            Mode::Read => self.readers.push(id),
            Mode::Write => self.writer = Some(id),
        }
        true
    }

    /// Admits, in arrival order, every waiter that may enter now, and returns them — for callers
    /// that want this one resource only.
    pub fn admit_ready(&mut self) -> Vec<K> {
        let mut admitted = Vec::new();
        while let Some(&(id, _)) = self.waiting.front() {
            if !self.admissible(id) {
                break;
            }
            self.admit(id);
            admitted.push(id);
        }
        admitted
    }

    /// Ends `id`'s hold. Returns `false` when `id` held nothing here.
    pub fn release(&mut self, id: K) -> bool {
        if self.writer == Some(id) {
            self.writer = None;
            return true;
        }
        match self.readers.iter().position(|k| *k == id) {
            Some(position) => {
                self.readers.swap_remove(position);
                true
            }
            None => false,
        }
    }

    /// Takes waiter `id` out of the queue (it gave up). Returns `false` when it was not waiting.
    pub fn withdraw(&mut self, id: K) -> bool {
        match self.waiting.iter().position(|(k, _)| *k == id) {
            Some(position) => {
                self.waiting.remove(position);
                true
            }
            None => false,
        }
    }

    /// The current holders and their modes.
    pub fn holders(&self) -> impl Iterator<Item = (K, Mode)> + '_ {
        self.writer
            .iter()
            .map(|k| (*k, Mode::Write))
            .chain(self.readers.iter().map(|k| (*k, Mode::Read)))
    }

    /// The waiters in arrival order.
    pub fn waiters(&self) -> impl Iterator<Item = (K, Mode)> + '_ {
        self.waiting.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(waiters: &[(u32, Mode)]) -> RwQueue<u32> {
        let mut q = RwQueue::new();
        for &(id, mode) in waiters {
            q.enqueue(id, mode);
        }
        q
    }

    #[test]
    fn many_readers_or_one_writer_never_both() {
        let mut q = queue(&[(1, Mode::Read), (2, Mode::Read), (3, Mode::Write)]);
        assert_eq!(q.admit_ready(), vec![1, 2]);
        assert!(!q.admissible(3), "a writer waits for the readers");
        q.release(1);
        assert!(q.admit_ready().is_empty());
        q.release(2);
        assert_eq!(q.admit_ready(), vec![3]);
        q.enqueue(4, Mode::Read);
        assert!(!q.admissible(4), "a reader waits for the writer");
    }

    #[test]
    fn a_reader_arriving_after_a_waiting_writer_waits_behind_it() {
        let mut q = queue(&[(1, Mode::Read)]);
        assert_eq!(q.admit_ready(), vec![1]);
        q.enqueue(2, Mode::Write);
        q.enqueue(3, Mode::Read);
        assert!(!q.admissible(3), "writer preference: 3 may not overtake 2");
        assert!(q.admit_ready().is_empty());
        q.release(1);
        assert_eq!(q.admit_ready(), vec![2]);
    }

    #[test]
    fn readers_queued_together_behind_a_writer_enter_together() {
        let mut q = queue(&[
            (1, Mode::Write),
            (2, Mode::Read),
            (3, Mode::Read),
            (4, Mode::Write),
            (5, Mode::Read),
        ]);
        assert_eq!(q.admit_ready(), vec![1]);
        q.release(1);
        assert_eq!(
            q.admit_ready(),
            vec![2, 3],
            "the batch of readers, not the one after writer 4"
        );
        q.release(2);
        q.release(3);
        assert_eq!(q.admit_ready(), vec![4]);
        q.release(4);
        assert_eq!(q.admit_ready(), vec![5]);
        assert!(q.holders().eq([(5, Mode::Read)]));
    }

    #[test]
    fn a_withdrawn_waiter_no_longer_blocks_the_ones_behind_it() {
        let mut q = queue(&[(1, Mode::Read)]);
        q.admit_ready();
        q.enqueue(2, Mode::Write);
        q.enqueue(3, Mode::Read);
        assert!(q.withdraw(2));
        assert_eq!(q.admit_ready(), vec![3]);
        assert!(!q.withdraw(2), "already gone");
        q.release(1);
        q.release(3);
        assert!(q.is_idle());
    }

    #[test]
    fn release_and_admit_of_unknown_ids_change_nothing() {
        let mut q: RwQueue<u32> = RwQueue::new();
        assert!(!q.release(9));
        assert!(!q.admit(9));
        assert!(!q.admissible(9));
        assert!(q.is_idle());
    }
}
