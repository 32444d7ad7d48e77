//! The phone book's test helpers: a phonebook-server on a data directory or on either backend
//! (two replicas, on PostgreSQL, for the concurrency tests), one function per RPC,
//! a book of many people added in batches, paging through Search and ListEntries, the checks on
//! entries, and page-token forgery.

use std::{
    collections::HashSet,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use tempfile::TempDir;
use tokio_stream::StreamExt;
use tonic::{Status, transport::Channel};
use township_proto::phonebook::v1::{
    self as pb, add_result::Outcome, phone_book_service_client::PhoneBookServiceClient,
};
use township_tests::{Output, ServiceProcess};

use crate::support::{
    grpcurl::grpcurl_call,
    process::*,
    storage::{Backend, Storage},
};

/// A phone book client.
pub type Rpc = PhoneBookServiceClient<Channel>;

/// The service's fully qualified name (health, reflection, grpcurl).
pub const SERVICE: &str = "township.phonebook.v1.PhoneBookService";
/// The most requests one BatchAddEntries takes.
pub const MAX_BATCH: usize = 1000;

// ----- processes -----

/// A phonebook-server on `dir`, on `listen` (`None`: an ephemeral port), with `extra` flags.
pub async fn phonebook_server(dir: &Path, listen: Option<&str>, extra: &[&str]) -> ServiceProcess {
    server_on("phonebook-server", dir, listen, extra).await
}

/// A phonebook-server on `storage` (its data directory, and on PostgreSQL its database), on
/// `listen` (`None`: an ephemeral port), with `extra` flags.
pub async fn phonebook_on(
    storage: &Storage,
    listen: Option<&str>,
    extra: &[&str],
) -> ServiceProcess {
    server_with("phonebook-server", storage, listen, extra).await
}

/// A phone book on fresh state on `backend`, and a client of it (keep the `Storage` alive as long
/// as the server).
pub async fn phonebook_with(backend: Backend) -> (Storage, ServiceProcess, Rpc) {
    let storage = Storage::new(backend).await;
    let server = phonebook_on(&storage, None, &[]).await;
    let rpc = client(&server).await;
    (storage, server, rpc)
}

/// The phone book as the concurrency tests meet it: one server on SQLite; on PostgreSQL, two
/// replicas on one database, so that their races are between processes too.
pub async fn phonebook_replicas(backend: Backend) -> Replicas {
    Replicas::start("phonebook-server", backend, &[]).await
}

/// A client with its own connection to `server`.
pub async fn client(server: &ServiceProcess) -> Rpc {
    PhoneBookServiceClient::new(connect(server, Some(CALL_TIMEOUT)).await)
}

/// A phone book on a fresh data directory and a client of it (keep the `TempDir` alive as long
/// as the server).
pub async fn phonebook() -> (TempDir, ServiceProcess, Rpc) {
    let dir = tempfile::tempdir().unwrap();
    let server = phonebook_server(dir.path(), None, &[]).await;
    let rpc = client(&server).await;
    (dir, server, rpc)
}

// ----- calls -----

/// A valid US number in international format (n < 10000): `+1 201 555 nnnn`.
pub fn us(n: u32) -> String {
    format!("+1 201 555 {n:04}")
}

/// [`us`] in E.164.
pub fn us_e164(n: u32) -> String {
    format!("+1201555{n:04}")
}

/// The request to add an entry.
pub fn request(name: &str, number: &str, label: &str) -> pb::AddEntryRequest {
    pb::AddEntryRequest {
        name: name.into(),
        number: number.into(),
        label: label.into(),
    }
}

/// AddEntry.
pub async fn add(rpc: &Rpc, name: &str, number: &str, label: &str) -> Result<pb::Entry, Status> {
    rpc.clone()
        .add_entry(request(name, number, label))
        .await
        .map(|r| r.into_inner())
}

/// BatchAddEntries: one outcome per request.
pub async fn batch(rpc: &Rpc, requests: Vec<pb::AddEntryRequest>) -> Result<Vec<Outcome>, Status> {
    let reply = rpc
        .clone()
        .batch_add_entries(pb::BatchAddEntriesRequest { requests })
        .await?
        .into_inner();
    Ok(reply
        .results
        .into_iter()
        .map(|r| r.outcome.expect("every result has an outcome"))
        .collect())
}

/// The entry an outcome added (which it must have).
#[track_caller]
pub fn accepted(outcome: &Outcome) -> &pb::Entry {
    match outcome {
        Outcome::Entry(entry) => entry,
        Outcome::Rejected(rejection) => panic!("expected an entry, got {rejection:?}"),
    }
}

/// The rejection of an outcome (which must be one).
#[track_caller]
pub fn rejected(outcome: &Outcome) -> &pb::Rejection {
    match outcome {
        Outcome::Rejected(rejection) => rejection,
        Outcome::Entry(entry) => panic!("expected a rejection, got {entry:?}"),
    }
}

/// A batch that must add every request: the entries, in request order.
pub async fn batch_added(rpc: &Rpc, requests: Vec<pb::AddEntryRequest>) -> Vec<pb::Entry> {
    let outcomes = batch(rpc, requests).await.expect("the batch is taken");
    outcomes.iter().map(|o| accepted(o).clone()).collect()
}

/// Adds `count` people named `Person 0000`, `Person 0001`, ... with the numbers [`us`]`(0)`, ...
/// (at most [`MAX_BATCH`] per call), each of which must be added.
pub async fn people(rpc: &Rpc, count: usize) {
    let requests: Vec<_> = (0..count)
        .map(|i| request(&format!("Person {i:04}"), &us(i as u32), ""))
        .collect();
    for chunk in requests.chunks(MAX_BATCH) {
        batch_added(rpc, chunk.to_vec()).await;
    }
}

/// GetEntry.
pub async fn get(rpc: &Rpc, id: &str) -> Result<pb::Entry, Status> {
    let request = pb::GetEntryRequest { id: id.into() };
    rpc.clone().get_entry(request).await.map(|r| r.into_inner())
}

/// Lookup: the entries.
pub async fn lookup(rpc: &Rpc, name: &str) -> Result<Vec<pb::Entry>, Status> {
    let request = pb::LookupRequest { name: name.into() };
    rpc.clone()
        .lookup(request)
        .await
        .map(|r| r.into_inner().entries)
}

/// One Search page.
pub async fn search(
    rpc: &Rpc,
    query: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::SearchResponse, Status> {
    let request = pb::SearchRequest {
        query: query.into(),
        page_size,
        page_token: page_token.into(),
    };
    rpc.clone().search(request).await.map(|r| r.into_inner())
}

/// Every Search page from `token` on (`""`: from the start), concatenated.
pub async fn search_from(rpc: &Rpc, query: &str, page_size: i32, token: &str) -> Vec<pb::Entry> {
    every_page(page_size, token, async |token| {
        let page = search(rpc, query, page_size, token).await.unwrap();
        (page.entries, page.next_page_token)
    })
    .await
}

/// One ListEntries page.
pub async fn list(
    rpc: &Rpc,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListEntriesResponse, Status> {
    let request = pb::ListEntriesRequest {
        page_size,
        page_token: page_token.into(),
    };
    rpc.clone()
        .list_entries(request)
        .await
        .map(|r| r.into_inner())
}

/// Every ListEntries page from `token` on (`""`: from the start), concatenated.
pub async fn list_from(rpc: &Rpc, page_size: i32, token: &str) -> Vec<pb::Entry> {
    every_page(page_size, token, async |token| {
        let page = list(rpc, page_size, token).await.unwrap();
        (page.entries, page.next_page_token)
    })
    .await
}

/// The entries of every page `next` returns from `token` on, concatenated; `next` gives a page's
/// entries and the next page's token (`""` after the last), and no page may hold more than
/// `page_size`.
async fn every_page(
    page_size: i32,
    token: &str,
    mut next: impl AsyncFnMut(&str) -> (Vec<pb::Entry>, String),
) -> Vec<pb::Entry> {
    let mut entries = Vec::new();
    let mut token = token.to_owned();
    loop {
        let (page, next_token) = next(&token).await;
        assert!(
            page.len() <= page_size as usize,
            "at most {page_size} per page: {page:?}"
        );
        entries.extend(page);
        if next_token.is_empty() {
            return entries;
        }
        token = next_token;
    }
}

/// UpdateEntry of `entry` (its id and new values) with `etag`; `mask` `None` sends no mask.
pub async fn update(
    rpc: &Rpc,
    entry: pb::Entry,
    etag: &str,
    mask: Option<&[&str]>,
) -> Result<pb::Entry, Status> {
    let request = pb::UpdateEntryRequest {
        entry: Some(entry),
        etag: etag.into(),
        update_mask: mask.map(|paths| prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    };
    rpc.clone()
        .update_entry(request)
        .await
        .map(|r| r.into_inner())
}

/// DeleteEntry (`etag` may be empty).
pub async fn delete(rpc: &Rpc, id: &str, etag: &str) -> Result<(), Status> {
    let request = pb::DeleteEntryRequest {
        id: id.into(),
        etag: etag.into(),
    };
    rpc.clone().delete_entry(request).await.map(drop)
}

/// The whole book through Export.
pub async fn export(rpc: &Rpc) -> Vec<pb::Entry> {
    let mut stream = rpc
        .clone()
        .export(pb::ExportRequest {})
        .await
        .expect("Export starts")
        .into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.next().await {
        entries.push(entry.expect("Export streams entries, not errors"));
    }
    entries
}

// ----- checks -----

/// An entry id as the number it is.
pub fn id_number(entry: &pb::Entry) -> i64 {
    entry
        .id
        .parse()
        .unwrap_or_else(|_| panic!("ids are whole numbers: {entry:?}"))
}

/// The ids of `entries`, in order.
pub fn ids(entries: &[pb::Entry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

/// The names of `entries`, in order.
pub fn names(entries: &[pb::Entry]) -> Vec<String> {
    entries.iter().map(|e| e.name.clone()).collect()
}

/// Asserts that no id appears twice in `entries`.
#[track_caller]
pub fn assert_distinct_ids(entries: &[pb::Entry]) {
    let mut seen = HashSet::new();
    for entry in entries {
        assert!(seen.insert(&entry.id), "id {} appears twice", entry.id);
    }
}

/// A timestamp field, in ms since the Unix epoch.
#[track_caller]
pub fn millis(ts: &Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.as_ref().expect("the timestamp is set");
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `entries` sorted the way the book orders ASCII names: case-insensitively, then by id.
pub fn in_name_order(mut entries: Vec<pb::Entry>) -> Vec<pb::Entry> {
    entries.sort_by_key(|e| (e.name.to_lowercase(), id_number(e)));
    entries
}

/// URL-safe base64 without padding of `bytes` (whose length is a multiple of 3).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(bytes.len() % 3, 0);
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[(n >> shift) as usize & 63] as char);
        }
    }
    out
}

/// `token` with one character in its middle replaced by another base64 character.
pub fn flip_a_character(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let at = chars.len() / 2;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    let flipped: String = chars.into_iter().collect();
    assert_ne!(flipped, token);
    flipped
}

// ----- grpcurl -----

/// `grpcurl -plaintext -d DATA ADDR township.phonebook.v1.PhoneBookService/METHOD`.
pub async fn grpcurl_phonebook(server: &ServiceProcess, method: &str, data: &str) -> Output {
    grpcurl_call(server.addr, SERVICE, method, data).await
}
