//! The chat service against a real chat-server: one order per room seen identically by twenty
//! members sending at once, reconnecting with `after_seq` (no gap, no duplicate; a seq the room
//! never reached refused), a subscriber that never reads (it delays no one and later gets every
//! event), the real grpcurl (Send and a time-bounded streaming Join), and health.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tonic::transport::Endpoint;
use township_proto::chat::v1::chat_event::Kind;
use township_tests::run;

use crate::support::{
    chat::*,
    grpcurl::json_values,
    process::{Replicas, assert_serving},
    status::*,
    storage::{Backend, on_both_backends},
    wait::within,
};

// The service's core, on SQLite and on PostgreSQL alike (on PostgreSQL, the twenty members at
// once are spread over two servers).
on_both_backends!(
    twenty_members_sending_at_once_all_see_the_same_events_in_the_same_order,
    a_member_who_reconnects_with_after_seq_gets_exactly_what_came_after_with_no_gap_or_duplicate,
    resuming_after_a_seq_the_room_never_reached_is_refused,
);

// ----- ordering -----

async fn twenty_members_sending_at_once_all_see_the_same_events_in_the_same_order(
    backend: Backend,
) {
    const MEMBERS: usize = 20;
    const EACH: usize = 10;
    const TOTAL: u64 = (MEMBERS + MEMBERS * EACH) as u64; // 20 joins, 200 messages
    // On PostgreSQL two servers on one database, the members alternating between them: each
    // hears the others' messages through the database.
    let servers = Replicas::start("chat-server", backend, &[]).await;
    let rpc = connect(servers.server(0)).await;

    let mut members = JoinSet::new();
    for m in 0..MEMBERS {
        // Each member has its own connection, joins and sends at once, while the others are
        // still joining or sending. Even members join from seq 0 (the whole transcript), odd ones
        // after the room's latest seq when they join (from about their own Joined on).
        let rpc = connect(servers.server(m / 2)).await;
        members.spawn(async move {
            let name = format!("member-{m:02}");
            let after = if m % 2 == 0 {
                0
            } else {
                let listed = rooms(&rpc).await;
                listed
                    .iter()
                    .find(|r| r.name == "order")
                    .map_or(0, |r| r.last_seq)
            };
            let mut events = joined(&rpc, "order", &name, after).await;
            let reader = tokio::spawn(async move {
                let read = read_through(&mut events, TOTAL).await;
                (read, events)
            });
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let text = format!("message {i} from {name}");
                seqs.push((text.clone(), sent(&rpc, "order", &name, &text, "").await));
            }
            // Keep the stream open until every member is done: a Left would add events.
            let (read, events) = reader.await.expect("the reader");
            (name, after, seqs, read, events)
        });
    }
    let mut results = Vec::new();
    while let Some(result) =
        within("all members", Duration::from_secs(180), members.join_next()).await
    {
        results.push(result.expect("a member"));
    }
    assert_eq!(results.len(), MEMBERS);

    let (first, _, _, reference, _) = results
        .iter()
        .find(|(_, after, ..)| *after == 0)
        .expect("a member who read everything");
    let reference = reference.clone();
    assert_eq!(reference.len() as u64, TOTAL, "{:?}", seq_what(&reference));
    assert_consecutive(&reference, 1);
    for (name, after, _, read, _) in &results {
        let overlap = &reference[*after as usize..];
        assert_eq!(
            seq_what(read),
            seq_what(overlap),
            "{name} (after seq {after}) saw the same events in the same order as {first}"
        );
        assert_eq!(read, overlap, "{name}: identical events, times included");
        assert!(
            read.iter().any(|e| what(e) == format!("{name} joined")),
            "{name} saw its own Joined"
        );
    }

    // Every message exactly once, at the seq its Send returned; every join exactly once.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for event in &reference {
        *counts.entry(what(event)).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let messages = reference
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::Message(_))))
        .count();
    assert_eq!(messages, MEMBERS * EACH);
    for (name, _, seqs, _, _) in &results {
        assert!(counts.contains_key(&format!("{name} joined")), "{name}");
        for (text, seq) in seqs {
            let event = &reference[*seq as usize - 1];
            assert_eq!(what(event), format!("{name}: {text}"), "seq {seq}");
        }
        assert!(
            seqs.windows(2).all(|w| w[0].1 < w[1].1),
            "{name}'s messages keep its order: {seqs:?}"
        );
    }

    let stored = transcript(&rpc, "order").await.events;
    assert_eq!(
        &stored[..TOTAL as usize],
        &reference[..],
        "the transcript is what everyone saw"
    );
}

// ----- reconnecting -----

async fn a_member_who_reconnects_with_after_seq_gets_exactly_what_came_after_with_no_gap_or_duplicate(
    backend: Backend,
) {
    let (_dir, server, rpc) = chat_with(backend, &[]).await;
    let ada_rpc = connect(&server).await;
    let mut ada = joined(&ada_rpc, "resume", "ada", 0).await;
    let _bob = joined(&rpc, "resume", "bob", 0).await;
    for i in 1..=10 {
        sent(&rpc, "resume", "bob", &format!("first {i}"), "").await;
    }
    // Ada reads only part of what was sent (more is on its way in buffers), then goes away.
    let seen = read_through(&mut ada, 6).await;
    assert_consecutive(&seen, 1);
    let last_seen = seen.last().unwrap().seq;
    drop(ada);
    drop(ada_rpc);
    for i in 1..=10 {
        sent(&rpc, "resume", "bob", &format!("while away {i}"), "").await;
    }

    // A new connection, resuming after the last seq shown.
    let ada_rpc = connect(&server).await;
    let mut ada = join_when_free(&ada_rpc, "resume", "ada", last_seen).await;
    let mut last = 0;
    for i in 1..=5 {
        last = sent(&rpc, "resume", "bob", &format!("after return {i}"), "").await;
    }
    let resumed = read_through(&mut ada, last).await;
    assert_consecutive(&resumed, last_seen + 1);

    let stored = transcript(&rpc, "resume").await.events;
    assert_eq!(
        seq_what(&resumed),
        seq_what(&stored[last_seen as usize..last as usize]),
        "exactly the events after seq {last_seen}"
    );
    let said: Vec<String> = resumed.iter().map(what).collect();
    for expected in [
        "bob: first 5",
        "bob: first 10",
        "ada left (left)",
        "bob: while away 1",
        "ada joined",
        "bob: after return 5",
    ] {
        assert_eq!(
            said.iter().filter(|s| *s == expected).count(),
            1,
            "{expected:?} exactly once in {said:?}"
        );
    }
    assert!(!said.contains(&"bob: first 4".to_owned()), "{said:?}");
    let left = said.iter().position(|s| s == "ada left (left)").unwrap();
    let rejoined = said.iter().position(|s| s == "ada joined").unwrap();
    assert!(
        left < rejoined,
        "the old membership left before the new one joined: {said:?}"
    );
}

async fn resuming_after_a_seq_the_room_never_reached_is_refused(backend: Backend) {
    let (_dir, _server, rpc) = chat_with(backend, &[]).await;
    let _ada = joined(&rpc, "resume", "ada", 0).await;
    sent(&rpc, "resume", "ada", "one", "").await;
    expect_invalid_input(join(&rpc, "resume", "bob", 99).await, "after_seq", "99");
    let _bob = joined(&rpc, "resume", "bob", 2).await;
}

// ----- a slow subscriber -----

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_delay_the_others_and_later_gets_every_event() {
    const SENDERS: [&str; 3] = ["ada", "bob", "cy"];
    const EACH: usize = 1000;
    const TOTAL: u64 = (1 + SENDERS.len() + SENDERS.len() * EACH) as u64;
    let (_dir, server, rpc) = chat(&[]).await;

    // The sloth's connection has small HTTP/2 windows, so what it does not read soon stops the
    // server's writes to it: 3,000 messages are far more than those windows, the server's stream
    // buffer and its live buffer (1,024 events) together, so it must fall behind and catch up.
    let sloth_rpc = connect_to(
        Endpoint::from_shared(server.uri())
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535),
    )
    .await;
    let mut sloth = joined(&sloth_rpc, "busy", "sloth", 0).await;

    let mut readers = JoinSet::new();
    let mut senders = JoinSet::new();
    let mut rpcs = Vec::new();
    for name in SENDERS {
        let rpc = connect(&server).await;
        let mut events = joined(&rpc, "busy", name, 0).await;
        readers.spawn(async move {
            let read = read_through(&mut events, TOTAL).await;
            (name, read, events)
        });
        rpcs.push((name, rpc));
    }
    let started = Instant::now();
    for (name, rpc) in rpcs {
        senders.spawn(async move {
            for i in 0..EACH {
                let text = format!("{name} {i:04} {}", "x".repeat(200));
                sent(&rpc, "busy", name, &text, "").await;
            }
        });
    }
    within("3,000 sends", Duration::from_secs(300), senders.join_all()).await;
    let sends_done = started.elapsed();

    // The others get everything while the sloth still has not read a single event.
    let mut others = within(
        "the readers who keep up",
        Duration::from_secs(120),
        readers.join_all(),
    )
    .await;
    others.sort_by_key(|(name, _, _)| *name);
    for (name, read, _) in &others {
        assert_eq!(read.len() as u64, TOTAL, "{name}");
        assert_consecutive(read, 1);
    }
    let reference = &others[0].1;
    for (name, read, _) in &others {
        assert_eq!(read, reference, "{name} saw what {} saw", others[0].0);
    }
    eprintln!(
        "sends took {sends_done:?}; the others had everything after {:?}",
        started.elapsed()
    );

    // Now the sloth reads: every event, in order, none missing, none repeated.
    let slow = within(
        "the sloth catching up",
        Duration::from_secs(120),
        read_through(&mut sloth, TOTAL),
    )
    .await;
    assert_consecutive(&slow, 1);
    assert_eq!(slow.len() as u64, TOTAL);
    assert_eq!(
        &slow, reference,
        "the sloth got exactly what the others got"
    );
    let messages: HashSet<String> = slow
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::Message(_))))
        .map(what)
        .collect();
    assert_eq!(messages.len(), SENDERS.len() * EACH, "every message, once");

    // And it is still a live member.
    let last = sent(&rpc, "busy", "sloth", "finally awake", "").await;
    let live = read_through(&mut sloth, last).await;
    assert_eq!(seq_what(&live), [(last, "sloth: finally awake".to_owned())]);
}

// ----- grpcurl -----

#[tokio::test]
async fn grpcurl_sends_a_message_for_a_joined_member_and_a_retry_returns_the_same_seq() {
    let (_dir, server, rpc) = chat(&[]).await;
    let (_ada, token) = join_with_token(&rpc, "curl", "ada", 0).await.unwrap();
    let data = serde_json::json!({
        "room": "curl", "name": "ada", "text": "hello from grpcurl", "client_message_id": "c-1",
        "member_token": token,
    })
    .to_string();
    let data = data.as_str();
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let out = run(
            grpcurl_chat(&server, data, &[], "Send"),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let values = json_values(&out);
        assert_eq!(values.len(), 1, "{out:?}");
        // uint64 is a string in proto3 JSON.
        seqs.push(values[0]["seq"].as_str().expect("a seq").to_owned());
    }
    assert_eq!(seqs, ["2", "2"]);
    assert_eq!(
        story(&rpc, "curl").await,
        ["ada joined", "ada: hello from grpcurl"]
    );

    // Refused, with grpcurl's exit codes (64 + the code): someone not joined
    // (FAILED_PRECONDITION), a Send without a member token (INVALID_ARGUMENT), and someone
    // posting as ada without her token (PERMISSION_DENIED).
    let refusals = [
        (
            r#"{"room": "curl", "name": "eve", "text": "let me in", "member_token": "x"}"#,
            9,
            "FailedPrecondition",
        ),
        (
            r#"{"room": "curl", "name": "ada", "text": "it is me"}"#,
            3,
            "member_token",
        ),
        (
            r#"{"room": "curl", "name": "ada", "text": "it is me", "member_token": "guess"}"#,
            7,
            "PermissionDenied",
        ),
    ];
    for (data, code, named) in refusals {
        let out = run(
            grpcurl_chat(&server, data, &[], "Send"),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(out.code, Some(64 + code), "{out:?}");
        assert!(out.stderr.contains(named), "{out:?}");
    }
    assert_eq!(story(&rpc, "curl").await.len(), 2, "nothing more was said");
}

#[tokio::test]
async fn grpcurl_join_streams_the_transcript_then_live_events_until_its_max_time() {
    let (_dir, server, rpc) = chat(&[]).await;
    let _ada = joined(&rpc, "curl", "ada", 0).await;
    sent(&rpc, "curl", "ada", "said before", "").await;

    let join = grpcurl_chat(
        &server,
        r#"{"room": "curl", "name": "bob"}"#,
        &["-max-time", "3"],
        "Join",
    );
    let watching = tokio::spawn(run(join, Duration::from_secs(30)));
    wait_for_event(&rpc, "curl", "bob joined").await;
    sent(&rpc, "curl", "ada", "said live", "").await;
    let out = watching.await.expect("grpcurl ran");
    // The stream is cut by the client's deadline: DEADLINE_EXCEEDED (64 + 4).
    assert_eq!(out.code, Some(64 + 4), "{out:?}");
    assert!(out.stderr.contains("DeadlineExceeded"), "{out:?}");

    let values = json_values(&out);
    // The Welcome first (seq 0, omitted in proto3 JSON), with the member token.
    assert!(values[0].get("seq").is_none(), "{}", out.stdout);
    assert_eq!(
        values[0]["welcome"]["memberToken"].as_str().map(str::len),
        Some(64),
        "{}",
        out.stdout
    );
    let values = &values[1..];
    let seqs: Vec<&str> = values.iter().map(|v| v["seq"].as_str().unwrap()).collect();
    assert_eq!(seqs, ["1", "2", "3", "4"], "{}", out.stdout);
    assert_eq!(values[0]["joined"]["name"], "ada");
    assert_eq!(values[1]["message"]["from"], "ada");
    assert_eq!(values[1]["message"]["text"], "said before");
    assert_eq!(values[2]["joined"]["name"], "bob");
    assert_eq!(values[3]["message"]["text"], "said live");
    assert!(
        values.iter().all(|v| v["time"].as_str().is_some()),
        "{}",
        out.stdout
    );

    // Its stream ending was a leave like any other.
    wait_for_event(&rpc, "curl", "bob left (left)").await;
}

// ----- health -----

#[tokio::test]
async fn health_reports_the_chat_service_serving() {
    let (_dir, server, _rpc) = chat(&[]).await;
    assert_serving(&server, SERVICE).await;
}
