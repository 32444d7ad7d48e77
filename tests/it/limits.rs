//! Nothing unbounded: past the server-wide caps on open streams and on unary calls in flight, a
//! call is refused at once with RESOURCE_EXHAUSTED and a RetryInfo, while health checks and other
//! clients are still served; a unary call without a deadline of its own ends at the server's.

use std::time::Duration;

use tonic::Code;
use township_proto::{
    lock::v1::{self as pb, lock_service_client::LockServiceClient},
    time::v1::{GetTimeRequest, WatchTimeRequest, time_service_client::TimeServiceClient},
};

use crate::support::{
    bank::lock_server_with,
    lock::{LONG_WAIT, Rpc, SOON, Session, acquire, ask, ask_ttl, release, waiters},
    process::assert_serving,
    status::{expect_code, retry_delay},
    time::{TIME_SERVICE, time_server},
    wait::{wait_until, within},
};

const STREAMS: usize = 1000;
const CONNECTIONS: usize = 10;
const STREAM_BOUND: usize = 600;

#[tokio::test]
async fn a_thousand_streams_over_ten_connections_past_the_bound_are_refused_and_others_served() {
    let bound = STREAM_BOUND.to_string();
    let (server, _) = time_server(&["--max-open-streams", &bound]).await;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(TimeServiceClient::new(server.channel().await));
    }
    let calls = (0..STREAMS).map(|i| {
        let mut client = clients[i % CONNECTIONS].clone();
        tokio::spawn(async move {
            let mut stream = client
                .watch_time(WatchTimeRequest::default())
                .await?
                .into_inner();
            let first = stream.message().await?;
            assert!(first.is_some(), "an open stream ticks");
            Ok::<_, tonic::Status>(stream)
        })
    });
    let mut open = Vec::new();
    let mut refused = 0;
    for call in calls.collect::<Vec<_>>() {
        let answer = within("a WatchTime is answered", Duration::from_secs(60), call)
            .await
            .expect("the call's task did not panic");
        match answer {
            Ok(stream) => open.push(stream),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(retry_delay(&status) > Duration::ZERO, "{status:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(open.len(), STREAM_BOUND, "exactly the bound is open");
    assert_eq!(refused, STREAMS - STREAM_BOUND);

    assert_serving(&server, TIME_SERVICE).await;
    let mut another = TimeServiceClient::new(server.channel().await);
    let reply = within(
        "another client is served",
        SOON,
        another.get_time(GetTimeRequest::default()),
    )
    .await;
    assert!(reply.is_ok(), "{reply:?}");

    open.truncate(STREAM_BOUND - 1);
    wait_until("a closed stream's place is free again", SOON, async || {
        another
            .watch_time(WatchTimeRequest::default())
            .await
            .is_ok()
    })
    .await;
}

/// A lock-server with `extra` flags and a client of it (the server's data dir kept alive).
async fn lock_server(extra: &[&str]) -> (tempfile::TempDir, township_tests::ServiceProcess, Rpc) {
    let dir = tempfile::tempdir().unwrap();
    let server = lock_server_with(dir.path(), None, extra).await;
    let rpc = LockServiceClient::new(server.channel().await);
    (dir, server, rpc)
}

#[tokio::test]
async fn unary_calls_past_the_bound_are_refused_at_once_and_health_is_still_answered() {
    let (_dir, server, rpc) = lock_server(&["--max-concurrent-calls", "3"]).await;
    // The holder is a Session stream, which the calls' bound does not count.
    let mut holder = Session::open(&rpc).await;
    holder
        .acquire(1, ask("holder", &[("r", pb::Mode::Write)], SOON))
        .await;
    holder.lease(1).await;
    // Each waiter tries again while a probe below holds the place it needs for a moment.
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            let rpc = rpc.clone();
            tokio::spawn(async move {
                loop {
                    let request = ask(&format!("w{i}"), &[("r", pb::Mode::Read)], LONG_WAIT);
                    match acquire(&rpc, request).await {
                        Err(busy) if busy.code() == Code::ResourceExhausted => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        answer => return answer,
                    }
                }
            })
        })
        .collect();

    let mut status = None;
    wait_until(
        "the three waiting calls fill the bound",
        LONG_WAIT,
        async || match release(&rpc, "no-such-lease").await {
            Err(refusal) if refusal.code() == Code::ResourceExhausted => {
                status = Some(refusal);
                true
            }
            _ => false,
        },
    )
    .await;
    let refusal = status.expect("a refusal");
    assert!(retry_delay(&refusal) > Duration::ZERO, "{refusal:?}");
    assert_serving(&server, "township.lock.v1.LockService").await;

    drop(holder);
    for waiter in waiting {
        let lease = within("the waiters are granted", SOON, waiter)
            .await
            .expect("no panic");
        assert!(lease.is_ok(), "{lease:?}");
    }
    let again = within("calls are taken again", SOON, async {
        acquire(&rpc, ask("after", &[("s", pb::Mode::Write)], SOON)).await
    })
    .await;
    assert!(again.is_ok(), "{again:?}");
}

#[tokio::test]
async fn a_unary_call_without_a_deadline_ends_at_the_servers_call_deadline() {
    let (_dir, _server, rpc) = lock_server(&["--call-deadline", "1s"]).await;
    acquire(
        &rpc,
        ask_ttl("holder", &[("r", pb::Mode::Write)], LONG_WAIT, SOON),
    )
    .await
    .expect("the lock is free");
    let waiter = acquire(&rpc, ask("waiter", &[("r", pb::Mode::Write)], LONG_WAIT));
    let status = expect_code(
        within(
            "the deadline ends the wait",
            Duration::from_secs(20),
            waiter,
        )
        .await,
        Code::DeadlineExceeded,
    );
    assert!(status.message().contains("deadline"), "{status:?}");
    wait_until("the waiter is gone from the queue", SOON, async || {
        waiters(&rpc, "r").await.is_empty()
    })
    .await;
}
