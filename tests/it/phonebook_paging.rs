//! Reading many phone book entries: Search lists prefix matches first and finds numbers by their
//! digits; page sizes are checked, defaulted and capped; signed page tokens (forged or foreign
//! ones refused, genuine ones still good after a restart) walk every match exactly once;
//! ListEntries pages a large book in name order; and Export is one snapshot of the whole book.

use std::collections::HashSet;

use tokio_stream::StreamExt;
use tonic::{Code, transport::Endpoint};
use township_proto::phonebook::v1::{
    self as pb, phone_book_service_client::PhoneBookServiceClient,
};

use crate::support::{
    phonebook::*,
    process::*,
    status::*,
    storage::{Backend, Storage, on_both_backends},
};

// On SQLite and on PostgreSQL alike.
on_both_backends!(
    search_lists_prefix_matches_first_then_the_rest_each_in_name_order,
    search_by_digits_finds_numbers,
    search_pages_walk_every_match_once_while_other_entries_are_added,
    page_tokens_still_work_after_a_restart_on_the_same_data_dir,
    list_entries_pages_through_230_entries_in_name_order_exactly_once,
    list_entries_and_export_show_the_whole_book,
    export_is_one_snapshot_even_while_the_book_changes,
);

// ----- search -----

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

// ----- page sizes and tokens -----

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

// ----- the whole book -----

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
