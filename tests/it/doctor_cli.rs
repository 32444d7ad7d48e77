//! The `township doctor` CLI against a real doctor-server: a piped conversation prints the
//! greeting and exactly one engine reply per line, equal to the engine's own transcript; a
//! returning patient (any case) is welcomed back; `--json` prints one object per greeting, line
//! and farewell; `history` lists every visit's exchanges, page by page; on a pseudo-terminal the
//! session is interactive (a name prompt, `> ` prompts, sentence case, `quit`, Ctrl-D and Ctrl-C
//! end it with the farewell); usage errors exit 2, the doctor's refusals 1, a server that is down 3.

use std::collections::BTreeSet;

use serde_json::Value;
use township_tests::{closed_port, township};

use crate::support::{cli::*, doctor::FAREWELL, doctor_cli::*};

#[tokio::test]
async fn a_piped_conversation_prints_the_greeting_then_exactly_one_engine_reply_per_line() {
    let doctor = start_doctor().await;
    let exchanges = transcript(5);
    // Blank lines (also of spaces) are skipped; a CRLF line ending is trimmed.
    let mut input = String::from("\n");
    for (i, (said, _)) in exchanges.iter().enumerate() {
        input.push_str(said);
        input.push_str(if i == 1 { "\r\n   \n" } else { "\n\n" });
    }
    let out = doctor.piped(&["--name", "Ada Lovelace"], &input).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let mut expected = vec![greeting()];
    expected.extend(exchanges.iter().map(|(_, answer)| answer.clone()));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, expected, "no prompts, no farewell: {out:?}");

    // `talk` is the same command, and from a pipe `quit` is a line like any other.
    let out = doctor
        .piped(&["talk", "--name", "Charles Babbage"], "quit\n")
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_eq!(lines[0], greeting());
    assert_ne!(lines[1], FAREWELL, "{out:?}");
}

#[tokio::test]
async fn a_returning_patient_is_welcomed_back_and_history_lists_both_visits_in_order() {
    let doctor = start_doctor().await;
    let exchanges = transcript(5);
    let first: Vec<&str> = exchanges[..2].iter().map(|(s, _)| s.as_str()).collect();
    let out = doctor
        .piped(&["--name", "Ada Lovelace"], &(first.join("\n") + "\n"))
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 3, "{out:?}");
    assert_eq!(out.stdout.lines().next(), Some(greeting().as_str()));

    let second = ["I am unhappy.", "My father drinks too much.", "Perhaps."];
    let out = doctor
        .piped(&["--name", "  ada LOVELACE "], &(second.join("\n") + "\n"))
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert!(
        lines[0].starts_with("ADA LOVELACE, WELCOME BACK."),
        "the name is matched without case or spaces: {out:?}"
    );
    let replies: Vec<&str> = lines[1..].to_vec();

    let history = doctor.history("ADA LOVELACE").await;
    assert_eq!(history.len(), 5, "{history:?}");
    let said: Vec<&str> = history.iter().map(|e| text(e, "patient_text")).collect();
    let mut all_said = first.clone();
    all_said.extend(second);
    assert_eq!(said, all_said, "oldest first");
    for exchange in &history {
        assert_eq!(
            keys(exchange),
            BTreeSet::from(["doctor_text", "patient_text", "session_started", "time"])
        );
        let time = text(exchange, "time");
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'),
            "RFC 3339 in UTC: {exchange}"
        );
    }
    let answered: Vec<&str> = history.iter().map(|e| text(e, "doctor_text")).collect();
    assert_eq!(
        answered[..2],
        [exchanges[0].1.as_str(), exchanges[1].1.as_str()]
    );
    assert_eq!(
        answered[2..],
        replies[..],
        "the replies the patient was given"
    );
    let sessions: BTreeSet<&str> = history.iter().map(|e| text(e, "session_started")).collect();
    assert_eq!(sessions.len(), 2, "two visits: {history:?}");

    // As text: a header per session, then `> said` and `< answered`.
    let out = doctor.run(&["history", "--name", "Ada Lovelace"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2 + 2 * 5, "{out:?}");
    assert!(lines[0].starts_with("# ") && lines[0].contains("  session started "));
    assert_eq!(lines[1], format!("> {}", all_said[0]));
    assert_eq!(lines[2], format!("< {}", answered[0]));
    assert!(lines[5].starts_with("# "), "the second visit: {out:?}");
    assert_eq!(lines[11], format!("< {}", answered[4]));

    // A page at a time, following the tokens.
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let mut args = vec!["history", "--name", "ada lovelace", "--page-size", "2"];
        if !token.is_empty() {
            args.extend(["--page-token", &token]);
        }
        let out = doctor.run(&args).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let mut next = None;
        for line in out.stdout.lines() {
            if let Some(said) = line.strip_prefix("> ") {
                seen.push(said.to_owned());
            } else if let Some(hint) = line.strip_prefix("next page: --page-token ") {
                next = Some(hint.to_owned());
            }
        }
        match next {
            Some(next) => token = next,
            None => break,
        }
    }
    assert_eq!(seen, all_said, "every exchange once, in order");

    // A name the doctor does not know is refused as a wrong key is.
    let out = doctor.run(&["history", "--name", "Nobody"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("PermissionDenied"), "{out:?}");
}

#[tokio::test]
async fn with_json_the_greeting_every_line_and_the_farewell_are_one_object_each() {
    let doctor = start_doctor().await;
    let exchanges = transcript(3);
    let input: String = exchanges.iter().map(|(s, _)| format!("{s}\n\n")).collect();
    let out = doctor
        .piped(&["--name", "Grace Hopper", "--json"], &input)
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let objects = json_lines(&out);
    assert_eq!(objects.len(), 1 + 3 + 1, "{out:?}");

    let hello = &objects[0];
    assert_eq!(
        keys(hello),
        BTreeSet::from([
            "display_greeting",
            "greeting",
            "previous_visits",
            "returning_patient",
            "session_id"
        ])
    );
    assert_eq!(text(hello, "greeting"), greeting());
    assert!(!text(hello, "display_greeting").is_empty());
    assert!(!text(hello, "session_id").is_empty());
    assert_eq!(hello["returning_patient"], Value::Bool(false));
    assert_eq!(hello["previous_visits"], 0);
    for ((said, answer), reply) in exchanges.iter().zip(&objects[1..4]) {
        assert_eq!(
            keys(reply),
            BTreeSet::from(["display_text", "input", "text"])
        );
        assert_eq!(text(reply, "input"), said);
        assert_eq!(text(reply, "text"), answer);
        let display = text(reply, "display_text");
        assert_eq!(display.to_uppercase().trim_end_matches(['.', '?']), answer);
    }
    assert_eq!(objects[4], serde_json::json!({ "farewell": FAREWELL }));

    let out = doctor
        .piped(&["--json", "--name", "grace hopper"], "")
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let objects = json_lines(&out);
    assert_eq!(objects.len(), 2, "{out:?}");
    assert_eq!(objects[0]["returning_patient"], Value::Bool(true));
    assert_eq!(objects[0]["previous_visits"], 1);
    assert_eq!(objects[1], serde_json::json!({ "farewell": FAREWELL }));
}

#[tokio::test]
async fn the_address_comes_from_township_doctor_addr_and_the_doctors_refusals_exit_1() {
    let doctor = start_doctor().await;
    let mut command = township();
    command
        .env("TOWNSHIP_DOCTOR_ADDR", doctor.server.addr.to_string())
        .env("TOWNSHIP_CONFIG_DIR", doctor.config.path())
        .args(["doctor", "--name", "Alan Turing"]);
    let out = piped(command, "Hello.\n").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 2, "{out:?}");

    let long = "word ".repeat(500);
    let out = doctor
        .piped(
            &["--name", "Alan Turing"],
            &format!("Hello.\n{long}\nHello.\n"),
        )
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(one_error_line(&out).contains("InvalidArgument"), "{out:?}");
    assert!(out.stderr.contains("2000"), "{out:?}");
    assert_eq!(
        out.stdout.lines().count(),
        2,
        "the greeting and one reply: {out:?}"
    );

    let name = "n".repeat(101);
    let out = doctor.piped(&["--name", &name], "Hello.\n").await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(one_error_line(&out).contains("patient_name"), "{out:?}");
}

#[tokio::test]
async fn usage_errors_exit_2_and_a_doctor_that_is_down_exits_3() {
    let nowhere = format!("127.0.0.1:{}", closed_port());
    let doctor = |args: &[&str]| {
        let mut command = township();
        command
            .env_remove("TOWNSHIP_DOCTOR_ADDR")
            .args(["--addr", &nowhere, "--retries", "0", "doctor"])
            .args(args);
        command
    };
    // Usage is checked before dialling: the closed port is never tried.
    let usage: [&[&str]; 6] = [
        &[],
        &["--name", "   "],
        &["talk"],
        &["history"],
        &["--name", "Ada", "history", "--name", "Ada"],
        &["history", "--name", "Ada", "--page-size", "0"],
    ];
    for args in usage {
        let out = piped(doctor(args), "Hello.\n").await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains("--name") || out.stderr.contains("--page-size"));
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    let out = piped(doctor(&[]), "Hello.\n").await;
    assert!(
        one_error_line(&out).contains("not a terminal"),
        "says why: {out:?}"
    );

    for args in [&["--name", "Ada"][..], &["history", "--name", "Ada"]] {
        let out = piped(doctor(args), "Hello.\n").await;
        assert_eq!(out.code, Some(3), "{args:?}: {out:?}");
        let line = one_error_line(&out);
        assert!(line.contains("cannot reach the doctor service"), "{out:?}");
        assert!(line.contains(&nowhere), "{out:?}");
    }
}

// ----- on a terminal -----

#[tokio::test]
async fn on_a_terminal_the_name_is_asked_each_line_gets_a_prompt_and_quit_says_goodbye() {
    let doctor = start_doctor().await;
    let mut session = Session::start(&doctor, &[]);
    session.wait_for("Your name: ").await;
    session.terminal.type_text("Grace Hopper\n");
    let greeted = session.wait_for("\n> ").await;
    assert_eq!(
        greeted, "Your name: Good day. I am here to listen. What is on your mind?\n> ",
        "the greeting for people"
    );
    session.terminal.type_text("I am unhappy.\n");
    session
        .wait_for("I am sorry that you are unhappy.\n> ")
        .await;
    session.terminal.type_text("\n");
    session.wait_for("\n> > ").await;
    session.terminal.type_text("QUIT\n");
    let (code, stdout) = session.finish().await;
    assert_eq!(code, Some(0), "{stdout:?}");
    assert_eq!(
        stdout,
        "Your name: Good day. I am here to listen. What is on your mind?\n\
         > I am sorry that you are unhappy.\n\
         > > Have a nice day!\n"
    );
    let history = doctor.history("Grace Hopper").await;
    assert_eq!(
        history.len(),
        1,
        "neither the blank line nor quit was sent: {history:?}"
    );
}

#[tokio::test]
async fn on_a_terminal_ctrl_d_and_ctrl_c_end_the_session_with_the_farewell() {
    let doctor = start_doctor().await;
    let mut session = Session::start(&doctor, &["--name", "Ada"]);
    session.wait_for("\n> ").await;
    session.terminal.type_text("\x04");
    let (code, stdout) = session.finish().await;
    assert_eq!(code, Some(0), "{stdout:?}");
    assert!(stdout.ends_with("\n> \nHave a nice day!\n"), "{stdout:?}");

    let session = Session::start(&doctor, &["talk", "--name", "ada"]);
    let greeted = session.wait_for("\n> ").await;
    assert!(greeted.starts_with("ada, welcome back. "), "{greeted:?}");
    let pid = session.child.id().expect("running") as i32;
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let (code, stdout) = session.finish().await;
    assert_eq!(code, Some(0), "Ctrl-C ends cleanly: {stdout:?}");
    assert!(stdout.ends_with("\n> \nHave a nice day!\n"), "{stdout:?}");
}
