//! The doctor's Converse stream: a greeting, replies and the farewell when the patient closes; a
//! whole transcript sent at once answered in order; a first message that names no patient
//! refused; a patient who hangs up or goes idle has their session ended; and a SIGTERM while it is
//! open ends it cleanly, the server exiting 0 within its grace period.

use std::time::{Duration, Instant};

use tonic::Code;
use township_proto::doctor::v1::{self as pb, doctor_line};

use crate::support::{
    doctor::*,
    process::*,
    status::*,
    storage::{Backend, on_both_backends},
};

// On SQLite and on PostgreSQL alike.
on_both_backends!(converse_greets_replies_and_says_farewell_when_the_patient_closes);

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
