//! The phone book service against a real phonebook-server: every RPC, every field-naming error,
//! Unicode-, case- and accent-insensitive lookup in several scripts, search order and signed page
//! tokens (forged ones refused, genuine ones still good after a restart), paging a large book
//! exactly once, durability across a graceful restart and a kill -9, fifty concurrent clients,
//! etag races with exactly one winner, the real grpcurl, and health.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Barrier;
use tokio_stream::StreamExt;
use tonic::{Code, transport::Endpoint};
use township_proto::phonebook::v1::{
    self as pb, add_result::Outcome, phone_book_service_client::PhoneBookServiceClient,
};

use crate::support::{
    cli::json,
    grpcurl::grpcurl_at,
    phonebook::*,
    process::*,
    status::*,
    storage::{Backend, Storage, on_both_backends},
};

// The service's core, on SQLite and on PostgreSQL alike.
on_both_backends!(
    add_entry_normalises_the_number_and_sets_the_etag_and_times,
    batch_add_answers_every_request_in_order,
    get_entry_finds_an_entry_and_refuses_unknown_or_malformed_ids,
    lookup_finds_every_entry_for_a_name_oldest_first,
    update_entry_with_a_mask_changes_only_the_masked_fields,
    update_entry_with_a_stale_etag_is_aborted_and_changes_nothing,
    update_entry_that_would_duplicate_another_entry_is_already_exists,
    delete_entry_with_and_without_an_etag,
    list_entries_and_export_show_the_whole_book,
    export_is_one_snapshot_even_while_the_book_changes,
    concurrent_adds_of_the_same_entry_have_exactly_one_winner,
    lookup_ignores_case_accents_and_spacing_in_every_script,
    a_name_that_looks_like_sql_is_stored_and_found_as_plain_data,
    search_treats_percent_underscore_and_backslash_literally,
    search_lists_prefix_matches_first_then_the_rest_each_in_name_order,
    search_by_digits_finds_numbers,
    search_pages_walk_every_match_once_while_other_entries_are_added,
    page_tokens_still_work_after_a_restart_on_the_same_data_dir,
    list_entries_pages_through_230_entries_in_name_order_exactly_once,
    entries_survive_a_graceful_restart,
    an_entry_acknowledged_right_before_kill_9_is_there_after_restart,
    every_acknowledged_entry_survives_a_kill_9_during_concurrent_writes,
    fifty_concurrent_clients_lose_nothing_and_duplicate_nothing,
    concurrent_updates_with_the_same_etag_have_exactly_one_winner,
    an_extension_is_part_of_the_number_and_a_national_search_finds_international_numbers,
);

// ----- every RPC -----

async fn add_entry_normalises_the_number_and_sets_the_etag_and_times(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let before = now_ms();
    let entry = add(&rpc, "  Ada Lovelace  ", "(201) 555-0123", " home ")
        .await
        .unwrap();
    let after = now_ms();
    assert!(id_number(&entry) > 0, "{entry:?}");
    assert_eq!(entry.name, "Ada Lovelace", "trimmed");
    assert_eq!(entry.number, "+12015550123", "E.164");
    assert_eq!(entry.display_number, "+1 201-555-0123");
    assert_eq!(entry.label, "home", "trimmed");
    assert_eq!(entry.etag, "v1");
    let created = millis(&entry.create_time);
    assert_eq!(
        created,
        millis(&entry.update_time),
        "a new entry: {entry:?}"
    );
    // Only the clock's sanity, with a minute of slack either way.
    assert!(
        (before - 60_000..=after + 60_000).contains(&created),
        "created at {created}, between {before} and {after}"
    );

    let uk = add(&rpc, "Ada Lovelace", "+44 20 7946 0958", "")
        .await
        .unwrap();
    assert_eq!(uk.number, "+442079460958");
    assert_eq!(uk.display_number, "+44 20 7946 0958");
    assert_eq!(uk.label, "");
    assert_ne!(uk.id, entry.id);
    assert_eq!(get(&rpc, &entry.id).await.unwrap(), entry);
    assert_eq!(get(&rpc, &uk.id).await.unwrap(), uk);
}

#[tokio::test]
async fn national_numbers_are_read_in_the_server_region() {
    let dir = tempfile::tempdir().unwrap();
    let server = phonebook_server(dir.path(), None, &["--region", "GB"]).await;
    let rpc = client(&server).await;
    let london = add(&rpc, "Big Ben", "020 7946 0958", "").await.unwrap();
    assert_eq!(london.number, "+442079460958");
    assert_eq!(london.display_number, "+44 20 7946 0958");
    let international = add(&rpc, "Ada", "+1 (201) 555-0123", "").await.unwrap();
    assert_eq!(international.number, "+12015550123");
    let status = expect_invalid(add(&rpc, "Nobody", "12", "").await, "number");
    assert!(
        status.message().contains("GB"),
        "names the region: {status:?}"
    );
}

#[tokio::test]
async fn the_same_name_with_the_same_number_is_already_exists() {
    let (_dir, _server, rpc) = phonebook().await;
    let first = add(&rpc, "Zoë", &us(100), "").await.unwrap();
    let status = expect_code(
        add(&rpc, "  ZOE ", "(201) 555-0100", "work").await,
        Code::AlreadyExists,
    );
    assert!(
        status.message().contains(&format!("entry {}", first.id)),
        "names the existing entry: {status:?}"
    );
    add(&rpc, "Zoë", &us(101), "")
        .await
        .expect("another number");
    add(&rpc, "Zoey", &us(100), "").await.expect("another name");
    let zoes = lookup(&rpc, "zoe").await.unwrap();
    assert_eq!(zoes.len(), 2, "{zoes:?}");
    assert_eq!(zoes[0], first, "unchanged by the refused add");
}

async fn batch_add_answers_every_request_in_order(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let existing = add(&rpc, "Existing", &us(1), "").await.unwrap();
    let outcomes = batch(
        &rpc,
        vec![
            request("Alice", &us(10), "home"),
            request("Bob", "not a number", ""),
            request("existing", &us(1), ""),
            request("Carol", "(201) 555-0012", ""),
            request("ALICE", "(201) 555-0010", ""),
            request("   ", &us(13), ""),
            request("Dan", &us(14), &"x".repeat(65)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 7, "one result per request: {outcomes:?}");

    let alice = accepted(&outcomes[0]);
    assert_eq!(
        (
            alice.name.as_str(),
            alice.number.as_str(),
            alice.label.as_str()
        ),
        ("Alice", "+12015550010", "home")
    );
    assert_eq!(alice.etag, "v1");
    assert!(alice.create_time.is_some() && alice.update_time.is_some());

    let bob = rejected(&outcomes[1]);
    assert_eq!(
        (bob.code.as_str(), bob.field.as_str()),
        ("INVALID_ARGUMENT", "number")
    );
    assert!(bob.message.contains("not a valid phone number"), "{bob:?}");

    let again = rejected(&outcomes[2]);
    assert_eq!(again.code, "ALREADY_EXISTS", "{again:?}");
    assert!(
        again.message.contains(&format!("entry {}", existing.id)),
        "{again:?}"
    );

    let carol = accepted(&outcomes[3]);
    assert_eq!(carol.number, "+12015550012");
    assert!(id_number(alice) < id_number(carol), "ids in request order");

    let alice_again = rejected(&outcomes[4]);
    assert_eq!(alice_again.code, "ALREADY_EXISTS", "{alice_again:?}");
    assert!(
        alice_again.message.contains(&format!("entry {}", alice.id)),
        "a duplicate of an earlier request of the same batch: {alice_again:?}"
    );

    let blank = rejected(&outcomes[5]);
    assert_eq!(
        (blank.code.as_str(), blank.field.as_str()),
        ("INVALID_ARGUMENT", "name")
    );
    let dan = rejected(&outcomes[6]);
    assert_eq!(
        (dan.code.as_str(), dan.field.as_str()),
        ("INVALID_ARGUMENT", "label")
    );

    assert_eq!(get(&rpc, &alice.id).await.unwrap(), *alice);
    assert_eq!(get(&rpc, &carol.id).await.unwrap(), *carol);

    // A batch of nothing but rejections is answered too.
    let outcomes = batch(
        &rpc,
        vec![request("Eve", "12", ""), request("carol", &us(12), "")],
    )
    .await
    .unwrap();
    assert_eq!(rejected(&outcomes[0]).field, "number");
    assert_eq!(rejected(&outcomes[1]).code, "ALREADY_EXISTS");
    let book = list_from(&rpc, 100, "").await;
    assert_eq!(
        names(&book),
        ["Alice", "Carol", "Existing"],
        "only the accepted ones"
    );
}

#[tokio::test]
async fn batch_add_takes_1_to_1000_requests() {
    let (_dir, _server, rpc) = phonebook().await;
    let status = expect_invalid(batch(&rpc, Vec::new()).await, "requests");
    assert!(status.message().contains("got 0"), "{status:?}");
    let too_many = (0..1001)
        .map(|i| request(&format!("Person {i}"), &us(i), ""))
        .collect();
    let status = expect_invalid(batch(&rpc, too_many).await, "requests");
    assert!(status.message().contains("got 1001"), "{status:?}");
    assert!(
        export(&rpc).await.is_empty(),
        "a refused batch adds nothing"
    );
    let most = (0..1000)
        .map(|i| request(&format!("Person {i}"), &us(i), ""))
        .collect();
    assert_eq!(batch_added(&rpc, most).await.len(), 1000);
}

async fn get_entry_finds_an_entry_and_refuses_unknown_or_malformed_ids(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let entry = add(&rpc, "Grace Hopper", &us(200), "work").await.unwrap();
    assert_eq!(get(&rpc, &entry.id).await.unwrap(), entry);

    let missing = (id_number(&entry) + 1000).to_string();
    let status = expect_code(get(&rpc, &missing).await, Code::NotFound);
    assert!(status.message().contains(&missing), "{status:?}");
    for bad in ["abc", "", "  ", "0", "-1", "1.5", "99999999999999999999"] {
        expect_invalid(get(&rpc, bad).await, "id");
    }
}

async fn lookup_finds_every_entry_for_a_name_oldest_first(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let home = add(&rpc, "Ada Lovelace", &us(1), "home").await.unwrap();
    add(&rpc, "Ada", &us(2), "").await.unwrap();
    add(&rpc, "Ada Lovelace King", &us(3), "").await.unwrap();
    let work = add(&rpc, "ADA LOVELACE", &us(4), "work").await.unwrap();
    let found = lookup(&rpc, "ada lovelace").await.unwrap();
    assert_eq!(found, vec![home, work], "the whole name, not a part of one");
}

#[tokio::test]
async fn lookup_of_a_blank_name_is_invalid_and_of_an_unknown_name_is_empty() {
    let (_dir, _server, rpc) = phonebook().await;
    add(&rpc, "Ada", &us(1), "").await.unwrap();
    for blank in ["", "   ", "\t\n", "\u{301}\u{308}"] {
        expect_invalid(lookup(&rpc, blank).await, "name");
    }
    assert_eq!(lookup(&rpc, "Nobody").await.unwrap(), Vec::new());
    assert_eq!(
        lookup(&rpc, "Ad").await.unwrap(),
        Vec::new(),
        "no prefix match"
    );
}

#[tokio::test]
async fn update_entry_without_a_mask_replaces_name_number_and_label() {
    let (_dir, _server, rpc) = phonebook().await;
    let entry = add(&rpc, "Ada", &us(100), "home").await.unwrap();
    let new_values = pb::Entry {
        id: entry.id.clone(),
        name: " Ada King ".into(),
        number: "+44 20 7946 0958".into(),
        label: String::new(),
        ..Default::default()
    };
    let changed = update(&rpc, new_values, &entry.etag, None).await.unwrap();
    assert_eq!(changed.id, entry.id);
    assert_eq!(changed.name, "Ada King");
    assert_eq!(changed.number, "+442079460958");
    assert_eq!(changed.display_number, "+44 20 7946 0958");
    assert_eq!(changed.label, "", "an empty label clears it");
    assert_ne!(changed.etag, entry.etag, "the etag changes");
    assert_eq!(changed.create_time, entry.create_time);
    assert!(millis(&changed.update_time) >= millis(&entry.update_time));
    assert!(millis(&changed.update_time) >= millis(&changed.create_time));
    assert_eq!(get(&rpc, &entry.id).await.unwrap(), changed);
    assert!(
        lookup(&rpc, "ada").await.unwrap().is_empty(),
        "the old name is gone"
    );
    assert_eq!(
        lookup(&rpc, "ADA KING").await.unwrap(),
        vec![changed.clone()]
    );

    // An empty mask means all three as well.
    let new_values = pb::Entry {
        id: entry.id.clone(),
        name: "Ada".into(),
        number: us(100),
        label: "work".into(),
        ..Default::default()
    };
    let back = update(&rpc, new_values, &changed.etag, Some(&[]))
        .await
        .unwrap();
    assert_eq!(
        (
            back.name.as_str(),
            back.number.as_str(),
            back.label.as_str()
        ),
        ("Ada", us_e164(100).as_str(), "work")
    );
    assert!(![entry.etag.as_str(), changed.etag.as_str()].contains(&back.etag.as_str()));
    assert_eq!(get(&rpc, &entry.id).await.unwrap(), back);
}

async fn update_entry_with_a_mask_changes_only_the_masked_fields(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let entry = add(&rpc, "Grace Hopper", &us(200), "home").await.unwrap();
    // Only the label: the empty name and number of the request are not looked at.
    let label_only = pb::Entry {
        id: entry.id.clone(),
        label: "work".into(),
        ..Default::default()
    };
    let relabelled = update(&rpc, label_only, &entry.etag, Some(&["label"]))
        .await
        .unwrap();
    assert_eq!(
        (
            relabelled.name.as_str(),
            relabelled.number.as_str(),
            relabelled.label.as_str()
        ),
        ("Grace Hopper", us_e164(200).as_str(), "work")
    );
    assert_ne!(relabelled.etag, entry.etag);

    let moved = pb::Entry {
        id: entry.id.clone(),
        name: "Grace B. Hopper".into(),
        number: "(201) 555-0201".into(),
        label: "not this".into(),
        ..Default::default()
    };
    let moved = update(&rpc, moved, &relabelled.etag, Some(&["number", "name"]))
        .await
        .unwrap();
    assert_eq!(
        (
            moved.name.as_str(),
            moved.number.as_str(),
            moved.label.as_str()
        ),
        ("Grace B. Hopper", us_e164(201).as_str(), "work")
    );
    assert_ne!(moved.etag, relabelled.etag);
    assert_eq!(moved.create_time, entry.create_time);
    assert!(millis(&moved.update_time) >= millis(&relabelled.update_time));
    assert_eq!(get(&rpc, &entry.id).await.unwrap(), moved);
}

#[tokio::test]
async fn update_entry_needs_an_entry_an_etag_and_known_mask_paths() {
    let (_dir, _server, rpc) = phonebook().await;
    let entry = add(&rpc, "Ada", &us(1), "home").await.unwrap();

    let no_entry = pb::UpdateEntryRequest {
        entry: None,
        etag: entry.etag.clone(),
        update_mask: None,
    };
    expect_invalid(rpc.clone().update_entry(no_entry).await, "entry");
    for etag in ["", "   "] {
        let status = expect_invalid(update(&rpc, entry.clone(), etag, None).await, "etag");
        assert!(status.message().contains("required"), "{status:?}");
    }
    expect_invalid(update(&rpc, entry.clone(), "1", None).await, "etag");
    for path in ["id", "etag", "display_number", "create_time", "nmae"] {
        let result = update(&rpc, entry.clone(), &entry.etag, Some(&["label", path])).await;
        let status = expect_invalid(result, "update_mask");
        assert!(status.message().contains(path), "{status:?}");
    }
    let bad_id = pb::Entry {
        id: "abc".into(),
        ..entry.clone()
    };
    expect_invalid(update(&rpc, bad_id, &entry.etag, None).await, "entry.id");
    let no_name = pb::Entry {
        name: " ".into(),
        ..entry.clone()
    };
    expect_invalid(update(&rpc, no_name, &entry.etag, None).await, "entry.name");
    let bad_number = pb::Entry {
        number: "12".into(),
        ..entry.clone()
    };
    expect_invalid(
        update(&rpc, bad_number, &entry.etag, None).await,
        "entry.number",
    );
    let long_label = pb::Entry {
        label: "l".repeat(65),
        ..entry.clone()
    };
    let result = update(&rpc, long_label, &entry.etag, Some(&["label"])).await;
    expect_invalid(result, "entry.label");
    let unknown = pb::Entry {
        id: (id_number(&entry) + 1000).to_string(),
        ..entry.clone()
    };
    expect_code(update(&rpc, unknown, "v1", None).await, Code::NotFound);
    assert_eq!(
        get(&rpc, &entry.id).await.unwrap(),
        entry,
        "nothing changed"
    );
}

async fn update_entry_with_a_stale_etag_is_aborted_and_changes_nothing(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let entry = add(&rpc, "Ada", &us(1), "home").await.unwrap();
    let work = pb::Entry {
        label: "work".into(),
        ..entry.clone()
    };
    let first = update(&rpc, work, &entry.etag, Some(&["label"]))
        .await
        .unwrap();
    let cell = pb::Entry {
        label: "cell".into(),
        ..entry.clone()
    };
    let status = expect_code(
        update(&rpc, cell.clone(), &entry.etag, Some(&["label"])).await,
        Code::Aborted,
    );
    assert!(
        status.message().contains(&first.etag),
        "tells the current etag: {status:?}"
    );
    assert_eq!(
        get(&rpc, &entry.id).await.unwrap(),
        first,
        "nothing changed"
    );

    // `entry.etag` is ignored: only the request's `etag` counts.
    let cell = pb::Entry {
        etag: "v999".into(),
        ..cell
    };
    let second = update(&rpc, cell, &first.etag, Some(&["label"]))
        .await
        .unwrap();
    assert_eq!(second.label, "cell");
}

async fn update_entry_that_would_duplicate_another_entry_is_already_exists(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let ada = add(&rpc, "Ada", &us(1), "").await.unwrap();
    let bob = add(&rpc, "Bob", &us(1), "").await.unwrap();
    let renamed = pb::Entry {
        name: "ADA".into(),
        ..bob.clone()
    };
    let status = expect_code(
        update(&rpc, renamed, &bob.etag, Some(&["name"])).await,
        Code::AlreadyExists,
    );
    assert!(
        status.message().contains(&format!("entry {}", ada.id)),
        "{status:?}"
    );
    assert_eq!(get(&rpc, &bob.id).await.unwrap(), bob, "nothing changed");
    // An entry rewritten with its own values is no duplicate of itself.
    let same = update(&rpc, bob.clone(), &bob.etag, None).await.unwrap();
    assert_eq!((same.name, same.number), (bob.name, bob.number));
}

async fn delete_entry_with_and_without_an_etag(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let a = add(&rpc, "Ada", &us(1), "").await.unwrap();
    let b = add(&rpc, "Bob", &us(2), "").await.unwrap();
    let c = add(&rpc, "Cy", &us(3), "").await.unwrap();

    delete(&rpc, &a.id, "")
        .await
        .expect("no etag: deleted whatever its version");
    expect_code(get(&rpc, &a.id).await, Code::NotFound);
    expect_code(delete(&rpc, &a.id, "").await, Code::NotFound);
    assert!(lookup(&rpc, "ada").await.unwrap().is_empty());

    let b2 = update(
        &rpc,
        pb::Entry {
            label: "work".into(),
            ..b.clone()
        },
        &b.etag,
        Some(&["label"]),
    )
    .await
    .unwrap();
    let status = expect_code(delete(&rpc, &b.id, &b.etag).await, Code::Aborted);
    assert!(status.message().contains(&b2.etag), "{status:?}");
    assert_eq!(
        get(&rpc, &b.id).await.unwrap(),
        b2,
        "a stale delete deletes nothing"
    );
    delete(&rpc, &b.id, &b2.etag)
        .await
        .expect("the current etag");
    expect_code(get(&rpc, &b.id).await, Code::NotFound);

    expect_invalid(delete(&rpc, "abc", "").await, "id");
    expect_invalid(delete(&rpc, &c.id, "seven").await, "etag");
    assert_eq!(ids(&export(&rpc).await), std::slice::from_ref(&c.id));

    // Ids are never reused, not even the highest one after its delete.
    delete(&rpc, &c.id, &c.etag).await.unwrap();
    let d = add(&rpc, "Dee", &us(4), "").await.unwrap();
    assert!(id_number(&d) > id_number(&c), "{d:?} after {c:?}");
}

async fn list_entries_and_export_show_the_whole_book(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    assert!(
        export(&rpc).await.is_empty(),
        "an empty book exports nothing"
    );
    let empty = list(&rpc, 10, "").await.unwrap();
    assert!(empty.entries.is_empty() && empty.next_page_token.is_empty());

    // More entries than Export buffers, added out of name order.
    let requests = (0..300u32)
        .map(|i| request(&format!("Export {:03}", (i * 7) % 300), &us(i), ""))
        .collect();
    let added = batch_added(&rpc, requests).await;
    let gone: Vec<&pb::Entry> = added.iter().step_by(50).collect();
    for entry in &gone {
        delete(&rpc, &entry.id, &entry.etag).await.unwrap();
    }
    let kept: Vec<pb::Entry> = added
        .iter()
        .filter(|e| !gone.iter().any(|g| g.id == e.id))
        .cloned()
        .collect();

    let exported = export(&rpc).await;
    assert_eq!(exported.len(), kept.len());
    assert_eq!(exported, kept, "every entry, in id order");
    assert!(
        exported
            .windows(2)
            .all(|w| id_number(&w[0]) < id_number(&w[1]))
    );

    let listed = list_from(&rpc, 1000, "").await;
    assert_eq!(listed, in_name_order(kept), "every entry, in name order");
}

async fn export_is_one_snapshot_even_while_the_book_changes(backend: Backend) {
    let (_dir, server, rpc) = phonebook_with(backend).await;
    let padding = "x".repeat(150);
    let mut before = Vec::new();
    for chunk in 0..3u32 {
        let requests = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                request(&format!("Snapshot {n:04} {padding}"), &us(n), "")
            })
            .collect();
        before.extend(batch_added(&rpc, requests).await);
    }
    // A slow reader: small HTTP/2 windows keep most of the book on the server's side.
    let channel = Endpoint::from_shared(server.uri())
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    let mut stream = PhoneBookServiceClient::new(channel)
        .export(pb::ExportRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = stream
        .next()
        .await
        .expect("an entry")
        .expect("not an error");
    let mut exported = vec![first];

    // While it reads: the last entry goes, one near the end changes, a new one comes.
    let last = before.last().unwrap().clone();
    delete(&rpc, &last.id, "").await.unwrap();
    let late = before[before.len() - 2].clone();
    let relabelled = pb::Entry {
        label: "changed".into(),
        ..late.clone()
    };
    update(&rpc, relabelled, &late.etag, Some(&["label"]))
        .await
        .unwrap();
    let latecomer = add(&rpc, "Snapshot latecomer", &us(9999), "")
        .await
        .unwrap();

    let drained = tokio::time::timeout(CALL_TIMEOUT, async {
        while let Some(entry) = stream.next().await {
            exported.push(entry.expect("Export streams entries, not errors"));
        }
    })
    .await;
    assert!(drained.is_ok(), "the export ends");
    let before_ids: HashSet<&str> = before.iter().map(|e| e.id.as_str()).collect();
    let missing: Vec<&pb::Entry> = before.iter().filter(|e| !exported.contains(e)).collect();
    let extra: Vec<&pb::Entry> = exported
        .iter()
        .filter(|e| !before_ids.contains(e.id.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && exported.len() == before.len(),
        "the book as it was when Export began: {} exported of {}, missing or changed {missing:?}, \
         extra {extra:?}",
        exported.len(),
        before.len()
    );
    assert_eq!(ids(&exported), ids(&before), "in id order");

    let now = export(&rpc).await;
    assert_eq!(now.len(), before.len(), "one gone, one new");
    assert!(!now.iter().any(|e| e.id == last.id));
    assert!(now.iter().any(|e| e.id == late.id && e.label == "changed"));
    assert_eq!(now.last(), Some(&latecomer));
}

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

// ----- field errors -----

#[tokio::test]
async fn names_must_be_1_to_200_characters_without_control_characters() {
    let (_dir, _server, rpc) = phonebook().await;
    let ascii_201 = "a".repeat(201);
    let accented_201 = "é".repeat(201);
    for (bad, problem) in [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("\u{301}\u{308}", "combining marks"),
        (ascii_201.as_str(), "at most 200 characters (got 201)"),
        (accented_201.as_str(), "at most 200 characters (got 201)"),
        ("Ada\u{0}Lovelace", "control characters"),
        ("Ada\u{7}", "control characters"),
        ("Ada\nLovelace", "control characters"),
        ("Ada\u{1b}[31m", "control characters"),
    ] {
        let status = expect_invalid(add(&rpc, bad, &us(1), "").await, "name");
        assert!(status.message().contains(problem), "{bad:?}: {status:?}");
    }
    assert!(export(&rpc).await.is_empty(), "nothing was added");

    let accented_200 = "é".repeat(200);
    let long = add(&rpc, &accented_200, &us(2), "").await.unwrap();
    assert_eq!(
        long.name, accented_200,
        "200 characters, 400 bytes, are fine"
    );
    let padded = format!("  {}  ", "b".repeat(200));
    let trimmed = add(&rpc, &padded, &us(3), "").await.unwrap();
    assert_eq!(trimmed.name, "b".repeat(200), "counted after trimming");
    assert_eq!(lookup(&rpc, &"É".repeat(200)).await.unwrap(), vec![long]);
}

#[tokio::test]
async fn invalid_numbers_are_invalid_argument_naming_number() {
    let (_dir, _server, rpc) = phonebook().await;
    let too_long = "9".repeat(100);
    for bad in [
        "",
        "   ",
        "12",
        "hello",
        "+999 123",
        "555-0123-555-0123-555",
        "+1 000 000 0000",
        too_long.as_str(),
    ] {
        let status = expect_invalid(add(&rpc, "Ada", bad, "").await, "number");
        assert!(
            status.message().starts_with("number:"),
            "{bad:?}: {status:?}"
        );
    }
    let status = expect_invalid(add(&rpc, "Ada", "hello", "").await, "number");
    assert!(
        status
            .message()
            .contains("\"hello\" is not a valid phone number"),
        "quotes the number: {status:?}"
    );
    assert!(
        status.message().contains("US"),
        "names the region: {status:?}"
    );
    assert!(export(&rpc).await.is_empty(), "nothing was added");
}

#[tokio::test]
async fn labels_longer_than_64_characters_are_invalid_argument() {
    let (_dir, _server, rpc) = phonebook().await;
    let status = expect_invalid(add(&rpc, "Ada", &us(1), &"l".repeat(65)).await, "label");
    assert!(
        status.message().contains("at most 64 characters (got 65)"),
        "{status:?}"
    );
    let status = expect_invalid(add(&rpc, "Ada", &us(1), "home\u{7}x").await, "label");
    assert!(
        status.message().contains("control characters"),
        "{status:?}"
    );
    assert!(export(&rpc).await.is_empty(), "nothing was added");
    let longest = "ł".repeat(64);
    let entry = add(&rpc, "Ada", &us(1), &longest).await.unwrap();
    assert_eq!(entry.label, longest);
}

#[tokio::test]
async fn page_sizes_are_checked_defaulted_and_capped_at_1000() {
    let (_dir, _server, rpc) = phonebook().await;
    let requests = (0..1000)
        .map(|i| request(&format!("Person {i:04}"), &us(i), ""))
        .collect();
    batch_added(&rpc, requests).await;
    add(&rpc, "Person 1000", &us(1000), "").await.unwrap();

    expect_invalid(list(&rpc, -1, "").await, "page_size");
    expect_invalid(search(&rpc, "person", -5, "").await, "page_size");

    let capped = list(&rpc, 5000, "").await.unwrap();
    assert_eq!(capped.entries.len(), 1000, "5000 is served as 1000");
    assert!(!capped.next_page_token.is_empty());
    let rest = list(&rpc, 5000, &capped.next_page_token).await.unwrap();
    assert_eq!(names(&rest.entries), ["Person 1000"]);
    assert!(rest.next_page_token.is_empty(), "the last page");

    let found = search(&rpc, "person", 5000, "").await.unwrap();
    assert_eq!(found.entries.len(), 1000, "5000 is served as 1000");
    assert!(!found.next_page_token.is_empty());

    let default = list(&rpc, 0, "").await.unwrap();
    assert_eq!(default.entries.len(), 50, "0 means 50");
    let default = search(&rpc, "person", 0, "").await.unwrap();
    assert_eq!(default.entries.len(), 50, "0 means 50");
}

#[tokio::test]
async fn search_refuses_an_empty_or_overlong_query() {
    let (_dir, _server, rpc) = phonebook().await;
    for blank in ["", "   ", "\u{301}"] {
        expect_invalid(search(&rpc, blank, 10, "").await, "query");
    }
    expect_invalid(search(&rpc, &"q".repeat(201), 10, "").await, "query");
    let nothing = search(&rpc, "nobody", 10, "").await.unwrap();
    assert!(nothing.entries.is_empty() && nothing.next_page_token.is_empty());
}

// ----- Unicode -----

async fn lookup_ignores_case_accents_and_spacing_in_every_script(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let cases: &[(&str, &[&str])] = &[
        (
            "Zoë Ångström",
            &[
                "zoe angstrom",
                "  ZOË   ÅNGSTRÖM ",
                "Zoe\u{308} A\u{30a}ngstro\u{308}m",
                "ZOE\tANGSTROM",
            ],
        ),
        ("Straße", &["STRASSE", "strasse", "STRAẞE"]),
        ("Nguyễn Văn An", &["nguyen van an", "NGUYEN  VAN AN"]),
        ("İpek Çelik", &["ipek celik", "IPEK ÇELIK"]),
        (
            "Νίκος Παπαδόπουλος",
            &["ΝΙΚΟΣ ΠΑΠΑΔΟΠΟΥΛΟΣ", "νικος παπαδοπουλος"],
        ),
        ("Ἀθηνᾶ", &["αθηνα", "ΑΘΗΝΑ"]),
        (
            "Фёдор Достоевский",
            &["федор достоевский", "ФЕДОР ДОСТОЕВСКИЙ"],
        ),
        ("王 小明", &["王\u{3000}小明", " 王  小明 "]),
        ("李小龍", &["李小龍"]),
        ("ガンダム", &["ｶﾞﾝﾀﾞﾑ"]),
        ("مُحَمَّد", &["محمد"]),
        ("ＭＡＲＩＡ", &["maria", "Maria"]),
    ];
    let mut added = Vec::new();
    for (i, (name, _)) in cases.iter().enumerate() {
        let entry = add(&rpc, name, &us(i as u32), "").await.unwrap();
        assert_eq!(entry.name, *name, "stored as given");
        added.push(entry);
    }
    for ((name, spellings), entry) in cases.iter().zip(&added) {
        assert_eq!(
            lookup(&rpc, name).await.unwrap(),
            vec![entry.clone()],
            "{name}"
        );
        for spelling in spellings.iter() {
            let found = lookup(&rpc, spelling).await.unwrap();
            assert_eq!(found, vec![entry.clone()], "{spelling:?} finds {name:?}");
        }
    }
    assert!(
        lookup(&rpc, "zoe").await.unwrap().is_empty(),
        "whole names only"
    );
    assert!(lookup(&rpc, "Zoë Ångström Jr").await.unwrap().is_empty());
    // The same name spelt otherwise with the same number is the same entry.
    let status = expect_code(
        add(&rpc, "ZOE ANGSTROM", &us(0), "").await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains(&added[0].id), "{status:?}");
}

/// Devanagari (like the other Indic scripts) writes most vowels as combining vowel signs: they
/// are letters of the name, not accents. मीना (Meena) and मोना (Mona) are two names.
#[tokio::test]
async fn lookup_tells_apart_names_that_differ_only_in_indic_vowel_signs() {
    let (_dir, _server, rpc) = phonebook().await;
    let meena = add(&rpc, "मीना", &us(1), "").await.unwrap();
    let mona = add(&rpc, "मोना", &us(2), "").await.unwrap();
    assert_eq!(
        lookup(&rpc, "मीना").await.unwrap(),
        vec![meena.clone()],
        "Lookup(मीना) must not find मोना"
    );
    assert_eq!(lookup(&rpc, "मोना").await.unwrap(), vec![mona]);
    // Two people sharing one home number are two entries, not a duplicate.
    let home = add(&rpc, "मोना", &us(1), "home").await;
    assert!(home.is_ok(), "मोना may share मीना's number: {home:?}");
}

async fn a_name_that_looks_like_sql_is_stored_and_found_as_plain_data(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let other = add(&rpc, "Alice", &us(1), "").await.unwrap();
    let sql = "Robert'); DROP TABLE entries;--";
    let bobby = add(&rpc, sql, &us(2), "'; DELETE FROM entries; --")
        .await
        .unwrap();
    assert_eq!(bobby.name, sql);
    assert_eq!(bobby.label, "'; DELETE FROM entries; --");
    assert_eq!(get(&rpc, &bobby.id).await.unwrap(), bobby);
    assert_eq!(lookup(&rpc, sql).await.unwrap(), vec![bobby.clone()]);
    assert_eq!(
        lookup(&rpc, "ROBERT'); drop table ENTRIES;--")
            .await
            .unwrap(),
        vec![bobby.clone()]
    );
    let found = search(&rpc, "drop table", 10, "").await.unwrap();
    assert_eq!(found.entries, vec![bobby.clone()]);
    let quote = search(&rpc, "'", 10, "").await.unwrap();
    assert_eq!(quote.entries, vec![bobby.clone()]);
    // Quotes, backslashes and escape-like text are data too, one by one and in a batch.
    let tricky = [
        r#"Dwayne "The Rock" Johnson"#,
        r"C:\Users\ada \u0041 \n",
        "Ada 👩🏽‍💻 𝒜𝒹𝒶",
        r#"{"name": "injected"}"#,
    ];
    let one = add(&rpc, tricky[0], &us(3), r#"say "hi""#).await.unwrap();
    assert_eq!(
        (one.name.as_str(), one.label.as_str()),
        (tricky[0], r#"say "hi""#)
    );
    let requests = tricky[1..]
        .iter()
        .enumerate()
        .map(|(i, name)| request(name, &us(4 + i as u32), r"\ tricky"))
        .collect();
    let many = batch_added(&rpc, requests).await;
    assert_eq!(names(&many), tricky[1..]);
    for entry in std::iter::once(&one).chain(&many) {
        assert_eq!(get(&rpc, &entry.id).await.unwrap(), *entry);
        let found = lookup(&rpc, &entry.name).await.unwrap();
        assert_eq!(found, vec![entry.clone()]);
    }
    assert_eq!(
        export(&rpc).await,
        [vec![other, bobby, one], many].concat(),
        "the table is still there"
    );
}

async fn search_treats_percent_underscore_and_backslash_literally(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let percent = add(&rpc, "100% Pure", &us(1), "").await.unwrap();
    let underscore = add(&rpc, "Snake_Case", &us(2), "").await.unwrap();
    let backslash = add(&rpc, r"Back\Slash", &us(3), "").await.unwrap();
    add(&rpc, "Plain Name", &us(4), "").await.unwrap();
    let found = |query: &'static str| {
        let rpc = rpc.clone();
        async move { search(&rpc, query, 10, "").await.unwrap().entries }
    };
    assert_eq!(found("%").await, vec![percent]);
    assert_eq!(found("_").await, vec![underscore]);
    assert_eq!(found(r"\").await, vec![backslash]);
    assert!(found("%%").await.is_empty());
}

// ----- search -----

async fn search_lists_prefix_matches_first_then_the_rest_each_in_name_order(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    for (i, name) in [
        "Anna Smith",
        "Smith Jones",
        "Bob Smithers",
        "Carol",
        "smith",
        "Smíth Åberg",
        "Goldsmith",
    ]
    .iter()
    .enumerate()
    {
        add(&rpc, name, &us(i as u32), "").await.unwrap();
    }
    let found = search(&rpc, "SMITH", 100, "").await.unwrap();
    assert_eq!(
        names(&found.entries),
        [
            "smith",
            "Smíth Åberg",
            "Smith Jones",
            "Anna Smith",
            "Bob Smithers",
            "Goldsmith"
        ]
    );
    assert!(found.next_page_token.is_empty());
    let accented = search(&rpc, "smíth å", 100, "").await.unwrap();
    assert_eq!(names(&accented.entries), ["Smíth Åberg"], "accents ignored");
}

/// Names may hold any character but controls, U+10FFFF included: a name that continues the query
/// with it still starts with the query.
#[tokio::test]
async fn search_lists_a_prefix_match_first_whatever_character_follows_the_query() {
    let (_dir, _server, rpc) = phonebook().await;
    let anna = add(&rpc, "Anna Smith", &us(1), "").await.unwrap();
    let last_plane = add(&rpc, "Smith\u{10FFFD}", &us(2), "").await.unwrap();
    let found = search(&rpc, "smith", 10, "").await.unwrap();
    assert_eq!(
        names(&found.entries),
        names(&[last_plane, anna]),
        "\"smith\\u{{10FFFD}}\" starts with \"smith\": a prefix match, listed first"
    );
    // U+10FFFF itself is a noncharacter: never part of a name.
    expect_invalid(add(&rpc, "Smith\u{10FFFF}", &us(3), "").await, "name");
}

async fn search_by_digits_finds_numbers(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let amy = add(&rpc, "Amy Jersey", "+1 201 555 0144", "")
        .await
        .unwrap();
    let bo = add(&rpc, "Bo Capitol", "+1 202 555 0199", "")
        .await
        .unwrap();
    let zed = add(&rpc, "Zed London", "+44 20 7946 0958", "")
        .await
        .unwrap();
    let agent = add(&rpc, "Agent 007", "+1 201 555 0033", "").await.unwrap();
    let found = |query: &'static str| {
        let rpc = rpc.clone();
        async move { search(&rpc, query, 10, "").await.unwrap().entries }
    };
    assert_eq!(found("555 01").await, vec![amy.clone(), bo.clone()]);
    assert_eq!(found("(202) 555-0199").await, vec![bo.clone()]);
    assert_eq!(found("+1 201").await, vec![agent.clone(), amy.clone()]);
    assert_eq!(found("7946").await, vec![zed.clone()]);
    // +44… starts with 44; Amy's number only contains it: the prefix match comes first.
    assert_eq!(found("44").await, vec![zed.clone(), amy.clone()]);
    // Digits in a name are found as text (Agent's number holds no 007).
    assert_eq!(found("007").await, vec![agent.clone()]);
    assert!(found("999 888").await.is_empty());
}

async fn search_pages_walk_every_match_once_while_other_entries_are_added(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let mut requests = Vec::new();
    for i in 0..8u32 {
        requests.push(request(
            &format!("Smith {}", (b'A' + (i * 3 % 8) as u8) as char),
            &us(i),
            "",
        ));
    }
    for i in 0..7u32 {
        requests.push(request(&format!("Goldsmith {i}"), &us(100 + i), ""));
    }
    for i in 0..5u32 {
        requests.push(request(&format!("Jones {i}"), &us(200 + i), ""));
    }
    let added = batch_added(&rpc, requests).await;
    let prefix: Vec<pb::Entry> = in_name_order(added[..8].to_vec());
    let others: Vec<pb::Entry> = in_name_order(added[8..15].to_vec());
    let expected: Vec<String> = ids(&prefix).into_iter().chain(ids(&others)).collect();

    let mut walked = Vec::new();
    let mut token = String::new();
    let mut page_number = 0u32;
    loop {
        let page = search(&rpc, "smith", 2, &token).await.unwrap();
        assert!(page.entries.len() <= 2, "{page:?}");
        walked.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        page_number += 1;
        // Non-matching entries sorting before, among and after the matches.
        for name in ["Aaron", "Smyth", "Smit", "Zed"] {
            add(
                &rpc,
                &format!("{name} {page_number}"),
                &us(300 + page_number),
                "",
            )
            .await
            .unwrap();
        }
    }
    assert_distinct_ids(&walked);
    assert_eq!(
        ids(&walked),
        expected,
        "every match once, prefix matches first"
    );
    assert_eq!(page_number, 7, "15 matches in pages of 2");
    assert_eq!(search_from(&rpc, "SMITH", 1000, "").await, walked);
}

#[tokio::test]
async fn forged_or_foreign_page_tokens_are_invalid_argument() {
    let (_dir, _server, rpc) = phonebook().await;
    let requests = (0..10)
        .map(|i| request(&format!("Smith {i}"), &us(i), ""))
        .collect();
    batch_added(&rpc, requests).await;
    let first = search(&rpc, "smith", 2, "").await.unwrap();
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());
    let second = search(&rpc, "smith", 2, &token).await.unwrap();
    assert_eq!(names(&second.entries), ["Smith 2", "Smith 3"]);
    let same_query = search(&rpc, "  SMITH ", 2, &token).await.unwrap();
    assert_eq!(
        same_query.entries, second.entries,
        "the same query in other case and spacing"
    );

    let list_token = list(&rpc, 2, "").await.unwrap().next_page_token;
    assert!(!list_token.is_empty());
    let random_bytes: Vec<u8> = (0..3)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    let other_dir = tempfile::tempdir().unwrap();
    let other_server = phonebook_server(other_dir.path(), None, &[]).await;
    let other_rpc = client(&other_server).await;
    let requests = (0..10)
        .map(|i| request(&format!("Smith {i}"), &us(i), ""))
        .collect();
    batch_added(&other_rpc, requests).await;
    let other_book = search(&other_rpc, "smith", 2, "")
        .await
        .unwrap()
        .next_page_token;
    assert!(!other_book.is_empty());

    for (what, bad) in [
        ("a flipped character", flip_a_character(&token)),
        ("a truncated token", token[..token.len() - 4].to_owned()),
        ("random base64", base64url(&random_bytes)),
        ("not base64", "not a token!".to_owned()),
        ("a ListEntries token", list_token.clone()),
        ("another phone book's token", other_book),
    ] {
        let result = search(&rpc, "smith", 2, &bad).await;
        assert!(
            matches!(&result, Err(s) if s.code() == Code::InvalidArgument),
            "{what}: {result:?}"
        );
        expect_invalid(result, "page_token");
    }
    let status = expect_invalid(search(&rpc, "jones", 2, &token).await, "page_token");
    // A token for another query is refused like a forged one: the refusal reveals nothing.
    assert_eq!(
        status.message(),
        "page_token: not a page token this service issued for this request"
    );
    let status = expect_invalid(search(&rpc, "smith 1", 2, &token).await, "page_token");
    // A token for another query is refused like a forged one: the refusal reveals nothing.
    assert_eq!(
        status.message(),
        "page_token: not a page token this service issued for this request"
    );
    expect_invalid(list(&rpc, 2, &token).await, "page_token");
    expect_invalid(
        list(&rpc, 2, &flip_a_character(&list_token)).await,
        "page_token",
    );
    // The genuine tokens still work.
    assert_eq!(search(&rpc, "smith", 2, &token).await.unwrap(), second);
    assert_eq!(list(&rpc, 2, &list_token).await.unwrap().entries.len(), 2);
}

async fn page_tokens_still_work_after_a_restart_on_the_same_data_dir(backend: Backend) {
    let dir = Storage::new(backend).await;
    let listen = fixed_address();
    let server = phonebook_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let requests = (0..9)
        .map(|i| request(&format!("Smith {i}"), &us(i), ""))
        .collect();
    let added = batch_added(&rpc, requests).await;
    let search_page = search(&rpc, "smith", 4, "").await.unwrap();
    let list_page = list(&rpc, 4, "").await.unwrap();
    assert!(!search_page.next_page_token.is_empty() && !list_page.next_page_token.is_empty());
    stop(server, libc::SIGKILL).await;

    let server = phonebook_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let searched: Vec<pb::Entry> = search_page
        .entries
        .into_iter()
        .chain(search_from(&rpc, "smith", 4, &search_page.next_page_token).await)
        .collect();
    assert_eq!(
        searched, added,
        "the rest after the restart, no gap, no duplicate"
    );
    let listed: Vec<pb::Entry> = list_page
        .entries
        .into_iter()
        .chain(list_from(&rpc, 4, &list_page.next_page_token).await)
        .collect();
    assert_eq!(
        listed, added,
        "the rest after the restart, no gap, no duplicate"
    );
}

// ----- paging a big book -----

async fn list_entries_pages_through_230_entries_in_name_order_exactly_once(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    // 115 names, each twice (in other case) with another number, added out of name order.
    let requests = (0..230u32)
        .map(|i| {
            let member = if i < 115 { "Member" } else { "MEMBER" };
            request(&format!("{member} {:03}", (i * 97) % 115), &us(i), "")
        })
        .collect();
    let added = batch_added(&rpc, requests).await;
    assert_distinct_ids(&added);
    let expected = in_name_order(added);

    let mut walked = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(&rpc, 7, &token).await.unwrap();
        pages += 1;
        if page.next_page_token.is_empty() {
            assert!(page.entries.len() <= 7, "{page:?}");
            walked.extend(page.entries);
            break;
        }
        assert_eq!(page.entries.len(), 7, "a full page before the last");
        // The same token gives the same page again.
        assert_eq!(list(&rpc, 7, &token).await.unwrap(), page);
        walked.extend(page.entries);
        token = page.next_page_token;
    }
    assert_eq!(pages, 33, "230 entries in pages of 7");
    assert_distinct_ids(&walked);
    assert_eq!(ids(&walked), ids(&expected), "name order, then id");
    assert_eq!(walked, expected);
}

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

// ----- extensions and national numbers -----

async fn an_extension_is_part_of_the_number_and_a_national_search_finds_international_numbers(
    backend: Backend,
) {
    let dir = Storage::new(backend).await;
    let server = phonebook_on(&dir, None, &["--region", "GB"]).await;
    let rpc = client(&server).await;
    let desk = add(&rpc, "Acme", "+44 20 7946 0958 ext. 46", "desk")
        .await
        .unwrap();
    assert_eq!(
        (
            desk.number.as_str(),
            desk.extension.as_str(),
            desk.display_number.as_str()
        ),
        ("+442079460958", "46", "+44 20 7946 0958 x46")
    );
    let other = add(&rpc, "Acme", "020 7946 0958 x47", "").await.unwrap();
    assert_eq!(other.extension, "47", "another extension is another number");
    let plain = add(&rpc, "Acme", "+44 20 7946 0958", "").await.unwrap();
    assert_eq!(plain.extension, "");
    let again = expect_code(
        add(&rpc, "acme", "+44 (20) 7946-0958 ext. 46", "").await,
        Code::AlreadyExists,
    );
    assert!(again.message().contains(&desk.id), "{again:?}");

    let _elsewhere = add(&rpc, "Elsewhere", "+1 201 555 0100", "").await.unwrap();
    let found = search(&rpc, "020 7946", 0, "").await.unwrap();
    let mut ids: Vec<&str> = found.entries.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    let mut acme = vec![desk.id.as_str(), other.id.as_str(), plain.id.as_str()];
    acme.sort();
    assert_eq!(
        ids, acme,
        "the national digits find the GB numbers, and only them"
    );
}
