//! One convention per concern across services, against the real servers: page sizes (AIP-158: 0
//! means 50, negative is INVALID_ARGUMENT naming `page_size`, above 1000 is served as 1000), page
//! tokens (signed, bound to their RPC, query and caller, refused with one message that says
//! nothing more specific), and INVALID_ARGUMENT naming its field with a `BadRequest` detail in
//! every service. The bank's history, which needs a session, follows the same paging; its tests
//! are in `bank.rs`.

use std::{path::Path, time::Duration};

use tempfile::TempDir;
use tokio::task::JoinSet;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;
use township_proto::{
    chat::v1::{self as chat_pb, chat_service_client::ChatServiceClient},
    doctor::v1::{self as doctor_pb, doctor_service_client::DoctorServiceClient},
    phonebook::v1::{self as phonebook_pb, phone_book_service_client::PhoneBookServiceClient},
    time::v1::{self as time_pb, time_service_client::TimeServiceClient},
};
use township_tests::{ServiceProcess, spawn_service};

type Doctor = DoctorServiceClient<Channel>;
type PhoneBook = PhoneBookServiceClient<Channel>;

/// What every service answers for a negative page size.
const PAGE_SIZE_REFUSED: &str = "page_size: must not be negative (0 means the default, 50)";
/// What every service answers for a page token it did not issue for this request.
const PAGE_TOKEN_REFUSED: &str =
    "page_token: not a page token this service issued for this request";
/// The largest page.
const MAX_PAGE: usize = 1000;
/// The page a request for 0 gets.
const DEFAULT_PAGE: usize = 50;
/// The longest any single call may take before the test calls it hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

// ----- servers -----

/// `binary` on `dir`, started as the other integration tests start it.
async fn server_on(binary: &str, dir: &Path) -> ServiceProcess {
    let dir = dir.to_str().expect("a UTF-8 temp path");
    spawn_service(binary, &["--data-dir", dir])
        .await
        .unwrap_or_else(|err| panic!("the {binary} starts: {err:#}"))
}

async fn doctor_on(dir: &Path) -> (ServiceProcess, Doctor) {
    let server = server_on("doctor-server", dir).await;
    let rpc = DoctorServiceClient::new(server.channel().await);
    (server, rpc)
}

async fn phonebook_on(dir: &Path) -> (ServiceProcess, PhoneBook) {
    let server = server_on("phonebook-server", dir).await;
    let rpc = PhoneBookServiceClient::new(server.channel().await);
    (server, rpc)
}

/// Awaits one call, failing the test if it hangs.
async fn within<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .expect("the call answers in time")
        .map(tonic::Response::into_inner)
}

/// Asserts INVALID_ARGUMENT whose message starts with `field: ` and whose `BadRequest` detail
/// names `field`; returns the message.
#[track_caller]
fn invalid_field<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> String {
    let status = result.expect_err("INVALID_ARGUMENT");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "the message names {field}: {status:?}"
    );
    let named = status
        .get_error_details()
        .bad_request()
        .is_some_and(|b| b.field_violations.iter().any(|v| v.field == field));
    assert!(named, "a BadRequest names {field}: {status:?}");
    status.message().to_owned()
}

// ----- doctor -----

async fn history(
    rpc: &Doctor,
    patient: &str,
    page_size: i32,
    page_token: &str,
) -> Result<doctor_pb::GetHistoryResponse, Status> {
    let request = doctor_pb::GetHistoryRequest {
        patient_name: patient.into(),
        page_size,
        page_token: page_token.into(),
    };
    within(rpc.clone().get_history(request)).await
}

/// Gives `patient` `count` exchanges, from `sessions` sessions at once.
async fn exchanges(rpc: &Doctor, patient: &str, count: usize, sessions: usize) {
    let mut talking = JoinSet::new();
    for session in 0..sessions {
        let rpc = rpc.clone();
        let start = doctor_pb::StartSessionRequest {
            patient_name: patient.into(),
        };
        let lines = (session..count).step_by(sessions).collect::<Vec<_>>();
        talking.spawn(async move {
            let session_id = within(rpc.clone().start_session(start))
                .await
                .expect("StartSession")
                .session_id;
            for line in lines {
                let said = doctor_pb::ReplyRequest {
                    session_id: session_id.clone(),
                    text: format!("I dream of line {line}."),
                };
                within(rpc.clone().reply(said)).await.expect("Reply");
            }
        });
    }
    while let Some(done) = talking.join_next().await {
        done.expect("a session talks");
    }
}

#[tokio::test]
async fn a_doctor_history_token_is_refused_for_another_patient() {
    let dir = TempDir::new().unwrap();
    let (_server, rpc) = doctor_on(dir.path()).await;
    exchanges(&rpc, "Ada Lovelace", 3, 1).await;
    exchanges(&rpc, "Bob", 3, 1).await;
    let first = history(&rpc, "Ada Lovelace", 1, "").await.unwrap();
    assert!(!first.next_page_token.is_empty(), "{first:?}");

    let message = invalid_field(
        history(&rpc, "Bob", 1, &first.next_page_token).await,
        "page_token",
    );
    assert_eq!(message, PAGE_TOKEN_REFUSED, "nothing more specific");

    let same_patient = history(&rpc, "  ADA   lovelace ", 1, &first.next_page_token)
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
    let (server, rpc) = doctor_on(dir.path()).await;
    exchanges(&rpc, "Grace", 3, 1).await;
    let all = history(&rpc, "Grace", 0, "").await.unwrap().exchanges;
    let first = history(&rpc, "Grace", 2, "").await.unwrap();
    drop(server);

    let (_server, rpc) = doctor_on(dir.path()).await;
    let rest = history(&rpc, "Grace", 2, &first.next_page_token)
        .await
        .expect("the key is kept in doctor.db");
    assert_eq!(rest.exchanges, all[2..], "no gap, no duplicate");
    assert!(rest.next_page_token.is_empty(), "the last page");
}

// ----- phone book -----

async fn list(
    rpc: &PhoneBook,
    page_size: i32,
    page_token: &str,
) -> Result<phonebook_pb::ListEntriesResponse, Status> {
    let request = phonebook_pb::ListEntriesRequest {
        page_size,
        page_token: page_token.into(),
    };
    within(rpc.clone().list_entries(request)).await
}

async fn search(
    rpc: &PhoneBook,
    query: &str,
    page_size: i32,
    page_token: &str,
) -> Result<phonebook_pb::SearchResponse, Status> {
    let request = phonebook_pb::SearchRequest {
        query: query.into(),
        page_size,
        page_token: page_token.into(),
    };
    within(rpc.clone().search(request)).await
}

/// Adds `count` people named `Person 0000`, `Person 0001`, ... (at most a batch's worth per call).
async fn people(rpc: &PhoneBook, count: usize) {
    let entries: Vec<_> = (0..count)
        .map(|i| phonebook_pb::AddEntryRequest {
            name: format!("Person {i:04}"),
            number: format!("+1 201 555 {i:04}"),
            label: String::new(),
        })
        .collect();
    for batch in entries.chunks(MAX_PAGE) {
        let request = phonebook_pb::BatchAddEntriesRequest {
            requests: batch.to_vec(),
        };
        let added = within(rpc.clone().batch_add_entries(request))
            .await
            .unwrap();
        let all_added = added
            .results
            .iter()
            .all(|r| matches!(r.outcome, Some(phonebook_pb::add_result::Outcome::Entry(_))));
        assert!(all_added, "{added:?}");
    }
}

// ----- every service -----

#[tokio::test]
async fn page_sizes_above_the_maximum_are_coerced_to_it_by_every_service() {
    let doctor_dir = TempDir::new().unwrap();
    let book_dir = TempDir::new().unwrap();
    let (_doctor, doctor) = doctor_on(doctor_dir.path()).await;
    let (_book, book) = phonebook_on(book_dir.path()).await;
    exchanges(&doctor, "Paula", MAX_PAGE + 1, 4).await;
    people(&book, MAX_PAGE + 1).await;

    for size in [MAX_PAGE as i32 + 1, 5000, i32::MAX] {
        let page = history(&doctor, "Paula", size, "").await.unwrap();
        assert_eq!(page.exchanges.len(), MAX_PAGE, "doctor, {size}");
        let rest = history(&doctor, "Paula", size, &page.next_page_token)
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

    let default = history(&doctor, "Paula", 0, "").await.unwrap();
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
    let doctor_dir = TempDir::new().unwrap();
    let book_dir = TempDir::new().unwrap();
    let (_doctor, doctor) = doctor_on(doctor_dir.path()).await;
    let (_book, book) = phonebook_on(book_dir.path()).await;
    for size in [-1, i32::MIN] {
        let answers = [
            invalid_field(history(&doctor, "Paula", size, "").await, "page_size"),
            invalid_field(list(&book, size, "").await, "page_size"),
            invalid_field(search(&book, "person", size, "").await, "page_size"),
        ];
        for answer in answers {
            assert_eq!(answer, PAGE_SIZE_REFUSED, "{size}");
        }
    }
}

#[tokio::test]
async fn forged_truncated_and_foreign_page_tokens_get_the_same_answer_from_every_service() {
    let doctor_dir = TempDir::new().unwrap();
    let book_dir = TempDir::new().unwrap();
    let (_doctor, doctor) = doctor_on(doctor_dir.path()).await;
    let (_book, book) = phonebook_on(book_dir.path()).await;
    exchanges(&doctor, "Ada", 3, 1).await;
    people(&book, 3).await;
    let history_token = history(&doctor, "Ada", 1, "")
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
        answers.push(invalid_field(
            history(&doctor, "Ada", 1, &bad).await,
            "page_token",
        ));
    }
    for bad in [
        truncated(&list_token),
        flipped(&list_token),
        search_token.clone(),
        history_token.clone(),
    ] {
        answers.push(invalid_field(list(&book, 1, &bad).await, "page_token"));
    }
    for (query, bad) in [
        ("person", truncated(&search_token)),
        ("person", flipped(&search_token)),
        ("person", list_token.clone()),
        ("person 1", search_token.clone()),
        ("nobody", search_token.clone()),
    ] {
        answers.push(invalid_field(
            search(&book, query, 1, &bad).await,
            "page_token",
        ));
    }
    for answer in answers {
        assert_eq!(answer, PAGE_TOKEN_REFUSED);
    }
    assert_eq!(
        history(&doctor, "Ada", 1, &history_token)
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
    let doctor_dir = TempDir::new().unwrap();
    let book_dir = TempDir::new().unwrap();
    let chat_dir = TempDir::new().unwrap();
    let (_doctor, doctor) = doctor_on(doctor_dir.path()).await;
    let (_book, book) = phonebook_on(book_dir.path()).await;
    let chat_server = server_on("chat-server", chat_dir.path()).await;
    let chat = ChatServiceClient::new(chat_server.channel().await);
    let time_server = spawn_service("time-server", &[])
        .await
        .expect("the time-server starts");
    let time = TimeServiceClient::new(time_server.channel().await);

    let start = doctor_pb::StartSessionRequest {
        patient_name: "  ".into(),
    };
    invalid_field(
        within(doctor.clone().start_session(start)).await,
        "patient_name",
    );
    let reply = doctor_pb::ReplyRequest {
        session_id: "any".into(),
        text: " ".into(),
    };
    invalid_field(within(doctor.clone().reply(reply)).await, "text");

    let add = phonebook_pb::AddEntryRequest {
        name: "Ada".into(),
        number: "12".into(),
        label: String::new(),
    };
    invalid_field(within(book.clone().add_entry(add)).await, "number");
    let get = phonebook_pb::GetEntryRequest { id: "01".into() };
    invalid_field(within(book.clone().get_entry(get)).await, "id");

    let send = chat_pb::SendRequest {
        room: "Not A Room".into(),
        name: "Ada".into(),
        text: "hi".into(),
        client_message_id: String::new(),
    };
    invalid_field(within(chat.clone().send(send)).await, "room");
    let transcript = chat_pb::GetTranscriptRequest {
        room: "../etc".into(),
    };
    invalid_field(
        within(chat.clone().get_transcript(transcript)).await,
        "room",
    );

    let ask = time_pb::GetTimeRequest {
        time_zone: "Mars/Olympus".into(),
    };
    invalid_field(within(time.clone().get_time(ask)).await, "time_zone");
    let watch = time_pb::WatchTimeRequest {
        interval: Some(prost_types::Duration {
            seconds: 0,
            nanos: 1,
        }),
        time_zone: String::new(),
    };
    invalid_field(within(time.clone().watch_time(watch)).await, "interval");
}
