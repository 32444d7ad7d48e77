//! Server configuration: flags and env vars, and one line plus exit 64 for bad config (a bank
//! admin token file that others may read included); one line plus exit 65 for a damaged
//! database file; one line naming the holder plus exit 75 for a data directory another server
//! holds.

use std::time::Duration;

use township_proto::time::v1::{GetTimeRequest, time_service_client::TimeServiceClient};
use township_tests::spawn_service_with_env;

use crate::support::process::{assert_serving, run_binary, server_on, stop};

/// Runs the time-server with `args` and `env` to its end.
async fn time_server(args: &[&str], env: &[(&str, &str)]) -> township_tests::Output {
    run_binary("time-server", args, env).await
}

#[tokio::test]
async fn bad_config_exits_64_with_one_line_on_stderr() {
    // (arguments, environment, what the error line must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 6] = [
        (
            &["--time-zone", "Atlantis/Capital"],
            &[],
            "Atlantis/Capital",
        ),
        (&["--listen", "not-an-address"], &[], "not-an-address"),
        (&["--shutdown-grace", "soon"], &[], "soon"),
        (&["--call-deadline", "0s"], &[], "above zero"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
        (&[], &[("TOWNSHIP_LISTEN", "127.0.0.1:99999")], "99999"),
    ];
    for (args, env, named) in cases {
        let out = time_server(args, env).await;
        assert_eq!(out.code, Some(64), "{args:?} {env:?}: {out:?}");
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "one line: {:?}",
            out.stderr
        );
        assert!(
            out.stderr.contains(named),
            "the line names {named:?}: {:?}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
    }
}

#[tokio::test]
async fn help_exits_0() {
    let out = time_server(&["--help"], &[]).await;
    assert_eq!(out.code, Some(0));
    for flag in [
        "--listen",
        "--data-dir",
        "--log-format",
        "--shutdown-grace",
        "TOWNSHIP_LISTEN",
    ] {
        assert!(out.stdout.contains(flag), "--help mentions {flag}");
    }
}

#[tokio::test]
async fn a_port_in_use_is_one_clear_line_and_a_failure_exit() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = time_server(&["--listen", &addr], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out
        .stderr
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(last.contains(&addr) && last.contains("in use"), "{last}");
}

#[tokio::test]
async fn env_vars_configure_the_server_and_json_logs_are_json() {
    let env = [
        ("TOWNSHIP_TIME_ZONE", "Pacific/Auckland"),
        ("TOWNSHIP_LOG_FORMAT", "json"),
    ];
    let server = spawn_service_with_env("time-server", &[], &env)
        .await
        .unwrap();
    let mut client = TimeServiceClient::new(server.channel().await);
    let reply = client
        .get_time(GetTimeRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.time_zone, "Pacific/Auckland");
    let line = server
        .log_line("GetTime", Duration::from_secs(10))
        .await
        .expect("a log line");
    assert!(
        line.starts_with('{') && line.ends_with('}'),
        "JSON log line: {line}"
    );
    assert!(
        line.contains("\"method\":\"/township.time.v1.TimeService/GetTime\""),
        "{line}"
    );
}

#[tokio::test]
async fn a_bank_admin_token_file_that_others_may_read_exits_64_naming_it_and_not_its_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "sekrit-admin-token").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let args = ["--listen", "127.0.0.1:0", "--data-dir", data_dir];
    let out = run_binary("bank-server", &args, &[]).await;
    assert_eq!(out.code, Some(64), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{:?}", out.stderr);
    assert!(out.stderr.contains("admin-token") && out.stderr.contains("chmod 600"));
    assert!(!out.stderr.contains("sekrit"), "{:?}", out.stderr);
    assert!(out.stdout.is_empty(), "it does not start: {:?}", out.stdout);
}

#[tokio::test]
async fn a_damaged_database_file_is_one_line_naming_it_and_exit_65_for_every_stateful_server() {
    let servers = [
        ("bank-server", "bank.db"),
        ("chat-server", "chat.db"),
        ("doctor-server", "doctor.db"),
        ("lock-server", "lock.db"),
        ("phonebook-server", "phonebook.db"),
    ];
    for (server, file) in servers {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), vec![0xAB; 8192]).unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let args = ["--listen", "127.0.0.1:0", "--data-dir", data_dir];
        let out = run_binary(server, &args, &[]).await;
        assert_eq!(out.code, Some(65), "{server}: {out:?}");
        let last = out.stderr.trim().lines().last().unwrap_or_default();
        assert!(
            last.contains(file) && last.contains("damaged"),
            "{server}: {last}"
        );
        assert!(!out.stderr.contains("panicked"), "{server}: {out:?}");
    }
}

#[tokio::test]
async fn a_second_server_on_a_data_directory_in_use_exits_75_naming_the_holders_pid() {
    let servers = [
        ("chat-server", "township.chat.v1.ChatService"),
        ("doctor-server", "township.doctor.v1.DoctorService"),
        ("lock-server", "township.lock.v1.LockService"),
        ("phonebook-server", "township.phonebook.v1.PhoneBookService"),
    ];
    for (server, service) in servers {
        let dir = tempfile::tempdir().unwrap();
        let first = server_on(server, dir.path(), None, &[]).await;
        let data_dir = dir.path().to_str().unwrap();
        let args = ["--listen", "127.0.0.1:0", "--data-dir", data_dir];
        let out = run_binary(server, &args, &[]).await;
        assert_eq!(out.code, Some(75), "{server}: {out:?}");
        let last = out.stderr.trim().lines().last().unwrap_or_default();
        assert!(
            last.contains(data_dir) && last.contains(&format!("PID {}", first.pid())),
            "{server}: {last}"
        );
        assert!(!out.stderr.contains("panicked"), "{server}: {out:?}");
        assert_serving(&first, service).await;
        stop(first, libc::SIGTERM).await;
        let again = server_on(server, dir.path(), None, &[]).await;
        stop(again, libc::SIGKILL).await;
        let after_a_crash = server_on(server, dir.path(), None, &[]).await;
        assert_serving(&after_a_crash, service).await;
    }
}

#[tokio::test]
async fn bank_replicas_share_a_data_directory_that_other_servers_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let lock_addr = format!("127.0.0.1:{}", township_tests::closed_port());
    let bank = ["--lock-addr", lock_addr.as_str()];
    let one = server_on("bank-server", dir.path(), None, &bank).await;
    let two = server_on("bank-server", dir.path(), None, &bank).await;
    let data_dir = dir.path().to_str().unwrap();
    let args = ["--listen", "127.0.0.1:0", "--data-dir", data_dir];
    let out = run_binary("chat-server", &args, &[]).await;
    assert_eq!(out.code, Some(75), "{out:?}");
    assert!(out.stderr.contains("in use"), "{out:?}");
    for replica in [one, two] {
        assert_serving(&replica, "township.bank.v1.BankService").await;
        stop(replica, libc::SIGTERM).await;
    }
}
