//! Durable answers for the transfer batches, without the writer waiting for the disk.
//!
//! The writer commits each batch of transfers with `synchronous = NORMAL`: the commit writes the
//! batch to the WAL file but does not flush it, and the writer goes on with the next batch at
//! once. It hands the batch's answers here, and this thread flushes the WAL (one `fdatasync` for
//! every batch committed since the last) and only then sends them. So a transfer is still answered
//! only once it survives a power loss, as with `synchronous = FULL`, while the disk's flush and
//! the next batch's work overlap (the flush was about half of the writer's time).
//!
//! A committed batch is visible to other connections before its flush. Whoever shows data that
//! a transfer may have changed, without a durable commit of its own, first waits for
//! [`Syncer::durable`]: the writer before each of its other jobs, and the ledger's unfenced
//! account view. If a flush fails, the batches it covered may be lost on a power loss, and
//! nothing can tell which: the process stops (as PostgreSQL does), and on restart the ledger
//! holds exactly what reached the disk; clients retry with their request ids.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
};

use tokio::sync::{oneshot, watch};

use crate::{Error, rules::Receipt};

/// The answers of one committed batch: each transfer's channel and its outcome.
pub type Answers = Vec<(
    oneshot::Sender<Result<Receipt, Error>>,
    Result<Receipt, Error>,
)>;

/// A batch's place in commit order (see [`Syncer::next_batch`]).
#[derive(Clone, Copy, Debug)]
pub struct Batch(u64);

/// Flushes the WAL file to the disk.
pub type Flush = Box<dyn FnMut() -> io::Result<()> + Send>;

/// The handle to the syncing thread. Cheap to clone; the thread stops once every handle is
/// dropped (after answering what it was given).
#[derive(Clone, Debug)]
pub struct Syncer {
    queue: mpsc::Sender<(u64, Answers)>,
    /// How many batches have been numbered (committed, or about to be).
    committed: Arc<AtomicU64>,
    /// How many batches are known to be on the disk.
    synced: watch::Receiver<u64>,
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
            queue,
            committed: Arc::new(AtomicU64::new(0)),
            synced,
        })
    }

    /// Numbers the next batch. Call it before the batch commits: from then on [`Syncer::durable`]
    /// waits for its flush, so that nobody who reads the commit sees it before it is durable.
    pub fn next_batch(&self) -> Batch {
        Batch(self.committed.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Takes the answers of `batch`, once its transaction has ended (committed without a flush,
    /// or failed): they are sent after a flush that follows it. Call it for every batch
    /// numbered, in order, from the one writer.
    pub fn committed(&self, batch: Batch, answers: Answers) {
        if let Err(mpsc::SendError((_, answers))) = self.queue.send((batch.0, answers)) {
            // The thread is gone only if the process is stopping: nobody is told a transfer
            // was done that may not be durable.
            for (answer, _) in answers {
                let _ = answer.send(Err(Error::Internal("the ledger syncer stopped".into())));
            }
        }
    }

    /// Waits until every batch committed before this call is on the disk.
    pub async fn durable(&self) {
        let committed = self.committed.load(Ordering::SeqCst);
        let mut synced = self.synced.clone();
        // An error means the thread is gone, and with it the process.
        let _ = synced.wait_for(|synced| *synced >= committed).await;
    }
}

/// The syncing thread: for every batch committed since the last flush, one flush, then their
/// answers.
fn run(mut sync: Flush, queued: mpsc::Receiver<(u64, Answers)>, synced: watch::Sender<u64>) {
    while let Ok(first) = queued.recv() {
        let mut batches = vec![first];
        batches.extend(queued.try_iter());
        if let Err(err) = sync() {
            tracing::error!(
                error = %err,
                "cannot flush the ledger's WAL to the disk: stopping, as committed transfers may not be durable"
            );
            std::process::abort();
        }
        let last = batches.last().map_or(0, |(batch, _)| *batch);
        for (_, answers) in batches {
            for (answer, outcome) in answers {
                let _ = answer.send(outcome);
            }
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

    fn receipt(id: &str) -> Result<Receipt, Error> {
        Ok(Receipt {
            transaction_id: id.into(),
            balance_cents: 1,
        })
    }

    #[tokio::test]
    async fn a_batch_is_answered_only_after_a_flush_that_follows_its_commit() {
        let held = held_syncer();
        let (answer, mut answered) = oneshot::channel();
        held.syncer
            .committed(held.syncer.next_batch(), vec![(answer, receipt("1"))]);
        held.entered.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            answered.try_recv().is_err(),
            "not answered before the flush"
        );

        held.release.send(()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), answered).await;
        assert_eq!(outcome.unwrap().unwrap().unwrap().transaction_id, "1");
        assert_eq!(*held.flushes.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn durable_waits_for_a_batch_numbered_before_its_commit() {
        let held = held_syncer();
        let batch = held.syncer.next_batch();
        let durable = held.syncer.durable();
        tokio::pin!(durable);
        let early = tokio::time::timeout(Duration::from_millis(50), &mut durable).await;
        assert!(early.is_err(), "a reader of the commit waits for its flush");
        held.syncer.committed(batch, Vec::new());
        held.release.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), durable)
            .await
            .expect("durable once flushed");
    }

    #[tokio::test]
    async fn batches_committed_during_a_flush_share_the_next_and_durable_waits_for_it() {
        let held = held_syncer();
        let (first, first_answered) = oneshot::channel();
        held.syncer
            .committed(held.syncer.next_batch(), vec![(first, receipt("1"))]);
        held.entered.recv_timeout(Duration::from_secs(5)).unwrap();
        // The thread is in the first flush; two more batches commit meanwhile.
        let (second, second_answered) = oneshot::channel();
        let (third, third_answered) = oneshot::channel();
        held.syncer
            .committed(held.syncer.next_batch(), vec![(second, receipt("2"))]);
        held.syncer
            .committed(held.syncer.next_batch(), vec![(third, receipt("3"))]);
        let durable = held.syncer.durable();
        tokio::pin!(durable);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut durable)
                .await
                .is_err(),
            "not durable while a batch waits for its flush"
        );

        held.release.send(()).unwrap();
        first_answered.await.unwrap().unwrap();
        held.release.send(()).unwrap();
        let (second, third) = tokio::join!(second_answered, third_answered);
        assert_eq!(second.unwrap().unwrap().transaction_id, "2");
        assert_eq!(third.unwrap().unwrap().transaction_id, "3");
        tokio::time::timeout(Duration::from_secs(5), durable)
            .await
            .expect("durable once every committed batch is flushed");
        assert_eq!(
            *held.flushes.lock().unwrap(),
            2,
            "one flush for the two batches"
        );
    }
}
