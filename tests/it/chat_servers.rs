//! Chat-servers on one PostgreSQL database, each with a data directory of its own: messages sent
//! through two servers at once to one room take one sequence with no gap and no repeat, which
//! both servers' transcripts show alike; and one client message id sent through both at once is
//! stored once, both sends answering its seq. (Members hear only the members of their own server
//! so far: fan-out across servers, shared names and member tokens are still to come.)

use std::collections::HashSet;

use crate::support::{
    chat::*,
    storage::{Backend, Storage},
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
    let _on_a = joined(&rpc_a, "retry", "ada", 0).await;
    let _on_b = joined(&rpc_b, "retry", "ada", 0).await;
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
    assert_eq!(events.len(), 2 + IDS, "two joins and each message once");
}
