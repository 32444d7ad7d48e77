//! The lock service against a real lock-server: readers/writers admission and its queue order,
//! all-or-nothing multi-resource grants, leases (expiry, refresh, keep-alive streams), fencing
//! tokens across a kill -9, cancelled and deadline-bounded waits, Session streams, a stress run
//! with an independent overlap checker, and the real grpcurl (the CLI's tests are in `lock_cli`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use township_lock_client::{LockClient, Mode};
use township_proto::lock::v1::{self as pb, Mode::Read, Mode::Write};

use crate::support::{cli::json, lock::*, rng::Rng, status::expect_code, wait::wait_until};

#[tokio::test]
async fn readers_share_a_resource_and_a_writer_excludes_everyone() {
    let (_dir, _server, rpc) = lock_server().await;
    let short = Duration::from_millis(500);
    let r1 = acquire(&rpc, ask("r1", &[("doc", Read)], SOON))
        .await
        .unwrap();
    let r2 = acquire(&rpc, ask("r2", &[("doc", Read)], SOON))
        .await
        .unwrap();
    assert_eq!(holders(&rpc, "doc").await, strings(&["r1", "r2"]));

    let refused = acquire(&rpc, ask("w", &[("doc", Write)], short)).await;
    expect_code(refused, Code::DeadlineExceeded);
    assert_eq!(holders(&rpc, "doc").await, strings(&["r1", "r2"]));
    assert!(
        waiters(&rpc, "doc").await.is_empty(),
        "the timed-out writer left"
    );

    release(&rpc, &r1.lease_id).await.unwrap();
    release(&rpc, &r2.lease_id).await.unwrap();
    let w = acquire(&rpc, ask("w", &[("doc", Write)], SOON))
        .await
        .unwrap();
    assert_eq!(holders(&rpc, "doc").await, strings(&["w"]));

    let refused = acquire(&rpc, ask("r3", &[("doc", Read)], short)).await;
    expect_code(refused, Code::DeadlineExceeded);
    assert_eq!(holders(&rpc, "doc").await, strings(&["w"]));
    release(&rpc, &w.lease_id).await.unwrap();
    assert!(state(&rpc, "doc").await.is_none(), "nothing left behind");
}

#[tokio::test]
async fn a_reader_arriving_after_a_waiting_writer_waits_behind_it() {
    let (_dir, _server, rpc) = lock_server().await;
    let a = acquire(&rpc, ask("A", &[("doc", Read)], SOON))
        .await
        .unwrap();
    let w = spawn_acquire(&rpc, ask("W", &[("doc", Write)], LONG_WAIT));
    wait_for_waiters(&rpc, "doc", &["W"]).await;
    let r = spawn_acquire(&rpc, ask("R", &[("doc", Read)], LONG_WAIT));
    wait_for_waiters(&rpc, "doc", &["W", "R"]).await;
    assert_eq!(holders(&rpc, "doc").await, strings(&["A"]));

    release(&rpc, &a.lease_id).await.unwrap();
    let w = granted_soon(w).await;
    assert_eq!(holders(&rpc, "doc").await, strings(&["W"]));
    assert_eq!(waiters(&rpc, "doc").await, strings(&["R"]));
    assert!(!r.is_finished(), "the reader still waits behind the writer");

    release(&rpc, &w.lease_id).await.unwrap();
    let r = granted_soon(r).await;
    assert_eq!(holders(&rpc, "doc").await, strings(&["R"]));
    assert!(
        token(&w, "doc") < token(&r, "doc"),
        "W {w:?} before R {r:?}"
    );
}

#[tokio::test]
async fn readers_queued_behind_a_writer_enter_together() {
    let (_dir, _server, rpc) = lock_server().await;
    let w1 = acquire(&rpc, ask("W1", &[("doc", Write)], SOON))
        .await
        .unwrap();
    let r1 = spawn_acquire(&rpc, ask("R1", &[("doc", Read)], LONG_WAIT));
    wait_for_waiters(&rpc, "doc", &["R1"]).await;
    let r2 = spawn_acquire(&rpc, ask("R2", &[("doc", Read)], LONG_WAIT));
    wait_for_waiters(&rpc, "doc", &["R1", "R2"]).await;
    let w2 = spawn_acquire(&rpc, ask("W2", &[("doc", Write)], LONG_WAIT));
    wait_for_waiters(&rpc, "doc", &["R1", "R2", "W2"]).await;
    let r3 = spawn_acquire(&rpc, ask("R3", &[("doc", Read)], LONG_WAIT));
    wait_for_waiters(&rpc, "doc", &["R1", "R2", "W2", "R3"]).await;

    release(&rpc, &w1.lease_id).await.unwrap();
    granted_soon(r1).await;
    granted_soon(r2).await;
    assert_eq!(holders(&rpc, "doc").await, strings(&["R1", "R2"]));
    assert_eq!(waiters(&rpc, "doc").await, strings(&["W2", "R3"]));
    assert!(!w2.is_finished() && !r3.is_finished());
}

#[tokio::test]
async fn multi_target_acquires_in_opposite_orders_do_not_deadlock() {
    let (_dir, server, _rpc) = lock_server().await;
    let mut tasks = Vec::new();
    for (name, order) in [("ab", ["A", "B"]), ("ba", ["B", "A"])] {
        let client =
            LockClient::new(server.channel().await, name).with_wait(Duration::from_secs(30));
        tasks.push(tokio::spawn(async move {
            let targets = [(order[0], Mode::Write), (order[1], Mode::Write)];
            for _ in 0..100 {
                client
                    .with_locks(&targets, async |lease| {
                        assert!(lease.token("A").is_some() && lease.token("B").is_some());
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await
    .expect("both finish their 100 acquires: no deadlock");
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let (_dir, _server, rpc) = lock_server().await;
    let wait = Duration::from_secs(1);
    let ok = || ask("bad", &[("doc", Write)], wait);
    let long_name = "x".repeat(257);
    let cases: Vec<(&str, pb::AcquireRequest)> = vec![
        ("targets", ask("bad", &[], wait)),
        ("targets[0].resource", ask("bad", &[("", Write)], wait)),
        (
            "targets[0].resource",
            ask("bad", &[(long_name.as_str(), Write)], wait),
        ),
        (
            "targets[1].resource",
            ask("bad", &[("doc", Read), ("doc", Write)], wait),
        ),
        (
            "targets[0].mode",
            ask("bad", &[("doc", pb::Mode::Unspecified)], wait),
        ),
        (
            "ttl",
            pb::AcquireRequest {
                ttl: duration(Duration::from_millis(500)),
                ..ok()
            },
        ),
        (
            "ttl",
            pb::AcquireRequest {
                ttl: duration(Duration::from_secs(301)),
                ..ok()
            },
        ),
    ];
    for (field, request) in cases {
        let status = expect_code(acquire(&rpc, request).await, Code::InvalidArgument);
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "names {field}: {status:?}"
        );
    }
    // A 256-byte name is fine (the limit is inclusive).
    let longest = "y".repeat(256);
    let lease = acquire(&rpc, ask("ok", &[(longest.as_str(), Write)], wait))
        .await
        .unwrap();
    release(&rpc, &lease.lease_id).await.unwrap();

    for result in [release(&rpc, "").await, refresh(&rpc, "").await] {
        let status = expect_code(result, Code::InvalidArgument);
        assert!(
            status.message().starts_with("lease_id: "),
            "names lease_id: {status:?}"
        );
    }
    assert!(
        state(&rpc, "doc").await.is_none(),
        "no bad request changed anything"
    );
}

#[tokio::test]
async fn a_lease_expires_after_its_ttl_and_the_waiter_gets_the_lock() {
    let (_dir, _server, rpc) = lock_server().await;
    let a = acquire(
        &rpc,
        ask_ttl("A", &[("doc", Write)], Duration::from_secs(1), SOON),
    )
    .await
    .unwrap();
    let granted_a = Instant::now();
    let b = acquire(&rpc, ask("B", &[("doc", Write)], Duration::from_secs(20)))
        .await
        .expect("B gets the lock once A's lease expires");
    let waited = granted_a.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "not before A's ttl: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(15),
        "soon after it: {waited:?}"
    );
    assert_eq!(holders(&rpc, "doc").await, strings(&["B"]));
    assert!(token(&a, "doc") < token(&b, "doc"));
    expect_code(release(&rpc, &a.lease_id).await, Code::NotFound);
    assert_eq!(holders(&rpc, "doc").await, strings(&["B"]));
}

#[tokio::test]
async fn release_of_an_unknown_or_forged_lease_is_not_found_and_touches_nothing() {
    let (_dir, _server, rpc) = lock_server().await;
    let a = acquire(&rpc, ask("A", &[("doc", Write)], SOON))
        .await
        .unwrap();
    let (seq, secret) = a.lease_id.split_once('-').expect("<seq>-<secret>");
    let secret = u64::from_str_radix(secret, 16).expect("a hex secret");
    let forged = format!("{seq}-{:016x}", secret ^ 0x5a5a_5a5a_5a5a_5a5a);
    let unknown = format!(
        "{:x}-{:016x}",
        u64::from_str_radix(seq, 16).unwrap() + 1000,
        secret
    );
    for id in [forged.as_str(), unknown.as_str(), "garbage"] {
        expect_code(release(&rpc, id).await, Code::NotFound);
        expect_code(refresh(&rpc, id).await, Code::NotFound);
    }
    let doc = state(&rpc, "doc").await.expect("A still holds doc");
    assert_eq!(doc.holders.len(), 1, "{doc:?}");
    assert_eq!(doc.holders[0].owner, "A");
    assert!(
        !format!("{doc:?}").contains(&a.lease_id),
        "Inspect shows nothing that can act on a lease: {doc:?}"
    );

    release(&rpc, &a.lease_id).await.unwrap();
    assert!(state(&rpc, "doc").await.is_none());
    expect_code(release(&rpc, &a.lease_id).await, Code::NotFound);
}

#[tokio::test]
async fn refresh_keeps_a_lease_alive() {
    let (_dir, _server, rpc) = lock_server().await;
    // A 2 s ttl refreshed every 300 ms: a refresh may take well over a second on a loaded
    // machine and still be in time.
    let a = acquire(
        &rpc,
        ask_ttl("A", &[("doc", Write)], Duration::from_secs(2), SOON),
    )
    .await
    .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        refresh(&rpc, &a.lease_id)
            .await
            .expect("a refreshed lease lives on");
    }
    assert_eq!(
        holders(&rpc, "doc").await,
        strings(&["A"]),
        "held 3 times its ttl"
    );

    wait_until("the unrefreshed lease ends", SOON, async || {
        state(&rpc, "doc").await.is_none()
    })
    .await;
    expect_code(refresh(&rpc, &a.lease_id).await, Code::NotFound);
}

#[tokio::test]
async fn a_broken_keep_alive_stream_ends_its_leases_at_once() {
    let (_dir, _server, rpc) = lock_server().await;
    let a = acquire(
        &rpc,
        ask_ttl("A", &[("doc", Write)], Duration::from_secs(60), SOON),
    )
    .await
    .unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::KeepAliveRequest {
        lease_id: a.lease_id.clone(),
    })
    .await
    .unwrap();
    let mut replies = rpc
        .clone()
        .keep_alive(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let reply = tokio::time::timeout(SOON, replies.message())
        .await
        .expect("a keep-alive reply")
        .unwrap()
        .expect("not the end of the stream");
    assert_eq!(reply.lease_id, a.lease_id);
    assert!(!reply.lost, "{reply:?}");
    assert!(reply.expires_at.is_some(), "{reply:?}");
    assert_eq!(holders(&rpc, "doc").await, strings(&["A"]));

    drop(replies);
    drop(tx);
    wait_until("the stream's lease ends", SOON, async || {
        state(&rpc, "doc").await.is_none()
    })
    .await;
    let b = acquire(&rpc, ask("B", &[("doc", Write)], SOON))
        .await
        .expect("the lock is free long before A's 60 s ttl");
    assert!(token(&a, "doc") < token(&b, "doc"));
    expect_code(release(&rpc, &a.lease_id).await, Code::NotFound);
}

#[tokio::test]
async fn the_wait_is_bounded_by_the_call_deadline_and_answered_deadline_exceeded_by_the_service() {
    let (_dir, _server, rpc) = lock_server().await;
    let _a = acquire(&rpc, ask("A", &[("doc", Write)], SOON))
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::AcquireRequest {
        wait_timeout: None,
        ..ask("B", &[("doc", Write)], SOON)
    });
    request.set_timeout(Duration::from_millis(800));
    let answered = tokio::time::timeout(Duration::from_secs(30), rpc.clone().acquire(request))
        .await
        .expect("the deadline bounds the wait");
    let status = expect_code(answered, Code::DeadlineExceeded);
    assert!(
        status.message().contains("not granted"),
        "the service's own answer, not a transport timeout: {status:?}"
    );
    assert!(waiters(&rpc, "doc").await.is_empty());
    assert_eq!(holders(&rpc, "doc").await, strings(&["A"]));
}

#[tokio::test]
async fn a_cancelled_waiter_leaves_no_ghost_grant_and_no_stuck_queue_entry() {
    let (_dir, _server, rpc) = lock_server().await;
    let a = acquire(&rpc, ask("A", &[("doc", Write)], SOON))
        .await
        .unwrap();
    let b = spawn_acquire(&rpc, ask("B", &[("doc", Write)], LONG_WAIT));
    wait_for_waiters(&rpc, "doc", &["B"]).await;

    b.abort();
    assert!(b.await.unwrap_err().is_cancelled());
    wait_for_waiters(&rpc, "doc", &[]).await;
    assert_eq!(holders(&rpc, "doc").await, strings(&["A"]));

    release(&rpc, &a.lease_id).await.unwrap();
    let left = state(&rpc, "doc").await;
    assert!(
        left.is_none(),
        "no ghost grant to the cancelled B: {left:?}"
    );
    acquire(&rpc, ask("C", &[("doc", Write)], SOON))
        .await
        .expect("the lock is free");
}

#[tokio::test]
async fn fencing_tokens_keep_growing_across_a_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, rpc) = lock_server_in(dir.path()).await;
    let mut tokens = Vec::new();
    for (i, resource) in ["doc", "doc", "other", "doc", "other"].iter().enumerate() {
        let mode = if i % 2 == 0 { Write } else { Read };
        let lease = acquire(&rpc, ask("one", &[(resource, mode)], SOON))
            .await
            .unwrap();
        tokens.push(token(&lease, resource));
        if i != 3 {
            release(&rpc, &lease.lease_id).await.unwrap();
        }
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {tokens:?}"
    );
    first.signal(libc::SIGKILL);
    first
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("kill -9 ends it");

    let (_second, rpc) = lock_server_in(dir.path()).await;
    assert!(
        state(&rpc, "doc").await.is_none(),
        "locks live in memory only"
    );
    let lease = acquire(&rpc, ask("two", &[("doc", Write)], SOON))
        .await
        .unwrap();
    let after = token(&lease, "doc");
    let before = *tokens.iter().max().unwrap();
    assert!(
        after > before,
        "after restart {after:#x} > before {before:#x}"
    );
}

#[tokio::test]
async fn stress_32_clients_never_overlap_a_writer_and_tokens_only_grow() {
    const CLIENTS: u64 = 32;
    const MIN_TOTAL: usize = 300;
    const MAX_PER_CLIENT: usize = 2_000;
    const RESOURCES: [&str; 3] = ["s0", "s1", "s2"];
    let (_dir, server, rpc) = lock_server().await;
    let checker = Arc::new(Checker::default());
    let total = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = LockClient::new(server.channel().await, format!("stress-{i}"))
            .with_wait(Duration::from_secs(30));
        let (checker, total) = (checker.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i + 1).wrapping_mul(0xff51_afd7_ed55_8ccd));
            let mut mine = 0;
            loop {
                let elapsed = start.elapsed();
                let enough =
                    elapsed >= Duration::from_secs(5) && total.load(Ordering::Relaxed) >= MIN_TOTAL;
                if enough || elapsed >= Duration::from_secs(60) || mine >= MAX_PER_CLIENT {
                    break;
                }
                let first = rng.below(3);
                let mut targets = vec![RESOURCES[first]];
                if rng.below(5) == 0 {
                    targets.push(RESOURCES[(first + 1 + rng.below(2)) % 3]);
                }
                let targets: Vec<(&str, Mode)> = targets
                    .into_iter()
                    .map(|r| {
                        (
                            r,
                            if rng.below(2) == 0 {
                                Mode::Read
                            } else {
                                Mode::Write
                            },
                        )
                    })
                    .collect();
                let lease = client.acquire(&targets).await.unwrap();
                for &(resource, mode) in &targets {
                    checker.enter(resource, mode, lease.token(resource).unwrap());
                }
                tokio::time::sleep(rng.millis(0, 2)).await;
                for &(resource, mode) in &targets {
                    checker.exit(resource, mode);
                }
                assert!(!lease.is_lost(), "a short hold never loses its lease");
                lease.release().await.unwrap();
                mine += 1;
                total.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let violations = checker.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} violations, first: {:#?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    let total = total.load(Ordering::Relaxed);
    eprintln!("{total} acquisitions in {:?}", start.elapsed());
    assert!(total >= MIN_TOTAL, "only {total} acquisitions");
    let left = rpc
        .clone()
        .inspect(pb::InspectRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(left.resources.is_empty(), "all released: {left:?}");
}

#[tokio::test]
async fn neither_readers_nor_writers_starve_under_continuous_mixed_load() {
    const READERS: usize = 8;
    const WRITERS: usize = 2;
    let (_dir, server, _rpc) = lock_server().await;
    let waits: Arc<Mutex<HashMap<Mode, Waits>>> = Arc::default();
    let reading = Arc::new(AtomicUsize::new(0));
    let most_reading = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let enough = {
        let waits = waits.clone();
        move || {
            let waits = waits.lock().unwrap();
            let count = |mode: Mode| waits.get(&mode).map_or(0, |w: &Waits| w.grants);
            let elapsed = start.elapsed();
            (elapsed >= Duration::from_secs(4)
                && count(Mode::Write) >= 5
                && count(Mode::Read) >= 20)
                || elapsed >= Duration::from_secs(30)
        }
    };
    let mut tasks = Vec::new();
    for i in 0..READERS + WRITERS {
        let mode = if i < READERS { Mode::Read } else { Mode::Write };
        let client = LockClient::new(server.channel().await, format!("{mode:?}-{i}"))
            .with_wait(Duration::from_secs(30));
        let (waits, enough) = (waits.clone(), enough.clone());
        let (reading, most_reading) = (reading.clone(), most_reading.clone());
        tasks.push(tokio::spawn(async move {
            while !enough() {
                let asked = Instant::now();
                let lease = client.acquire(&[("book", mode)]).await.unwrap();
                let waited = asked.elapsed();
                {
                    let mut waits = waits.lock().unwrap();
                    let entry = waits.entry(mode).or_default();
                    entry.grants += 1;
                    entry.longest = entry.longest.max(waited);
                }
                if mode == Mode::Read {
                    let now = reading.fetch_add(1, Ordering::SeqCst) + 1;
                    most_reading.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    reading.fetch_sub(1, Ordering::SeqCst);
                    lease.release().await.unwrap();
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    lease.release().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(90), task)
            .await
            .expect("every waiter got through")
            .unwrap();
    }
    let waits = waits.lock().unwrap();
    let (reads, writes) = (&waits[&Mode::Read], &waits[&Mode::Write]);
    eprintln!(
        "reads: {} grants, longest wait {:?}; writes: {} grants, longest wait {:?}",
        reads.grants, reads.longest, writes.grants, writes.longest
    );
    assert!(writes.grants >= 5, "writers got {} grants", writes.grants);
    assert!(reads.grants >= 20, "readers got {} grants", reads.grants);
    assert!(
        writes.longest < Duration::from_secs(5),
        "a writer waited {:?}",
        writes.longest
    );
    assert!(
        reads.longest < Duration::from_secs(5),
        "a reader waited {:?}",
        reads.longest
    );
    assert!(
        most_reading.load(Ordering::SeqCst) >= 2,
        "readers overlapped"
    );
}

#[tokio::test]
async fn grpcurl_acquire_inspect_and_release_work_with_real_grpcurl() {
    let (_dir, server, rpc) = lock_server().await;
    let data = r#"{"targets": [{"resource": "grpcurl/doc", "mode": "MODE_WRITE"}], "owner": "grpcurl", "ttl": "30s", "waitTimeout": "5s"}"#;
    let lease = json(&grpcurl_lock(server.addr, "Acquire", data).await);
    let lease_id = lease["leaseId"].as_str().expect("a leaseId").to_owned();
    assert_eq!(lease["grants"][0]["resource"], "grpcurl/doc", "{lease}");
    assert_eq!(lease["grants"][0]["mode"], "MODE_WRITE", "{lease}");
    assert!(
        lease["grants"][0]["fencingToken"].is_string(),
        "a uint64 as text: {lease}"
    );

    let inspect =
        json(&grpcurl_lock(server.addr, "Inspect", r#"{"resourcePrefix": "grpcurl/"}"#).await);
    let holder = &inspect["resources"][0]["holders"][0];
    assert_eq!(
        inspect["resources"][0]["resource"], "grpcurl/doc",
        "{inspect}"
    );
    assert!(
        !inspect.to_string().contains(&lease_id),
        "Inspect shows no lease id: {inspect}"
    );
    assert_eq!(holder["owner"], "grpcurl", "{inspect}");

    let release_data = format!(r#"{{"leaseId": "{lease_id}"}}"#);
    json(&grpcurl_lock(server.addr, "Release", &release_data).await);
    assert!(state(&rpc, "grpcurl/doc").await.is_none());
    let again = grpcurl_lock(server.addr, "Release", &release_data).await;
    assert_ne!(again.code, Some(0));
    assert!(again.stderr.contains("NotFound"), "{again:?}");
}

/// Found while reading the lock table: a lease granted by a Release (not by the expiry reaper)
/// must still expire at its own ttl, even when the reaper was last told of a later expiry.
#[tokio::test]
async fn a_lease_granted_when_its_holder_releases_still_expires_at_its_ttl() {
    let (_dir, _server, rpc) = lock_server().await;
    let a = acquire(
        &rpc,
        ask_ttl("A", &[("doc", Write)], Duration::from_secs(60), SOON),
    )
    .await
    .unwrap();
    let b = spawn_acquire(
        &rpc,
        ask_ttl("B", &[("doc", Write)], Duration::from_secs(1), LONG_WAIT),
    );
    wait_for_waiters(&rpc, "doc", &["B"]).await;
    let c = spawn_acquire(&rpc, ask("C", &[("doc", Write)], Duration::from_secs(20)));
    wait_for_waiters(&rpc, "doc", &["B", "C"]).await;

    release(&rpc, &a.lease_id).await.unwrap();
    granted_soon(b).await; // B never refreshes: its lease ends 1 s from now.
    let released = Instant::now();
    let c = tokio::time::timeout(Duration::from_secs(30), c)
        .await
        .expect("C is answered")
        .unwrap();
    assert!(
        c.is_ok(),
        "C should get the lock about 1 s after B's grant (B's ttl); after {:?} it got {c:?}",
        released.elapsed()
    );
}

#[tokio::test]
async fn a_session_acquires_and_releases_in_order_and_a_bad_request_does_not_end_it() {
    let (_dir, _server, rpc) = lock_server().await;
    let mut session = Session::open(&rpc).await;
    session.acquire(1, ask("S", &[("a", Write)], SOON)).await;
    let first = session.lease(1).await;
    assert_eq!(holders(&rpc, "a").await, strings(&["S"]));

    // The release and the next acquire go out together: one round trip for both.
    session.release(2, &first.lease_id).await;
    session.acquire(3, ask("S", &[("a", Write)], SOON)).await;
    assert!(matches!(
        session.answer().await,
        (2, pb::session_response::Result::Released(_))
    ));
    let second = session.lease(3).await;
    assert!(token(&second, "a") > token(&first, "a"));

    session.acquire(4, ask("S", &[], SOON)).await;
    let error = session.error(4).await;
    assert_eq!(error.code, Code::InvalidArgument as i32, "{error:?}");
    assert!(error.message.contains("targets"), "{error:?}");
    session.release(5, "1-00000000000000ff").await;
    assert_eq!(session.error(5).await.code, Code::NotFound as i32);
    session
        .send(
            6,
            pb::session_request::Op::Release(pb::ReleaseRequest::default()),
        )
        .await;
    assert!(session.error(6).await.message.contains("lease_id"));

    session.acquire(7, ask("S", &[("b", Read)], SOON)).await;
    session.lease(7).await;
    assert_eq!(holders(&rpc, "b").await, strings(&["S"]));
}

#[tokio::test]
async fn a_session_answers_each_acquire_when_it_is_granted_not_in_the_order_asked() {
    let (_dir, _server, rpc) = lock_server().await;
    let held = acquire(&rpc, ask("A", &[("x", Write)], SOON))
        .await
        .unwrap();
    let mut session = Session::open(&rpc).await;
    session
        .acquire(1, ask("S", &[("x", Write)], LONG_WAIT))
        .await;
    wait_for_waiters(&rpc, "x", &["S"]).await;
    session.acquire(2, ask("S", &[("y", Write)], SOON)).await;
    session.lease(2).await;

    release(&rpc, &held.lease_id).await.unwrap();
    let granted = session.lease(1).await;
    assert!(token(&granted, "x") > token(&held, "x"));
    assert_eq!(holders(&rpc, "x").await, strings(&["S"]));
}

#[tokio::test]
async fn ending_a_session_releases_its_leases_and_withdraws_its_waits_at_once() {
    let (_dir, _server, rpc) = lock_server().await;
    let busy = acquire(&rpc, ask("B", &[("busy", Write)], SOON))
        .await
        .unwrap();
    let mut session = Session::open(&rpc).await;
    let long_lease = ask_ttl("S", &[("doc", Write)], Duration::from_secs(60), SOON);
    session.acquire(1, long_lease).await;
    let held = session.lease(1).await;
    session
        .acquire(2, ask("S", &[("busy", Write)], LONG_WAIT))
        .await;
    wait_for_waiters(&rpc, "busy", &["S"]).await;

    drop(session);
    wait_until("the session's lease and wait are gone", SOON, async || {
        state(&rpc, "doc").await.is_none() && waiters(&rpc, "busy").await.is_empty()
    })
    .await;
    let next = acquire(&rpc, ask("C", &[("doc", Write)], SOON))
        .await
        .expect("free long before the session's 60 s ttl");
    assert!(token(&next, "doc") > token(&held, "doc"));
    expect_code(release(&rpc, &held.lease_id).await, Code::NotFound);
    release(&rpc, &busy.lease_id).await.unwrap();
    assert!(
        state(&rpc, "busy").await.is_none(),
        "no ghost grant to the ended session"
    );
}
