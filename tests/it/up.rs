//! `township up`: every server as a child process, SERVING, a table, and a graceful stop.

use std::{path::Path, time::Duration};

use tokio::io::{AsyncBufReadExt, BufReader};
use tonic_health::pb::health_check_response::ServingStatus;
use township_tests::{binary, health_status, run, township};

use crate::support::process::free_port_range;

#[tokio::test]
async fn township_up_runs_the_town_until_sigterm_then_stops_every_server() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_range();
    let mut command = township();
    command
        .current_dir(dir.path())
        .args(["up", "--port-base", &base.to_string()]);
    let mut up = command.spawn().unwrap();
    let stdout = up.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut table = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("Township is up") {
                return true;
            }
            table.push(line);
        }
        false
    })
    .await
    .expect("up is ready within 60 s");
    assert!(ready, "up printed its table: {table:?}");
    let time_row = format!("127.0.0.1:{base}");
    assert!(table[0].starts_with("SERVICE"), "{table:?}");
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("time") && l.contains(&time_row)),
        "{table:?}"
    );

    let lock_row = format!("127.0.0.1:{}", base + 5);
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("lock") && l.contains(&lock_row)),
        "{table:?}"
    );
    let phonebook_row = format!("127.0.0.1:{}", base + 3);
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("phonebook") && l.contains(&phonebook_row)),
        "{table:?}"
    );
    let doctor_row = format!("127.0.0.1:{}", base + 1);
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("doctor") && l.contains(&doctor_row)),
        "{table:?}"
    );
    let doctor_addr = doctor_row.parse().unwrap();
    let doctor_health = health_status(doctor_addr, "township.doctor.v1.DoctorService").await;
    assert_eq!(doctor_health.unwrap(), ServingStatus::Serving);
    let mut doctor = township();
    let config = tempfile::tempdir().unwrap();
    doctor.env("TOWNSHIP_CONFIG_DIR", config.path()).args([
        "doctor",
        "--name",
        "Up",
        "--addr",
        &doctor_row,
    ]);
    let out = run(doctor, Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "the greeting: {out:?}");
    let chat_row = format!("127.0.0.1:{}", base + 2);
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("chat") && l.contains(&chat_row)),
        "{table:?}"
    );
    let chat_addr = chat_row.parse().unwrap();
    let chat_health = health_status(chat_addr, "township.chat.v1.ChatService").await;
    assert_eq!(chat_health.unwrap(), ServingStatus::Serving);
    let mut chat = township();
    chat.args(["chat", "rooms", "--addr", &chat_row]);
    let out = run(chat, Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "no rooms yet\n");
    let phonebook_addr = phonebook_row.parse().unwrap();
    let phonebook_health =
        health_status(phonebook_addr, "township.phonebook.v1.PhoneBookService").await;
    assert_eq!(phonebook_health.unwrap(), ServingStatus::Serving);
    let mut phonebook = township();
    phonebook.args(["phonebook", "list", "--addr", &phonebook_row]);
    let out = run(phonebook, Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "the phone book is empty\n");

    let lock_addr = lock_row.parse().unwrap();
    let lock_health = health_status(lock_addr, "township.lock.v1.LockService").await;
    assert_eq!(lock_health.unwrap(), ServingStatus::Serving);
    let addr = time_row.parse().unwrap();
    assert_eq!(
        health_status(addr, "").await.unwrap(),
        ServingStatus::Serving
    );
    let mut time = township();
    time.args(["time", "--addr", &time_row]);
    let out = run(time, Duration::from_secs(30)).await;
    assert!(out.stdout.ends_with("Have a nice day!\n"), "{out:?}");
    assert!(dir.path().join("township-data/time").is_dir());
    assert!(
        dir.path().join("township-data/lock/lock.db").is_file(),
        "lock keeps its epoch there"
    );
    assert!(dir.path().join("township-data/logs/time.log").is_file());
    assert!(
        dir.path()
            .join("township-data/phonebook/phonebook.db")
            .is_file(),
        "the phone book keeps its entries there"
    );

    assert!(
        dir.path().join("township-data/doctor/doctor.db").is_file(),
        "the doctor keeps its patients there"
    );

    assert!(
        dir.path().join("township-data/chat/chat.db").is_file(),
        "the chat keeps its transcripts there"
    );

    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(up.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .expect("up stops within 30 s")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        health_status(addr, "").await.is_err(),
        "the time server is gone"
    );
    assert!(
        health_status(lock_addr, "").await.is_err(),
        "the lock server is gone"
    );
    assert!(
        health_status(phonebook_addr, "").await.is_err(),
        "the phone book server is gone"
    );
    assert!(
        health_status(doctor_addr, "").await.is_err(),
        "the doctor server is gone"
    );
    assert!(
        health_status(chat_addr, "").await.is_err(),
        "the chat server is gone"
    );
}

#[tokio::test]
async fn township_up_names_a_port_in_use() {
    let base = free_port_range();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", base)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut command = township();
    command
        .current_dir(dir.path())
        .args(["up", "--port-base", &base.to_string()]);
    let out = run(command, Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(5), "{out:?}");
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{base}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("not free"), "{}", out.stderr);
}

#[tokio::test]
async fn township_up_says_how_to_build_a_missing_server_binary() {
    let dir = tempfile::tempdir().unwrap();
    let lonely = dir.path().join("township");
    std::fs::copy(binary("township"), &lonely).unwrap();
    let mut command = tokio::process::Command::new(&lonely);
    command
        .current_dir(dir.path())
        .args(["up", "--port-base", &free_port_range().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = run(command, Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(5), "{out:?}");
    assert!(
        out.stderr.contains("time-server not found"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("cargo build"), "{}", out.stderr);
    assert!(
        !Path::new(&dir.path().join("township-data")).exists(),
        "nothing started"
    );
}
