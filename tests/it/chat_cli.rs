//! The `township chat` CLI against a real chat-server: two members in one room see each other's
//! lines and the transcript at join, `/quit` and Ctrl-D leave with exit 0 and the others see
//! `left`; a member rejoins by itself after a graceful restart, after a kill -9, and while the
//! server still holds its old membership (ALREADY_EXISTS, retried), printing every event exactly
//! once — its whole output is the room's transcript, line for line — and a line typed while the
//! server is down is sent once; a name taken exits 1, a refused line is reported and the session
//! goes on; given several chat-servers on one PostgreSQL database (`--addr A,B,C`), a member
//! whose server is killed or frozen resumes on another, missing nothing and sending every line
//! once; `chat rooms` and `chat transcript` in text and `--json`; a chat that is down exits 3
//! and usage errors exit 2.

use std::{process::Stdio, time::Duration};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use township_tests::{closed_port, run, township};

use crate::support::{
    chat::{assert_consecutive, chat_on, connect, joined, sent, transcript},
    chat_cli::*,
    cli::*,
    process::stop,
    storage::{Backend, Storage},
    wait::wait_until,
};

#[tokio::test]
async fn two_members_see_each_others_lines_after_the_transcript_and_a_quit_as_left() {
    let chat = Chat::start(&[]).await;
    // A first visit, piped: it leaves at the end of its input, after its own line is shown.
    let mut first = chat.command(&["--name", "ada"]);
    first.stdin(Stdio::piped());
    let mut child = first.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first words\n\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let printed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        printed.len(),
        2,
        "joined, then the line; the empty line was not sent: {printed:?}"
    );
    assert!(printed[0].starts_with("ada ") && printed[0].ends_with(": joined"));
    assert!(printed[1].ends_with(": first words"), "{printed:?}");

    let mut bob = chat.member(&["--name", "bob"]);
    bob.wait_said("ada", "first words").await;
    bob.wait_line("bob joined", |l| {
        l.starts_with("bob ") && l.ends_with(": joined")
    })
    .await;
    let mut cy = chat.member(&["--room", "lobby", "--name", "cy", "--json"]);
    cy.wait_json(serde_json::json!({ "kind": "message", "from": "ada", "text": "first words" }))
        .await;
    cy.wait_json(serde_json::json!({ "kind": "joined", "name": "cy" }))
        .await;
    bob.wait_line("cy joined", |l| {
        l.starts_with("cy ") && l.ends_with(": joined")
    })
    .await;

    bob.say("hello from bob").await;
    let said = cy
        .wait_json(
            serde_json::json!({ "kind": "message", "from": "bob", "text": "hello from bob" }),
        )
        .await;
    assert!(said["time"].as_str().unwrap().ends_with('Z'), "{said}");
    bob.wait_said("bob", "hello from bob").await;
    cy.say("  hi bob, with spaces  ").await;
    bob.wait_said("cy", "  hi bob, with spaces  ").await;

    let bob = bob.leave(Some("/quit")).await;
    assert_eq!(bob.code, Some(0), "{bob:?}");
    cy.wait_json(serde_json::json!({ "kind": "left", "name": "bob", "reason": "left" }))
        .await;
    let cy = cy.leave(None).await; // Ctrl-D
    assert_eq!(cy.code, Some(0), "{cy:?}");
    assert!(cy.stderr.is_empty(), "{cy:?}");

    let transcript = chat.transcript_after_all_left("lobby").await;
    assert_is_transcript(&bob.stdout, &transcript);
    assert!(
        bob.stdout
            .last()
            .unwrap()
            .ends_with(":   hi bob, with spaces  "),
        "bob left after everything said before his /quit: {bob:?}"
    );
    assert_json_is_transcript(&cy.stdout, &transcript);
    let last = transcript.last().map(line_of).unwrap();
    assert!(
        last.starts_with("cy ") && last.ends_with(": left"),
        "{last}"
    );
}

#[tokio::test]
async fn a_member_rejoins_after_a_graceful_restart_and_a_kill_9_printing_every_event_once() {
    let mut chat = Chat::start(&[]).await;
    let mut ada = chat.member(&["--room", "dev", "--name", "ada"]);
    let mut bob = chat.member(&["--room", "dev", "--name", "bob", "--json"]);
    ada.wait_line("bob joined", |l| {
        l.starts_with("bob ") && l.ends_with(": joined")
    })
    .await;
    ada.say("before the restart").await;
    bob.wait_json(serde_json::json!({ "from": "ada", "text": "before the restart" }))
        .await;

    chat.restart(libc::SIGTERM).await;
    ada.say("after the restart").await;
    ada.wait_said("ada", "after the restart").await;
    bob.wait_json(serde_json::json!({ "from": "ada", "text": "after the restart" }))
        .await;
    ada.wait_line("ada's leave at the shutdown", |l| {
        l.starts_with("ada ") && l.ends_with(": left (server shutdown)")
    })
    .await;
    bob.say("bob is back too").await;
    ada.wait_said("bob", "bob is back too").await;

    // kill -9: no Left is recorded; a line typed while the server is down is sent once it is back.
    let lost_before_the_kill = ada.error_lines("township: lost room dev");
    chat.server.signal(libc::SIGKILL);
    chat.server.wait_exit(LIMIT).await.expect("killed");
    ada.say("typed while the server was down").await;
    ada.wait_error_line("township: lost room dev", lost_before_the_kill)
        .await;
    chat.server = Chat::spawn(&chat.listen, &chat.args).await;
    ada.say("after the kill").await;
    ada.wait_said("ada", "after the kill").await;
    bob.wait_json(serde_json::json!({ "from": "ada", "text": "after the kill" }))
        .await;
    bob.say("and after the kill").await;
    ada.wait_said("bob", "and after the kill").await;

    let ada = ada.leave(Some("/quit")).await;
    assert_eq!(ada.code, Some(0), "{ada:?}");
    // Twice, or more if a rejoin reached the old server as it was stopping.
    let rejoins = ada
        .stderr
        .iter()
        .filter(|l| l.contains("rejoined room dev as ada"))
        .count();
    assert!(rejoins >= 2, "{:?}", ada.stderr);
    assert!(
        ada.stderr
            .iter()
            .any(|l| l.starts_with("township: lost room dev")),
        "{:?}",
        ada.stderr
    );
    let bob = bob.leave(Some("/quit")).await;
    assert_eq!(bob.code, Some(0), "{bob:?}");

    let transcript = chat.transcript("dev").await;
    assert_is_transcript(&ada.stdout, &transcript);
    assert_json_is_transcript(&bob.stdout, &transcript);
    assert_eq!(
        said_by(&transcript, "ada"),
        [
            "before the restart",
            "after the restart",
            "typed while the server was down",
            "after the kill"
        ],
        "every line once, in the order typed"
    );
    assert!(
        ada.stdout
            .iter()
            .any(|l| l.ends_with(": typed while the server was down")),
        "{ada:?}"
    );
    let joins = ada
        .stdout
        .iter()
        .filter(|l| l.starts_with("ada ") && l.ends_with(": joined"));
    assert_eq!(
        joins.count(),
        1 + rejoins,
        "joined, then once per rejoin: {ada:?}"
    );
}

#[tokio::test]
async fn a_rejoin_waits_out_already_exists_while_the_server_still_holds_the_old_membership() {
    let chat = Chat::start(&["--keepalive", "1s"]).await;
    let proxy = Proxy::start(chat.server.addr).await;
    let mut command = chat.command(&["--name", "ada", "--room", "cut"]);
    command.args(["--addr", &proxy.addr.to_string()]);
    let mut ada = Member::spawn(command);
    ada.wait_line("ada joined", |l| l.ends_with(": joined"))
        .await;
    ada.say("before the cut").await;
    ada.wait_said("ada", "before the cut").await;

    proxy.cut();
    ada.say("after the cut").await;
    ada.wait_said("ada", "after the cut").await;
    let rejoined = ada
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("rejoined room cut as ada"));
    assert!(rejoined, "{:?}", ada.stderr.lock().unwrap());
    assert!(
        chat.server
            .log_line("code=AlreadyExists", Duration::from_secs(1))
            .await
            .is_some(),
        "the first rejoins met the old membership: {}",
        chat.server.logs()
    );
    let ada = ada.leave(Some("/quit")).await;
    assert_eq!(ada.code, Some(0), "{ada:?}");
    let transcript = chat.transcript("cut").await;
    assert_is_transcript(&ada.stdout, &transcript);
    let lines: Vec<String> = transcript.iter().map(line_of).collect();
    let said = lines
        .iter()
        .filter(|l| l.ends_with(": after the cut"))
        .count();
    assert_eq!(said, 1, "{lines:#?}");
    let joins = lines.iter().filter(|l| l.ends_with(": joined")).count();
    assert_eq!(joins, 2, "{lines:#?}");
}

#[tokio::test]
async fn a_taken_name_exits_1_a_refused_line_is_reported_and_rooms_and_transcripts_print() {
    let chat = Chat::start(&[]).await;
    let mut ada = chat.member(&["--room", "dev", "--name", "Ada"]);
    ada.wait_line("Ada joined", |l| l.ends_with(": joined"))
        .await;

    let out = chat.run(&["--room", "dev", "--name", " ADA "]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let line = one_error_line(&out);
    assert!(
        line.contains("cannot join room dev as \" ADA \"") && line.contains("pick another --name"),
        "{line}"
    );
    let out = chat
        .run(&["join", "--room", "Not A Room", "--name", "x"])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        one_error_line(&out).contains("InvalidArgument: room:"),
        "{out:?}"
    );

    // A line the chat refuses is reported on stderr; the session goes on.
    ada.say(&"x".repeat(5000)).await;
    ada.say("still here").await;
    ada.wait_said("Ada", "still here").await;
    {
        let stderr = ada.stderr.lock().unwrap();
        assert_eq!(stderr.len(), 1, "{stderr:?}");
        assert!(
            stderr[0].starts_with("township: not sent: ")
                && stderr[0].contains("InvalidArgument: text: must be at most 4096 bytes"),
            "{stderr:?}"
        );
    }

    let out = chat.run(&["rooms"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "dev  1 member  last seq 2\n");
    let out = chat.run(&["rooms", "--json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let room: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        room,
        serde_json::json!({ "name": "dev", "members": 1, "last_seq": 2 })
    );

    let ada = ada.leave(Some(" /quit ")).await;
    assert_eq!(ada.code, Some(0), "{ada:?}");
    // The server records the Left when it sees the stream end, just after the client exits.
    wait_until("Ada's Left is in the transcript", LIMIT, async || {
        let out = chat.run(&["transcript", "--room", "dev"]).await;
        out.stdout.lines().count() == 3
    })
    .await;
    let out = chat.run(&["transcript", "--room", "dev"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(
        lines[0].starts_with("Ada 20") && lines[0].ends_with("Z: joined"),
        "{lines:?}"
    );
    assert!(lines[1].ends_with("Z: still here"), "{lines:?}");
    assert!(lines[2].ends_with("Z: left"), "{lines:?}");
    let out = chat.run(&["--json", "transcript", "--room", "dev"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["joined", "message", "left"]);
    assert_eq!(events[1]["from"], "Ada");
    assert_eq!(events[1]["text"], "still here");
    assert_eq!(events[2]["reason"], "left");
    assert_eq!(events[2]["seq"], 3);

    let out = chat.run(&["transcript"]).await;
    assert_eq!(out.stdout, "no events in room lobby\n", "{out:?}");
    let out = chat.run(&["rooms"]).await;
    assert_eq!(out.stdout, "dev  0 members  last seq 3\n", "{out:?}");
}

#[tokio::test]
async fn addr_takes_several_servers_and_the_first_that_answers_is_used() {
    let chat = Chat::start(&[]).await;
    let nowhere = format!("127.0.0.1:{}", closed_port());
    let both = format!("{nowhere}, {}", chat.listen);
    let mut command = township();
    command.env_remove("TOWNSHIP_CHAT_ADDR").args([
        "--addr",
        &both,
        "--retries",
        "0",
        "chat",
        "rooms",
    ]);
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(0), "{out:?}");

    // Every address in the list must read as one, before anything is dialled.
    let listed = format!("{},nowhere", chat.listen);
    let mut command = township();
    command.args(["--addr", &listed, "chat", "rooms"]);
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("`nowhere`"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_several_servers_a_member_resumes_on_another_when_its_own_is_killed_or_frozen() {
    let lease: &[&str] = &["--presence-lease", "1s"];
    let first = Storage::new(Backend::Postgres).await;
    let storage = [first.replica(), first.replica(), first];
    let killed = chat_on(&storage[0], lease).await;
    let frozen = chat_on(&storage[1], lease).await;
    let last = chat_on(&storage[2], lease).await;
    let listed = format!("{},{},{}", killed.addr, frozen.addr, last.addr);
    let mut command = township();
    command
        .env_remove("TOWNSHIP_CHAT_ADDR")
        .env("TZ", "UTC")
        .args(["--addr", &listed, "--timeout", "2s", "chat"])
        .args(["--room", "far", "--name", "ada"]);
    let mut ada = Member::spawn(command);
    ada.wait_line("ada joined", |l| {
        l.starts_with("ada ") && l.ends_with(": joined")
    })
    .await;
    let rpc = connect(&last).await;
    let _bob = joined(&rpc, "far", "bob", 0).await;
    ada.say("on the first server").await;
    ada.wait_said("ada", "on the first server").await;

    // Killed: its connections are refused, so the first rejoin goes on down the list.
    stop(killed, libc::SIGKILL).await;
    ada.say("typed after the kill").await;
    ada.wait_said("ada", "typed after the kill").await;
    sent(&rpc, "far", "bob", "bob after the kill", "bob-1").await;
    ada.wait_said("bob", "bob after the kill").await;
    assert_eq!(ada.error_lines("rejoined room far as ada"), 1);

    // Frozen: it still takes connections but answers nothing; the keepalive finds the stream
    // dead, and a Join it does not answer within --timeout moves on to the next server.
    frozen.signal(libc::SIGSTOP);
    ada.say("typed while frozen").await;
    ada.wait_said("ada", "typed while frozen").await;
    sent(&rpc, "far", "bob", "bob after the freeze", "bob-2").await;
    ada.wait_said("bob", "bob after the freeze").await;
    assert_eq!(ada.error_lines("rejoined room far as ada"), 2);

    let ada = ada.leave(Some("/quit")).await;
    frozen.signal(libc::SIGKILL);
    assert_eq!(ada.code, Some(0), "{ada:?}");
    let events = transcript(&rpc, "far").await.events;
    assert_consecutive(&events, 1);
    assert_is_transcript(&ada.stdout, &events);
    let lines: Vec<String> = events.iter().map(line_of).collect();
    assert_eq!(
        said_by(&events, "ada"),
        [
            "on the first server",
            "typed after the kill",
            "typed while frozen"
        ],
        "every line once, in the order typed: {lines:#?}"
    );
    let lost = lines
        .iter()
        .filter(|l| l.starts_with("ada ") && l.ends_with(": left (server lost)"))
        .count();
    assert_eq!(lost, 2, "one Left for each server lost: {lines:#?}");
}

#[tokio::test]
async fn a_chat_that_is_down_exits_3_and_usage_errors_exit_2() {
    let nowhere = format!("127.0.0.1:{}", closed_port());
    let commands: [&[&str]; 4] = [
        &["--name", "ada"],
        &["join", "--name", "ada", "--room", "dev"],
        &["rooms"],
        &["transcript", "--room", "dev"],
    ];
    for args in commands {
        let mut command = township();
        command
            .args(["--addr", &nowhere, "--retries", "0", "chat"])
            .args(args);
        let out = run(command, LIMIT).await;
        assert_eq!(out.code, Some(3), "{args:?}: {out:?}");
        let line = one_error_line(&out);
        assert!(
            line.contains(&format!("cannot reach the chat service at {nowhere}")),
            "{line}"
        );
    }
    // The address from TOWNSHIP_CHAT_ADDR is the one dialled.
    let mut command = township();
    command
        .args(["--retries", "0", "chat", "rooms"])
        .env("TOWNSHIP_CHAT_ADDR", &nowhere);
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(one_error_line(&out).contains(&nowhere), "{out:?}");

    let usage: [&[&str]; 4] = [
        &[],                                           // no --name
        &["--room", "dev", "rooms"],                   // join flags before a subcommand
        &["rooms", "--name", "ada"],                   // rooms takes no --name
        &["--name", "ada", "--reconnect-for", "soon"], // not a duration
    ];
    for args in usage {
        let mut command = township();
        command
            .args(["--addr", &nowhere, "--retries", "0", "chat"])
            .args(args);
        let out = run(command, LIMIT).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(
            !out.stderr.contains("cannot reach"),
            "nothing dialled: {out:?}"
        );
    }
}

#[tokio::test]
async fn a_member_let_go_for_being_idle_is_told_so_and_exits_1_without_rejoining() {
    let chat = Chat::start(&["--idle-timeout", "2s"]).await;
    let mut quiet = chat.member(&["--room", "naps", "--name", "quiet"]);
    quiet
        .wait_line("quiet's own left (idle)", |l| {
            l.starts_with("quiet ") && l.ends_with(": left (idle)")
        })
        .await;
    let status = tokio::time::timeout(LIMIT, quiet.child.wait())
        .await
        .expect("the session ends by itself")
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let stderr = quiet.stderr.lock().unwrap().clone();
    assert!(stderr.iter().any(|l| l.contains("idle")), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("rejoin")), "{stderr:?}");
}
