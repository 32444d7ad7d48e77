//! Chat-servers on one PostgreSQL database, each with a data directory of its own: messages sent
//! through two servers at once to one room take one sequence with no gap and no repeat, which
//! both servers' transcripts show alike; one client message id sent through both at once is
//! stored once, both sends answering its seq; a live name is taken on every server, and a member
//! sends through any server with its token and nobody else can; when one of three servers is
//! killed, each of its members gets exactly one Left ("server lost"), its names are freed, and
//! its members resume on another server missing nothing; a server frozen past its lease is
//! declared lost the same way, and once it runs again its members' streams end, so their
//! clients join again; and a PostgreSQL restart mid-stream
//! loses nothing acknowledged, and every member, on either server, catches up. (Twenty members
//! on two servers hearing each other: `chat.rs`.)

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use tonic::Code;
use township_references::PostgresSetup;

use crate::support::{
    chat::*,
    process::stop,
    status::expect_code,
    storage::{Backend, Cluster, Storage},
};

/// Two chat-servers on one fresh PostgreSQL database, and a client of each (keep the storage as
/// long as the servers).
async fn two_servers() -> (Vec<Storage>, Vec<township_tests::ServiceProcess>, Rpc, Rpc) {
    let first = Storage::new(Backend::Postgres).await;
    let second = first.replica();
    let a = chat_on(&first, &[]).await;
    let b = chat_on(&second, &[]).await;
    let (rpc_a, rpc_b) = (connect(&a).await, connect(&b).await);
    (vec![first, second], vec![a, b], rpc_a, rpc_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_sent_through_two_servers_at_once_take_one_room_sequence_with_no_gap() {
    const EACH: usize = 40;
    let (_storage, _servers, rpc_a, rpc_b) = two_servers().await;
    let _ada = joined(&rpc_a, "shared", "ada", 0).await;
    let _bob = joined(&rpc_b, "shared", "bob", 0).await;
    let sending = |rpc: Rpc, name: &'static str| async move {
        let mut seqs = Vec::new();
        for i in 0..EACH {
            let text = format!("{name} {i}");
            seqs.push(sent(&rpc, "shared", name, &text, &format!("{name}-{i}")).await);
        }
        seqs
    };
    let (ada_seqs, bob_seqs) =
        tokio::join!(sending(rpc_a.clone(), "ada"), sending(rpc_b.clone(), "bob"));
    for seqs in [&ada_seqs, &bob_seqs] {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "in send order: {seqs:?}"
        );
    }
    let all: HashSet<u64> = ada_seqs.iter().chain(&bob_seqs).copied().collect();
    assert_eq!(all.len(), 2 * EACH, "no seq given twice");

    let through_a = transcript(&rpc_a, "shared").await.events;
    let through_b = transcript(&rpc_b, "shared").await.events;
    assert_consecutive(&through_a, 1);
    assert_eq!(
        through_a.len(),
        2 + 2 * EACH,
        "two joins and every message, once"
    );
    assert_eq!(seq_what(&through_a), seq_what(&through_b));
    for (name, seqs) in [("ada", &ada_seqs), ("bob", &bob_seqs)] {
        for (i, seq) in seqs.iter().enumerate() {
            let event = &through_a[usize::try_from(*seq).unwrap() - 1];
            assert_eq!(what(event), format!("{name}: {name} {i}"));
        }
    }
    let listed = room_entry(&rpc_b, "shared").await;
    assert_eq!(listed.last_seq, 2 + 2 * EACH as u64, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_message_id_sent_through_two_servers_at_once_is_stored_once() {
    const IDS: usize = 20;
    let (_storage, _servers, rpc_a, rpc_b) = two_servers().await;
    // ada joins through one server and sends through both, her member token good on either.
    let _ada = joined(&rpc_a, "retry", "ada", 0).await;
    for i in 0..IDS {
        let (text, id) = (format!("once {i}"), format!("once-{i}"));
        let (through_a, through_b) = tokio::join!(
            send(&rpc_a, "retry", "ada", &text, &id),
            send(&rpc_b, "retry", "ada", &text, &id)
        );
        let (through_a, through_b) = (through_a.unwrap(), through_b.unwrap());
        assert_eq!(
            through_a, through_b,
            "{id}: both sends answer the stored seq"
        );
    }
    let events = transcript(&rpc_a, "retry").await.events;
    assert_consecutive(&events, 1);
    assert_eq!(events.len(), 1 + IDS, "her Joined and each message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgresql_restart_mid_stream_loses_nothing_acknowledged_and_every_member_catches_up() {
    let cluster = Cluster::start_with(PostgresSetup::default()).await;
    let first = Storage::on(&cluster).await;
    let second = first.replica();
    let (a, b) = (chat_on(&first, &[]).await, chat_on(&second, &[]).await);
    let (rpc_a, rpc_b) = (connect(&a).await, connect(&b).await);
    let mut ada = joined(&rpc_a, "steady", "ada", 0).await;
    let mut bob = joined(&rpc_b, "steady", "bob", 0).await;
    let mut acknowledged = Vec::new();
    for i in 0..3 {
        let text = format!("before {i}");
        let seq = sent(&rpc_a, "steady", "ada", &text, &format!("before-{i}")).await;
        acknowledged.push((seq, format!("ada: {text}")));
    }

    cluster.restart_immediately().await;
    // Sends retried with their ids until the servers reach the database again.
    for i in 0..3 {
        for (rpc, name) in [(&rpc_a, "ada"), (&rpc_b, "bob")] {
            let text = format!("after {i}");
            let seq = sent_once_reachable(rpc, name, &text, &format!("{name}-after-{i}")).await;
            acknowledged.push((seq, format!("{name}: {text}")));
        }
    }

    let last = acknowledged.iter().map(|(seq, _)| *seq).max().unwrap();
    let through_a = read_through(&mut ada, last).await;
    let through_b = read_through(&mut bob, last).await;
    assert_consecutive(&through_a, 1);
    assert_eq!(
        seq_what(&through_a),
        seq_what(&through_b),
        "both members see the same events"
    );
    let seen: Vec<(u64, String)> = seq_what(&through_a);
    for event in &acknowledged {
        assert!(seen.contains(event), "acknowledged {event:?} was delivered");
    }
    let stored = seq_what(&transcript(&rpc_b, "steady").await.events);
    for event in &acknowledged {
        let times = stored.iter().filter(|stored| stored.1 == event.1).count();
        assert_eq!(times, 1, "{event:?} is stored once");
    }
}

/// Send, retried with the same id while the chat answers UNAVAILABLE (its database is coming
/// back), for at most a minute: the message's seq.
async fn sent_once_reachable(rpc: &Rpc, name: &str, text: &str, id: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match send(rpc, "steady", name, text, id).await {
            Ok(seq) => return seq,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("{name}'s {id}: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_name_is_taken_on_every_server_and_its_member_sends_through_any_of_them() {
    let (_storage, _servers, rpc_a, rpc_b) = two_servers().await;
    let (ada, ada_token) = join_with_token(&rpc_a, "town", "ada", 0).await.unwrap();
    expect_code(join(&rpc_b, "town", "ADA", 0).await, Code::AlreadyExists);
    assert_eq!(
        room_entry(&rpc_b, "town").await.members,
        1,
        "counted on every server"
    );

    // Her token is good on the other server; nobody else's is, and a name with no live Join
    // cannot send at all.
    let seq = send_with_token(&rpc_b, "town", "ada", &ada_token, "through b", "b-1").await;
    assert_eq!(seq.unwrap(), 2);
    let (_mallory, mallory_token) = join_with_token(&rpc_b, "town", "mallory", 0).await.unwrap();
    for stolen in ["not-a-token", mallory_token.as_str()] {
        expect_code(
            send_with_token(&rpc_b, "town", "ada", stolen, "it is me, ada", "").await,
            Code::PermissionDenied,
        );
    }
    expect_code(
        send_with_token(&rpc_a, "town", "nobody", &ada_token, "hello", "").await,
        Code::FailedPrecondition,
    );
    let mut ada = ada;
    let seen = read_through(&mut ada, 3).await;
    assert_eq!(
        seq_what(&seen),
        [
            (1, "ada joined".to_owned()),
            (2, "ada: through b".to_owned()),
            (3, "mallory joined".to_owned())
        ]
    );

    // Her stream ends: the name is free on every server, and her old token is good nowhere.
    drop(ada);
    let (_again, _) = join_when_free_with_token(&rpc_b, "town", "ada").await;
    expect_code(
        send_with_token(&rpc_a, "town", "ada", &ada_token, "stale", "").await,
        Code::PermissionDenied,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_one_of_three_servers_is_killed_its_members_get_one_left_each_and_resume_elsewhere() {
    let lease: &[&str] = &["--presence-lease", "1s"];
    let first = Storage::new(Backend::Postgres).await;
    let storage = [first.replica(), first.replica(), first];
    let doomed = chat_on(&storage[0], lease).await;
    let b = chat_on(&storage[1], lease).await;
    let c = chat_on(&storage[2], lease).await;
    let (rpc_doomed, rpc_b, rpc_c) = (connect(&doomed).await, connect(&b).await, connect(&c).await);
    let mut on_doomed = Vec::new();
    for name in ["ann", "abe"] {
        on_doomed.push((name, joined(&rpc_doomed, "crash", name, 0).await));
    }
    let mut bea = joined(&rpc_b, "crash", "bea", 0).await;
    for i in 0..3 {
        sent(
            &rpc_c,
            "crash",
            "bea",
            &format!("before {i}"),
            &format!("before-{i}"),
        )
        .await;
    }
    // Each member of the doomed server has seen everything so far (seq 6).
    let mut last_seen = Vec::new();
    for (name, events) in &mut on_doomed {
        let seen = read_through(events, 6).await;
        last_seen.push((*name, seen.last().unwrap().seq));
    }

    stop(doomed, libc::SIGKILL).await;
    drop(on_doomed);
    for i in 0..3 {
        sent(
            &rpc_b,
            "crash",
            "bea",
            &format!("meanwhile {i}"),
            &format!("meanwhile-{i}"),
        )
        .await;
    }
    // Their names come free (their Lefts stored) within the lease and a look, on a survivor.
    let mut resumed = Vec::new();
    for (name, last) in last_seen {
        resumed.push((
            name,
            last,
            join_when_free(&rpc_c, "crash", name, last).await,
        ));
    }
    let events = transcript(&rpc_b, "crash").await.events;
    assert_consecutive(&events, 1);
    for name in ["ann", "abe"] {
        let lefts = events
            .iter()
            .filter(|e| what(e) == format!("{name} left (server lost)"))
            .count();
        assert_eq!(
            lefts, 1,
            "{name}: one Left, though two servers survive to notice"
        );
    }
    // Resumed with after_seq, each misses nothing: every event after the last one it saw.
    let last = events.last().unwrap().seq;
    for (name, after, mut stream) in resumed {
        let got = read_through(&mut stream, last).await;
        let expected = &events[usize::try_from(after).unwrap()..];
        assert_eq!(
            seq_what(&got),
            seq_what(expected),
            "{name} resumed after {after}"
        );
    }
    // And the member of a survivor saw it all, live.
    let live = read_through(&mut bea, last).await;
    assert_eq!(seq_what(&live), seq_what(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_frozen_past_its_lease_is_declared_lost_and_then_ends_its_members_streams() {
    let lease: &[&str] = &["--presence-lease", "1s"];
    let first = Storage::new(Backend::Postgres).await;
    let second = first.replica();
    let frozen = chat_on(&first, lease).await;
    let b = chat_on(&second, lease).await;
    let (rpc_frozen, rpc_b) = (connect(&frozen).await, connect(&b).await);
    let mut ada = joined(&rpc_frozen, "ice", "ada", 0).await;
    let _bob = joined(&rpc_b, "ice", "bob", 0).await;

    frozen.signal(libc::SIGSTOP);
    wait_for_event(&rpc_b, "ice", "ada left (server lost)").await;
    let _ada_again = join_when_free(&rpc_b, "ice", "ada", 0).await;
    frozen.signal(libc::SIGCONT);

    // Back, the frozen server finds itself declared lost: ada's old stream ends (her client
    // joins again), and the server serves new Joins as before.
    let rest = read_to_end(&mut ada).await;
    assert!(
        rest.iter().all(|e| e.seq <= 4),
        "nothing after the Lefts and Joins it could know of: {:?}",
        seq_what(&rest)
    );
    let _cy = joined(&rpc_frozen, "ice", "cy", 0).await;
    assert_eq!(
        room_entry(&rpc_b, "ice").await.members,
        3,
        "bob, ada again and cy"
    );
}
