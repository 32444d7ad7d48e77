//! The phone book's writer task and what both backends' writes share: a batch of jobs read as
//! [`Step`]s in order, the outcomes of a run of adds, and the refusals of a stale or missing
//! entry. Each backend applies the steps in a transaction of its own kind (`sqlite`, `postgres`).

use std::{
    collections::HashSet,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc;
use township_store::sqlx;

use super::{Entry, Job, Outcome, Store, Write, postgres, sqlite};
use crate::{
    Error,
    types::{Change, EntryId, Etag, NewEntry},
};

/// Most writes committed in one transaction.
const MAX_WRITES_PER_COMMIT: usize = 2000;
/// How many times a batch that PostgreSQL failed for a concurrent transaction's sake (a
/// deadlock between replicas) is tried in all.
const ATTEMPTS: u32 = 5;

/// The writer task: takes every job that has queued up, applies them in one transaction, commits,
/// then answers each. A storage failure fails the whole batch (nothing of it is acknowledged).
pub(super) async fn write_loop(store: Store, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut count = first.writes.len();
        let mut batch = vec![first];
        while count < MAX_WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => {
                    count += job.writes.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        match store.commit(&batch).await {
            Ok(mut outcomes) => {
                for job in batch.into_iter().rev() {
                    let at = outcomes.len() - job.writes.len();
                    let _ = job.reply.send(outcomes.split_off(at));
                }
            }
            Err(err) => {
                let err = Arc::new(err);
                let refusal = Error::stored(err.clone());
                if matches!(refusal, Error::Storage(_)) {
                    tracing::error!(error = %err, writes = count, "phone book commit failed");
                }
                for job in batch {
                    let failed = job
                        .writes
                        .iter()
                        .map(|_| Err(Error::stored(err.clone())))
                        .collect();
                    let _ = job.reply.send(failed);
                }
            }
        }
    }
}

/// One step of a batch, in order: each run of consecutive adds together (the common case: bulk
/// loads and many clients adding at once; each backend adds a run with a few statements however
/// long it is), each update or delete alone.
pub(super) enum Step<'a> {
    Adds(Vec<&'a NewEntry>),
    Update(&'a Change),
    Delete(EntryId, Option<Etag>),
}

/// `batch`'s writes as [`Step`]s.
fn steps(batch: &[Job]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for write in batch.iter().flat_map(|job| &job.writes) {
        match (write, steps.last_mut()) {
            (Write::Add(entry), Some(Step::Adds(adds))) => adds.push(entry),
            (Write::Add(entry), _) => steps.push(Step::Adds(vec![entry])),
            (Write::Update(change), _) => steps.push(Step::Update(change)),
            (Write::Delete(id, etag), _) => steps.push(Step::Delete(*id, *etag)),
        }
    }
    steps
}

impl Store {
    /// Applies `batch` in order in one transaction, and commits it.
    async fn commit(&self, batch: &[Job]) -> Result<Vec<Outcome>, sqlx::Error> {
        let steps = steps(batch);
        match self {
            Store::Sqlite { writes, .. } => sqlite::commit(writes, &steps).await,
            Store::Postgres(pool) => {
                let mut attempt = 1;
                loop {
                    match postgres::commit(pool, &steps).await {
                        Err(err)
                            if township_store::postgres::is_transient(&err)
                                && attempt < ATTEMPTS =>
                        {
                            tracing::debug!(error = %err, attempt, "a phone book batch is tried again");
                            attempt += 1;
                        }
                        done => return done,
                    }
                }
            }
        }
    }
}

/// A write's result: `Err` on storage failure (the batch fails), `Ok(Err)` when the write is
/// refused (the batch goes on).
pub(super) type Applied<T> = Result<Result<T, Error>, sqlx::Error>;

/// The outcomes of adding `entries`, given the id each one's name key and number has in the book
/// after the adds (0: none) and which ids the adds made: the first entry with a new id is added,
/// any other is refused as a duplicate of the entry with its id.
pub(super) fn added(
    entries: &[&NewEntry],
    ids: Vec<i64>,
    is_new: impl Fn(i64) -> bool,
    now: i64,
) -> Result<Vec<Outcome>, sqlx::Error> {
    if ids.len() != entries.len() {
        return Err(sqlx::Error::Protocol(format!(
            "{} ids for {} added entries",
            ids.len(),
            entries.len()
        )));
    }
    let mut claimed = HashSet::new();
    Ok(entries
        .iter()
        .zip(ids)
        .map(|(e, id)| {
            if is_new(id) && claimed.insert(id) {
                Ok(Some(Entry {
                    id: EntryId(id),
                    name: e.name.as_str().to_owned(),
                    name_key: e.name.key().to_owned(),
                    number: e.number.clone(),
                    label: e.label.as_str().to_owned(),
                    etag: Etag(1),
                    created_ms: now,
                    updated_ms: now,
                }))
            } else if id > 0 {
                Err(Error::Duplicate(EntryId(id)))
            } else {
                Err(Error::Internal("an added entry is neither new nor found"))
            }
        })
        .collect())
}

/// The refusal of a write to entry `id` whose version is `version` (`None`: missing) when the
/// caller expects `etag`.
pub(super) fn refusal(id: EntryId, version: Option<i64>, etag: Option<Etag>) -> Result<(), Error> {
    match (version, etag) {
        (None, _) => Err(Error::NotFound(id)),
        (Some(current), Some(etag)) if current != etag.0 => Err(Error::StaleEtag {
            current: Etag(current),
        }),
        _ => Ok(()),
    }
}

/// An entry as `change` leaves it.
pub(super) fn changed(current: Entry, change: &Change) -> Entry {
    let (name, name_key) = match &change.name {
        Some(name) => (name.as_str().to_owned(), name.key().to_owned()),
        None => (current.name, current.name_key),
    };
    Entry {
        name,
        name_key,
        number: change.number.clone().unwrap_or(current.number),
        label: change
            .label
            .as_ref()
            .map_or(current.label, |l| l.as_str().to_owned()),
        ..current
    }
}

/// Now, in ms since the Unix epoch (UTC).
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
