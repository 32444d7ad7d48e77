//! The doctor service against a real doctor-server: Township's DOCTOR transcript and the classic
//! transcript replayed over gRPC, sentence-case display text, returning patients (by name, any
//! case, surrounding spaces) whose conversation and memories carry on, persistence across a
//! graceful restart and a kill -9, two simultaneous sessions of one patient sharing one memory
//! queue without losing a line or a memory, twenty patients at once, the idle timeout, every
//! field-naming error, hostile and Unicode names that stay inside `--data-dir`, the Converse stream
//! (including a SIGTERM while it is open), `--script` (a broken one refused with line and column,
//! a custom one used), the real grpcurl, and health.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tonic::Code;
use township_proto::doctor::v1::{self as pb, doctor_line};

use crate::support::{
    cli::json,
    doctor::*,
    grpcurl::grpcurl_at,
    process::*,
    status::*,
    storage::{Backend, Storage, on_both_backends},
};

// The service's core, on SQLite and on PostgreSQL alike (on PostgreSQL, the two sessions of one
// patient and the twenty patients are spread over two replicas).
on_both_backends!(
    the_doctor_transcript_replays_exactly_through_the_server,
    a_returning_patient_is_greeted_as_one_and_a_memory_from_the_first_visit_comes_back,
    different_patients_are_different_people_with_their_own_history,
    the_conversation_survives_a_graceful_restart_and_the_patient_is_greeted_as_returning,
    an_exchange_answered_right_before_kill_9_is_kept_with_its_memory,
    every_answered_exchange_survives_a_kill_9_during_concurrent_conversations,
    two_simultaneous_sessions_of_one_patient_lose_no_line_and_share_one_memory_queue,
    twenty_patients_at_once_each_get_the_same_replies_to_the_same_lines,
    get_history_pages_and_refuses_a_negative_page_size_and_forged_page_tokens,
    converse_greets_replies_and_says_farewell_when_the_patient_closes,
);

// ----- the transcripts over gRPC -----

async fn the_doctor_transcript_replays_exactly_through_the_server(backend: Backend) {
    let (_dir, _server, rpc) = doctor_with(backend, &[]).await;
    let lines = transcript(DOCTOR_TRANSCRIPT);
    assert!(lines.len() >= 30, "only {} exchanges", lines.len());
    let name = patient("Transcript Patient");
    let session = visit(&rpc, &name).await;
    assert_eq!(session.greeting, GREETING);
    assert_eq!(session.display_greeting, DISPLAY_GREETING);
    assert!(!session.returning_patient, "{session:?}");
    assert_eq!(session.previous_visits, 0);
    assert!(!session.session_id.is_empty());

    let replies = replay(&rpc, &session.session_id, &lines).await;
    for answer in &replies {
        assert_sentence_case(&answer.text, &answer.display_text);
    }
    let display = |input: &str| {
        let index = lines.iter().position(|l| l.input == input).unwrap();
        replies[index].display_text.clone()
    };
    assert_eq!(
        display("Hello."),
        "Hello. What would you like to talk about?"
    );
    assert_eq!(display("I am unhappy."), "I am sorry that you are unhappy.");
    assert_eq!(
        display("You're not listening to me."),
        "What makes you think I am not listening to you?"
    );
    assert_eq!(
        display("It is nothing."),
        "Let's talk more about how your father drinks too much."
    );
    assert_eq!(
        display("Goodbye."),
        "Before you go, is there anything else on your mind?"
    );
    assert_eq!(end(&rpc, &session.session_id).await.unwrap(), FAREWELL);

    let stored = history(&rpc, &name).await;
    assert_eq!(said(&stored), expected_said(&lines));
    assert!(
        stored
            .iter()
            .all(|e| e.session_started.is_some() && e.session_started == stored[0].session_started),
        "every exchange belongs to the one session"
    );
    #[allow(deprecated)]
    let ids_shown = stored.iter().any(|e| !e.session_id.is_empty());
    assert!(
        !ids_shown,
        "a history never shows the session ids Reply trusts"
    );
}

#[tokio::test]
async fn the_classic_transcript_replays_exactly_with_its_seed_and_every_patient_gets_the_same() {
    let seed = transcript_seed(CLASSIC_TRANSCRIPT);
    assert_eq!(seed, "1966", "the header of classic.txt names seed 1966");
    let (_dir, _server, rpc) = doctor(&["--mode", "classic", "--seed", &seed]).await;
    let lines = transcript(CLASSIC_TRANSCRIPT);
    assert!(lines.len() >= 10, "only {} exchanges", lines.len());
    for name in [patient("Classic One"), patient("Classic Two")] {
        let session = visit(&rpc, &name).await;
        assert_eq!(session.greeting, CLASSIC_GREETING);
        assert_eq!(session.display_greeting, CLASSIC_GREETING);
        assert!(!session.returning_patient);
        let replies = replay(&rpc, &session.session_id, &lines).await;
        for answer in &replies {
            assert_eq!(
                answer.display_text, answer.text,
                "classic replies are sentences already"
            );
        }
        assert!(
            replies
                .iter()
                .any(|r| r.text.starts_with("Earlier you said that ")),
            "history is used"
        );
        assert_eq!(said(&history(&rpc, &name).await), expected_said(&lines));
        assert_eq!(end(&rpc, &session.session_id).await.unwrap(), FAREWELL);
    }
}

#[tokio::test]
async fn a_returning_classic_patient_is_welcomed_back_by_name() {
    let (_dir, _server, rpc) = doctor(&["--mode", "classic"]).await;
    let first = visit(&rpc, "Grace Hopper").await;
    say(&rpc, &first.session_id, "I am tired of my job.").await;
    end(&rpc, &first.session_id).await.unwrap();
    let again = visit(&rpc, "grace hopper").await;
    assert!(again.returning_patient);
    assert_eq!(again.previous_visits, 1);
    assert!(
        again.greeting.starts_with("grace hopper, welcome back. "),
        "{again:?}"
    );
}

// ----- returning patients -----

async fn a_returning_patient_is_greeted_as_one_and_a_memory_from_the_first_visit_comes_back(
    backend: Backend,
) {
    let (_dir, _server, rpc) = doctor_with(backend, &[]).await;
    let lines = transcript(DOCTOR_TRANSCRIPT);
    // Exchange 2 lays down a memory (MY); exchange 3 runs with LIMIT 4 and has no keyword, so it
    // is answered with that memory, even in the next visit: the LIMIT counter carries on.
    assert_eq!(lines[1].input, "My sister never calls me.");
    assert_eq!(
        lines[2].expected,
        "I KEEP THINKING ABOUT HOW YOUR SISTER NEVER CALLS YOU"
    );

    let first = visit(&rpc, "Ada Lovelace").await;
    assert!(!first.returning_patient);
    assert_eq!(first.previous_visits, 0);
    replay(&rpc, &first.session_id, &lines[..2]).await;
    assert_eq!(end(&rpc, &first.session_id).await.unwrap(), FAREWELL);

    let second = visit(&rpc, "  ADA lovelace\t ").await;
    assert!(second.returning_patient, "{second:?}");
    assert_eq!(second.previous_visits, 1);
    assert_ne!(second.session_id, first.session_id);
    assert_eq!(
        second.greeting,
        "ADA LOVELACE, WELCOME BACK. WHAT WOULD YOU LIKE TO TALK ABOUT TODAY"
    );
    assert_eq!(
        second.display_greeting,
        "ADA lovelace, welcome back. What would you like to talk about today?"
    );
    // The rest of the transcript, in the second visit, exactly as in one sitting.
    replay(&rpc, &second.session_id, &lines[2..]).await;
    end(&rpc, &second.session_id).await.unwrap();

    let third = visit(&rpc, "ada lovelace").await;
    assert!(third.returning_patient);
    assert_eq!(third.previous_visits, 2);

    let stored = history_in_pages(&rpc, "Ada Lovelace", 5).await;
    assert_eq!(
        said(&stored),
        expected_said(&lines),
        "both visits, in order"
    );
    let sessions: Vec<_> = stored.iter().map(|e| e.session_started).collect();
    assert_eq!(sessions[0], sessions[1]);
    assert!(
        sessions[2..].iter().all(|s| *s == sessions[2]) && sessions[2] != sessions[0],
        "two visits: {sessions:?}"
    );
    let times: Vec<i64> = stored
        .iter()
        .map(|e| e.time.as_ref().expect("every exchange has a time").seconds)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let now = unix_seconds();
    assert!(
        times.iter().all(|t| (now - 600..=now + 5).contains(t)),
        "times are now-ish: {times:?} vs {now}"
    );
    // Any spelling of the name reads the same history.
    assert_eq!(said(&history(&rpc, " ADA LOVELACE ").await), said(&stored));
}

#[tokio::test]
async fn a_returning_patient_is_welcomed_back_by_their_name_as_they_write_it() {
    let (_dir, _server, rpc) = doctor(&[]).await;
    for name in ["Ada Lovelace", "Σωκράτης", "McCarthy"] {
        visit(&rpc, name).await;
        let again = visit(&rpc, name).await;
        assert!(again.returning_patient);
        // The 1966-style text shouts the name like everything else; the display text is for
        // people and writes it as the patient does.
        assert!(again.greeting.contains(&name.to_uppercase()), "{again:?}");
        assert!(
            again
                .display_greeting
                .starts_with(&format!("{name}, welcome back. ")),
            "{again:?}"
        );
        assert!(
            again.display_greeting.contains(name),
            "the display greeting writes {name:?} as the patient does: {:?}",
            again.display_greeting
        );
    }
}

async fn different_patients_are_different_people_with_their_own_history(backend: Backend) {
    let (_dir, _server, rpc) = doctor_with(backend, &[]).await;
    let ada = visit(&rpc, "Ada").await;
    let bob = visit(&rpc, "Bob").await;
    say(&rpc, &ada.session_id, "My sister never calls me.").await;
    say(&rpc, &bob.session_id, "Hello.").await;
    assert!(!bob.returning_patient);
    assert_eq!(said(&history(&rpc, "Ada").await).len(), 1);
    assert_eq!(
        said(&history(&rpc, "bob").await),
        [(
            "Hello.".to_owned(),
            "HELLO. WHAT WOULD YOU LIKE TO TALK ABOUT".to_owned()
        )]
    );
    // A name nobody has used is refused as a wrong key is: the answer tells a stranger nothing.
    let nobody = expect_code(
        history_page(&rpc, "Nobody Yet", 0, "").await,
        Code::PermissionDenied,
    );
    let wrong = expect_code(
        history_page_with_key(&rpc, "Ada", "not-her-key", 0, "").await,
        Code::PermissionDenied,
    );
    assert_eq!(nobody.message(), wrong.message());
    // A name that was never seen before is not made a patient by reading its history.
    assert!(!visit(&rpc, "Nobody Yet").await.returning_patient);
}

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

// ----- the idle timeout -----

#[tokio::test]
async fn an_idle_session_ends_by_itself_and_a_busy_one_stays_open() {
    let (_dir, server, rpc) = doctor(&["--idle-timeout", "2s"]).await;
    let idle = visit(&rpc, "Idle Ivan").await;
    say(&rpc, &idle.session_id, "Hello.").await;
    let busy = visit(&rpc, "Busy Beatrice").await;

    // The busy patient talks (a line every 100 ms) until the server logs an idle session ended.
    let until = Instant::now() + Duration::from_secs(30);
    let mut said_lines = 0;
    while server.log_line(IDLE_ENDED, Duration::ZERO).await.is_none() {
        assert!(
            Instant::now() < until,
            "no idle session ended within 30 s: {}",
            server.logs()
        );
        say(&rpc, &busy.session_id, "I see.").await;
        said_lines += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expect_no_session(
        reply(&rpc, &idle.session_id, "Are you there?").await,
        &idle.session_id,
    );
    expect_no_session(end(&rpc, &idle.session_id).await, &idle.session_id);
    say(&rpc, &busy.session_id, "Still here.").await;
    assert_eq!(end(&rpc, &busy.session_id).await.unwrap(), FAREWELL);

    // What was said before the session ended is kept, and the patient comes back.
    assert_eq!(history(&rpc, "Idle Ivan").await.len(), 1);
    assert_eq!(history(&rpc, "Busy Beatrice").await.len(), said_lines + 1);
    let back = visit(&rpc, "idle ivan").await;
    assert!(back.returning_patient);
    say(&rpc, &back.session_id, "Hello again.").await;
}

// ----- errors -----

#[tokio::test]
async fn empty_blank_and_oversized_text_is_invalid_argument_naming_text_and_2000_characters_is_fine()
 {
    let (_dir, _server, rpc) = doctor(&[]).await;
    let lines = transcript(DOCTOR_TRANSCRIPT);
    let session = visit(&rpc, "Wordy Walter").await;
    let id = &session.session_id;
    replay(&rpc, id, &lines[..1]).await;

    for bad in ["", " ", "   \t\n  "] {
        expect_invalid(reply(&rpc, id, bad).await, "text");
    }
    let too_long = "a".repeat(2001);
    let status = expect_invalid(reply(&rpc, id, &too_long).await, "text");
    assert!(status.message().contains("2000"), "{status:?}");
    let too_long_wide = "é".repeat(2001);
    expect_invalid(reply(&rpc, id, &too_long_wide).await, "text");

    // Refused lines are not part of the conversation: it carries on exactly.
    replay(&rpc, id, &lines[1..4]).await;
    // 2000 characters (also 2000 two-byte ones) are fine.
    say(&rpc, id, &"word ".repeat(400)).await;
    say(&rpc, id, &"é".repeat(2000)).await;
    let stored = history(&rpc, "Wordy Walter").await;
    assert_eq!(stored.len(), 6, "only accepted lines are stored");
    assert_eq!(stored[5].patient_text, "é".repeat(2000));
}

#[tokio::test]
async fn bad_patient_names_are_invalid_argument_naming_patient_name() {
    let (_dir, _server, rpc) = doctor(&[]).await;
    let too_long = "x".repeat(101);
    let too_long_wide = "λ".repeat(101);
    for bad in [
        "",
        "   ",
        "\t \n",
        too_long.as_str(),
        too_long_wide.as_str(),
        "Ada\tLovelace",
        "Ada\u{0}Lovelace",
        "Ada\u{7}",
        "Line\nbreak",
        "Del\u{7f}ete",
    ] {
        let status = expect_invalid(start(&rpc, bad).await, "patient_name");
        assert!(!status.message().is_empty());
        expect_invalid(history_page(&rpc, bad, 0, "").await, "patient_name");
    }
    // 100 characters (after trimming) is fine, even when they are not ASCII.
    let longest = "λ".repeat(100);
    let session = visit(&rpc, &format!("  {longest}  ")).await;
    say(&rpc, &session.session_id, "Hello.").await;
    assert_eq!(history(&rpc, &longest).await.len(), 1);
    visit(&rpc, &"x".repeat(100)).await;
}

#[tokio::test]
async fn unknown_and_ended_sessions_are_not_found_naming_the_session() {
    let (_dir, _server, rpc) = doctor(&[]).await;
    for unknown in ["no-such-session", "", "00000000000000000000000000000000"] {
        expect_no_session(reply(&rpc, unknown, "Hello.").await, unknown);
        expect_no_session(end(&rpc, unknown).await, unknown);
    }
    let session = visit(&rpc, "Ended Edna").await;
    say(&rpc, &session.session_id, "Hello.").await;
    assert_eq!(end(&rpc, &session.session_id).await.unwrap(), FAREWELL);
    expect_no_session(end(&rpc, &session.session_id).await, &session.session_id);
    expect_no_session(
        reply(&rpc, &session.session_id, "Hello?").await,
        &session.session_id,
    );
    assert_eq!(history(&rpc, "Ended Edna").await.len(), 1);
}

async fn get_history_pages_and_refuses_a_negative_page_size_and_forged_page_tokens(
    backend: Backend,
) {
    let (_dir, _server, rpc) = doctor_with(backend, &[]).await;
    let session = visit(&rpc, "Paged Paula").await;
    let mut sent = Vec::new();
    for i in 0..60 {
        let text = format!("Line number {i}.");
        say(&rpc, &session.session_id, &text).await;
        sent.push(text);
    }
    let patient_texts = |exchanges: &[pb::Exchange]| -> Vec<String> {
        exchanges.iter().map(|e| e.patient_text.clone()).collect()
    };
    for size in [1, 7, 59, 60, 61, 1000, 5000, i32::MAX] {
        let all = history_in_pages(&rpc, "Paged Paula", size).await;
        assert_eq!(patient_texts(&all), sent, "page size {size}");
    }
    let default = history_page(&rpc, "Paged Paula", 0, "").await.unwrap();
    assert_eq!(default.exchanges.len(), 50, "page size 0 means 50");
    assert!(!default.next_page_token.is_empty());
    let rest = history_page(&rpc, "Paged Paula", 0, &default.next_page_token)
        .await
        .unwrap();
    assert_eq!(patient_texts(&rest.exchanges), sent[50..]);
    assert!(rest.next_page_token.is_empty(), "the last page says so");

    for size in [-1, -50, i32::MIN] {
        expect_invalid(
            history_page(&rpc, "Paged Paula", size, "").await,
            "page_size",
        );
    }
    for forged in [
        "garbage",
        "after-",
        "after-0",
        "after--3",
        "after-x",
        "after-99999999999999999999999",
        " after-1",
        "AFTER-1",
    ] {
        expect_invalid(
            history_page(&rpc, "Paged Paula", 10, forged).await,
            "page_token",
        );
    }
}

#[tokio::test]
async fn hostile_and_unicode_names_are_just_names_and_nothing_leaves_the_data_dir() {
    // The server runs in a directory of its own, with a relative --data-dir, so that anything it
    // wrote anywhere but the data directory would show up under `root`.
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path().join("a").join("b");
    std::fs::create_dir_all(&cwd).unwrap();
    let (_server, rpc) = doctor_in(&cwd, "data").await;

    let ordinary = visit(&rpc, "Ordinary Olga").await;
    say(&rpc, &ordinary.session_id, "Hello.").await;
    let names = [
        "../../etc/passwd",
        "../../../../../../../../tmp/escape",
        "/etc/shadow",
        "Robert'); DROP TABLE exchanges;--",
        "x' OR '1'='1",
        "%s%n%x \\ \" *?",
        "Σωκράτης",
        "山田太郎",
        "🦀 Ferris 🦀",
        "Zoë Ångström",
        "Зоя Петрова",
        "NUL.dat",
        ".",
        "..",
    ];
    for (n, name) in names.iter().enumerate() {
        let session = visit(&rpc, name).await;
        assert!(!session.returning_patient, "{name:?} is new: {session:?}");
        let text = format!("Hello from patient {n}.");
        say(&rpc, &session.session_id, &text).await;
        assert_eq!(end(&rpc, &session.session_id).await.unwrap(), FAREWELL);
        let stored = history(&rpc, name).await;
        assert_eq!(
            stored
                .iter()
                .map(|e| e.patient_text.as_str())
                .collect::<Vec<_>>(),
            [text.as_str()],
            "{name:?} has its own history"
        );
        let again = visit(&rpc, name).await;
        assert!(again.returning_patient, "{name:?} returns");
        assert_eq!(again.previous_visits, 1);
    }
    // Case-insensitive in every script: the same Greek, Cyrillic and Latin patients.
    for (first, again) in [
        ("Σωκράτης", "ΣΩΚΡΆΤΗΣ"),
        ("Зоя Петрова", "ЗОЯ ПЕТРОВА"),
        ("Zoë Ångström", "  zoË åNGSTRÖM "),
    ] {
        let session = visit(&rpc, again).await;
        assert!(session.returning_patient, "{again:?} is {first:?}");
        assert_eq!(
            history(&rpc, again).await.len(),
            history(&rpc, first).await.len()
        );
    }
    // The SQL-looking name harmed nobody.
    assert_eq!(history(&rpc, "Ordinary Olga").await.len(), 1);
    for (n, name) in names.iter().enumerate() {
        assert_eq!(
            history(&rpc, name).await[0].patient_text,
            format!("Hello from patient {n}.")
        );
    }

    let files = tree(root.path());
    let allowed: HashSet<PathBuf> = ["", "-wal", "-shm", ".migrate-lock"]
        .iter()
        .map(|suffix| PathBuf::from(format!("a/b/data/doctor.db{suffix}")))
        .chain([PathBuf::from("a/b/data/server.lock")])
        .collect();
    assert!(
        files.iter().all(|f| allowed.contains(f)),
        "only the data dir's doctor.db (and its -wal/-shm, the lock file of its migrations, and the data dir's lock): {files:?}"
    );
    assert!(
        files.contains(&PathBuf::from("a/b/data/doctor.db")),
        "{files:?}"
    );
}

#[tokio::test]
async fn a_name_typed_composed_or_decomposed_is_the_same_patient() {
    let (_dir, _server, rpc) = doctor(&[]).await;
    // "Zoë Ångström" in NFC (precomposed ë and Å) and in NFD (e + U+0308, A + U+030A): the same
    // name to Unicode (canonically equivalent) and to anyone reading it.
    let composed = "Zo\u{eb} \u{c5}ngstr\u{f6}m";
    let decomposed = "Zoe\u{308} A\u{30a}ngstro\u{308}m";
    let first = visit(&rpc, composed).await;
    say(&rpc, &first.session_id, "Hello.").await;
    end(&rpc, &first.session_id).await.unwrap();

    let again = visit(&rpc, decomposed).await;
    assert!(
        again.returning_patient,
        "{decomposed:?} is {composed:?} come back: {again:?}"
    );
    assert_eq!(again.previous_visits, 1);
    assert_eq!(history(&rpc, decomposed).await.len(), 1);
}

// ----- Converse -----

async fn converse_greets_replies_and_says_farewell_when_the_patient_closes(backend: Backend) {
    let (_dir, server, rpc) = doctor_with(backend, &[]).await;
    let lines = transcript(DOCTOR_TRANSCRIPT);
    let mut talk = Conversation::open(server.uri()).await;
    talk.send(name_line("Stream Stella")).await;
    let session = talk.greeting().await;
    assert_eq!(session.greeting, GREETING);
    assert_eq!(session.display_greeting, DISPLAY_GREETING);
    assert!(!session.returning_patient);
    assert!(!session.session_id.is_empty());
    for line in &lines[..6] {
        talk.send(text_line(&line.input)).await;
        let answer = talk.reply().await;
        assert_eq!(answer.text, line.expected, "line {}", line.at);
        assert_sentence_case(&answer.text, &answer.display_text);
    }
    talk.close();
    match talk.next().await {
        Some(Ok(doctor_line::Kind::Farewell(farewell))) => {
            assert_eq!(farewell.farewell, FAREWELL)
        }
        other => panic!("expected the farewell, got {other:?}"),
    }
    assert!(talk.next().await.is_none(), "then the stream ends");

    // The exchanges are stored, the session is over, and the patient returns (by StartSession
    // or by Converse) where the conversation left off.
    assert_eq!(
        said(&history(&rpc, "Stream Stella").await),
        expected_said(&lines[..6])
    );
    expect_no_session(
        reply(&rpc, &session.session_id, "Hello?").await,
        &session.session_id,
    );
    let mut again = Conversation::open(server.uri()).await;
    again.send(name_line("stream stella ")).await;
    let back = again.greeting().await;
    assert!(back.returning_patient);
    assert_eq!(back.previous_visits, 1);
    for line in &lines[6..10] {
        again.send(text_line(&line.input)).await;
        assert_eq!(again.reply().await.text, line.expected, "line {}", line.at);
    }
    // A patient who leaves at once still gets the greeting and the farewell.
    let mut brief = Conversation::open(server.uri()).await;
    brief.send(name_line("Brief Bruno")).await;
    brief.greeting().await;
    brief.close();
    assert!(matches!(
        brief.next().await,
        Some(Ok(doctor_line::Kind::Farewell(_)))
    ));
    assert!(brief.next().await.is_none());
}

#[tokio::test]
async fn converse_answers_a_whole_transcript_sent_at_once_in_order() {
    let (_dir, server, rpc) = doctor(&[]).await;
    let lines = transcript(DOCTOR_TRANSCRIPT);
    let mut talk = Conversation::open(server.uri()).await;
    let tx = talk.tx.take().expect("open");
    let inputs: Vec<String> = lines.iter().map(|l| l.input.clone()).collect();
    // Everything is sent without waiting for a reply, then the patient closes their side.
    let sender = tokio::spawn(async move {
        tx.send(name_line("Hurried Hilda")).await.unwrap();
        for input in inputs {
            tx.send(text_line(&input)).await.unwrap();
        }
    });
    let session = talk.greeting().await;
    remember("Hurried Hilda", &session);
    for line in &lines {
        assert_eq!(talk.reply().await.text, line.expected, "line {}", line.at);
    }
    sender.await.unwrap();
    assert!(matches!(
        talk.next().await,
        Some(Ok(doctor_line::Kind::Farewell(_)))
    ));
    assert!(talk.next().await.is_none());
    let stored = history(&rpc, "Hurried Hilda").await;
    assert_eq!(said(&stored), expected_said(&lines));
    assert!(
        stored
            .iter()
            .all(|e| e.session_started == stored[0].session_started)
    );
    assert!(!session.session_id.is_empty());
}

#[tokio::test]
async fn converse_refuses_a_first_message_that_does_not_name_the_patient() {
    let (_dir, server, _rpc) = doctor(&[]).await;
    let mut talk = Conversation::open(server.uri()).await;
    talk.send(text_line("Hello, doctor.")).await;
    expect_invalid::<()>(Err(talk.error().await), "patient_name");
    assert!(
        talk.next().await.is_none(),
        "the stream ends after the error"
    );

    let mut talk = Conversation::open(server.uri()).await;
    talk.send(pb::PatientLine::default()).await;
    expect_invalid::<()>(Err(talk.error().await), "patient_name");

    let mut talk = Conversation::open(server.uri()).await;
    talk.send(name_line("   ")).await;
    expect_invalid::<()>(Err(talk.error().await), "patient_name");

    // Closing before naming anyone is refused too (or ends the stream), never a greeting.
    let mut talk = Conversation::open(server.uri()).await;
    talk.close();
    match talk.next().await {
        None => {}
        Some(Err(status)) => assert_eq!(status.code(), Code::InvalidArgument, "{status:?}"),
        Some(Ok(line)) => panic!("no patient, no {line:?}"),
    }

    // Later lines carry text: a second name or an empty line is refused, naming `text`.
    let mut talk = Conversation::open(server.uri()).await;
    talk.send(name_line("Twice Named")).await;
    talk.greeting().await;
    talk.send(name_line("Someone Else")).await;
    expect_invalid::<()>(Err(talk.error().await), "text");

    let mut talk = Conversation::open(server.uri()).await;
    talk.send(name_line("Silent Sam")).await;
    talk.greeting().await;
    talk.send(text_line("  ")).await;
    expect_invalid::<()>(Err(talk.error().await), "text");
}

#[tokio::test]
async fn a_patient_who_hangs_up_mid_conversation_has_their_session_ended() {
    let (_dir, server, rpc) = doctor(&[]).await;
    let mut talk = Conversation::open(server.uri()).await;
    talk.send(name_line("Hasty Hans")).await;
    let session = talk.greeting().await;
    talk.send(text_line("Hello.")).await;
    talk.reply().await;
    drop(talk);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match reply(&rpc, &session.session_id, "Are you still there?").await {
            Err(status) if status.code() == Code::NotFound => break,
            Ok(_) => {}
            Err(status) => panic!("NOT_FOUND once the patient is gone, not {status:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the session ends within 15 s of the patient hanging up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = history(&rpc, "Hasty Hans").await;
    assert_eq!(stored[0].patient_text, "Hello.", "{:?}", said(&stored));
}

#[tokio::test]
async fn an_idle_conversation_ends_and_a_late_line_is_not_stored() {
    let (_dir, server, rpc) = doctor(&["--idle-timeout", "1s"]).await;
    let mut talk = Conversation::open(server.uri()).await;
    talk.send(name_line("Dozy Dan")).await;
    let session = talk.greeting().await;
    talk.send(text_line("Hello.")).await;
    talk.reply().await;
    server
        .log_line(IDLE_ENDED, Duration::from_secs(30))
        .await
        .expect("the idle session ends");

    // Either the doctor already said farewell and ended the stream, or the late line is refused
    // with NOT_FOUND naming the session; it is never answered as if nothing happened.
    talk.send(text_line("Sorry, I dozed off.")).await;
    match talk.next().await {
        Some(Ok(doctor_line::Kind::Farewell(farewell))) => {
            assert_eq!(farewell.farewell, FAREWELL);
            assert!(talk.next().await.is_none(), "then the stream ends");
        }
        Some(Err(status)) => expect_no_session::<()>(Err(status), &session.session_id),
        other => panic!("an idle session ends, but got {other:?}"),
    }
    assert_eq!(
        said(&history(&rpc, "Dozy Dan").await),
        [(
            "Hello.".to_owned(),
            "HELLO. WHAT WOULD YOU LIKE TO TALK ABOUT".to_owned()
        )]
    );
}

#[tokio::test]
async fn sigterm_during_a_conversation_ends_it_cleanly_and_the_server_exits_0_in_the_grace_period()
{
    let dir = tempfile::tempdir().unwrap();
    let mut server = doctor_server(dir.path(), None, &["--shutdown-grace", "5s"]).await;
    let mut talk = Conversation::open(server.uri()).await;
    talk.send(name_line("Late Lena")).await;
    talk.greeting().await;
    talk.send(text_line("Hello.")).await;
    assert_eq!(
        talk.reply().await.text,
        "HELLO. WHAT WOULD YOU LIKE TO TALK ABOUT"
    );

    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let mut farewells = 0;
    loop {
        match talk.next().await {
            Some(Ok(doctor_line::Kind::Farewell(farewell))) => {
                assert_eq!(farewell.farewell, FAREWELL);
                farewells += 1;
            }
            Some(Ok(line)) => panic!("after SIGTERM only the farewell, not {line:?}"),
            Some(Err(status)) => panic!("the stream ends with OK, not {status:?}"),
            None => break,
        }
    }
    assert!(farewells <= 1, "at most one farewell");
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .await
        .expect("the doctor-server exits");
    assert_eq!(status.code(), Some(0), "{}", server.logs());
    assert!(
        signalled.elapsed() < Duration::from_secs(12),
        "stopped within the 5 s grace period plus slack, took {:?}",
        signalled.elapsed()
    );

    // The exchange answered before the stop is kept.
    let server = doctor_server(dir.path(), None, &[]).await;
    let rpc = client(&server).await;
    assert_eq!(history(&rpc, "Late Lena").await.len(), 1);
}

// ----- scripts -----

#[tokio::test]
async fn a_script_with_a_syntax_error_is_refused_at_start_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken-script.txt");
    // Line 4, column 21: a ')' that closes nothing.
    std::fs::write(
        &broken,
        "; a comment\n(HELLO THERE)\nSTART\n(NONE ((0) (GO ON))))\n()\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = doctor_server_refusing(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--script",
        broken.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.code, Some(64), "{out:?}");
    let stderr = out.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains("broken-script.txt"),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("line 4"), "names the line: {stderr}");
    assert!(stderr.contains("column 21"), "names the column: {stderr}");
    assert!(out.stdout.is_empty(), "never listened: {out:?}");
    assert!(!data.join("doctor.db").exists(), "no records opened");

    // An unclosed list names where it opens; a missing file names the file.
    let unclosed = dir.path().join("unclosed.txt");
    std::fs::write(&unclosed, "(HELLO)\nSTART\n  (NONE ((0) (GO ON))\n").unwrap();
    let out = doctor_server_refusing(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--script",
        unclosed.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.code, Some(64), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains("unclosed.txt") && out.stderr.contains("line 3, column 3"),
        "{out:?}"
    );
    let missing = dir.path().join("no-such-script.txt");
    let out = doctor_server_refusing(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--script",
        missing.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.code, Some(64), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("no-such-script.txt"), "{out:?}");
}

#[tokio::test]
async fn bad_doctor_flags_exit_64_with_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for (flags, named) in [
        (["--mode", "freud"], "freud"),
        (["--idle-timeout", "soon"], "soon"),
        (["--seed", "-1"], "-1"),
    ] {
        let mut args = vec!["--data-dir", data];
        args.extend(flags);
        let out = doctor_server_refusing(&args).await;
        assert_eq!(out.code, Some(64), "{flags:?}: {out:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
        assert!(out.stderr.contains(named), "names {named:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
}

#[tokio::test]
async fn a_custom_script_given_with_script_is_the_one_used() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("clinic.txt");
    std::fs::write(
        &script,
        "; a tiny clinic\n\
         (WELCOME TO THE TEST CLINIC.  WHAT BRINGS YOU HERE)\n\
         START\n\
         (ME = YOU)\n\
         (CAT 5 ((0 CAT 0) (TELL ME MORE ABOUT THE CAT 3) (CATS ARE GOOD COMPANY)))\n\
         (NONE ((0) (GO ON) (AND THEN)))\n\
         ()\n",
    )
    .unwrap();
    let server = doctor_server(
        &dir.path().join("data"),
        None,
        &["--script", script.to_str().unwrap()],
    )
    .await;
    let rpc = client(&server).await;
    let session = visit(&rpc, "Custom Carl").await;
    assert_eq!(
        session.greeting,
        "WELCOME TO THE TEST CLINIC. WHAT BRINGS YOU HERE"
    );
    let id = &session.session_id;
    let first = say(&rpc, id, "My cat bites me").await;
    assert_eq!(first.text, "TELL ME MORE ABOUT THE CAT BITES YOU");
    assert_eq!(first.display_text, "Tell me more about the cat bites you.");
    assert_eq!(
        say(&rpc, id, "The cat again").await.text,
        "CATS ARE GOOD COMPANY"
    );
    assert_eq!(say(&rpc, id, "Hello").await.text, "GO ON");
    assert_eq!(say(&rpc, id, "Hello").await.text, "AND THEN");
}

// ----- grpcurl and health -----

#[tokio::test]
async fn grpcurl_starts_a_session_and_gets_a_reply() {
    let (_dir, server, rpc) = doctor(&[]).await;
    let out = grpcurl_at(server.addr, None, &["list"]).await;
    assert!(out.stdout.lines().any(|l| l == SERVICE), "{}", out.stdout);

    let session =
        json(&grpcurl_doctor(&server, "StartSession", r#"{"patient_name": "Zoë"}"#).await);
    let id = session["sessionId"]
        .as_str()
        .expect("a sessionId")
        .to_owned();
    assert!(!id.is_empty(), "{session}");
    let key = session["patientKey"].as_str().expect("a new patient's key");
    remember_key("Zoë", key);
    assert_eq!(session["greeting"], GREETING, "{session}");
    assert_eq!(session["displayGreeting"], DISPLAY_GREETING, "{session}");
    assert!(
        session
            .get("returningPatient")
            .is_none_or(|r| r == &serde_json::Value::Bool(false)),
        "{session}"
    );

    let data = serde_json::json!({"session_id": id, "text": "I am unhappy."}).to_string();
    let answer = json(&grpcurl_doctor(&server, "Reply", &data).await);
    assert_eq!(
        answer["text"], "I AM SORRY THAT YOU ARE UNHAPPY",
        "{answer}"
    );
    assert_eq!(
        answer["displayText"], "I am sorry that you are unhappy.",
        "{answer}"
    );
    assert_eq!(
        said(&history(&rpc, "zoë").await),
        [(
            "I am unhappy.".to_owned(),
            "I AM SORRY THAT YOU ARE UNHAPPY".to_owned()
        )]
    );

    let stranger = grpcurl_doctor(&server, "StartSession", r#"{"patient_name": " ZOË "}"#).await;
    assert!(stranger.stderr.contains("PermissionDenied"), "{stranger:?}");
    let data = serde_json::json!({"patient_name": " ZOË ", "patient_key": key}).to_string();
    let again = json(&grpcurl_doctor(&server, "StartSession", &data).await);
    assert!(
        again.get("patientKey").is_none(),
        "a key is given once: {again}"
    );
    assert_eq!(again["returningPatient"], true, "{again}");
    assert_eq!(
        again["previousVisits"], "1",
        "int64 is a JSON string: {again}"
    );

    let data = serde_json::json!({"patient_name": "Zoë", "patient_key": key}).to_string();
    let history_json = json(&grpcurl_doctor(&server, "GetHistory", &data).await);
    let exchanges = history_json["exchanges"].as_array().expect("exchanges");
    assert_eq!(exchanges.len(), 1, "{history_json}");
    assert_eq!(exchanges[0]["patientText"], "I am unhappy.");
    assert!(exchanges[0].get("sessionId").is_none(), "{history_json}");
    assert!(exchanges[0]["sessionStarted"].is_string(), "{history_json}");
    assert!(
        exchanges[0]["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "an RFC 3339 time: {history_json}"
    );

    let refused = grpcurl_doctor(&server, "Reply", &format!(r#"{{"session_id": "{id}"}}"#)).await;
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.stderr.contains("InvalidArgument"), "{refused:?}");
    assert!(refused.stderr.contains(r#""field":"text""#), "{refused:?}");
}

#[tokio::test]
async fn health_reports_the_doctor_serving() {
    let (_dir, server, _rpc) = doctor(&[]).await;
    assert_serving(&server, SERVICE).await;
}
