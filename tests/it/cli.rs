//! The `township` CLI against a real time-server: output, flags, env vars, health probes, and a
//! server that is down.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use township_tests::{closed_port, spawn_service, township};

use crate::support::{cli::township_with, wait::within};

#[tokio::test]
async fn township_time_prints_the_ctime_line_then_the_greeting() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let addr = server.addr.to_string();
    let out = township_with(&["time", "--addr", &addr], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].len(), 24, "ctime line: {:?}", lines[0]);
    chrono::NaiveDateTime::parse_from_str(lines[0], "%a %b %e %H:%M:%S %Y").expect("ctime text");
    assert_eq!(lines[1], "Have a nice day!");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[tokio::test]
async fn global_flags_go_before_or_after_the_subcommand_and_the_addr_may_have_http() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let addr = server.addr.to_string();
    let with_scheme = format!("http://{addr}");
    let argument_orders: [&[&str]; 3] = [
        &[
            "--addr",
            &addr,
            "--json",
            "time",
            "--time-zone",
            "Asia/Tokyo",
        ],
        &[
            "time",
            "--time-zone",
            "Asia/Tokyo",
            "--json",
            "--addr",
            &with_scheme,
        ],
        &[
            "--timeout",
            "5s",
            "time",
            "--addr",
            &addr,
            "--json",
            "--time-zone",
            "Asia/Tokyo",
        ],
    ];
    for args in argument_orders {
        let out = township_with(args, &[]).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert!(
            out.stdout.contains(r#""time_zone":"Asia/Tokyo""#),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(r#""greeting":"Have a nice day!""#),
            "{}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn the_time_address_comes_from_township_time_addr() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let addr = server.addr.to_string();
    let out = township_with(&["time"], &[("TOWNSHIP_TIME_ADDR", &addr)]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.ends_with("Have a nice day!\n"));
}

#[tokio::test]
async fn township_time_watch_prints_a_line_per_interval_until_the_server_stops() {
    let mut server = spawn_service("time-server", &[]).await.unwrap();
    let addr = server.addr.to_string();
    let mut command = township();
    command.args(["time", "--addr", &addr, "--watch", "--interval", "200ms"]);
    let mut cli = command.spawn().unwrap();
    let mut stdout = BufReader::new(cli.stdout.take().expect("a stdout pipe")).lines();
    let mut lines = Vec::new();
    within("two ticks", Duration::from_secs(20), async {
        while lines.len() < 2 {
            let tick = stdout.next_line().await.unwrap();
            lines.push(tick.expect("a tick before the end"));
        }
    })
    .await;
    server.signal(libc::SIGTERM);
    let out = within(
        "the CLI ends when the stream ends",
        Duration::from_secs(20),
        async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                lines.push(line);
            }
            cli.wait_with_output().await.unwrap()
        },
    )
    .await;
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(15))
            .await
            .and_then(|s| s.code()),
        Some(0)
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        lines.len() >= 3,
        "several ticks then the greeting: {lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("Have a nice day!"));
    for line in &lines[..lines.len() - 1] {
        chrono::NaiveDateTime::parse_from_str(line, "%a %b %e %H:%M:%S %Y").expect("ctime text");
    }
}

#[tokio::test]
async fn a_server_that_is_down_gets_one_line_naming_it_after_retries_and_exit_3() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let out = township_with(&["time", "--addr", &addr, "--retries", "2"], &[]).await;
    let took = started.elapsed();
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stdout.is_empty());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(lines[0].starts_with("township: "), "{}", lines[0]);
    assert!(lines[0].contains(&addr), "names the address: {}", lines[0]);
    assert!(lines[0].contains("tried 3 times"), "{}", lines[0]);
    // Backoff with jitter: each wait lies in the upper half of its step (200 ms, then 400 ms).
    assert!(
        took >= Duration::from_millis(300),
        "backed off at least 100 ms then 200 ms, took {took:?}"
    );
}

#[tokio::test]
async fn a_bad_address_is_a_usage_error() {
    let out = township_with(&["time", "--addr", "no-port-here"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("no-port-here"), "{}", out.stderr);
}

#[tokio::test]
async fn a_bad_zone_is_reported_with_the_services_message_and_exit_1() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let addr = server.addr.to_string();
    let out = township_with(&["time", "--addr", &addr, "--time-zone", "Nope/Nope"], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("InvalidArgument") && out.stderr.contains("time_zone"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn township_health_exits_0_when_serving_4_for_an_unknown_service_and_3_when_down() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let addr = server.addr.to_string();

    let out = township_with(&["health", &addr], &[]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "SERVING\n"),
        "{out:?}"
    );

    let out = township_with(&["health", &addr, "township.time.v1.TimeService"], &[]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "SERVING\n"),
        "{out:?}"
    );

    let out = township_with(&["health", &addr, "no.such.Service"], &[]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(4), "SERVICE_UNKNOWN\n"),
        "{out:?}"
    );
    assert!(out.stderr.is_empty(), "one line of output: {out:?}");

    let down = format!("127.0.0.1:{}", closed_port());
    let out = township_with(&["health", &down, "--retries", "0"], &[]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}
