//! The chat service against a real chat-server: one order per room seen identically by twenty
//! members sending at once, reconnecting with `after_seq` (no gap, no duplicate),
//! `client_message_id` dedup, a subscriber that never reads (it delays no one and later gets every
//! event), transcripts that survive a graceful restart and a kill -9, join and name rules (live
//! names unique ignoring case, freed when a stream ends or a frozen client is caught by HTTP/2
//! keepalive), the idle timeout, limits and bad input naming the field, GetTranscript's events and
//! classic text lines (which a line break in a message must not forge), ListRooms member counts,
//! Sends cut off by their deadline mid-write, SIGTERM ending every stream cleanly, the real grpcurl
//! (Send and a time-bounded streaming Join), and health.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tonic::{Code, transport::Endpoint};
use township_proto::chat::v1::{self as pb, chat_event::Kind};
use township_tests::run;

use crate::support::{
    chat::*,
    grpcurl::json_values,
    process::{CALL_TIMEOUT, EXIT_TIMEOUT, Replicas, assert_serving, stop},
    status::*,
    storage::{Backend, Storage, on_both_backends},
    wait::within,
};

// The service's core, on SQLite and on PostgreSQL alike (on PostgreSQL, the twenty members at
// once are spread over two servers).
on_both_backends!(
    twenty_members_sending_at_once_all_see_the_same_events_in_the_same_order,
    a_member_who_reconnects_with_after_seq_gets_exactly_what_came_after_with_no_gap_or_duplicate,
    a_retried_client_message_id_returns_the_original_seq_and_is_stored_once,
    only_a_member_currently_joined_to_the_room_may_send,
    messages_acknowledged_before_a_graceful_restart_and_a_kill_9_survive_and_seq_continues,
    the_first_join_creates_the_room_at_seq_1_and_an_empty_room_name_means_the_lobby,
    a_live_name_is_taken_ignoring_case_and_free_again_once_its_stream_ends,
    get_transcript_returns_every_event_and_one_classic_line_per_event,
    list_rooms_counts_live_members_up_on_join_and_down_on_leave,
    sigterm_ends_every_member_stream_cleanly_records_server_shutdown_leaves_and_exits_0,
    a_client_message_id_belongs_to_its_sender_and_messages_show_the_name_as_joined,
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

// ----- persistence -----

async fn messages_acknowledged_before_a_graceful_restart_and_a_kill_9_survive_and_seq_continues(
    backend: Backend,
) {
    let storage = Storage::new(backend).await;
    let lease: &[&str] = &["--presence-lease", "1s"];
    let server = chat_on(&storage, lease).await;
    let rpc = connect(&server).await;
    let mut ada = joined(&rpc, "keep", "ada", 0).await;
    for i in 1..=3 {
        let seq = sent(
            &rpc,
            "keep",
            "ada",
            &format!("before stop {i}"),
            &format!("g-{i}"),
        )
        .await;
        assert_eq!(seq, 1 + i);
    }
    let seen = read_through(&mut ada, 4).await;
    assert_consecutive(&seen, 1);
    stop(server, libc::SIGTERM).await;
    read_to_end(&mut ada).await;

    let server = chat_on(&storage, lease).await;
    let rpc = connect(&server).await;
    assert_eq!(
        story(&rpc, "keep").await,
        [
            "ada joined",
            "ada: before stop 1",
            "ada: before stop 2",
            "ada: before stop 3",
            "ada left (server shutdown)",
        ]
    );
    let mut ada = joined(&rpc, "keep", "ada", 4).await;
    let resumed = read_through(&mut ada, 6).await;
    assert_eq!(
        seq_what(&resumed),
        [
            (5, "ada left (server shutdown)".to_owned()),
            (6, "ada joined".to_owned())
        ]
    );
    for i in 1..=3 {
        let seq = sent(
            &rpc,
            "keep",
            "ada",
            &format!("before kill {i}"),
            &format!("k-{i}"),
        )
        .await;
        assert_eq!(seq, 6 + i, "seq continues after the restart");
    }
    read_through(&mut ada, 9).await;
    stop(server, libc::SIGKILL).await;
    drop(ada);

    // On PostgreSQL the killed server's presence lapses, and the next server's look stores
    // ada's Left ("server lost") once it has; until then the name is held.
    let server = chat_on(&storage, lease).await;
    let rpc = connect(&server).await;
    let mut ada = join_when_free(&rpc, "keep", "ada", 9).await;
    let events = transcript(&rpc, "keep").await.events;
    assert_consecutive(&events, 1);
    let mut expected = vec![
        "ada joined",
        "ada: before stop 1",
        "ada: before stop 2",
        "ada: before stop 3",
        "ada left (server shutdown)",
        "ada joined",
        "ada: before kill 1",
        "ada: before kill 2",
        "ada: before kill 3",
    ];
    if backend == Backend::Postgres {
        expected.push("ada left (server lost)");
    }
    expected.push("ada joined");
    assert_eq!(
        events.iter().map(what).collect::<Vec<_>>(),
        expected,
        "every acknowledged message survives the kill -9"
    );

    // The client resumed after the last seq it saw and gets only what is newer.
    let rejoined = expected.len() as u64;
    let retry = sent(&rpc, "keep", "ada", "before kill 2", "k-2").await;
    assert_eq!(
        retry, 8,
        "a retry after the restart returns the original seq"
    );
    let seq = sent(&rpc, "keep", "ada", "after the kill", "a-1").await;
    assert_eq!(seq, rejoined + 1, "seq continues after the kill -9");
    let newer = read_through(&mut ada, seq).await;
    let mut expected_newer: Vec<(u64, String)> = (10..rejoined)
        .map(|seq| (seq, "ada left (server lost)".to_owned()))
        .collect();
    expected_newer.push((rejoined, "ada joined".to_owned()));
    expected_newer.push((seq, "ada: after the kill".to_owned()));
    assert_eq!(seq_what(&newer), expected_newer);
    let listed = room_entry(&rpc, "keep").await;
    assert_eq!((listed.members, listed.last_seq), (1, seq), "{listed:?}");
}

// ----- joining -----

async fn the_first_join_creates_the_room_at_seq_1_and_an_empty_room_name_means_the_lobby(
    backend: Backend,
) {
    let (_dir, _server, rpc) = chat_with(backend, &[]).await;
    assert!(rooms(&rpc).await.is_empty(), "no rooms before any join");

    let mut ada = joined(&rpc, "fresh", "ada", 0).await;
    let first = next_event(&mut ada).await.expect("the Joined event");
    assert_eq!((first.seq, what(&first)), (1, "ada joined".to_owned()));
    assert!(first.time.is_some());
    let mut bob = joined(&rpc, "fresh", "bob", 0).await;
    assert_eq!(
        seq_what(&read_through(&mut bob, 2).await),
        [(1, "ada joined".to_owned()), (2, "bob joined".to_owned())],
        "a later member gets the transcript so far, then its own Joined"
    );
    let live = next_event(&mut ada).await.expect("bob's Joined, live");
    assert_eq!((live.seq, what(&live)), (2, "bob joined".to_owned()));

    let mut cy = joined(&rpc, "", "cy", 0).await;
    let first = next_event(&mut cy).await.expect("the Joined event");
    assert_eq!((first.seq, what(&first)), (1, "cy joined".to_owned()));
    let seq = sent(&rpc, "lobby", "cy", "in the lobby", "").await;
    assert_eq!(seq, 2);
    let seq = sent(&rpc, "", "cy", "still in the lobby", "").await;
    assert_eq!(seq, 3);
    assert_eq!(
        story(&rpc, "").await,
        story(&rpc, "lobby").await,
        "GetTranscript of \"\" is the lobby's"
    );
    let names: Vec<String> = rooms(&rpc).await.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["fresh", "lobby"]);
}

async fn a_live_name_is_taken_ignoring_case_and_free_again_once_its_stream_ends(backend: Backend) {
    let (_dir, server, rpc) = chat_with(backend, &[]).await;
    let ada_rpc = connect(&server).await;
    let ada = joined(&ada_rpc, "names", "ada", 0).await;
    for same in ["ada", "ADA", "Ada", "  ada  "] {
        let status = expect_code(join(&rpc, "names", same, 0).await, Code::AlreadyExists);
        assert!(
            status.message().to_lowercase().contains("\"ada\""),
            "the message names the name: {status:?}"
        );
    }
    // The same name in another room is fine.
    let _elsewhere = joined(&rpc, "other-names", "ADA", 0).await;

    drop(ada); // the client cancels its stream
    let _again = join_when_free(&rpc, "names", "Ada", 0).await;
    assert_eq!(
        story(&rpc, "names").await,
        ["ada joined", "ada left (left)", "Ada joined"],
        "refused joins appended nothing"
    );
}

#[tokio::test]
async fn a_member_whose_client_process_dies_gets_a_left_event_and_its_name_back() {
    let (_dir, server, rpc) = chat(&[]).await;
    let _bob = joined(&rpc, "conn", "bob", 0).await;
    let mut client = grpcurl_chat(&server, r#"{"room": "conn", "name": "ada"}"#, &[], "Join")
        .spawn()
        .expect("grpcurl starts");
    wait_for_event(&rpc, "conn", "ada joined").await;
    wait_for_members(&rpc, "conn", 2).await;
    client.kill().await.expect("kill -9 the client"); // the kernel closes its connection
    wait_for_event(&rpc, "conn", "ada left (left)").await;
    wait_for_members(&rpc, "conn", 1).await;
    let _ada = joined(&rpc, "conn", "ada", 0).await;
    assert_eq!(
        story(&rpc, "conn").await,
        ["bob joined", "ada joined", "ada left (left)", "ada joined"]
    );
}

#[tokio::test]
async fn a_frozen_client_is_noticed_through_keepalive_and_its_name_freed_within_seconds() {
    let (_dir, server, rpc) = chat(&["--keepalive", "1s"]).await;
    // A real client process (grpcurl) joins, then freezes (SIGSTOP): its TCP connection stays
    // open, but it answers no HTTP/2 ping any more.
    let mut frozen = grpcurl_chat(&server, r#"{"room": "ice", "name": "ada"}"#, &[], "Join")
        .spawn()
        .expect("grpcurl starts");
    wait_for_event(&rpc, "ice", "ada joined").await;
    let pid = frozen.id().expect("grpcurl runs") as i32;
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);

    let frozen_at = Instant::now();
    let _ada = join_when_free(&rpc, "ice", "ada", 0).await;
    let freed_after = frozen_at.elapsed();
    let events = story(&rpc, "ice").await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], "ada joined");
    assert!(
        events[1] == "ada left (left)" || events[1] == "ada left (disconnected)",
        "the frozen member left: {events:?}"
    );
    assert_eq!(events[2], "ada joined");
    eprintln!("the frozen client's name was free after {freed_after:?}");
    frozen.kill().await.expect("kill the frozen grpcurl");
}

// ----- idle members -----

#[tokio::test]
async fn a_member_who_sends_nothing_is_let_go_after_the_idle_timeout_and_one_who_keeps_sending_stays()
 {
    let (_dir, server, rpc) = chat(&["--idle-timeout", "2s"]).await;
    let chatty_rpc = connect(&server).await;
    let started = Instant::now();
    let mut quiet = joined(&rpc, "idle", "quiet", 0).await;
    let mut chatty = joined(&chatty_rpc, "idle", "chatty", 0).await;

    // Chatty sends a line every 300 ms until quiet has been let go and five lines are sent (for
    // 60 s at most).
    let quiet_gone = Arc::new(AtomicBool::new(false));
    let talking = tokio::spawn({
        let quiet_gone = Arc::clone(&quiet_gone);
        async move {
            let mut seqs = Vec::new();
            let until = Instant::now() + Duration::from_secs(60);
            let mut i = 0;
            while (!quiet_gone.load(Ordering::SeqCst) || seqs.len() < 5) && Instant::now() < until {
                i += 1;
                seqs.push(
                    sent(
                        &chatty_rpc,
                        "idle",
                        "chatty",
                        &format!("still here {i}"),
                        "",
                    )
                    .await,
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            (chatty_rpc, seqs)
        }
    });

    let seen = within(
        "the idle member's stream",
        SETTLE_TIMEOUT,
        read_to_end(&mut quiet),
    )
    .await;
    let ended_after = started.elapsed();
    assert!(
        ended_after >= Duration::from_secs(2),
        "not let go before the idle timeout: {ended_after:?}"
    );
    assert_eq!(seen.first().map(what).as_deref(), Some("quiet joined"));
    assert_eq!(
        seen.last().map(what).as_deref(),
        Some("quiet left (idle)"),
        "the member is told why its stream ends"
    );
    let left = wait_for_event(&rpc, "idle", "quiet left (idle)").await;
    quiet_gone.store(true, Ordering::SeqCst);
    let (chatty_rpc, seqs) = talking.await.expect("chatty keeps sending");
    assert!(seqs.len() >= 5, "{seqs:?}");

    // Chatty stayed: still joined, still live, never left.
    let last = sent(&chatty_rpc, "idle", "chatty", "and still here", "").await;
    let chatty_saw = read_through(&mut chatty, last).await;
    assert_consecutive(&chatty_saw, 1);
    assert!(chatty_saw.iter().any(|e| e.seq == left.seq));
    let story = story(&rpc, "idle").await;
    assert!(
        !story.iter().any(|e| e.starts_with("chatty left")),
        "{story:?}"
    );
    let lines = transcript(&rpc, "idle").await.text;
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("quiet ") && l.ends_with(": left (idle)")),
        "{lines}"
    );
    expect_code(
        send(&rpc, "idle", "quiet", "am I still here?", "").await,
        Code::FailedPrecondition,
    );
    let _back = joined(&rpc, "idle", "quiet", 0).await;
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

// ----- transcripts and rooms -----

async fn get_transcript_returns_every_event_and_one_classic_line_per_event(backend: Backend) {
    let (_dir, server, rpc) = chat_with(backend, &[]).await;
    let _ada = joined(&rpc, "classic", "ada", 0).await;
    let bob_rpc = connect(&server).await;
    let bob = joined(&bob_rpc, "classic", "Zoë Smith", 0).await;
    sent(&rpc, "classic", "ada", "hello: world", "").await;
    sent(&bob_rpc, "classic", "Zoë Smith", "李 🙂 hi", "").await;
    drop(bob);
    wait_for_event(&rpc, "classic", "Zoë Smith left (left)").await;

    let reply = transcript(&rpc, "classic").await;
    assert_consecutive(&reply.events, 1);
    assert_eq!(
        reply.events.iter().map(what).collect::<Vec<_>>(),
        [
            "ada joined",
            "Zoë Smith joined",
            "ada: hello: world",
            "Zoë Smith: 李 🙂 hi",
            "Zoë Smith left (left)",
        ]
    );
    let mut previous = 0;
    for event in &reply.events {
        let time = event.time.as_ref().expect("a time");
        let ms = time.seconds * 1000 + i64::from(time.nanos) / 1_000_000;
        assert!(ms >= previous, "times never go back: {:?}", reply.events);
        previous = ms;
    }
    let expected: String = reply
        .events
        .iter()
        .map(|e| classic_line(e) + "\n")
        .collect();
    assert_eq!(reply.text, expected);
    let lines: Vec<&str> = reply.text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(
        lines[0].starts_with("ada 20") && lines[0].ends_with("Z: joined"),
        "{lines:?}"
    );
    assert!(lines[2].ends_with("Z: hello: world"), "{lines:?}");
    assert!(
        lines[4].starts_with("Zoë Smith ") && lines[4].ends_with("Z: left"),
        "{lines:?}"
    );

    // A room nobody joined has an empty transcript.
    let empty = transcript(&rpc, "nobody-here").await;
    assert!(
        empty.events.is_empty() && empty.text.is_empty(),
        "{empty:?}"
    );
}

async fn list_rooms_counts_live_members_up_on_join_and_down_on_leave(backend: Backend) {
    let (_dir, server, rpc) = chat_with(backend, &[]).await;
    let ada_rpc = connect(&server).await;
    let ada = joined(&ada_rpc, "count", "ada", 0).await;
    let entry = room_entry(&rpc, "count").await;
    assert_eq!((entry.members, entry.last_seq), (1, 1), "{entry:?}");
    let bob = joined(&rpc, "count", "bob", 0).await;
    let _cy = joined(&rpc, "count", "cy", 0).await;
    let _dee = joined(&rpc, "other", "dee", 0).await;
    let entry = room_entry(&rpc, "count").await;
    assert_eq!((entry.members, entry.last_seq), (3, 3), "{entry:?}");

    drop(bob);
    wait_for_members(&rpc, "count", 2).await;
    drop((ada, ada_rpc)); // ada's client goes away, connection and all
    wait_for_members(&rpc, "count", 1).await;
    let listed = rooms(&rpc).await;
    let summary: Vec<(&str, u32, u64)> = listed
        .iter()
        .map(|r| (r.name.as_str(), r.members, r.last_seq))
        .collect();
    assert_eq!(summary, [("count", 1, 5), ("other", 1, 1)]);
}

// ----- shutdown -----

async fn sigterm_ends_every_member_stream_cleanly_records_server_shutdown_leaves_and_exits_0(
    backend: Backend,
) {
    let storage = Storage::new(backend).await;
    let mut server = chat_on(&storage, &["--shutdown-grace", "10s"]).await;
    let mut members = Vec::new();
    for (room, name) in [("stage", "ada"), ("stage", "bob"), ("wings", "cy")] {
        let rpc = connect(&server).await;
        let mut events = joined(&rpc, room, name, 0).await;
        next_event(&mut events).await.expect("the first event");
        members.push((name, rpc, events));
    }
    let rpc = connect(&server).await;
    sent(&rpc, "stage", "ada", "curtain", "").await;

    server.signal(libc::SIGTERM);
    // Every stream delivers whatever was still on its way, then ends cleanly (status OK, not an
    // error) within the grace period (and some slack for a busy machine).
    within("every stream ending", Duration::from_secs(15), async {
        for (name, _rpc, events) in &mut members {
            let seen = read_to_end(events).await;
            assert_eq!(
                seen.last().map(what),
                Some(format!("{name} left (server shutdown)")),
                "each member is told why its stream ends"
            );
        }
    })
    .await;
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .await
        .expect("the chat-server exits");
    assert_eq!(status.code(), Some(0), "logs:\n{}", server.logs());

    let server = chat_on(&storage, &[]).await;
    let rpc = connect(&server).await;
    let stage = transcript(&rpc, "stage").await;
    let mut stage_story: Vec<String> = stage.events.iter().map(what).collect();
    assert_eq!(
        &stage_story[..3],
        ["ada joined", "bob joined", "ada: curtain"]
    );
    stage_story[3..].sort();
    assert_eq!(
        &stage_story[3..],
        ["ada left (server shutdown)", "bob left (server shutdown)"]
    );
    for name in ["ada", "bob"] {
        assert!(
            stage
                .text
                .lines()
                .any(|l| l.starts_with(&format!("{name} "))
                    && l.ends_with(": left (server shutdown)")),
            "{}",
            stage.text
        );
    }
    assert_eq!(
        story(&rpc, "wings").await,
        ["cy joined", "cy left (server shutdown)"]
    );
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

async fn resuming_after_a_seq_the_room_never_reached_is_refused(backend: Backend) {
    let (_dir, _server, rpc) = chat_with(backend, &[]).await;
    let _ada = joined(&rpc, "resume", "ada", 0).await;
    sent(&rpc, "resume", "ada", "one", "").await;
    expect_invalid_input(join(&rpc, "resume", "bob", 99).await, "after_seq", "99");
    let _bob = joined(&rpc, "resume", "bob", 2).await;
}
