//! The ledger's one writer: every transaction that changes the database (or records a fenced
//! read) is a job sent here, and one task on a thread of its own runs them, in turn, on the one
//! write connection.
//!
//! - Transfers queue as [`Transfer`]s and are group-committed, up to
//!   [`transfers::MAX_BATCH`] in one transaction (see [`crate::transfers`]).
//! - Every other mutation is a [`Writer::run`] job: a transaction of its own.
//!
//! Each round commits the transfers waiting (if any), then runs the other jobs that were
//! waiting, so neither kind starves the other.
//!
//! Completion guarantee: a job once queued runs to its end (commit or rollback) even if its
//! caller has gone away — a cancelled gRPC call never leaves a transaction half done, nor an
//! applied mutation unrecorded. Only then is its answer sent, and dropped if nobody waits.
//!
//! On PostgreSQL each replica has its own writer, on a thread of its own as below, and the
//! database keeps their transactions apart (row locks, see [`crate::transfers::postgres`]). A
//! commit is durable when it returns, so its [`Syncer`] has nothing to flush. Its batches of
//! transfers run on a connection of the writer's own, made on its thread and not pinged before
//! each use ([`township_store::postgres::dedicated`]): a batch's time is mostly its round trips,
//! and on a busy server every one of them, a ping included, waits to be scheduled. The jobs use
//! the server's pool. What follows is SQLite's case.
//!
//! Why a thread of its own: each sqlx statement is a hand-off to SQLite's worker thread and back;
//! on the server's busy gRPC runtime every hand-back would wait behind other calls while the one
//! write connection sits idle. Here the transactions run at SQLite's pace. The transfer batches,
//! the hottest path, go further: they run on this thread's own blocking connection, with no
//! hand-off at all (each one was a wake-up of two threads, which on a busy machine cost more than
//! the SQL), and without waiting for the disk: [`Syncer`] flushes the commit, and their callers
//! wait for that flush before they answer. The other jobs, rarer, keep the sqlx write pool; both connections are used only
//! from this loop, in turn, so they never wait on each other.

use std::{collections::VecDeque, pin::Pin, time::Duration};

use tokio::sync::{mpsc, oneshot};
use township_store::{Db, PgPool, SqlitePool, rusqlite::Connection};

use crate::{
    Error,
    syncer::{self, Batch, Syncer},
    transfers::{self, MAX_BATCH, Transfer},
};

/// Opens the writer's blocking connection for transfers.
pub type Opener = Box<dyn Fn() -> anyhow::Result<Connection> + Send>;

/// A transaction job: given the write pool, runs to its end and sends its own answer.
type Job = Box<dyn FnOnce(Db) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Where the batches of transfers are committed.
enum Batches {
    /// On SQLite, the writer's blocking connection, and how to open another.
    Sqlite { conn: Connection, open: Opener },
    /// On PostgreSQL: the server's pool, the writer's own connection (see
    /// [`township_store::postgres::dedicated`]), and a pause between a batch's read and its
    /// write without locks (tests only).
    Postgres {
        pool: PgPool,
        own: PgPool,
        before_write: Option<Duration>,
    },
}

/// What the writer is sent.
enum Work {
    /// A transfer, for the next batch.
    Transfer(Transfer),
    /// Any other transaction.
    Job(Job),
}

/// The handle to the writer. Cheap to clone; the writer stops once every handle is dropped.
#[derive(Clone, Debug)]
pub struct Writer {
    queue: mpsc::UnboundedSender<Work>,
    syncer: Syncer,
}

impl Writer {
    /// Starts the writer of a SQLite ledger on a thread of its own, which lives as long as the
    /// process: jobs run on `pool` (the write pool: one connection), transfers on the connection
    /// `open` makes (and makes again should a failed batch leave it inside a transaction).
    pub fn start(pool: SqlitePool, open: Opener, sync: syncer::Flush) -> anyhow::Result<Self> {
        let conn = open()?;
        let syncer = Syncer::start(sync)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (queue, queued) = mpsc::unbounded_channel();
        let batches = Batches::Sqlite { conn, open };
        runtime.spawn(write(Db::Sqlite(pool), batches, syncer.clone(), queued));
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(Self { queue, syncer })
    }

    /// Starts the writer of a PostgreSQL ledger on a thread of its own, which lives as long as
    /// the process: jobs run on `pool`, batches of transfers on a connection of its own (opened
    /// besides `pool`'s), pausing `before_write` (if any) between the read and the write of
    /// those tried without locks.
    pub fn start_postgres(pool: PgPool, before_write: Option<Duration>) -> anyhow::Result<Self> {
        // A commit returns once durable: nothing is left to flush.
        let syncer = Syncer::durable_on_commit();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (queue, queued) = mpsc::unbounded_channel();
        let batches = Batches::Postgres {
            own: township_store::postgres::dedicated(&pool, 1),
            pool: pool.clone(),
            before_write,
        };
        runtime.spawn(write(Db::Postgres(pool), batches, syncer.clone(), queued));
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(Self { queue, syncer })
    }

    /// Runs `work` (one transaction on the write pool) on the writer, and returns its answer.
    pub async fn run<R, F, Fut>(&self, work: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(Db) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, Error>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |pool| {
            Box::pin(async move {
                let _ = answer.send(work(pool).await);
            })
        });
        self.send(Work::Job(job))?;
        answered
            .await
            .map_err(|_| Error::Internal("the ledger writer dropped a transaction".into()))?
    }

    /// Waits until every transfer committed so far is on the disk: for whoever shows data
    /// without a durable commit of its own (see [`crate::syncer`]).
    pub async fn durable(&self) {
        self.syncer.durable().await;
    }

    /// Waits until `batch` is on the disk (see [`Syncer::durable_through`]).
    pub async fn durable_through(&self, batch: Batch) -> Result<(), Error> {
        self.syncer.durable_through(batch).await
    }

    /// Queues `transfer` for the next batch; its outcome goes to the transfer's own channel.
    pub fn queue_transfer(&self, transfer: Transfer) -> Result<(), Error> {
        self.send(Work::Transfer(transfer))
    }

    fn send(&self, work: Work) -> Result<(), Error> {
        self.queue
            .send(work)
            .map_err(|_| Error::Internal("the ledger writer has stopped".into()))
    }
}

/// The work waiting for the writer, by kind, each in arrival order.
#[derive(Default)]
struct Waiting {
    transfers: VecDeque<Transfer>,
    jobs: VecDeque<Job>,
}

impl Waiting {
    fn add(&mut self, work: Work) {
        match work {
            Work::Transfer(transfer) => self.transfers.push_back(transfer),
            Work::Job(job) => self.jobs.push_back(job),
        }
    }
}

/// The writer's loop: runs until every [`Writer`] is dropped.
async fn write(
    db: Db,
    mut batches: Batches,
    syncer: Syncer,
    mut queued: mpsc::UnboundedReceiver<Work>,
) {
    let mut waiting = Waiting::default();
    loop {
        if waiting.transfers.is_empty() && waiting.jobs.is_empty() {
            match queued.recv().await {
                Some(work) => waiting.add(work),
                None => return,
            }
        }
        while waiting.transfers.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(work) => waiting.add(work),
                Err(_) => break,
            }
        }
        if !waiting.transfers.is_empty() {
            match &mut batches {
                Batches::Sqlite { conn, open } => {
                    township_store::full::apply_test_limit(conn);
                    transfers::sqlite::commit_batch(conn, &mut waiting.transfers, &syncer);
                    if !conn.is_autocommit() {
                        // The batch failed and so did its rollback: a fresh connection is
                        // certain to hold no transaction (the old one's ends when it closes).
                        match open() {
                            Ok(fresh) => *conn = fresh,
                            Err(err) => tracing::error!(
                                error = format!("{err:#}"),
                                "cannot reopen the ledger"
                            ),
                        }
                    }
                }
                Batches::Postgres {
                    pool,
                    own,
                    before_write,
                } => {
                    let waiting = &mut waiting.transfers;
                    transfers::postgres::commit_batch(pool, own, waiting, &syncer, *before_write)
                        .await
                }
            }
        }
        if !waiting.jobs.is_empty() {
            // A job may read what the transfers changed, and answer without a flush of its own.
            syncer.durable().await;
        }
        for job in std::mem::take(&mut waiting.jobs) {
            // A task of its own, awaited at once: a panicking job fails its caller (its answer
            // is dropped), not the writer.
            if let Err(err) = tokio::spawn(job(db.clone())).await {
                tracing::error!(error = %err, "a ledger transaction failed");
            }
        }
    }
}
