//! Joining a chat room: the first join creates it at seq 1 (an empty room name is the lobby); a
//! live name is taken ignoring case and freed when its stream ends, its client process dies, or
//! its frozen client is caught by HTTP/2 keepalive; the idle timeout lets a member who sends
//! nothing go; and ListRooms counts live members up on join and down on leave.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tonic::Code;

use crate::support::{
    chat::*,
    status::*,
    storage::{Backend, on_both_backends},
    wait::within,
};

// On SQLite and on PostgreSQL alike.
on_both_backends!(
    the_first_join_creates_the_room_at_seq_1_and_an_empty_room_name_means_the_lobby,
    a_live_name_is_taken_ignoring_case_and_free_again_once_its_stream_ends,
    list_rooms_counts_live_members_up_on_join_and_down_on_leave,
);

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

// ----- rooms -----

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
