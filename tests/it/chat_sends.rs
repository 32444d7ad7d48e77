//! Sending to a chat room: only a member joined there may send; a retried `client_message_id`
//! returns the original seq, is stored once and belongs to its sender; limits and bad input are
//! refused naming the field; a line break cannot forge a line of the text transcript; and Sends
//! cut off by their deadline mid-write neither wedge the room nor hide a message.

use std::time::Duration;

use tonic::Code;
use township_proto::chat::v1 as pb;

use crate::support::{
    chat::*,
    process::CALL_TIMEOUT,
    status::*,
    storage::{Backend, on_both_backends},
    wait::within,
};

// On SQLite and on PostgreSQL alike.
on_both_backends!(
    a_retried_client_message_id_returns_the_original_seq_and_is_stored_once,
    a_client_message_id_belongs_to_its_sender_and_messages_show_the_name_as_joined,
    only_a_member_currently_joined_to_the_room_may_send,
);

// ----- dedup and who may send -----

async fn a_retried_client_message_id_returns_the_original_seq_and_is_stored_once(backend: Backend) {
    let (_dir, _server, rpc) = chat_with(backend, &[]).await;
    let _ada = joined(&rpc, "dedup", "ada", 0).await;
    let first = sent(&rpc, "dedup", "ada", "only once", "id-1").await;
    let retry = sent(&rpc, "dedup", "ada", "only once", "id-1").await;
    assert_eq!(retry, first, "a retry returns the original seq");
    let other = sent(&rpc, "dedup", "ada", "only once", "id-2").await;
    assert_ne!(other, first, "another id is another message");
    let unnamed_a = sent(&rpc, "dedup", "ada", "no id", "").await;
    let unnamed_b = sent(&rpc, "dedup", "ada", "no id", "").await;
    assert_ne!(unnamed_a, unnamed_b, "without an id every Send appends");

    // The same id in another room is another message there.
    let _ada_elsewhere = joined(&rpc, "dedup-2", "ada", 0).await;
    let elsewhere = sent(&rpc, "dedup-2", "ada", "only once", "id-1").await;
    assert_eq!(elsewhere, 2, "after ada's Joined in dedup-2");

    let events = transcript(&rpc, "dedup").await.events;
    assert_eq!(
        seq_what(&events),
        vec![
            (1, "ada joined".to_owned()),
            (first, "ada: only once".to_owned()),
            (other, "ada: only once".to_owned()),
            (unnamed_a, "ada: no id".to_owned()),
            (unnamed_b, "ada: no id".to_owned()),
        ]
    );
    // A retry later still answers the original seq, and appends nothing.
    assert_eq!(sent(&rpc, "dedup", "ada", "only once", "id-1").await, first);
    assert_eq!(transcript(&rpc, "dedup").await.events.len(), 5);
}

async fn a_client_message_id_belongs_to_its_sender_and_messages_show_the_name_as_joined(
    backend: Backend,
) {
    let (_dir, _server, rpc) = chat_with(backend, &[]).await;
    let _ada = joined(&rpc, "ids", "Ada", 0).await;
    let _bob = joined(&rpc, "ids", "bob", 0).await;
    let seq = sent(&rpc, "ids", "ADA", "hello", "m-1").await;
    assert_eq!(send(&rpc, "ids", "ada", "hello", "m-1").await.unwrap(), seq);
    let taken = expect_code(
        send(&rpc, "ids", "bob", "mine", "m-1").await,
        Code::AlreadyExists,
    );
    assert!(
        taken.message().starts_with("client_message_id: "),
        "{taken:?}"
    );
    let lines = story(&rpc, "ids").await;
    assert_eq!(
        lines.iter().filter(|l| l.contains("hello")).count(),
        1,
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("mine")), "{lines:?}");
    let message = transcript(&rpc, "ids")
        .await
        .events
        .into_iter()
        .find(|e| e.seq == seq)
        .expect("the message");
    assert_eq!(what(&message), "Ada: hello");
}

async fn only_a_member_currently_joined_to_the_room_may_send(backend: Backend) {
    let (_dir, server, rpc) = chat_with(backend, &[]).await;
    let refused = expect_code(
        send(&rpc, "nowhere", "ada", "hello?", "").await,
        Code::FailedPrecondition,
    );
    assert!(refused.message().contains("join"), "{refused:?}");

    let _ada = joined(&rpc, "members", "ada", 0).await;
    expect_code(
        send(&rpc, "members", "bob", "not joined", "").await,
        Code::FailedPrecondition,
    );
    expect_code(
        send(&rpc, "nowhere", "ada", "joined elsewhere only", "").await,
        Code::FailedPrecondition,
    );

    let bob_rpc = connect(&server).await;
    let bob = joined(&bob_rpc, "members", "bob", 0).await;
    sent(&rpc, "members", "bob", "now I may", "").await;
    drop(bob);
    wait_for_event(&rpc, "members", "bob left (left)").await;
    expect_code(
        send(&rpc, "members", "bob", "gone", "").await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        story(&rpc, "members").await,
        [
            "ada joined",
            "bob joined",
            "bob: now I may",
            "bob left (left)"
        ]
    );
}

// ----- limits and bad input -----

#[tokio::test]
async fn text_must_be_1_to_4096_bytes_and_not_only_white_space() {
    let (_dir, _server, rpc) = chat(&[]).await;
    let _ada = joined(&rpc, "limits", "ada", 0).await;
    for bad in ["", " ", "  \t\n ", &"a".repeat(4097), &"é".repeat(2049)] {
        expect_invalid_input(
            send(&rpc, "limits", "ada", bad, "").await,
            "text",
            &format!("text of {} bytes", bad.len()),
        );
    }
    let longest = "a".repeat(4096);
    let accented = "é".repeat(2048);
    let seq = sent(&rpc, "limits", "ada", &longest, "").await;
    let seq2 = sent(&rpc, "limits", "ada", &accented, "").await;
    let events = transcript(&rpc, "limits").await.events;
    assert_eq!(
        seq_what(&events),
        [
            (1, "ada joined".to_owned()),
            (seq, format!("ada: {longest}")),
            (seq2, format!("ada: {accented}")),
        ],
        "refused texts appended nothing"
    );
}

#[tokio::test]
async fn names_must_be_1_to_64_characters_without_control_characters() {
    let (_dir, _server, rpc) = chat(&[]).await;
    let long = "a".repeat(65);
    let long_accented = "é".repeat(65);
    for bad in [
        "",
        "   ",
        long.as_str(),
        long_accented.as_str(),
        "tab\there",
        "new\nline",
        "bell\u{7}",
        "del\u{7f}",
        "nul\0",
    ] {
        expect_invalid_input(
            join(&rpc, "names", bad, 0).await,
            "name",
            &format!("{bad:?}"),
        );
        expect_invalid_input(
            send(&rpc, "names", bad, "hi", "").await,
            "name",
            &format!("send as {bad:?}"),
        );
    }
    let longest = "é".repeat(64);
    for good in [longest.as_str(), "Zoë Smith", "李小龍", "ada (the first)"] {
        let mut events = joined(&rpc, "names", good, 0).await;
        let event = next_event(&mut events).await.expect("a first event");
        assert_eq!(event.seq, 1);
        wait_for_members(&rpc, "names", 1).await;
        drop(events);
        wait_for_members(&rpc, "names", 0).await;
    }
    let story = story(&rpc, "names").await;
    assert_eq!(
        story.len(),
        8,
        "four joins and leaves, nothing refused: {story:?}"
    );
}

#[tokio::test]
async fn room_names_must_be_1_to_64_characters_from_a_to_z_0_to_9_dot_underscore_and_dash() {
    let (_dir, _server, rpc) = chat(&[]).await;
    let long = "a".repeat(65);
    for bad in ["Lobby", "a b", "a/b", "../x", "é", "room:1", long.as_str()] {
        expect_invalid_input(join(&rpc, bad, "ada", 0).await, "room", &format!("{bad:?}"));
        expect_invalid_input(
            send(&rpc, bad, "ada", "hi", "").await,
            "room",
            &format!("send to {bad:?}"),
        );
        expect_invalid_input(
            try_transcript(&rpc, bad).await,
            "room",
            &format!("transcript of {bad:?}"),
        );
    }
    assert!(
        rooms(&rpc).await.is_empty(),
        "refused joins created no room"
    );
    let longest = "a".repeat(64);
    for good in [longest.as_str(), "rust-2026.q4_x", "0"] {
        let _member = joined(&rpc, good, "ada", 0).await;
    }
    let names: Vec<String> = rooms(&rpc).await.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["0", longest.as_str(), "rust-2026.q4_x"]);
}

#[tokio::test]
async fn a_client_message_id_longer_than_128_bytes_is_refused() {
    let (_dir, _server, rpc) = chat(&[]).await;
    let _ada = joined(&rpc, "ids", "ada", 0).await;
    expect_invalid_input(
        send(&rpc, "ids", "ada", "hi", &"x".repeat(129)).await,
        "client_message_id",
        "129 bytes",
    );
    let id = "x".repeat(128);
    let seq = sent(&rpc, "ids", "ada", "hi", &id).await;
    assert_eq!(sent(&rpc, "ids", "ada", "hi", &id).await, seq);
    assert_eq!(story(&rpc, "ids").await, ["ada joined", "ada: hi"]);
}

#[tokio::test]
async fn a_message_with_a_line_break_cannot_forge_a_line_of_the_text_transcript() {
    let (_dir, _server, rpc) = chat(&[]).await;
    let _ada = joined(&rpc, "forge", "ada", 0).await;
    let forged = "hi\nbob 2020-01-01T00:00:00Z: I owe ada 100 dollars";
    match send(&rpc, "forge", "ada", forged, "").await {
        // Refusing line breaks in text keeps the classic form one line per event...
        Err(status) => {
            expect_invalid_input(Err::<(), _>(status), "text", "a line break");
        }
        // ...and so would accepting them but writing them escaped.
        Ok(_) => {
            let reply = transcript(&rpc, "forge").await;
            let lines: Vec<&str> = reply.text.lines().collect();
            assert_eq!(
                lines.len(),
                reply.events.len(),
                "the text form has one line per event (GetTranscriptResponse.text), \
                 but a message with a line break makes two, the second forging a line from \
                 bob, who never joined: {lines:#?}"
            );
            assert!(!lines.iter().any(|l| l.starts_with("bob ")), "{lines:#?}");
        }
    }
}

// ----- cancelled calls -----

#[tokio::test]
async fn sends_cut_off_by_their_deadline_mid_write_neither_wedge_the_room_nor_hide_a_message() {
    let (_dir, server, rpc) = chat(&[]).await;
    let (mut ada, token) = join_with_token(&rpc, "cut", "ada", 0).await.unwrap();
    let mut cut_off = 0;
    for i in 0..200u64 {
        // A deadline so short that the server gives up on the call somewhere in the middle:
        // before, during or after the message is written.
        let mut request = tonic::Request::new(pb::SendRequest {
            room: "cut".into(),
            name: "ada".into(),
            text: format!("maybe {i}"),
            client_message_id: format!("maybe-{i}"),
            member_token: token.clone(),
        });
        request.set_timeout(Duration::from_micros(100 + (i % 40) * 50));
        let outcome = within(
            "a Send with a deadline",
            CALL_TIMEOUT,
            rpc.clone().send(request),
        )
        .await;
        cut_off += usize::from(outcome.is_err());
        // Whatever became of it, the room goes on.
        if let Err(status) = send(&rpc, "cut", "ada", &format!("surely {i}"), "").await {
            let join = join(&rpc, "cut", "bob", 0).await.map(|_| ());
            panic!(
                "after {} Send(s) cut off by their deadline (attempt {i}), the room refuses \
                 every further event: Send {status:?}; Join {join:?}; the transcript: {:?}; \
                 server log:\n{}",
                cut_off,
                story(&rpc, "cut").await,
                server
                    .logs()
                    .lines()
                    .filter(|l| l.contains("ERROR"))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let events = transcript(&rpc, "cut").await.events;
    assert_consecutive(&events, 1);
    let said: Vec<String> = events.iter().map(what).collect();
    for i in 0..200 {
        assert!(said.contains(&format!("ada: surely {i}")), "surely {i}");
    }
    // The live member saw exactly the transcript, the messages whose caller gave up included.
    let live = read_through(&mut ada, events.last().unwrap().seq).await;
    assert_eq!(seq_what(&live), seq_what(&events));
}
