//! The doctor keeps every conversation: every answered exchange and its memories survive a
//! graceful restart and a kill -9 (even one amid concurrent conversations), and a restart in
//! another mode; two simultaneous sessions of one patient lose no line and share one memory
//! queue; and twenty patients at once each get the same replies to the same lines.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::{
    doctor::*,
    process::*,
    storage::{Backend, Storage, on_both_backends},
};

// On SQLite and on PostgreSQL alike (on PostgreSQL, the two sessions of one patient and the
// twenty patients are spread over two replicas).
on_both_backends!(
    the_conversation_survives_a_graceful_restart_and_the_patient_is_greeted_as_returning,
    an_exchange_answered_right_before_kill_9_is_kept_with_its_memory,
    every_answered_exchange_survives_a_kill_9_during_concurrent_conversations,
    two_simultaneous_sessions_of_one_patient_lose_no_line_and_share_one_memory_queue,
    twenty_patients_at_once_each_get_the_same_replies_to_the_same_lines,
);

// ----- persistence -----

async fn the_conversation_survives_a_graceful_restart_and_the_patient_is_greeted_as_returning(
    backend: Backend,
) {
    let dir = Storage::new(backend).await;
    let listen = fixed_address();
    let lines = transcript(DOCTOR_TRANSCRIPT);
    let half = lines.len() / 2;

    let server = doctor_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let first = visit(&rpc, "Sigmund").await;
    replay(&rpc, &first.session_id, &lines[..half]).await;
    stop(server, libc::SIGTERM).await;

    let server = doctor_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    assert_eq!(
        said(&history(&rpc, "Sigmund").await),
        expected_said(&lines[..half]),
        "every answered exchange is kept"
    );
    expect_no_session(
        reply(&rpc, &first.session_id, "Hello.").await,
        &first.session_id,
    );
    let second = visit(&rpc, "SIGMUND").await;
    assert!(second.returning_patient);
    assert_eq!(second.previous_visits, 1);
    replay(&rpc, &second.session_id, &lines[half..]).await;
    assert_eq!(said(&history(&rpc, "sigmund").await), expected_said(&lines));
}

async fn an_exchange_answered_right_before_kill_9_is_kept_with_its_memory(backend: Backend) {
    let dir = Storage::new(backend).await;
    let listen = fixed_address();
    let lines = transcript(DOCTOR_TRANSCRIPT);
    // Exchange 12 lays down a memory that exchange 15 recalls.
    assert_eq!(lines[11].input, "My father drinks too much.");
    assert_eq!(
        lines[14].expected,
        "LET'S TALK MORE ABOUT HOW YOUR FATHER DRINKS TOO MUCH"
    );

    let server = doctor_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let first = visit(&rpc, "Anna O.").await;
    replay(&rpc, &first.session_id, &lines[..12]).await;
    stop(server, libc::SIGKILL).await;

    let server = doctor_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    assert_eq!(
        said(&history(&rpc, "Anna O.").await),
        expected_said(&lines[..12]),
        "every answered exchange is kept"
    );
    let second = visit(&rpc, "anna o.").await;
    assert!(second.returning_patient);
    assert_eq!(second.previous_visits, 1);
    assert!(
        second.greeting.starts_with("ANNA O., WELCOME BACK."),
        "{second:?}"
    );
    // The engine's state and the memory laid down by the last exchange before the kill survive.
    replay(&rpc, &second.session_id, &lines[12..]).await;
}

async fn every_answered_exchange_survives_a_kill_9_during_concurrent_conversations(
    backend: Backend,
) {
    let dir = Storage::new(backend).await;
    let listen = fixed_address();
    let server = doctor_on(&dir, Some(&listen), &[]).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let mut talkers = Vec::new();
    for n in 0..6 {
        let rpc = client(&server).await;
        let answered = answered.clone();
        talkers.push(tokio::spawn(async move {
            let name = format!("Talker {n}");
            let session = visit(&rpc, &name).await;
            let mut acked = Vec::new();
            for i in 0..10_000 {
                let text = format!("Line {i} of talker {n}.");
                match reply(&rpc, &session.session_id, &text).await {
                    Ok(answer) => {
                        acked.push((text, answer.text));
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => break,
                }
            }
            (n, name, acked)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.load(Ordering::SeqCst) < 120 {
        assert!(Instant::now() < deadline, "120 replies within two minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop(server, libc::SIGKILL).await;
    let mut conversations = Vec::new();
    for talker in talkers {
        conversations.push(
            tokio::time::timeout(CALL_TIMEOUT, talker)
                .await
                .expect("the talkers see the kill")
                .unwrap(),
        );
    }

    let server = doctor_on(&dir, Some(&listen), &[]).await;
    let rpc = client(&server).await;
    for (n, name, acked) in conversations {
        let stored = said(&history(&rpc, &name).await);
        assert!(
            stored.len() == acked.len() || stored.len() == acked.len() + 1,
            "{name}: {} answered, {} stored (at most one committed but unanswered)",
            acked.len(),
            stored.len()
        );
        assert_eq!(
            stored[..acked.len()],
            acked[..],
            "{name}: answered, so kept"
        );
        if let Some((extra, _)) = stored.get(acked.len()) {
            assert_eq!(
                *extra,
                format!("Line {} of talker {n}.", acked.len()),
                "only the line in flight"
            );
        }
    }
}

#[tokio::test]
async fn a_patient_keeps_talking_when_the_server_comes_back_in_another_mode() {
    let dir = tempfile::tempdir().unwrap();
    let listen = fixed_address();
    let lines = transcript(DOCTOR_TRANSCRIPT);
    let classic = transcript(CLASSIC_TRANSCRIPT);
    let seed = transcript_seed(CLASSIC_TRANSCRIPT);

    // The 1966 doctor: twelve exchanges; the twelfth leaves a memory in the patient's queue.
    let server = doctor_server(dir.path(), Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let first = visit(&rpc, "Switching Sue").await;
    replay(&rpc, &first.session_id, &lines[..12]).await;
    stop(server, libc::SIGTERM).await;

    // The classic doctor: the saved state is not its own, so it starts afresh (with its seed).
    let server = doctor_server(
        dir.path(),
        Some(&listen),
        &["--mode", "classic", "--seed", &seed],
    )
    .await;
    let rpc = client(&server).await;
    let second = visit(&rpc, "switching sue").await;
    assert!(second.returning_patient);
    assert_eq!(second.previous_visits, 1);
    assert!(second.greeting.contains(", welcome back. "), "{second:?}");
    replay(&rpc, &second.session_id, &classic).await;
    stop(server, libc::SIGTERM).await;

    // The 1966 doctor again: a fresh state (LIMIT 2, 3, 4, ...), but the memory is still queued
    // and comes back on the first input with LIMIT 4 and no keyword.
    let server = doctor_server(dir.path(), Some(&listen), &[]).await;
    let rpc = client(&server).await;
    let third = visit(&rpc, "SWITCHING SUE").await;
    assert_eq!(third.previous_visits, 2);
    say(&rpc, &third.session_id, "Hello.").await;
    say(&rpc, &third.session_id, "I am unhappy.").await;
    assert_eq!(
        say(&rpc, &third.session_id, "The weather is grey today.")
            .await
            .text,
        "LET'S TALK MORE ABOUT HOW YOUR FATHER DRINKS TOO MUCH"
    );

    let stored = history(&rpc, "Switching Sue").await;
    assert_eq!(stored.len(), 12 + classic.len() + 3);
    assert_eq!(said(&stored[..12]), expected_said(&lines[..12]));
    assert_eq!(
        said(&stored[12..12 + classic.len()]),
        expected_said(&classic)
    );
}

// ----- concurrency -----

async fn two_simultaneous_sessions_of_one_patient_lose_no_line_and_share_one_memory_queue(
    backend: Backend,
) {
    let doctors = Replicas::start("doctor-server", backend, &[]).await;
    let rpc = client(doctors.server(0)).await;
    let name = "Dora";
    let a = visit(&rpc, name).await;
    let b = visit(&client(doctors.server(1)).await, "dora").await;
    assert!(b.returning_patient, "a second session counts as a visit");
    assert_eq!(b.previous_visits, 1);

    // Every fourth line lays down a memory (MY, MEMORY's (0 YOUR 2 0)) tagged with its session
    // and number; the others have no keyword, so those that run with LIMIT 4 recall the oldest
    // memory of the patient's one queue, whichever session laid it down.
    let line = |session: &str, i: usize| {
        if i.is_multiple_of(4) {
            format!("My cat {session}{i} purrs.")
        } else {
            format!("It is late.  {session} {i}")
        }
    };
    let mut tasks = Vec::new();
    for (n, (label, session)) in [("A", a.clone()), ("B", b.clone())].into_iter().enumerate() {
        let rpc = client(doctors.server(n)).await;
        tasks.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            for i in 0..30 {
                let text = line(label, i);
                let answer = reply(&rpc, &session.session_id, &text)
                    .await
                    .unwrap_or_else(|status| panic!("{label} {i}: {status:?}"));
                replies.push((text, answer.text));
            }
            replies
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }

    let stored = history(&rpc, name).await;
    assert_eq!(stored.len(), 60, "all 60 lines: {:?}", said(&stored));
    for (session, sent) in [(&a, &replies[0]), (&b, &replies[1])] {
        let texts: HashSet<&String> = sent.iter().map(|(text, _)| text).collect();
        let own: Vec<(String, String)> = stored
            .iter()
            .filter(|e| texts.contains(&e.patient_text))
            .map(|e| (e.patient_text.clone(), e.doctor_text.clone()))
            .collect();
        assert_eq!(&own, sent, "each session's lines, in its own order");
        assert!(!session.session_id.is_empty());
    }

    // Drain the queue from a third session: 4 lines give LIMIT 4 once.
    let c = visit(&rpc, name).await;
    for i in 0..80 {
        say(&rpc, &c.session_id, &format!("It is late.  C {i}")).await;
    }
    let stored = history(&rpc, name).await;
    let laid: Vec<String> = stored
        .iter()
        .filter(|e| e.patient_text.starts_with("My cat "))
        .map(|e| {
            let tag = e.patient_text["My cat ".len()..].trim_end_matches(" purrs.");
            tag.to_uppercase()
        })
        .collect();
    let recalled: Vec<String> = stored
        .iter()
        .filter(|e| !e.patient_text.starts_with("My cat "))
        .filter_map(|e| cat_tag(&e.doctor_text))
        .collect();
    assert_eq!(laid.len(), 16);
    assert_eq!(
        recalled, laid,
        "every memory recalled exactly once, oldest first, by whichever session"
    );
}

async fn twenty_patients_at_once_each_get_the_same_replies_to_the_same_lines(backend: Backend) {
    let doctors = Replicas::start("doctor-server", backend, &[]).await;
    let lines = Arc::new(transcript(DOCTOR_TRANSCRIPT));
    let mut channels = Vec::new();
    for n in 0..4 {
        channels.push(client(doctors.server(n)).await);
    }
    let mut patients = Vec::new();
    for n in 0..20 {
        let rpc = channels[n % channels.len()].clone();
        let lines = lines.clone();
        patients.push(tokio::spawn(async move {
            let name = format!("Patient number {n}");
            let session = visit(&rpc, &name).await;
            assert!(!session.returning_patient);
            replay(&rpc, &session.session_id, &lines).await;
            (name, session.session_id)
        }));
    }
    let mut sessions = HashSet::new();
    for patient in patients {
        let (name, session_id) = tokio::time::timeout(Duration::from_secs(300), patient)
            .await
            .expect("twenty transcripts within five minutes")
            .unwrap();
        assert!(
            sessions.insert(session_id.clone()),
            "session ids are unique"
        );
        let stored = history(&channels[0], &name).await;
        assert_eq!(said(&stored), expected_said(&lines), "{name}");
        assert!(
            stored
                .iter()
                .all(|e| e.session_started == stored[0].session_started)
        );
    }
}
