//! The book's writes on SQLite: a batch is one `BEGIN IMMEDIATE` transaction on the writer's
//! one connection, so nothing else writes between a check and its write. Every statement is a
//! round trip to SQLite's thread, so a run of adds travels as one JSON array.

use township_store::{
    Migration, SqlitePool,
    sqlx::{self, SqliteConnection},
};

use super::{
    Entry, Outcome, columns, entry_from_row,
    writer::{Applied, Step, added, changed, now_ms, refusal},
};
use crate::{
    Error,
    types::{Change, EntryId, Etag, NewEntry},
};

/// The phone book's SQLite migrations, in order (see township_store::Migration).
pub(super) const SCHEMA: &[Migration] = &[Migration {
    version: 1,
    description: "baseline",
    sql: include_str!("../../migrations/sqlite/0001_baseline.sql"),
}];

/// Applies `steps` in one transaction and commits it.
pub(super) async fn commit(
    writes: &SqlitePool,
    steps: &[Step<'_>],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = writes.begin_with("BEGIN IMMEDIATE").await?;
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

/// Adds `entries` with three statements whatever their number: the entries travel as one JSON
/// array, and their ids come back as one. An entry whose name key and number are already in the
/// book, or earlier in `entries`, is refused as a duplicate of that entry.
async fn add_all(
    conn: &mut SqliteConnection,
    entries: &[&NewEntry],
    now: i64,
) -> Result<Vec<Outcome>, sqlx::Error> {
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
    added(entries, ids, |id| id > last_before, now)
}

/// The entry `id` as it is, or the refusal when it is missing or its etag is not `etag`.
async fn current(
    conn: &mut SqliteConnection,
    id: EntryId,
    etag: Option<Etag>,
) -> Applied<Option<Entry>> {
    let row = sqlx::query(concat!("SELECT ", columns!(), " FROM entries WHERE id = ?"))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
    let entry = row.map(|row| entry_from_row(&row)).transpose()?;
    Ok(refusal(id, entry.as_ref().map(|e| e.etag.0), etag).map(|()| entry))
}

async fn update(conn: &mut SqliteConnection, change: &Change, now: i64) -> Applied<Entry> {
    let entry = match current(conn, change.id, Some(change.etag)).await? {
        Ok(Some(entry)) => changed(entry, change),
        Ok(None) => return Ok(Err(Error::NotFound(change.id))),
        Err(refused) => return Ok(Err(refused)),
    };
    let duplicate: Option<i64> =
        sqlx::query_scalar("SELECT id FROM entries WHERE name_key = ? AND number = ? AND id <> ?")
            .bind(&entry.name_key)
            .bind(entry.number.identity())
            .bind(entry.id.0)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(existing) = duplicate {
        return Ok(Err(Error::Duplicate(EntryId(existing))));
    }
    let row = sqlx::query(concat!(
        "UPDATE entries SET name = ?, name_key = ?, number = ?, display_number = ?, label = ?, \
         version = version + 1, update_ms = ? WHERE id = ? RETURNING ",
        columns!()
    ))
    .bind(&entry.name)
    .bind(&entry.name_key)
    .bind(entry.number.identity())
    .bind(entry.number.display())
    .bind(&entry.label)
    .bind(now)
    .bind(entry.id.0)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Ok(entry_from_row(&row)?))
}

async fn delete(conn: &mut SqliteConnection, id: EntryId, etag: Option<Etag>) -> Applied<()> {
    if let Err(refused) = current(conn, id, etag).await? {
        return Ok(Err(refused));
    }
    sqlx::query("DELETE FROM entries WHERE id = ?")
        .bind(id.0)
        .execute(&mut *conn)
        .await?;
    Ok(Ok(()))
}
