//! What a chat room keeps: messages acknowledged before a graceful restart and a kill -9 survive
//! and seq continues after them; GetTranscript returns every event and one classic text line per
//! event; and SIGTERM ends every member stream cleanly, records their leaves as "server
//! shutdown", and exits 0.

use std::time::Duration;

use crate::support::{
    chat::*,
    process::{EXIT_TIMEOUT, stop},
    storage::{Backend, Storage, on_both_backends},
    wait::within,
};

// On SQLite and on PostgreSQL alike.
on_both_backends!(
    messages_acknowledged_before_a_graceful_restart_and_a_kill_9_survive_and_seq_continues,
    get_transcript_returns_every_event_and_one_classic_line_per_event,
    sigterm_ends_every_member_stream_cleanly_records_server_shutdown_leaves_and_exits_0,
);

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

// ----- transcripts -----

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
