//! The bank through failures: with its lock service unreachable it answers UNAVAILABLE soon,
//! changes nothing, and recovers once the service is back; a deposit acknowledged right before a
//! kill -9 survives it, a transfer applied but unanswered when the bank is killed is answered by
//! its retry; and every balance equals the sum of its ledger.

use std::time::{Duration, Instant};

use tonic::Code;
use township_tests::free_port;

use crate::support::{
    bank::*,
    process::CALL_TIMEOUT,
    status::*,
    storage::{Backend, on_both_backends},
    wait::wait_until,
};

// ----- failures -----

#[tokio::test]
async fn an_unreachable_lock_service_is_unavailable_soon_changes_nothing_and_the_bank_recovers() {
    let lock_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let lock_addr = format!("127.0.0.1:{}", free_port());
    let mut lock = lock_server(lock_dir.path(), Some(&lock_addr)).await;
    let server = bank_server(data_dir.path(), &lock_addr, None, &["--lock-wait", "2s"]).await;
    let rpc = client(&server.addr.to_string(), CALL_TIMEOUT);
    let admin = admin_token(data_dir.path());
    let a = open_account(&rpc, &admin, "Ada", "1234", 1_000)
        .await
        .unwrap()
        .account_id;
    let ada = login(&rpc, "Ada", "1234").await.unwrap().session_token;
    let eve = open_account(&rpc, &admin, "Eve", "1234", 0)
        .await
        .unwrap()
        .account_id;
    deposit(&rpc, &ada, &a, 100, &request_id()).await.unwrap();

    lock.signal(libc::SIGKILL);
    lock.wait_exit(Duration::from_secs(10))
        .await
        .expect("kill -9 ends the lock-server");
    let id = request_id();
    let started = Instant::now();
    let refused = deposit(&rpc, &ada, &a, 50, &id).await;
    let status = expect_code(refused, Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        started.elapsed()
    );
    assert!(status.message().contains("lock service"), "{status:?}");
    let started = Instant::now();
    expect_code(balance(&rpc, &ada, &a).await, Code::Unavailable);
    let moved = transfer(&rpc, &ada, &a, &eve, 1, &request_id()).await;
    expect_code(moved, Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(20));

    let _lock = lock_server(lock_dir.path(), Some(&lock_addr)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let receipt = loop {
        match deposit(&rpc, &ada, &a, 50, &id).await {
            Ok(receipt) => break receipt,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("the bank did not recover: {status:?}"),
        }
    };
    assert_eq!(
        receipt.balance_cents, 1_150,
        "the refused deposit had changed nothing"
    );
    let rows = ledger(&rpc, &ada, &a).await.unwrap();
    assert_eq!(kinds(&rows), ["OPEN", "DEPOSIT", "DEPOSIT"]);
    assert_eq!(rows.iter().filter(|r| r.request_id == id).count(), 1);
    assert_adds_up(&rows, 1_150);
}

async fn an_acknowledged_deposit_survives_kill_9_of_the_bank_server(backend: Backend) {
    let mut bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let server = &mut bank.server;
    let id = request_id();
    let receipt = deposit(&bank.rpc, &ada, &a, 4_321, &id).await.unwrap();
    server.signal(libc::SIGKILL);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("kill -9 ends the bank-server");
    assert_eq!(status.code(), None, "killed by a signal");

    let restarted = bank.restart(&[]).await;
    let rpc = client(&restarted.addr.to_string(), CALL_TIMEOUT);
    assert_eq!(
        balance(&rpc, &ada, &a).await.unwrap(),
        5_321,
        "the session survived too"
    );
    let rows = ledger(&rpc, &ada, &a).await.unwrap();
    assert_eq!(rows.last().unwrap().request_id, id);
    assert_eq!(rows.last().unwrap().id, receipt.transaction_id);
    assert_eq!(
        deposit(&rpc, &ada, &a, 4_321, &id).await.unwrap(),
        receipt,
        "the request id survived"
    );
}

async fn a_transfer_applied_but_unanswered_when_the_bank_is_killed_is_answered_by_its_retry(
    backend: Backend,
) {
    // Every reply waits 3 s after its commit: a kill in that window loses the answer.
    let mut bank = TestBank::start_on(backend, &["--test-delay-after-commit", "3s"]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, _) = bank.customer("Bob", "5678", 0).await;
    let id = request_id();
    let call = spawn_transfer(&bank.rpc, &ada, &a, &b, 250, &id);
    // The kill comes as soon as the transfer is committed (its request id is in the database),
    // well inside the 3 s before the answer.
    wait_until(
        "the transfer is committed",
        Duration::from_secs(20),
        async || committed(&bank.storage, &id).await,
    )
    .await;
    let server = &mut bank.server;
    server.signal(libc::SIGKILL);
    server
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("kill -9 ends the bank-server");
    let lost = call.await.unwrap();
    assert!(
        lost.is_err(),
        "the answer was lost with the server: {lost:?}"
    );

    let restarted = bank.restart(&[]).await;
    let rpc = client(&restarted.addr.to_string(), CALL_TIMEOUT);
    let retry_started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let receipt = transfer(&rpc, &ada, &a, &b, 250, &id)
        .await
        .expect("the retry is answered");
    assert_eq!(
        receipt.balance_cents, 750,
        "applied once, by the lost attempt"
    );
    assert_eq!(balance(&rpc, &ada, &a).await.unwrap(), 750);
    let rows = ledger(&rpc, &ada, &a).await.unwrap();
    let row = rows.iter().find(|r| r.request_id == id).expect("the row");
    assert_eq!(row.id, receipt.transaction_id, "the original receipt");
    let written_ms = row.time.as_ref().map_or(i64::MAX, |t| {
        t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
    });
    assert!(
        written_ms < retry_started_ms,
        "written by the killed server's attempt"
    );
    assert_eq!(rows.iter().filter(|r| r.request_id == id).count(), 1);
}

async fn every_balance_equals_the_sum_of_its_ledger(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 7_777).await;
    let a2 = open_account(&bank.rpc, &bank.admin, "Ada", "1234", 0)
        .await
        .unwrap()
        .account_id;
    let (b, bob) = bank.customer("Bob", "5678", 3_333).await;
    let (c, cy) = bank.customer("Cy", "4321", 0).await;
    let accounts = [(&a, &ada), (&a2, &ada), (&b, &bob), (&c, &cy)];

    // A deterministic mix, overdrafts included (they are refused and leave no trace).
    let mut refused = 0;
    for step in 0..40i64 {
        let (from, token) = accounts[step as usize % 4];
        let (to, _) = accounts[(step as usize * 3 + 1) % 4];
        let cents = 1 + (step * 7_919) % 2_500;
        let result = match step % 5 {
            0 => deposit(&bank.rpc, token, from, cents, &request_id()).await,
            1 => withdraw(&bank.rpc, token, from, cents, &request_id()).await,
            _ => transfer(&bank.rpc, token, from, to, cents, &request_id()).await,
        };
        match result {
            Ok(_) => {}
            Err(status) if reason(&status).as_deref() == Some("INSUFFICIENT_FUNDS") => refused += 1,
            Err(status) => panic!("step {step}: {status:?}"),
        }
        if step == 20 {
            apply_interest(&bank.rpc, &bank.admin, &request_id())
                .await
                .unwrap();
        }
    }
    assert!(refused > 0, "the mix had overdrafts");
    for (account, token) in accounts {
        let rows = ledger(&bank.rpc, token, account).await.unwrap();
        let total: i64 = rows.iter().map(|r| r.amount_cents).sum();
        let now = balance(&bank.rpc, token, account).await.unwrap();
        assert_eq!(now, total, "{account}: {rows:?}");
        assert_adds_up(&rows, now);
    }
}

on_both_backends!(
    an_acknowledged_deposit_survives_kill_9_of_the_bank_server,
    a_transfer_applied_but_unanswered_when_the_bank_is_killed_is_answered_by_its_retry,
    every_balance_equals_the_sum_of_its_ledger,
);
