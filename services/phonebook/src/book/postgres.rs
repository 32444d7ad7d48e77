//! The book's writes on PostgreSQL, where several replicas write at once: a batch is one READ
//! COMMITTED transaction; an update or delete first locks the entry's row (`FOR UPDATE`), so of
//! two writers holding the same etag exactly one wins, and the unique key on (name key, number)
//! settles two replicas adding the same entry. A deadlock between replicas fails one batch,
//! which the caller tries again ([`township_store::postgres::is_transient`]).

use std::collections::{HashMap, HashSet};

use township_store::{
    Migration, PgPool,
    sqlx::{self, PgConnection},
};

use super::{
    Entry, Outcome, columns, entry_from_row,
    writer::{Applied, Step, added, changed, now_ms, refusal},
};
use crate::{
    Error,
    types::{Change, EntryId, Etag, NewEntry},
};

/// The phone book's PostgreSQL migrations, in order (see township_store::Migration).
pub(super) const SCHEMA: &[Migration] = &[Migration {
    version: 1,
    description: "baseline",
    sql: include_str!("../../migrations/postgres/0001_baseline.sql"),
}];

/// PostgreSQL's SQLSTATE `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// Applies `steps` in one transaction and commits it.
pub(super) async fn commit(pool: &PgPool, steps: &[Step<'_>]) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let now = now_ms();
    let mut outcomes = Vec::new();
    for step in steps {
        match step {
            Step::Adds(entries) => outcomes.extend(add_all(&mut tx, entries, now).await?),
            Step::Update(change) => outcomes.push(update(&mut tx, change, now).await?.map(Some)),
            Step::Delete(id, etag) => {
                outcomes.push(delete(&mut tx, *id, *etag).await?.map(|()| None));
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Adds `entries` with two statements whatever their number: one INSERT of the arrays, which
/// returns the rows it made, and one SELECT of the ids the others already had. An entry whose
/// name key and number are already in the book (or being added by another replica, whose commit
/// the INSERT waits for), or earlier in `entries`, is refused as a duplicate of that entry.
async fn add_all(
    conn: &mut PgConnection,
    entries: &[&NewEntry],
    now: i64,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let keys = column(entries, |e| e.name.key());
    let numbers = column(entries, |e| e.number.identity());
    let made: Vec<(i64, String, String)> = sqlx::query_as(
        "INSERT INTO entries (name, name_key, number, display_number, label, version, create_ms, update_ms) \
         SELECT name, name_key, number, display_number, label, 1, $6, $6 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY \
              AS new (name, name_key, number, display_number, label, position) \
         ORDER BY position \
         ON CONFLICT (name_key, number) DO NOTHING \
         RETURNING id, name_key, number",
    )
    .bind(column(entries, |e| e.name.as_str()))
    .bind(&keys)
    .bind(&numbers)
    .bind(column(entries, |e| e.number.display()))
    .bind(column(entries, |e| e.label.as_str()))
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let new: HashSet<i64> = made.iter().map(|(id, ..)| *id).collect();
    let mut ids: HashMap<(String, String), i64> = made
        .into_iter()
        .map(|(id, key, number)| ((key, number), id))
        .collect();
    if ids.len() < entries.len() {
        let existing: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, name_key, number FROM entries \
             WHERE (name_key, number) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        )
        .bind(&keys)
        .bind(&numbers)
        .fetch_all(&mut *conn)
        .await?;
        for (id, key, number) in existing {
            ids.entry((key, number)).or_insert(id);
        }
    }
    let ids = keys
        .iter()
        .zip(&numbers)
        .map(|(key, number)| {
            ids.get(&((*key).to_owned(), (*number).to_owned()))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    added(entries, ids, |id| new.contains(&id), now)
}

/// One field of every entry, as an array to bind.
fn column<'a>(entries: &[&'a NewEntry], field: fn(&'a NewEntry) -> &'a str) -> Vec<&'a str> {
    entries.iter().map(|entry| field(entry)).collect()
}

/// The entry `id` as it is, locked until the transaction ends, or the refusal when it is
/// missing or its etag is not `etag`.
async fn current(
    conn: &mut PgConnection,
    id: EntryId,
    etag: Option<Etag>,
) -> Applied<Option<Entry>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM entries WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?;
    let entry = row.map(|row| entry_from_row(&row)).transpose()?;
    Ok(refusal(id, entry.as_ref().map(|e| e.etag.0), etag).map(|()| entry))
}

/// Applies `change`. A change that would make the entry a duplicate of another is refused: the
/// UPDATE runs in a savepoint, so that the unique key's refusal (which also catches another
/// replica's entry committed meanwhile) leaves the rest of the batch standing.
async fn update(conn: &mut PgConnection, change: &Change, now: i64) -> Applied<Entry> {
    let entry = match current(conn, change.id, Some(change.etag)).await? {
        Ok(Some(entry)) => changed(entry, change),
        Ok(None) => return Ok(Err(Error::NotFound(change.id))),
        Err(refused) => return Ok(Err(refused)),
    };
    let mut savepoint = sqlx::Connection::begin(&mut *conn).await?;
    let updated = sqlx::query(concat!(
        "UPDATE entries SET name = $1, name_key = $2, number = $3, display_number = $4, \
         label = $5, version = version + 1, update_ms = $6 WHERE id = $7 RETURNING ",
        columns!()
    ))
    .bind(&entry.name)
    .bind(&entry.name_key)
    .bind(entry.number.identity())
    .bind(entry.number.display())
    .bind(&entry.label)
    .bind(now)
    .bind(entry.id.0)
    .fetch_one(&mut *savepoint)
    .await;
    match updated {
        Ok(row) => {
            savepoint.commit().await?;
            Ok(Ok(entry_from_row(&row)?))
        }
        Err(err) if is_unique_violation(&err) => {
            savepoint.rollback().await?;
            let existing: i64 = sqlx::query_scalar(
                "SELECT id FROM entries WHERE name_key = $1 AND number = $2 AND id <> $3",
            )
            .bind(&entry.name_key)
            .bind(entry.number.identity())
            .bind(entry.id.0)
            .fetch_one(&mut *conn)
            .await?;
            Ok(Err(Error::Duplicate(EntryId(existing))))
        }
        Err(err) => Err(err),
    }
}

async fn delete(conn: &mut PgConnection, id: EntryId, etag: Option<Etag>) -> Applied<()> {
    if let Err(refused) = current(conn, id, etag).await? {
        return Ok(Err(refused));
    }
    sqlx::query("DELETE FROM entries WHERE id = $1")
        .bind(id.0)
        .execute(&mut *conn)
        .await?;
    Ok(Ok(()))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == UNIQUE_VIOLATION)
}
