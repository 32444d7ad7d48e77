//! The phone book's storage, on either backend the store offers: a SQLite file
//! (`phonebook.db`, WAL, `synchronous = FULL`) in the data directory, or a PostgreSQL database
//! that several phone book replicas share.
//!
//! Reads run in parallel and never wait behind writes (their SQL, written once here, is the same
//! text on both backends). Writes go through one writer task per process (`writer`) that
//! commits whatever has queued up since its last commit in one transaction (group commit): fifty
//! clients adding at once cost a handful of fsyncs, not fifty, and no acknowledged write is lost
//! — a reply is sent only after its commit is durable. How a batch is applied is each backend's
//! own (`sqlite`, `postgres`): SQLite has one writer at a time, PostgreSQL locks the rows a
//! write checks, so that etags decide exactly one winner across replicas too.

mod postgres;
mod sqlite;
mod writer;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt};
use township_store::{
    Checkpoints, Database, Durability, PgPool, Pools, SqlitePool,
    sqlx::{self, ColumnIndex, Decode, Encode, Row, Type},
};

use township_kit::paging::PageTokens;

use crate::{
    Error,
    token::Cursor,
    types::{Change, EntryId, Etag, NewEntry, Number, Query},
};

/// The columns every entry query selects, in [`entry_from_row`]'s terms.
macro_rules! columns {
    () => {
        "id, name, name_key, number, display_number, label, version, create_ms, update_ms"
    };
}
use columns;

/// SQLite's read connections (readers run in parallel; WAL lets them read while the writer
/// commits).
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
    store: Store,
    jobs: mpsc::Sender<Job>,
    tokens: PageTokens,
}

/// Where the book is kept.
#[derive(Clone)]
enum Store {
    /// A SQLite file: the writer task's one connection, and the readers' pool.
    Sqlite {
        writes: SqlitePool,
        reads: SqlitePool,
    },
    /// A PostgreSQL database, one pool for both.
    Postgres(PgPool),
}

/// A value bound to one of the book's queries (they take text and integers).
enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

impl Book {
    /// Opens (creating if missing) the book in `database`, migrated to this version, and starts
    /// the writer task, which ends once every clone of the book is dropped, after committing
    /// what it was given.
    pub async fn open(database: &Database) -> anyhow::Result<Self> {
        let (store, token_key) = match database {
            Database::Sqlite { dir, file } => {
                let Pools { writes, reads } = township_store::open_pools(
                    dir,
                    file,
                    Durability::Full,
                    Checkpoints::OnCommit,
                    READ_CONNECTIONS,
                    sqlite::SCHEMA,
                )
                .await
                .context("cannot open the phone book")?;
                let key = township_store::secret(&writes, "page_token_key").await?;
                (Store::Sqlite { writes, reads }, key)
            }
            Database::Postgres(postgres) => {
                let pool = township_store::postgres::open(postgres, postgres::SCHEMA)
                    .await
                    .context("cannot open the phone book")?;
                let key = township_store::postgres::secret(&pool, "page_token_key").await?;
                (Store::Postgres(pool), key)
            }
        };
        let tokens = PageTokens::new(&token_key).context("the stored page token key")?;
        let (jobs, queue) = mpsc::channel(1024);
        tokio::spawn(writer::write_loop(store.clone(), queue));
        Ok(Self {
            store,
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
        let sql = concat!("SELECT ", columns!(), " FROM entries WHERE id = $1");
        let mut found = self.store.entries(sql, &[Param::Int(id.0)]).await?;
        found.pop().ok_or(Error::NotFound(id))
    }

    /// Every entry whose name has this match key, oldest first.
    pub async fn lookup(&self, key: &str) -> Result<Vec<Entry>, Error> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM entries WHERE name_key = $1 ORDER BY id"
        );
        Ok(self.store.entries(sql, &[Param::Text(key)]).await?)
    }

    /// Up to `limit` entries after `after` in name order.
    pub async fn list(&self, after: Option<&Cursor>, limit: u32) -> Result<Vec<Entry>, Error> {
        let (key, id) = after.map_or(("", 0), |c| (c.key.as_str(), c.id));
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM entries WHERE (name_key, id) > ($1, $2) ORDER BY name_key, id LIMIT $3"
        );
        let params = [
            Param::Text(key),
            Param::Int(id),
            Param::Int(i64::from(limit)),
        ];
        Ok(self.store.entries(sql, &params).await?)
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
            // Where the name range's walk starts: the cursor, or the range's own start if the
            // cursor is below it ((name_key, id) > (key, 0) is name_key >= key: ids start at 1).
            // PostgreSQL 15's btree would otherwise start a row comparison's scan at a cursor
            // far below the range, and walk everything in between.
            let (from_key, from_id) = if (key, id) > (query.key.as_str(), 0) {
                (key, id)
            } else {
                (query.key.as_str(), 0)
            };
            let found = if query.digits.is_empty() {
                let sql = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM entries WHERE name_key >= $1 AND name_key < $2 \
                       AND (name_key, id) > ($3, $4) ORDER BY name_key, id LIMIT $5"
                );
                let params = [
                    Param::Text(&query.key),
                    Param::Text(&key_end),
                    Param::Text(from_key),
                    Param::Int(from_id),
                    Param::Int(i64::from(limit)),
                ];
                self.store
                    .entries_planned(sql, &params, Plan::PerCall)
                    .await?
            } else {
                // The same matches in either text (SQLite's takes the first nine values). SQLite
                // walks the name index from the cursor, or takes the OR apart where that is
                // cheaper; PostgreSQL needs each range with its own start, or its bitmap scan of
                // the name range starts at the cursor (and the OR taken apart would collect and
                // sort every match when a range holds many, as SQLite's planner does).
                let params = [
                    Param::Text(&query.key),
                    Param::Text(&key_end),
                    Param::Text(&digits_from),
                    Param::Text(&digits_end),
                    Param::Text(key),
                    Param::Int(id),
                    Param::Int(i64::from(limit)),
                    Param::Text(&national_from),
                    Param::Text(&national_end),
                    Param::Text(from_key),
                    Param::Int(from_id),
                ];
                let (sql, params) = match self.store {
                    Store::Sqlite { .. } => (
                        concat!(
                            "SELECT ",
                            columns!(),
                            " FROM entries WHERE ((name_key >= $1 AND name_key < $2) \
                           OR (number >= $3 AND number < $4) \
                           OR ($8 <> '+' AND number >= $8 AND number < $9)) \
                           AND (name_key, id) > ($5, $6) ORDER BY name_key, id LIMIT $7"
                        ),
                        &params[..9],
                    ),
                    Store::Postgres(_) => (
                        concat!(
                            "SELECT ",
                            columns!(),
                            " FROM entries WHERE \
                           (name_key >= $1 AND name_key < $2 AND (name_key, id) > ($10, $11)) \
                           OR (number >= $3 AND number < $4 AND (name_key, id) > ($5, $6)) \
                           OR ($8 <> '+' AND number >= $8 AND number < $9 \
                               AND (name_key, id) > ($5, $6)) \
                         ORDER BY name_key, id LIMIT $7"
                        ),
                        &params[..],
                    ),
                };
                self.store
                    .entries_planned(sql, params, Plan::PerCall)
                    .await?
            };
            hits.extend(found.into_iter().map(|entry| (entry, 0)));
        }
        let wanted = limit as usize - hits.len();
        if wanted > 0 {
            let (key, id) = if start.0 == 1 {
                (start.1, start.2)
            } else {
                ("", 0)
            };
            // `instr` is SQLite's; the PostgreSQL schema defines it (as strpos).
            let sql = concat!(
                "SELECT ",
                columns!(),
                " FROM entries WHERE (name_key, id) > ($5, $6) \
                   AND (instr(name_key, $1) > 0 OR ($3 <> '+' AND instr(number, substr($3, 2)) > 0)) \
                   AND NOT (name_key >= $1 AND name_key < $2) \
                   AND NOT ($3 <> '+' AND number >= $3 AND number < $4) \
                   AND NOT ($8 <> '+' AND number >= $8 AND number < $9) \
                 ORDER BY name_key, id LIMIT $7"
            );
            let params = [
                Param::Text(&query.key),
                Param::Text(&key_end),
                Param::Text(&digits_from),
                Param::Text(&digits_end),
                Param::Text(key),
                Param::Int(id),
                Param::Int(wanted as i64),
                Param::Text(&national_from),
                Param::Text(&national_end),
            ];
            let found = self
                .store
                .entries_planned(sql, &params, Plan::PerCall)
                .await?;
            hits.extend(found.into_iter().map(|entry| (entry, 1)));
        }
        Ok(hits)
    }

    /// The whole book in id order, read as one snapshot and delivered through a channel of
    /// `buffer` entries: the reader task stops as soon as the receiver is dropped.
    pub fn export(&self, buffer: usize) -> mpsc::Receiver<Result<Entry, Error>> {
        let (tx, rx) = mpsc::channel(buffer);
        let store = self.store.clone();
        // One statement is one read transaction (one snapshot) however long it runs, on both.
        let sql = concat!("SELECT ", columns!(), " FROM entries ORDER BY id");
        tokio::spawn(async move {
            match store {
                Store::Sqlite { reads, .. } => forward(sqlx::query(sql).fetch(&reads), tx).await,
                Store::Postgres(pool) => forward(sqlx::query(sql).fetch(&pool), tx).await,
            }
        });
        rx
    }
}

/// How PostgreSQL plans a read.
#[derive(Clone, Copy, PartialEq)]
enum Plan {
    /// Once per connection, as a prepared statement: reads whose best plan is the same whatever
    /// their values (a lookup by key, a page in name order).
    Cached,
    /// Anew for each call, with its values: search's prefix ranges, where a generic plan walks
    /// the name index in order and filters (measured with `EXPLAIN ANALYZE` at 1,000,000
    /// entries: 495 ms for a first page, against 0.5 ms planned with the values).
    PerCall,
}

impl Store {
    /// The entries `sql` (one of the book's reads, the same text on both backends) selects.
    async fn entries(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Vec<Entry>, sqlx::Error> {
        self.entries_planned(sql, params, Plan::Cached).await
    }

    /// [`Store::entries`], planned by PostgreSQL as `plan` says (SQLite plans each statement
    /// once, and its plans do not depend on the values).
    async fn entries_planned(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        plan: Plan,
    ) -> Result<Vec<Entry>, sqlx::Error> {
        match self {
            Store::Sqlite { reads, .. } => {
                let rows = bind(sqlx::query(sql), params).fetch_all(reads).await?;
                rows.iter().map(entry_from_row).collect()
            }
            Store::Postgres(pool) => {
                // An unnamed statement (not persistent) is planned with the values it is bound to.
                let query = bind(sqlx::query(sql), params).persistent(plan == Plan::Cached);
                let rows = query.fetch_all(pool).await?;
                rows.iter().map(entry_from_row).collect()
            }
        }
    }
}

/// `query` with `params` bound in order.
fn bind<'q, DB: sqlx::Database>(
    mut query: sqlx::query::Query<'q, DB, DB::Arguments>,
    params: &[Param<'_>],
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    for param in params {
        query = match *param {
            Param::Text(text) => query.bind(text),
            Param::Int(int) => query.bind(int),
        };
    }
    query
}

/// Sends each entry of `rows` to `tx` until the rows or the receiver end (or a row fails,
/// which is sent too).
async fn forward<R: Row>(
    rows: impl Stream<Item = Result<R, sqlx::Error>>,
    tx: mpsc::Sender<Result<Entry, Error>>,
) where
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.next().await {
        let item = row
            .and_then(|row| entry_from_row(&row))
            .map_err(Error::from);
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            break;
        }
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

/// The entry in a row that selected [`columns!`], from either backend.
fn entry_from_row<R: Row>(row: &R) -> Result<Entry, sqlx::Error>
where
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
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

#[cfg(test)]
mod tests;
