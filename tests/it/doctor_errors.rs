//! The doctor's refusals, each naming its field: empty, blank and oversized text, bad patient
//! names, unknown and ended sessions, and GetHistory's negative page sizes and forged page
//! tokens; and hostile and Unicode names (composed or decomposed alike) that are just names and
//! leave nothing outside `--data-dir`.

use std::{collections::HashSet, path::PathBuf};

use township_proto::doctor::v1 as pb;

use crate::support::{
    doctor::*,
    status::*,
    storage::{Backend, on_both_backends},
};

// On SQLite and on PostgreSQL alike.
on_both_backends!(get_history_pages_and_refuses_a_negative_page_size_and_forged_page_tokens);

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
