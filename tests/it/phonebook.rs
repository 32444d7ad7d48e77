//! The phone book against a real phonebook-server, under stress: entries kept across a graceful
//! restart and a kill -9 (even one amid concurrent writes), concurrent adds of one entry and etag
//! races with exactly one winner, fifty concurrent clients that lose and duplicate nothing, the
//! real grpcurl, and health.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Barrier;
use tonic::Code;
use township_proto::phonebook::v1::{self as pb, add_result::Outcome};

use crate::support::{
    cli::json,
    grpcurl::grpcurl_at,
    phonebook::*,
    process::*,
    status::*,
    storage::{Backend, Storage, on_both_backends},
};

// The service's core, on SQLite and on PostgreSQL alike (on PostgreSQL, the concurrency tests
// race two replicas).
on_both_backends!(
    entries_survive_a_graceful_restart,
    an_entry_acknowledged_right_before_kill_9_is_there_after_restart,
    every_acknowledged_entry_survives_a_kill_9_during_concurrent_writes,
    concurrent_adds_of_the_same_entry_have_exactly_one_winner,
    fifty_concurrent_clients_lose_nothing_and_duplicate_nothing,
    concurrent_updates_with_the_same_etag_have_exactly_one_winner,
);

// ----- durability -----

async fn entries_survive_a_graceful_restart(backend: Backend) {
    let dir = Storage::new(backend).await;
    let listen = fixed_address();
    let server = phonebook_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let requests = (0..5)
        .map(|i| request(&format!("Keeper {i}"), &us(i), "home"))
        .collect();
    let kept = batch_added(&rpc, requests).await;
    let relabelled = pb::Entry {
        label: "work".into(),
        ..kept[0].clone()
    };
    let updated = update(&rpc, relabelled, &kept[0].etag, Some(&["label"]))
        .await
        .unwrap();
    let last = kept[4].clone();
    delete(&rpc, &last.id, &last.etag).await.unwrap();
    stop(server, libc::SIGTERM).await;

    let server = phonebook_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    assert_eq!(get(&rpc, &kept[0].id).await.unwrap(), updated);
    for entry in &kept[1..4] {
        assert_eq!(get(&rpc, &entry.id).await.unwrap(), *entry);
    }
    expect_code(get(&rpc, &last.id).await, Code::NotFound);
    let expected = vec![
        updated.clone(),
        kept[1].clone(),
        kept[2].clone(),
        kept[3].clone(),
    ];
    assert_eq!(export(&rpc).await, expected);
    // The etag before the update is still stale, and ids are still never reused.
    expect_code(
        update(&rpc, kept[0].clone(), &kept[0].etag, None).await,
        Code::Aborted,
    );
    let new = add(&rpc, "Newcomer", &us(9), "").await.unwrap();
    assert!(id_number(&new) > id_number(&last), "{new:?} after {last:?}");
}

async fn an_entry_acknowledged_right_before_kill_9_is_there_after_restart(backend: Backend) {
    let dir = Storage::new(backend).await;
    let listen = fixed_address();
    let server = phonebook_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let entry = add(&rpc, "Last Word", &us(7), "").await.unwrap();
    stop(server, libc::SIGKILL).await;

    let server = phonebook_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    assert_eq!(get(&rpc, &entry.id).await.unwrap(), entry);
    assert_eq!(lookup(&rpc, "last word").await.unwrap(), vec![entry]);
}

async fn every_acknowledged_entry_survives_a_kill_9_during_concurrent_writes(backend: Backend) {
    let dir = Storage::new(backend).await;
    let listen = fixed_address();
    let server = phonebook_on(&dir, Some(&listen), &[]).await;
    let acked = Arc::new(Mutex::new(Vec::<pb::Entry>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..8u32 {
        let rpc = client(&server).await;
        let acked = acked.clone();
        let count = count.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..1000u32 {
                let name = format!("Writer {writer} entry {i}");
                match add(&rpc, &name, &us(writer * 1000 + i), "").await {
                    Ok(entry) => {
                        acked.lock().unwrap().push(entry);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::SeqCst) < 200 {
        assert!(Instant::now() < deadline, "200 adds within two minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop(server, libc::SIGKILL).await;
    for writer in writers {
        tokio::time::timeout(CALL_TIMEOUT, writer)
            .await
            .expect("the writers see the kill")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    let server = phonebook_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let after: HashMap<String, pb::Entry> = export(&rpc)
        .await
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    for entry in &acked {
        assert_eq!(after.get(&entry.id), Some(entry), "acknowledged, so kept");
    }
    for entry in after.values() {
        assert!(
            entry.name.starts_with("Writer ") && entry.etag == "v1",
            "only what the writers sent: {entry:?}"
        );
    }
    let lost = acked.len().saturating_sub(after.len());
    assert_eq!(
        lost,
        0,
        "{} acknowledged, {} after restart",
        acked.len(),
        after.len()
    );
}

// ----- concurrency -----

async fn concurrent_adds_of_the_same_entry_have_exactly_one_winner(backend: Backend) {
    const CLIENTS: usize = 20;
    const ROUNDS: u32 = 5;
    let book = phonebook_replicas(backend).await;
    let rpc = client(book.server(0)).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client(book.server(clients.len())).await);
    }
    for round in 0..ROUNDS {
        let start = Arc::new(Barrier::new(CLIENTS));
        let tasks: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(c, own)| {
                let own = own.clone();
                let start = start.clone();
                // The same name and number, spelt differently by each client.
                let name = if c % 2 == 0 {
                    format!("Twin Zoë {round}")
                } else {
                    format!("  TWIN  ZOE {round} ")
                };
                let number = if c % 3 == 0 {
                    us(round)
                } else {
                    us_e164(round)
                };
                tokio::spawn(async move {
                    start.wait().await;
                    add(&own, &name, &number, "").await
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut refused = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(entry) => winners.push(entry),
                Err(status) => refused.push(status),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one added: {winners:?}"
        );
        let winner = winners.pop().unwrap();
        for status in &refused {
            assert_eq!(
                status.code(),
                Code::AlreadyExists,
                "round {round}: {status:?}"
            );
            assert!(
                status.message().contains(&format!("entry {}", winner.id)),
                "round {round}: names the winner {}: {status:?}",
                winner.id
            );
        }
        let found = lookup(&rpc, &format!("twin zoe {round}")).await.unwrap();
        assert_eq!(found, vec![winner], "round {round}");
    }

    // Overlapping batches at once: each entry is added by exactly one of them.
    let start = Arc::new(Barrier::new(CLIENTS));
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(c, own)| {
            let own = own.clone();
            let start = start.clone();
            // Client c sends entries 3c..3c+10 of 30 (mod 30): every entry is in several batches.
            let requests = (0..10u32)
                .map(|i| {
                    let n = (c as u32 * 3 + i) % 30;
                    request(&format!("Overlap {n}"), &us(100 + n), "")
                })
                .collect();
            tokio::spawn(async move {
                start.wait().await;
                batch(&own, requests).await.unwrap()
            })
        })
        .collect();
    let mut added: HashMap<String, pb::Entry> = HashMap::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        for outcome in task.await.unwrap() {
            match outcome {
                Outcome::Entry(entry) => {
                    let name = entry.name.clone();
                    assert!(added.insert(name, entry).is_none(), "one entry added twice");
                }
                Outcome::Rejected(rejection) => duplicates.push(rejection),
            }
        }
    }
    assert_eq!(added.len(), 30, "every overlapping entry added once");
    assert_eq!(duplicates.len(), CLIENTS * 10 - 30);
    for rejection in &duplicates {
        assert_eq!(rejection.code, "ALREADY_EXISTS", "{rejection:?}");
        assert!(
            added
                .values()
                .any(|e| rejection.message.contains(&format!("entry {}", e.id))),
            "names an added entry: {rejection:?}"
        );
    }
    let book = export(&rpc).await;
    assert_eq!(book.len(), ROUNDS as usize + 30, "{book:?}");
    assert_distinct_ids(&book);
}

async fn fifty_concurrent_clients_lose_nothing_and_duplicate_nothing(backend: Backend) {
    const CLIENTS: u32 = 50;
    const EACH: u32 = 20;
    let book = phonebook_replicas(backend).await;
    let rpc = client(book.server(0)).await;
    let start = Arc::new(Barrier::new(CLIENTS as usize));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let own = client(book.server(c as usize)).await;
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut mine = Vec::new();
            for i in 0..EACH {
                // Every client writes under the shared names "Shared 0".."Shared 19" and under
                // its own names, each with a number of its own.
                let shared = add(&own, &format!("Shared {i}"), &us(c * EACH + i), "")
                    .await
                    .unwrap();
                let own_name = format!("Client {c} friend {i}");
                let private = add(&own, &own_name, &us(c * EACH + i), "").await.unwrap();
                let found = lookup(&own, &own_name).await.unwrap();
                assert_eq!(found, vec![private.clone()], "read back at once");
                let found = lookup(&own, &format!("SHARED {i}")).await.unwrap();
                assert!(found.contains(&shared), "{shared:?} in {found:?}");
                mine.push(shared);
                mine.push(private);
            }
            mine
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("no client failed"));
    }
    let total = (CLIENTS * EACH * 2) as usize;
    assert_eq!(acked.len(), total);
    assert_distinct_ids(&acked);

    for i in 0..EACH {
        let found = lookup(&rpc, &format!("shared {i}")).await.unwrap();
        assert_eq!(found.len(), CLIENTS as usize, "one per client: {found:?}");
        assert!(
            found
                .windows(2)
                .all(|w| id_number(&w[0]) < id_number(&w[1])),
            "oldest first"
        );
    }
    let by_id: HashMap<&str, &pb::Entry> = acked.iter().map(|e| (e.id.as_str(), e)).collect();
    let exported = export(&rpc).await;
    assert_eq!(exported.len(), total, "Export: nothing lost, nothing extra");
    assert_distinct_ids(&exported);
    for entry in &exported {
        assert_eq!(
            by_id.get(entry.id.as_str()),
            Some(&entry),
            "as acknowledged"
        );
    }
    let listed = list_from(&rpc, 333, "").await;
    assert_eq!(
        listed.len(),
        total,
        "ListEntries: nothing lost, nothing extra"
    );
    assert_distinct_ids(&listed);
    assert_eq!(listed, in_name_order(exported));
}

async fn concurrent_updates_with_the_same_etag_have_exactly_one_winner(backend: Backend) {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 10;
    let book = phonebook_replicas(backend).await;
    let rpc = client(book.server(0)).await;
    let entry = add(&rpc, "Contested", &us(1), "start").await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client(book.server(clients.len())).await);
    }
    let mut current = entry.clone();
    for round in 0..ROUNDS {
        let start = Arc::new(Barrier::new(CLIENTS));
        let tasks: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(c, own)| {
                let own = own.clone();
                let start = start.clone();
                let change = pb::Entry {
                    label: format!("client {c} round {round}"),
                    ..current.clone()
                };
                let etag = current.etag.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    update(&own, change, &etag, Some(&["label"])).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(entry) => winners.push(entry),
                Err(status) => losers.push(status),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner: {winners:?}"
        );
        let winner = winners.pop().unwrap();
        for status in &losers {
            assert_eq!(status.code(), Code::Aborted, "round {round}: {status:?}");
            assert!(status.message().contains(&winner.etag), "{status:?}");
        }
        let stored = get(&rpc, &entry.id).await.unwrap();
        assert_eq!(
            stored, winner,
            "round {round}: the winner's value, no lost update"
        );
        assert_ne!(winner.etag, current.etag);
        current = winner;
    }
    assert_eq!(current.etag, format!("v{}", ROUNDS + 1));
    assert_eq!(current.number, entry.number);
    assert_eq!(current.name, entry.name);
}

// ----- grpcurl and health -----

#[tokio::test]
async fn grpcurl_adds_and_looks_up_an_entry() {
    let (_dir, server, rpc) = phonebook().await;
    let out = grpcurl_at(server.addr, None, &["list"]).await;
    assert!(out.stdout.lines().any(|l| l == SERVICE), "{}", out.stdout);

    let data = r#"{"name": "Zoë Ångström", "number": "(201) 555-0123", "label": "home"}"#;
    let added = json(&grpcurl_phonebook(&server, "AddEntry", data).await);
    let id = added["id"].as_str().expect("an id").to_owned();
    assert_eq!(added["name"], "Zoë Ångström", "{added}");
    assert_eq!(added["number"], "+12015550123", "{added}");
    assert_eq!(added["displayNumber"], "+1 201-555-0123", "{added}");
    assert_eq!(added["label"], "home", "{added}");
    assert_eq!(added["etag"], "v1", "{added}");
    for time in ["createTime", "updateTime"] {
        let text = added[time].as_str().unwrap_or_default();
        assert!(text.ends_with('Z'), "an RFC 3339 {time}: {added}");
    }

    let found = json(&grpcurl_phonebook(&server, "Lookup", r#"{"name": "  ZOE angstrom "}"#).await);
    let entries = found["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{found}");
    assert_eq!(entries[0]["id"], id.as_str(), "{found}");
    assert_eq!(entries[0]["name"], "Zoë Ångström", "{found}");
    assert_eq!(get(&rpc, &id).await.unwrap().label, "home");

    let none = json(&grpcurl_phonebook(&server, "Lookup", r#"{"name": "Nobody"}"#).await);
    assert!(
        none.get("entries")
            .is_none_or(|e| e.as_array().is_some_and(Vec::is_empty)),
        "{none}"
    );
    let refused = grpcurl_phonebook(&server, "AddEntry", r#"{"name": "X", "number": "12"}"#).await;
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.stderr.contains("InvalidArgument"), "{refused:?}");
    assert!(
        refused.stderr.contains(r#""field":"number""#),
        "{refused:?}"
    );
}

#[tokio::test]
async fn health_reports_the_phone_book_serving() {
    let (_dir, server, _rpc) = phonebook().await;
    assert_serving(&server, SERVICE).await;
}
