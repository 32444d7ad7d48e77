//! The phone book's entries one RPC at a time: AddEntry normalises the number and sets the etag
//! and times, BatchAddEntries answers every request in order, GetEntry and Lookup (whole names,
//! oldest first), UpdateEntry with or without a mask under etags (a stale one ABORTED, a
//! duplicate ALREADY_EXISTS), and DeleteEntry with or without an etag, ids never reused.

use tonic::Code;
use township_proto::phonebook::v1 as pb;

use crate::support::{
    phonebook::*,
    status::*,
    storage::{Backend, on_both_backends},
};

// On SQLite and on PostgreSQL alike.
on_both_backends!(
    add_entry_normalises_the_number_and_sets_the_etag_and_times,
    batch_add_answers_every_request_in_order,
    get_entry_finds_an_entry_and_refuses_unknown_or_malformed_ids,
    lookup_finds_every_entry_for_a_name_oldest_first,
    update_entry_with_a_mask_changes_only_the_masked_fields,
    update_entry_with_a_stale_etag_is_aborted_and_changes_nothing,
    update_entry_that_would_duplicate_another_entry_is_already_exists,
    delete_entry_with_and_without_an_etag,
);

// ----- adding and reading -----

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

// ----- updating and deleting -----

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
