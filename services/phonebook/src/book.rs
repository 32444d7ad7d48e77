//! The phone book's storage: one SQLite file (`phonebook.db`, WAL, `synchronous = FULL`) in the data
//! directory.
//!
//! Reads go through their own pool and never wait behind writes (WAL readers see the last commit).
//! Writes go through one writer task that commits whatever has queued up since its last commit in
//! one transaction (group commit): fifty clients adding at once cost a handful of fsyncs, not fifty,
//! and no acknowledged write is lost — a reply is sent only after its commit reached the disk.

use std::{
    collections::HashSet,
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use township_store::{
    Checkpoints, Durability, Migration, Pools, SqlitePool,
    sqlx::{self, Row, SqliteConnection, sqlite::SqliteRow},
};

use township_kit::paging::PageTokens;

use crate::{
    Error,
    token::Cursor,
    types::{Change, EntryId, Etag, NewEntry, Number, Query},
};

/// The phonebook's migrations, in order (see township_store::Migration).
const SCHEMA: &[Migration] = &[Migration {
    version: 1,
    description: "baseline",
    sql: include_str!("../migrations/0001_baseline.sql"),
}];

/// The columns every entry query selects, in [`entry_from_row`]'s terms.
macro_rules! columns {
    () => {
        "id, name, name_key, number, display_number, label, version, create_ms, update_ms"
    };
}

/// Most writes committed in one transaction.
const MAX_WRITES_PER_COMMIT: usize = 2000;
/// Read connections (readers run in parallel; WAL lets them read while the writer commits).
const READ_CONNECTIONS: u32 = 4;

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Assigned by the book.
    pub id: EntryId,
    /// The name as shown.
    pub name: String,
    /// The name's match key (the book's sort and lookup order).
    pub name_key: String,
    /// The number.
    pub number: Number,
    /// The label (possibly empty).
    pub label: String,
    /// Changes with every update.
    pub etag: Etag,
    /// When it was added, ms since the Unix epoch (UTC).
    pub created_ms: i64,
    /// When it last changed, ms since the Unix epoch (UTC).
    pub updated_ms: i64,
}

impl Entry {
    /// The cursor just after this entry, in `group`.
    pub fn cursor(&self, group: u8) -> Cursor {
        Cursor {
            group,
            key: self.name_key.clone(),
            id: self.id.0,
        }
    }
}

/// One write, as the writer task applies it.
#[derive(Debug)]
enum Write {
    Add(NewEntry),
    Update(Change),
    Delete(EntryId, Option<Etag>),
}

/// What a write produced: the entry as written (`None` for a delete).
type Outcome = Result<Option<Entry>, Error>;

/// Writes from one call, answered together once committed.
struct Job {
    writes: Vec<Write>,
    reply: oneshot::Sender<Vec<Outcome>>,
}

/// One search hit: the entry and its group (0 for a prefix match, 1 for any other).
pub type Hit = (Entry, u8);

/// The shared phone book.
#[derive(Clone)]
pub struct Book {
    reads: SqlitePool,
    jobs: mpsc::Sender<Job>,
    tokens: PageTokens,
}

impl Book {
    /// Opens (creating if missing) `<data_dir>/phonebook.db` and starts the writer task, which
    /// ends once every clone of the book is dropped, after committing what it was given.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let Pools { writes, reads } = township_store::open_pools(
            data_dir,
            "phonebook.db",
            Durability::Full,
            Checkpoints::OnCommit,
            READ_CONNECTIONS,
            SCHEMA,
        )
        .await
        .context("cannot open the phone book")?;
        let token_key = township_store::secret(&writes, "page_token_key").await?;
        let tokens = PageTokens::new(&token_key).context("the stored page token key")?;
        let (jobs, queue) = mpsc::channel(1024);
        tokio::spawn(write_loop(writes, queue));
        Ok(Self {
            reads,
            jobs,
            tokens,
        })
    }

    /// Signs and checks this book's page tokens, with the key kept in the database (so tokens
    /// outlive a restart).
    pub fn page_tokens(&self) -> &PageTokens {
        &self.tokens
    }

    async fn submit(&self, writes: Vec<Write>) -> Result<Vec<Outcome>, Error> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { writes, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    async fn submit_one(&self, write: Write) -> Outcome {
        self.submit(vec![write])
            .await?
            .pop()
            .unwrap_or(Err(Error::Internal("a write got no outcome")))
    }

    /// Adds entries in one commit; each is added or rejected (duplicate) on its own. The results
    /// are in the order of `entries`.
    pub async fn add(&self, entries: Vec<NewEntry>) -> Result<Vec<Result<Entry, Error>>, Error> {
        let outcomes = self
            .submit(entries.into_iter().map(Write::Add).collect())
            .await?;
        Ok(outcomes.into_iter().map(written).collect())
    }

    /// Adds one entry.
    pub async fn add_one(&self, entry: NewEntry) -> Result<Entry, Error> {
        written(self.submit_one(Write::Add(entry)).await)
    }

    /// Applies `change` if the entry's etag is still `change.etag`.
    pub async fn update(&self, change: Change) -> Result<Entry, Error> {
        written(self.submit_one(Write::Update(change)).await)
    }

    /// Removes an entry (only if its etag is still `etag`, when given).
    pub async fn delete(&self, id: EntryId, etag: Option<Etag>) -> Result<(), Error> {
        self.submit_one(Write::Delete(id, etag)).await.map(drop)
    }

    /// One entry by id.
    pub async fn get(&self, id: EntryId) -> Result<Entry, Error> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM entries WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&self.reads)
            .await?;
        row.map(|row| entry_from_row(&row))
            .transpose()?
            .ok_or(Error::NotFound(id))
    }

    /// Every entry whose name has this match key, oldest first.
    pub async fn lookup(&self, key: &str) -> Result<Vec<Entry>, Error> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM entries WHERE name_key = ? ORDER BY id"
        ))
        .bind(key)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows.iter().map(entry_from_row).collect::<Result<_, _>>()?)
    }

    /// Up to `limit` entries after `after` in name order.
    pub async fn list(&self, after: Option<&Cursor>, limit: u32) -> Result<Vec<Entry>, Error> {
        let (key, id) = after.map_or(("", 0), |c| (c.key.as_str(), c.id));
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM entries WHERE (name_key, id) > (?, ?) ORDER BY name_key, id LIMIT ?"
        ))
        .bind(key)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        Ok(rows.iter().map(entry_from_row).collect::<Result<_, _>>()?)
    }

    /// Up to `limit` entries matching `query` after `after`: prefix matches of the name key or
    /// the number's digits first (group 0), then other matches (group 1), each in name order.
    ///
    /// Prefix matches are index range scans; the other matches walk the name index from the
    /// cursor and stop at `limit`, so a page costs a full scan only when matches are rare.
    pub async fn search(
        &self,
        query: &Query,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<Hit>, Error> {
        let mut hits = Vec::new();
        let start = after.map_or((0, "", 0), |c| (c.group, c.key.as_str(), c.id));
        let key_end = prefix_end(&query.key);
        let (digits_from, digits_end) =
            (format!("+{}", query.digits), format!("+{}:", query.digits));
        // The query read as a national number of the book's region (`+` alone: none).
        let (national_from, national_end) = (
            format!("+{}", query.national),
            format!("+{}:", query.national),
        );
        if start.0 == 0 {
            let (key, id) = (start.1, start.2);
            let rows = if query.digits.is_empty() {
                sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM entries WHERE name_key >= ?1 AND name_key < ?2 \
                       AND (name_key, id) > (?3, ?4) ORDER BY name_key, id LIMIT ?5"
                ))
                .bind(&query.key)
                .bind(&key_end)
                .bind(key)
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(&self.reads)
                .await?
            } else {
                sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM entries WHERE ((name_key >= ?1 AND name_key < ?2) \
                       OR (number >= ?3 AND number < ?4) \
                       OR (?8 <> '+' AND number >= ?8 AND number < ?9)) \
                       AND (name_key, id) > (?5, ?6) ORDER BY name_key, id LIMIT ?7"
                ))
                .bind(&query.key)
                .bind(&key_end)
                .bind(&digits_from)
                .bind(&digits_end)
                .bind(key)
                .bind(id)
                .bind(i64::from(limit))
                .bind(&national_from)
                .bind(&national_end)
                .fetch_all(&self.reads)
                .await?
            };
            for row in &rows {
                hits.push((entry_from_row(row)?, 0));
            }
        }
        let wanted = limit as usize - hits.len();
        if wanted > 0 {
            let (key, id) = if start.0 == 1 {
                (start.1, start.2)
            } else {
                ("", 0)
            };
            let rows = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM entries WHERE (name_key, id) > (?5, ?6) \
                   AND (instr(name_key, ?1) > 0 OR (?3 <> '+' AND instr(number, substr(?3, 2)) > 0)) \
                   AND NOT (name_key >= ?1 AND name_key < ?2) \
                   AND NOT (?3 <> '+' AND number >= ?3 AND number < ?4) \
                   AND NOT (?8 <> '+' AND number >= ?8 AND number < ?9) \
                 ORDER BY name_key, id LIMIT ?7"
            ))
            .bind(&query.key)
            .bind(&key_end)
            .bind(&digits_from)
            .bind(&digits_end)
            .bind(key)
            .bind(id)
            .bind(wanted as i64)
            .bind(&national_from)
            .bind(&national_end)
            .fetch_all(&self.reads)
            .await?;
            for row in &rows {
                hits.push((entry_from_row(row)?, 1));
            }
        }
        Ok(hits)
    }

    /// The whole book in id order, read as one snapshot and delivered through a channel of
    /// `buffer` entries: the reader task stops as soon as the receiver is dropped.
    pub fn export(&self, buffer: usize) -> mpsc::Receiver<Result<Entry, Error>> {
        let (tx, rx) = mpsc::channel(buffer);
        let reads = self.reads.clone();
        tokio::spawn(async move {
            use tokio_stream::StreamExt;
            // One statement is one read transaction: a consistent snapshot however long it runs.
            let mut rows = sqlx::query(concat!("SELECT ", columns!(), " FROM entries ORDER BY id"))
                .fetch(&reads);
            while let Some(row) = rows.next().await {
                let item = row
                    .map_err(Error::from)
                    .and_then(|row| entry_from_row(&row).map_err(Error::from));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        rx
    }
}

/// The least string above every string that starts with `prefix`, in code point order (SQLite
/// compares UTF-8 bytes, which is the same order): `prefix` with its last character replaced by
/// the next one (trailing U+10FFFF dropped first).
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) {
            0xD7FF => Some('\u{E000}'),
            code => char::from_u32(code + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Only U+10FFFF: a noncharacter no name contains.
    format!("{prefix}\u{10FFFF}")
}

fn written(outcome: Outcome) -> Result<Entry, Error> {
    outcome.and_then(|entry| entry.ok_or(Error::Internal("a write returned no entry")))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn entry_from_row(row: &SqliteRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        id: EntryId(row.try_get("id")?),
        name: row.try_get("name")?,
        name_key: row.try_get("name_key")?,
        number: Number::from_stored(row.try_get("number")?, row.try_get("display_number")?),
        label: row.try_get("label")?,
        etag: Etag(row.try_get("version")?),
        created_ms: row.try_get("create_ms")?,
        updated_ms: row.try_get("update_ms")?,
    })
}

/// The writer task: takes every job that has queued up, applies them in one transaction, commits,
/// then answers each. A storage failure fails the whole batch (nothing of it is acknowledged).
async fn write_loop(pool: SqlitePool, mut queue: mpsc::Receiver<Job>) {
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
        match commit(&pool, &batch).await {
            Ok(mut outcomes) => {
                for job in batch.into_iter().rev() {
                    let at = outcomes.len() - job.writes.len();
                    let _ = job.reply.send(outcomes.split_off(at));
                }
            }
            Err(err) if township_store::full::is_full(&err) => {
                for job in batch {
                    let failed = job.writes.iter().map(|_| Err(Error::StorageFull)).collect();
                    let _ = job.reply.send(failed);
                }
            }
            Err(err) => {
                let err = Arc::new(err);
                tracing::error!(error = %err, writes = count, "phone book commit failed");
                for job in batch {
                    let failed = job
                        .writes
                        .iter()
                        .map(|_| Err(Error::Storage(err.clone())))
                        .collect();
                    let _ = job.reply.send(failed);
                }
            }
        }
    }
}

/// Applies a batch in order in one transaction. Runs of consecutive adds (the common case: bulk
/// loads and many clients adding at once) go to SQLite as one statement each, since every
/// statement costs a round trip to SQLite's thread.
async fn commit(pool: &SqlitePool, batch: &[Job]) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let now = now_ms();
    let mut outcomes = Vec::new();
    let mut adds = Vec::new();
    for write in batch.iter().flat_map(|job| &job.writes) {
        match write {
            Write::Add(entry) => adds.push(entry),
            Write::Update(change) => {
                outcomes.extend(add_all(&mut tx, &std::mem::take(&mut adds), now).await?);
                outcomes.push(update(&mut tx, change, now).await?.map(Some));
            }
            Write::Delete(id, etag) => {
                outcomes.extend(add_all(&mut tx, &std::mem::take(&mut adds), now).await?);
                outcomes.push(delete(&mut tx, *id, *etag).await?.map(|()| None));
            }
        }
    }
    outcomes.extend(add_all(&mut tx, &adds, now).await?);
    tx.commit().await?;
    Ok(outcomes)
}

/// A write's result: `Err` on storage failure (the batch fails), `Ok(Err)` when the write is
/// refused (the batch goes on).
type Applied<T> = Result<Result<T, Error>, sqlx::Error>;

async fn duplicate_of(
    conn: &mut SqliteConnection,
    key: &str,
    number: &str,
    except: i64,
) -> Result<Option<EntryId>, sqlx::Error> {
    let id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM entries WHERE name_key = ? AND number = ? AND id <> ?")
            .bind(key)
            .bind(number)
            .bind(except)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(id.map(EntryId))
}

/// Adds `entries` with three statements whatever their number (each statement, and each row it
/// returns, is a round trip to SQLite's thread): the entries travel as one JSON array, and their
/// ids come back as one. An entry whose name key and number are already in the book, or earlier
/// in `entries`, is refused as a duplicate of that entry.
async fn add_all(
    conn: &mut SqliteConnection,
    entries: &[&NewEntry],
    now: i64,
) -> Result<Vec<Outcome>, sqlx::Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!([
                e.name.as_str(),
                e.name.key(),
                e.number.identity(),
                e.number.display(),
                e.label.as_str()
            ])
        })
        .collect();
    let json = serde_json::Value::Array(rows).to_string();
    // Ids are never reused (AUTOINCREMENT): every id above this one is new in this statement.
    let last_before: i64 = sqlx::query_scalar(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0)",
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO entries (name, name_key, number, display_number, label, version, create_ms, update_ms) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, 1, ?2, ?2 \
         FROM json_each(?1) WHERE true ORDER BY key \
         ON CONFLICT (name_key, number) DO NOTHING",
    )
    .bind(&json)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let ids: String = sqlx::query_scalar(
        "SELECT json_group_array(coalesce((SELECT id FROM entries \
             WHERE name_key = value ->> 1 AND number = value ->> 2), 0) ORDER BY key) \
         FROM json_each(?)",
    )
    .bind(&json)
    .fetch_one(&mut *conn)
    .await?;
    let ids: Vec<i64> = serde_json::from_str(&ids)
        .map_err(|err| sqlx::Error::Decode(format!("the ids of added entries: {err}").into()))?;
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
            if id > last_before && claimed.insert(id) {
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

/// The entry's current version, or the refusal when it is missing or changed.
async fn check_version(
    conn: &mut SqliteConnection,
    id: EntryId,
    etag: Option<Etag>,
) -> Applied<()> {
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM entries WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match (version, etag) {
        (None, _) => Err(Error::NotFound(id)),
        (Some(current), Some(etag)) if current != etag.0 => Err(Error::StaleEtag {
            current: Etag(current),
        }),
        _ => Ok(()),
    })
}

async fn update(conn: &mut SqliteConnection, change: &Change, now: i64) -> Applied<Entry> {
    if let Err(refused) = check_version(conn, change.id, Some(change.etag)).await? {
        return Ok(Err(refused));
    }
    let row = sqlx::query(concat!("SELECT ", columns!(), " FROM entries WHERE id = ?"))
        .bind(change.id.0)
        .fetch_one(&mut *conn)
        .await?;
    let current = entry_from_row(&row)?;
    let (name, key) = match &change.name {
        Some(name) => (name.as_str().to_owned(), name.key().to_owned()),
        None => (current.name, current.name_key),
    };
    let number = change.number.clone().unwrap_or(current.number);
    let label = change
        .label
        .as_ref()
        .map_or(current.label, |l| l.as_str().to_owned());
    if let Some(existing) = duplicate_of(conn, &key, number.identity(), change.id.0).await? {
        return Ok(Err(Error::Duplicate(existing)));
    }
    let row = sqlx::query(concat!(
        "UPDATE entries SET name = ?, name_key = ?, number = ?, display_number = ?, label = ?, \
         version = version + 1, update_ms = ? WHERE id = ? RETURNING ",
        columns!()
    ))
    .bind(&name)
    .bind(&key)
    .bind(number.identity())
    .bind(number.display())
    .bind(&label)
    .bind(now)
    .bind(change.id.0)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Ok(entry_from_row(&row)?))
}

async fn delete(conn: &mut SqliteConnection, id: EntryId, etag: Option<Etag>) -> Applied<()> {
    if let Err(refused) = check_version(conn, id, etag).await? {
        return Ok(Err(refused));
    }
    sqlx::query("DELETE FROM entries WHERE id = ?")
        .bind(id.0)
        .execute(&mut *conn)
        .await?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Label, Name};

    fn new_entry(name: &str, number: &str) -> NewEntry {
        NewEntry {
            name: Name::parse("name", name).unwrap(),
            number: Number::parse("number", number, "US".parse().unwrap()).unwrap(),
            label: Label::default(),
        }
    }

    #[tokio::test]
    async fn concurrent_adds_all_land_with_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).await.unwrap();
        let adds = (0..100).map(|i| {
            let book = book.clone();
            tokio::spawn(async move {
                book.add_one(new_entry(
                    &format!("Person {i}"),
                    &format!("+1 201 555 {i:04}"),
                ))
                .await
            })
        });
        let mut ids = Vec::new();
        for add in adds {
            ids.push(add.await.unwrap().unwrap().id);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 100);
        assert_eq!(book.list(None, 1000).await.unwrap().len(), 100);
    }

    #[tokio::test]
    async fn a_batch_rejects_duplicates_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).await.unwrap();
        let results = book
            .add(vec![
                new_entry("Zoë", "+12015550100"),
                new_entry("ZOE", "(201) 555-0100"),
                new_entry("Zoë", "+12015550101"),
            ])
            .await
            .unwrap();
        let first = results[0].as_ref().unwrap().id;
        assert!(matches!(results[1], Err(Error::Duplicate(id)) if id == first));
        assert!(results[2].is_ok());
        assert_eq!(book.lookup("zoe").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn updates_need_the_current_etag() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).await.unwrap();
        let entry = book
            .add_one(new_entry("Ada", "+12015550100"))
            .await
            .unwrap();
        let change = |etag| Change {
            id: entry.id,
            etag,
            name: None,
            number: None,
            label: Some(Label::parse("label", "work").unwrap()),
        };
        let updated = book.update(change(entry.etag)).await.unwrap();
        assert_eq!(updated.label, "work");
        assert_ne!(updated.etag, entry.etag);
        assert!(matches!(
            book.update(change(entry.etag)).await,
            Err(Error::StaleEtag { current }) if current == updated.etag
        ));
        assert!(matches!(
            book.delete(entry.id, Some(entry.etag)).await,
            Err(Error::StaleEtag { .. })
        ));
        book.delete(entry.id, Some(updated.etag)).await.unwrap();
        assert!(matches!(book.get(entry.id).await, Err(Error::NotFound(_))));
    }

    #[tokio::test]
    async fn search_lists_prefix_matches_first_and_pages_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).await.unwrap();
        for (i, name) in [
            "Anna Smith",
            "Smith Jones",
            "Bob Smithers",
            "Carol",
            "smith",
        ]
        .iter()
        .enumerate()
        {
            book.add_one(new_entry(name, &format!("+1201555{i:04}")))
                .await
                .unwrap();
        }
        let query = Query::parse("SMITH", "US".parse().unwrap()).unwrap();
        let mut names = Vec::new();
        let mut after = None;
        loop {
            let page = book.search(&query, after.as_ref(), 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            let (last, group) = page.last().unwrap().clone();
            after = Some(last.cursor(group));
            names.extend(page.into_iter().map(|(e, g)| (e.name, g)));
        }
        let expected = [
            ("smith", 0),
            ("Smith Jones", 0),
            ("Anna Smith", 1),
            ("Bob Smithers", 1),
        ];
        assert_eq!(names, expected.map(|(n, g)| (n.to_owned(), g)).to_vec());
    }

    #[tokio::test]
    async fn search_by_digits_lists_number_prefixes_first() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).await.unwrap();
        book.add_one(new_entry("Inner", "+44 20 7946 1201"))
            .await
            .unwrap();
        book.add_one(new_entry("Prefix", "+1 201 555 0100"))
            .await
            .unwrap();
        book.add_one(new_entry("Neither", "+44 20 7946 0000"))
            .await
            .unwrap();
        let query = Query::parse("1201", "US".parse().unwrap()).unwrap();
        let hits = book.search(&query, None, 10).await.unwrap();
        let names: Vec<_> = hits.iter().map(|(e, g)| (e.name.as_str(), *g)).collect();
        assert_eq!(names, [("Prefix", 0), ("Inner", 1)]);
    }

    #[tokio::test]
    async fn a_search_in_national_format_finds_the_regions_numbers_first() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).await.unwrap();
        for (name, number) in [
            ("London", "+44 20 7946 0958"),
            ("Elsewhere", "+1 201 555 0100"),
            ("Inner", "+1 210 207 9461"),
        ] {
            book.add_one(new_entry(name, number)).await.unwrap();
        }
        let query = Query::parse("020 7946", "GB".parse().unwrap()).unwrap();
        let hits = book.search(&query, None, 10).await.unwrap();
        let names: Vec<_> = hits.iter().map(|(e, g)| (e.name.as_str(), *g)).collect();
        assert_eq!(names, [("London", 0), ("Inner", 1)]);
    }

    #[tokio::test]
    async fn the_same_number_with_another_extension_is_not_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).await.unwrap();
        let front_desk = book
            .add_one(new_entry("Acme", "+1 201 555 0100 ext. 46"))
            .await
            .unwrap();
        assert_eq!(front_desk.number.extension(), Some("46"));
        book.add_one(new_entry("Acme", "+1 201 555 0100 ext. 47"))
            .await
            .expect("another extension");
        book.add_one(new_entry("Acme", "+1 201 555 0100"))
            .await
            .expect("no extension");
        let again = book
            .add_one(new_entry("acme", "+1 (201) 555-0100 x46"))
            .await;
        assert!(
            matches!(again, Err(Error::Duplicate(id)) if id == front_desk.id),
            "{again:?}"
        );
    }

    #[test]
    fn a_prefix_range_ends_just_above_every_string_with_that_prefix() {
        assert_eq!(prefix_end("smith"), "smiti");
        assert_eq!(prefix_end("ab\u{10FFFF}"), "ac");
        assert_eq!(prefix_end("\u{D7FF}"), "\u{E000}");
        for name in ["smith", "smith jones", "smith\u{FFFD}", "smith\u{10FFFD}"] {
            assert!(
                name >= "smith" && name < prefix_end("smith").as_str(),
                "{name}"
            );
        }
    }
}
