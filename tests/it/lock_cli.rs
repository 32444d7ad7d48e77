//! The `township lock` CLI against a real lock-server: `acquire` prints the grant with its
//! fencing token, holds and releases; `inspect` shows the holder; a kill -9 of a CLI holding a
//! write lock frees it within its ttl.

use std::time::{Duration, Instant};

use township_proto::lock::v1::Mode::Write;
use township_tests::{run, township};

use crate::support::lock::*;

#[tokio::test]
async fn kill_9_of_a_process_holding_a_write_lock_frees_it_within_its_ttl() {
    let (_dir, server, rpc) = lock_server().await;
    let (mut child, _lines, acquired) =
        cli_holding(server.addr, &["doc", "--ttl", "2s", "--hold", "120s"]).await;
    assert!(acquired.starts_with("acquired doc (Write)"), "{acquired}");
    let pid = child.id().expect("running");
    assert_eq!(
        holders(&rpc, "doc").await,
        vec![format!("township-cli@{pid}")]
    );
    let waiter = spawn_acquire(&rpc, ask("B", &[("doc", Write)], Duration::from_secs(20)));
    wait_for_waiters(&rpc, "doc", &["B"]).await;

    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let b = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiter is answered")
        .unwrap()
        .expect("the waiter gets the lock");
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "freed within the ttl, not the 120 s hold: {:?}",
        killed.elapsed()
    );
    assert!(token(&b, "doc") > 0);
    assert_eq!(holders(&rpc, "doc").await, strings(&["B"]));
}

#[tokio::test]
async fn the_cli_acquires_holds_releases_and_inspects() {
    let (_dir, server, rpc) = lock_server().await;
    let addr = server.addr.to_string();
    let mut command = township();
    command.args(["--addr", &addr, "lock", "acquire", "doc", "--hold", "1s"]);
    let out = run(command, Duration::from_secs(60)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("acquired doc (Write) lease "),
        "{lines:?}"
    );
    let (_, token) = lines[0]
        .split_once(" fencing token ")
        .expect("a token on the line");
    assert!(token.parse::<u64>().unwrap() > 0, "{lines:?}");
    assert_eq!(lines[1], "released doc");
    assert!(state(&rpc, "doc").await.is_none());

    let (mut child, mut lines, _) = cli_holding(server.addr, &["doc", "--hold", "5s"]).await;
    let pid = child.id().expect("running");
    let mut command = township();
    command.args(["--addr", &addr, "lock", "inspect"]);
    let out = run(command, Duration::from_secs(60)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let shown: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(shown.first(), Some(&"doc"), "{shown:?}");
    let holder = format!("  holder MODE_WRITE township-cli@{pid} token ");
    assert!(
        shown.iter().any(|l| l.starts_with(&holder)),
        "{holder:?} in {shown:?}"
    );

    let released = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("released after the hold")
        .unwrap();
    assert_eq!(released.as_deref(), Some("released doc"));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the CLI exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
