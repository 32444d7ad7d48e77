//! Durable answers for the transfer batches, without the writer waiting for the disk.
//!
//! The writer commits each batch of transfers with `synchronous = NORMAL`: the commit writes the
//! batch to the WAL file but does not flush it, and the writer goes on with the next batch at
//! once. It tells this thread the batch's number, and this thread flushes the WAL (one
//! `fdatasync` for every batch committed since the last). Whoever answers a transfer first waits
//! for its batch's flush ([`Syncer::durable_through`]), so a transfer is still answered only once
//! it survives a power loss, as with `synchronous = FULL`, while the disk's flush and the next
//! batch's work overlap (the flush was about half of the writer's time).
//!
//! A committed batch is visible to other connections before its flush. Whoever shows data that
//! a transfer may have changed, without a durable commit of its own, first waits for
//! [`Syncer::durable`]: the writer before each of its other jobs, and the ledger's unfenced
//! account view. If a flush fails, the batches it covered may be lost on a power loss, and
//! nothing can tell which: the process stops (as PostgreSQL does), and on restart the ledger
//! holds exactly what reached the disk; clients retry with their request ids.
//!
//! On PostgreSQL a commit is durable when it returns: [`Syncer::durable_on_commit`] has no
//! thread, and a batch is durable as soon as its transaction ends.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
};

use tokio::sync::watch;

use crate::Error;

/// A batch's place in commit order (see [`Syncer::next_batch`]).
#[derive(Clone, Copy, Debug)]
pub struct Batch(u64);

/// Flushes the WAL file to the disk.
pub type Flush = Box<dyn FnMut() -> io::Result<()> + Send>;

/// The handle to the syncing thread (or, for a store whose commits are durable when they return,
/// to none). Cheap to clone; the thread stops once every handle is dropped (after flushing what
/// it was told of).
#[derive(Clone, Debug)]
pub struct Syncer {
    flushing: Flushing,
    /// How many batches have been numbered (committed, or about to be).
    committed: Arc<AtomicU64>,
    /// How many batches are known to be on the disk.
    synced: watch::Receiver<u64>,
}

/// Who makes a committed batch durable.
#[derive(Clone, Debug)]
enum Flushing {
    /// The syncing thread, told of each batch on this queue; it alone holds the sender of
    /// `synced`, so that its end shows as an error to every waiter.
    Thread(mpsc::Sender<u64>),
    /// Nobody: a commit is durable when it returns, and [`Syncer::committed`] says so itself.
    OnCommit(Arc<watch::Sender<u64>>),
}

impl Syncer {
    /// Starts the syncing thread, which flushes with `sync`.
    pub fn start(sync: Flush) -> io::Result<Self> {
        let (queue, queued) = mpsc::channel();
        let (synced_tx, synced) = watch::channel(0);
        std::thread::Builder::new()
            .name("ledger-syncer".into())
            .spawn(move || run(sync, queued, synced_tx))?;
        Ok(Self {
            flushing: Flushing::Thread(queue),
            committed: Arc::new(AtomicU64::new(0)),
            synced,
        })
    }

    /// For a store whose commits are durable when they return (PostgreSQL with its defaults): no
    /// thread, a batch is durable as soon as [`Syncer::committed`] says it ended.
    pub fn durable_on_commit() -> Self {
        let (synced_tx, synced) = watch::channel(0);
        Self {
            flushing: Flushing::OnCommit(Arc::new(synced_tx)),
            committed: Arc::new(AtomicU64::new(0)),
            synced,
        }
    }

    /// Numbers the next batch. Call it before the batch commits: from then on [`Syncer::durable`]
    /// waits for its flush, so that nobody who reads the commit sees it before it is durable.
    pub fn next_batch(&self) -> Batch {
        Batch(self.committed.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Says that `batch`'s transaction has ended (committed without a flush, or failed): a flush
    /// follows. Call it for every batch numbered, in order, from the one writer.
    pub fn committed(&self, batch: Batch) {
        match &self.flushing {
            // Fails only once the thread is gone, with the process: `durable_through` then says so.
            Flushing::Thread(queue) => {
                let _ = queue.send(batch.0);
            }
            Flushing::OnCommit(synced) => {
                synced.send_replace(batch.0);
            }
        }
    }

    /// Waits until `batch` (and every batch before it) is on the disk. An error means it may
    /// never be: the syncing thread has stopped, and with it the process.
    pub async fn durable_through(&self, batch: Batch) -> Result<(), Error> {
        let mut synced = self.synced.clone();
        match synced.wait_for(|synced| *synced >= batch.0).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::Internal("the ledger syncer stopped".into())),
        }
    }

    /// Waits until every batch committed before this call is on the disk.
    pub async fn durable(&self) {
        let committed = Batch(self.committed.load(Ordering::SeqCst));
        // An error means the thread is gone, and with it the process.
        let _ = self.durable_through(committed).await;
    }
}

/// The syncing thread: for every batch committed since the last flush, one flush, then they are
/// durable.
fn run(mut sync: Flush, queued: mpsc::Receiver<u64>, synced: watch::Sender<u64>) {
    while let Ok(first) = queued.recv() {
        let last = queued.try_iter().last().unwrap_or(first);
        if let Err(err) = sync() {
            tracing::error!(
                error = %err,
                "cannot flush the ledger's WAL to the disk: stopping, as committed transfers may not be durable"
            );
            std::process::abort();
        }
        synced.send_replace(last);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Mutex, mpsc::Receiver},
        time::Duration,
    };

    use super::*;

    /// A syncer whose flushes each say they have begun (`entered`), then wait for the test to let
    /// one through (`release`); `flushes` counts those done.
    struct Held {
        syncer: Syncer,
        entered: Receiver<()>,
        release: mpsc::Sender<()>,
        flushes: Arc<Mutex<u32>>,
    }

    fn held_syncer() -> Held {
        let (release, released) = mpsc::channel::<()>();
        let (enter, entered) = mpsc::channel();
        let flushes = Arc::new(Mutex::new(0));
        let counted = flushes.clone();
        let sync: Flush = Box::new(move || {
            let _ = enter.send(());
            released.recv().map_err(io::Error::other)?;
            *counted.lock().unwrap() += 1;
            Ok(())
        });
        let syncer = Syncer::start(sync).unwrap();
        Held {
            syncer,
            entered,
            release,
            flushes,
        }
    }

    /// Whether `future` is still pending after 50 ms. Used only while a flush is held, so a
    /// pending answer is certain, not a matter of timing.
    async fn still_pending(future: impl Future<Output = impl Sized>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), future)
            .await
            .is_err()
    }

    async fn within_5s<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .expect("done within 5 s")
    }

    #[tokio::test]
    async fn a_batch_is_durable_only_after_a_flush_that_follows_its_commit() {
        let held = held_syncer();
        let batch = held.syncer.next_batch();
        held.syncer.committed(batch);
        held.entered.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            still_pending(held.syncer.durable_through(batch)).await,
            "not durable before the flush"
        );

        held.release.send(()).unwrap();
        within_5s(held.syncer.durable_through(batch)).await.unwrap();
        assert_eq!(*held.flushes.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn durable_waits_for_a_batch_numbered_before_its_commit() {
        let held = held_syncer();
        let batch = held.syncer.next_batch();
        let durable = held.syncer.durable();
        tokio::pin!(durable);
        assert!(
            still_pending(&mut durable).await,
            "a reader of the commit waits for its flush"
        );
        held.syncer.committed(batch);
        held.release.send(()).unwrap();
        within_5s(durable).await;
    }

    #[tokio::test]
    async fn batches_committed_during_a_flush_share_the_next_and_durable_waits_for_it() {
        let held = held_syncer();
        let first = held.syncer.next_batch();
        held.syncer.committed(first);
        held.entered.recv_timeout(Duration::from_secs(5)).unwrap();
        // The thread is in the first flush; two more batches commit meanwhile.
        let (second, third) = (held.syncer.next_batch(), held.syncer.next_batch());
        held.syncer.committed(second);
        held.syncer.committed(third);
        let durable = held.syncer.durable();
        tokio::pin!(durable);
        assert!(
            still_pending(&mut durable).await,
            "not durable while a batch waits for its flush"
        );

        held.release.send(()).unwrap();
        within_5s(held.syncer.durable_through(first)).await.unwrap();
        held.release.send(()).unwrap();
        within_5s(held.syncer.durable_through(third)).await.unwrap();
        within_5s(held.syncer.durable_through(second))
            .await
            .unwrap();
        within_5s(durable).await;
        assert_eq!(
            *held.flushes.lock().unwrap(),
            2,
            "one flush for the two batches"
        );
    }

    #[tokio::test]
    async fn with_nothing_to_flush_a_batch_is_durable_once_committed_and_not_before() {
        let syncer = Syncer::durable_on_commit();
        let batch = syncer.next_batch();
        assert!(
            still_pending(syncer.durable_through(batch)).await,
            "not durable before its commit ends"
        );
        syncer.committed(batch);
        within_5s(syncer.durable_through(batch)).await.unwrap();
        within_5s(syncer.durable()).await;
    }

    #[tokio::test]
    async fn a_batch_is_never_called_durable_once_the_syncer_has_stopped() {
        let sync: Flush = Box::new(|| panic!("the disk is gone"));
        let syncer = Syncer::start(sync).unwrap();
        let batch = syncer.next_batch();
        syncer.committed(batch);
        let answer = within_5s(syncer.durable_through(batch)).await;
        assert!(matches!(answer, Err(Error::Internal(_))), "{answer:?}");
    }
}
