//! The doctor service against a real doctor-server: the DOCTOR and classic transcripts replayed
//! over gRPC with sentence-case display text, returning patients (any case, surrounding spaces)
//! whose conversation and memories carry on, the idle timeout, `--script` (a broken one refused
//! with line and column, a custom one used) and bad flags, the real grpcurl, and health.

use std::time::{Duration, Instant};

use tonic::Code;

use crate::support::{
    cli::json,
    doctor::*,
    grpcurl::grpcurl_at,
    process::*,
    status::*,
    storage::{Backend, on_both_backends},
};

// The service's core, on SQLite and on PostgreSQL alike.
on_both_backends!(
    the_doctor_transcript_replays_exactly_through_the_server,
    a_returning_patient_is_greeted_as_one_and_a_memory_from_the_first_visit_comes_back,
    different_patients_are_different_people_with_their_own_history,
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
