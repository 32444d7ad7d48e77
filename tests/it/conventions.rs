//! One convention per concern across services, against the real servers: page sizes (AIP-158: 0
//! means 50, negative is INVALID_ARGUMENT naming `page_size`, above 1000 is served as 1000), page
//! tokens (signed, bound to their RPC, query and caller, refused with one message that says
//! nothing more specific), and INVALID_ARGUMENT naming its field with a `BadRequest` detail in
//! every service. The bank's history, which needs a session, follows the same paging; its tests
//! are in `bank.rs`.

use tempfile::TempDir;
use township_proto::time::v1 as time_pb;

use crate::support::{
    chat,
    doctor::{self, doctor_server, exchanges, history_page},
    phonebook::{self, list, people, search},
    process::CALL_TIMEOUT,
    status::expect_invalid,
    time::time_server,
    wait::within,
};

/// What every service answers for a negative page size.
const PAGE_SIZE_REFUSED: &str = "page_size: must not be negative (0 means the default, 50)";
/// What every service answers for a page token it did not issue for this request.
const PAGE_TOKEN_REFUSED: &str =
    "page_token: not a page token this service issued for this request";
/// The largest page.
const MAX_PAGE: usize = 1000;
/// The page a request for 0 gets.
const DEFAULT_PAGE: usize = 50;

// ----- chat -----

#[tokio::test]
async fn a_chat_transcript_comes_in_pages_whose_tokens_hold_only_for_their_room() {
    let (_dir, _server, rpc) = chat::chat(&[]).await;
    let _ada = chat::joined(&rpc, "pages", "ada", 0).await;
    for i in 0..120 {
        chat::sent(&rpc, "pages", "ada", &format!("line {i}"), "").await;
    }
    let first = chat::transcript_page(&rpc, "pages", 0, "").await.unwrap();
    assert_eq!(first.events.len(), DEFAULT_PAGE);
    assert_eq!(
        first.text.lines().count(),
        DEFAULT_PAGE,
        "the text is the page's"
    );
    let mut seqs: Vec<u64> = first.events.iter().map(|e| e.seq).collect();
    let mut token = first.next_page_token.clone();
    while !token.is_empty() {
        let page = chat::transcript_page(&rpc, "pages", 0, &token)
            .await
            .unwrap();
        seqs.extend(page.events.iter().map(|e| e.seq));
        token = page.next_page_token;
    }
    assert_eq!(
        seqs,
        (1..=121).collect::<Vec<u64>>(),
        "every event once, in order"
    );

    let _bob = chat::joined(&rpc, "other", "bob", 0).await;
    let refused = expect_invalid(
        chat::transcript_page(&rpc, "other", 0, &first.next_page_token).await,
        "page_token",
    );
    assert_eq!(refused.message(), PAGE_TOKEN_REFUSED);
    let refused = expect_invalid(
        chat::transcript_page(&rpc, "pages", -1, "").await,
        "page_size",
    );
    assert_eq!(refused.message(), PAGE_SIZE_REFUSED);
}

// ----- doctor -----

#[tokio::test]
async fn a_doctor_history_token_is_refused_for_another_patient() {
    let (_dir, _server, rpc) = doctor::doctor(&[]).await;
    exchanges(&rpc, "Ada Lovelace", 3, 1).await;
    exchanges(&rpc, "Bob", 3, 1).await;
    let first = history_page(&rpc, "Ada Lovelace", 1, "").await.unwrap();
    assert!(!first.next_page_token.is_empty(), "{first:?}");

    let message = expect_invalid(
        history_page(&rpc, "Bob", 1, &first.next_page_token).await,
        "page_token",
    )
    .message()
    .to_owned();
    assert_eq!(message, PAGE_TOKEN_REFUSED, "nothing more specific");

    let same_patient = history_page(&rpc, "  ADA   lovelace ", 1, &first.next_page_token)
        .await
        .expect("the same patient, spelled otherwise, continues");
    assert_eq!(same_patient.exchanges.len(), 1);
    assert_ne!(
        same_patient.exchanges[0].patient_text, first.exchanges[0].patient_text,
        "the second page"
    );
}

#[tokio::test]
async fn a_doctor_history_token_still_works_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let server = doctor_server(dir.path(), None, &[]).await;
    let rpc = doctor::client(&server).await;
    exchanges(&rpc, "Grace", 3, 1).await;
    let all = history_page(&rpc, "Grace", 0, "").await.unwrap().exchanges;
    let first = history_page(&rpc, "Grace", 2, "").await.unwrap();
    drop(server);

    let server = doctor_server(dir.path(), None, &[]).await;
    let rpc = doctor::client(&server).await;
    let rest = history_page(&rpc, "Grace", 2, &first.next_page_token)
        .await
        .expect("the key is kept in doctor.db");
    assert_eq!(rest.exchanges, all[2..], "no gap, no duplicate");
    assert!(rest.next_page_token.is_empty(), "the last page");
}

// ----- every service -----

#[tokio::test]
async fn page_sizes_above_the_maximum_are_coerced_to_it_by_every_service() {
    let (_doctor_dir, _doctor, doctor) = doctor::doctor(&[]).await;
    let (_book_dir, _book, book) = phonebook::phonebook().await;
    exchanges(&doctor, "Paula", MAX_PAGE + 1, 4).await;
    people(&book, MAX_PAGE + 1).await;

    for size in [MAX_PAGE as i32 + 1, 5000, i32::MAX] {
        let page = history_page(&doctor, "Paula", size, "").await.unwrap();
        assert_eq!(page.exchanges.len(), MAX_PAGE, "doctor, {size}");
        let rest = history_page(&doctor, "Paula", size, &page.next_page_token)
            .await
            .unwrap();
        assert_eq!(rest.exchanges.len(), 1, "doctor, {size}: the rest");
        assert!(rest.next_page_token.is_empty());

        let page = list(&book, size, "").await.unwrap();
        assert_eq!(page.entries.len(), MAX_PAGE, "ListEntries, {size}");
        let rest = list(&book, size, &page.next_page_token).await.unwrap();
        assert_eq!(rest.entries.len(), 1, "ListEntries, {size}: the rest");

        let page = search(&book, "person", size, "").await.unwrap();
        assert_eq!(page.entries.len(), MAX_PAGE, "Search, {size}");
        let rest = search(&book, "person", size, &page.next_page_token)
            .await
            .unwrap();
        assert_eq!(rest.entries.len(), 1, "Search, {size}: the rest");
    }

    let default = history_page(&doctor, "Paula", 0, "").await.unwrap();
    assert_eq!(default.exchanges.len(), DEFAULT_PAGE, "doctor: 0 means 50");
    let default = list(&book, 0, "").await.unwrap();
    assert_eq!(
        default.entries.len(),
        DEFAULT_PAGE,
        "ListEntries: 0 means 50"
    );
    let default = search(&book, "person", 0, "").await.unwrap();
    assert_eq!(default.entries.len(), DEFAULT_PAGE, "Search: 0 means 50");
}

#[tokio::test]
async fn a_negative_page_size_gets_the_same_answer_from_every_service() {
    let (_doctor_dir, _doctor, doctor) = doctor::doctor(&[]).await;
    let (_book_dir, _book, book) = phonebook::phonebook().await;
    for size in [-1, i32::MIN] {
        let answers = [
            expect_invalid(history_page(&doctor, "Paula", size, "").await, "page_size")
                .message()
                .to_owned(),
            expect_invalid(list(&book, size, "").await, "page_size")
                .message()
                .to_owned(),
            expect_invalid(search(&book, "person", size, "").await, "page_size")
                .message()
                .to_owned(),
        ];
        for answer in answers {
            assert_eq!(answer, PAGE_SIZE_REFUSED, "{size}");
        }
    }
}

#[tokio::test]
async fn forged_truncated_and_foreign_page_tokens_get_the_same_answer_from_every_service() {
    let (_doctor_dir, _doctor, doctor) = doctor::doctor(&[]).await;
    let (_book_dir, _book, book) = phonebook::phonebook().await;
    exchanges(&doctor, "Ada", 3, 1).await;
    people(&book, 3).await;
    let history_token = history_page(&doctor, "Ada", 1, "")
        .await
        .unwrap()
        .next_page_token;
    let list_token = list(&book, 1, "").await.unwrap().next_page_token;
    let search_token = search(&book, "person", 1, "")
        .await
        .unwrap()
        .next_page_token;
    for token in [&history_token, &list_token, &search_token] {
        assert!(!token.is_empty());
    }
    let truncated = |token: &str| token[..token.len() - 3].to_owned();
    let flipped = |token: &str| {
        let mut chars: Vec<char> = token.chars().collect();
        chars[2] = if chars[2] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };

    let mut answers = Vec::new();
    for bad in [
        truncated(&history_token),
        flipped(&history_token),
        "after-1".to_owned(),
        "not a token!".to_owned(),
        list_token.clone(),
    ] {
        answers.push(
            expect_invalid(history_page(&doctor, "Ada", 1, &bad).await, "page_token")
                .message()
                .to_owned(),
        );
    }
    for bad in [
        truncated(&list_token),
        flipped(&list_token),
        search_token.clone(),
        history_token.clone(),
    ] {
        answers.push(
            expect_invalid(list(&book, 1, &bad).await, "page_token")
                .message()
                .to_owned(),
        );
    }
    for (query, bad) in [
        ("person", truncated(&search_token)),
        ("person", flipped(&search_token)),
        ("person", list_token.clone()),
        ("person 1", search_token.clone()),
        ("nobody", search_token.clone()),
    ] {
        answers.push(
            expect_invalid(search(&book, query, 1, &bad).await, "page_token")
                .message()
                .to_owned(),
        );
    }
    for answer in answers {
        assert_eq!(answer, PAGE_TOKEN_REFUSED);
    }
    assert_eq!(
        history_page(&doctor, "Ada", 1, &history_token)
            .await
            .unwrap()
            .exchanges
            .len(),
        1,
        "the genuine token still works"
    );
    assert_eq!(list(&book, 1, &list_token).await.unwrap().entries.len(), 1);
    assert_eq!(
        search(&book, "PERSON", 1, &search_token)
            .await
            .unwrap()
            .entries
            .len(),
        1,
        "the same query in another case"
    );
}

#[tokio::test]
async fn every_service_names_the_invalid_field_with_a_bad_request_detail() {
    let (_doctor_dir, _doctor, doctor) = doctor::doctor(&[]).await;
    let (_book_dir, _book, book) = phonebook::phonebook().await;
    let (_chat_dir, _chat_server, chat) = chat::chat(&[]).await;
    let (_time_server, time) = time_server(&[]).await;

    expect_invalid(doctor::start(&doctor, "  ").await, "patient_name");
    expect_invalid(doctor::reply(&doctor, "any", " ").await, "text");

    expect_invalid(phonebook::add(&book, "Ada", "12", "").await, "number");
    expect_invalid(phonebook::get(&book, "01").await, "id");

    expect_invalid(
        chat::send(&chat, "Not A Room", "Ada", "hi", "").await,
        "room",
    );
    expect_invalid(chat::try_transcript(&chat, "../etc").await, "room");

    let ask = time_pb::GetTimeRequest {
        time_zone: "Mars/Olympus".into(),
    };
    expect_invalid(
        within("GetTime", CALL_TIMEOUT, time.clone().get_time(ask)).await,
        "time_zone",
    );
    let watch = time_pb::WatchTimeRequest {
        interval: Some(prost_types::Duration {
            seconds: 0,
            nanos: 1,
        }),
        time_zone: String::new(),
    };
    expect_invalid(
        within("WatchTime", CALL_TIMEOUT, time.clone().watch_time(watch)).await,
        "interval",
    );
}
