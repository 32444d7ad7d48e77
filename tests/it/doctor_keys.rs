//! Patients get a key: a stranger who knows a name can neither read that patient's history nor
//! be welcomed back as them, the key is stored only hashed, patients from before keys wait for
//! the operator's `doctor-server issue-key`, one patient's open sessions are bounded, and the
//! CLI keeps the key for the person at their own terminal.

use std::os::unix::fs::PermissionsExt;

use tonic::Code;
use township_tests::run;

use crate::support::{
    doctor::*,
    doctor_cli::start_doctor,
    fixtures::{restore_dump, schema_versions},
    process::{CALL_TIMEOUT, assert_serving},
    status::{expect_code, retry_delay},
};

#[tokio::test]
async fn a_stranger_who_knows_a_name_is_refused_and_learns_nothing_of_the_patient() {
    let (_dir, server, rpc) = doctor(&[]).await;
    let name = patient("Ada");
    let first = start_with_key(&rpc, &name, "").await.unwrap();
    let key = first.patient_key.clone();
    assert_eq!(key.len(), 64, "a new patient gets a key: {first:?}");
    say(&rpc, &first.session_id, "My cat is called Tom.").await;

    for wrong in ["", "not-her-key", &key[1..]] {
        let status = expect_code(
            start_with_key(&rpc, &name, wrong).await,
            Code::PermissionDenied,
        );
        let history = expect_code(
            history_page_with_key(&rpc, &name, wrong, 0, "").await,
            Code::PermissionDenied,
        );
        for refusal in [&status, &history] {
            assert!(!refusal.message().contains("Ada"), "{refusal:?}");
            assert!(!refusal.message().contains("Tom"), "{refusal:?}");
        }
    }
    let mut talk = Conversation::open(server.uri()).await;
    talk.send(name_line_with_key(&name, "not-her-key")).await;
    let status = talk.error().await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(talk.next().await.is_none(), "no greeting, nothing after");

    let back = start_with_key(&rpc, &name, &key).await.unwrap();
    assert!(back.returning_patient && back.previous_visits == 1);
    assert!(back.patient_key.is_empty(), "a key is given once");
    let stored = history_page_with_key(&rpc, &name, &key, 0, "")
        .await
        .unwrap();
    assert_eq!(stored.exchanges.len(), 1);
}

#[tokio::test]
async fn the_key_is_stored_only_as_a_hash() {
    let (dir, server, rpc) = doctor(&[]).await;
    let name = patient("Hashed Hal");
    let key = start_with_key(&rpc, &name, "").await.unwrap().patient_key;
    crate::support::process::stop(server, libc::SIGTERM).await;
    for file in tree(dir.path()) {
        let bytes = std::fs::read(dir.path().join(&file)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&key), "{file:?} holds the key itself");
    }
}

#[tokio::test]
async fn a_patient_from_before_keys_waits_for_the_operator_who_issues_one_while_it_runs() {
    let (dir, server, rpc) = doctor(&[]).await;
    let name = patient("Olga");
    let first = start_with_key(&rpc, &name, "").await.unwrap();
    say(&rpc, &first.session_id, "Hello.").await;
    // What migration 2 leaves for a patient stored before keys existed: no key at all.
    forget_keys(dir.path()).await;

    expect_code(
        start_with_key(&rpc, &name, "").await,
        Code::PermissionDenied,
    );
    expect_code(
        start_with_key(&rpc, &name, &first.patient_key).await,
        Code::PermissionDenied,
    );

    let data_dir = dir.path().to_str().unwrap();
    let spelled = name.to_uppercase();
    let issued = issue_key(&["--data-dir", data_dir, "--name", &spelled]).await;
    assert_eq!(issued.code, Some(0), "{issued:?}");
    let key = issued.stdout.trim();
    assert_eq!(key.len(), 64, "{issued:?}");
    assert_eq!(
        issued.stdout.lines().count(),
        1,
        "the key alone: {issued:?}"
    );
    assert!(!issued.stderr.contains(key), "never in the log");

    let back = start_with_key(&rpc, &name, key).await.unwrap();
    assert!(back.returning_patient, "welcomed back with the issued key");

    // A lost key is replaced the same way; the old one stops working.
    let reissued = issue_key(&["--data-dir", data_dir, "--name", &name]).await;
    assert_eq!(reissued.code, Some(0), "{reissued:?}");
    expect_code(
        start_with_key(&rpc, &name, key).await,
        Code::PermissionDenied,
    );
    start_with_key(&rpc, &name, reissued.stdout.trim())
        .await
        .unwrap();

    let unknown = issue_key(&["--data-dir", data_dir, "--name", "Nobody Here"]).await;
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(unknown.stderr.contains("no patient"), "{unknown:?}");
    let empty = tempfile::tempdir().unwrap();
    let elsewhere = empty.path().join("not-doctor");
    let wrong_dir = issue_key(&["--data-dir", elsewhere.to_str().unwrap(), "--name", &name]).await;
    assert_eq!(wrong_dir.code, Some(1), "{wrong_dir:?}");
    assert!(
        !elsewhere.exists(),
        "no records are made where there were none"
    );
    assert_serving(&server, SERVICE).await;
}

#[tokio::test]
async fn one_patient_may_have_eight_sessions_open_and_no_more() {
    let (_dir, _server, rpc) = doctor(&[]).await;
    let name = patient("Busy Bea");
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(visit(&rpc, &name).await);
    }
    let refused = expect_code(start(&rpc, &name).await, Code::ResourceExhausted);
    assert!(retry_delay(&refused) > std::time::Duration::ZERO);
    visit(&rpc, &patient("Somebody Else")).await;
    end(&rpc, &sessions[0].session_id).await.unwrap();
    visit(&rpc, &name).await;
}

#[tokio::test]
async fn the_cli_keeps_the_key_in_a_private_file_and_is_welcomed_back_as_before() {
    let doctor = start_doctor().await;
    let out = doctor.piped(&["--name", "Ada Lovelace"], "Hello.\n").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let file = doctor.config.path().join("doctor/ada%20lovelace.key");
    let key = std::fs::read_to_string(&file).expect("the key is kept");
    assert_eq!(key.trim().len(), 64);
    assert!(!out.stdout.contains(key.trim()) && !out.stderr.contains(key.trim()));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let out = doctor.piped(&["--name", "ada lovelace"], "Hello.\n").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.to_lowercase().contains("welcome back"),
        "{out:?}"
    );
    assert_eq!(doctor.history("Ada Lovelace").await.len(), 2);

    // Another person's configuration has no key: refused, and told nothing of Ada.
    let stranger = tempfile::tempdir().unwrap();
    let mut command = doctor.command(&["--name", "Ada Lovelace"]);
    command.env("TOWNSHIP_CONFIG_DIR", stranger.path());
    let out = run(command, CALL_TIMEOUT).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("PermissionDenied"), "{out:?}");
    assert!(out.stdout.is_empty(), "no greeting: {out:?}");
}

#[tokio::test]
async fn a_data_dir_made_before_keys_upgrades_in_place_and_its_patients_wait_for_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doctor.db");
    restore_dump(
        &file,
        include_str!("fixtures/doctor-before-keys/doctor.sql"),
    )
    .await;
    let (_server, rpc) = doctor_in(dir.path(), dir.path().to_str().unwrap()).await;
    assert_eq!(schema_versions(&file).await, [1, 2]);

    expect_code(
        start_with_key(&rpc, "Ada Lovelace", "").await,
        Code::PermissionDenied,
    );
    expect_code(
        history_page_with_key(&rpc, "Ada Lovelace", "", 0, "").await,
        Code::PermissionDenied,
    );
    let data_dir = dir.path().to_str().unwrap();
    let issued = issue_key(&["--data-dir", data_dir, "--name", "ada lovelace"]).await;
    assert_eq!(issued.code, Some(0), "{issued:?}");
    let key = issued.stdout.trim();
    let back = start_with_key(&rpc, "Ada Lovelace", key).await.unwrap();
    assert!(
        back.returning_patient && back.previous_visits == 1,
        "{back:?}"
    );
    let stored = history_page_with_key(&rpc, "Ada Lovelace", key, 0, "")
        .await
        .unwrap();
    let said: Vec<&str> = stored
        .exchanges
        .iter()
        .map(|e| e.patient_text.as_str())
        .collect();
    assert_eq!(said, ["My cat is called Tom.", "I am unhappy.", "Hello."]);
    assert!(stored.exchanges.iter().all(|e| e.session_started.is_some()));
}
