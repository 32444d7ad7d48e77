//! The bank's storage across versions and losses: a data directory made before versioned
//! migrations opens in place, keeping its money, its holders' PINs, its fences and its record of
//! requests, and starts its audit; when the lock service loses its lock.db, the bank names the
//! epoch to restart it at, and works again once it is; a committed transfer frees its
//! accounts' locks at once but is answered only once its commit is on the disk; and a backup
//! taken while it serves restores, as the README's runbook says, into a bank that serves it.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use tonic::Code;
use township_tests::free_port;

use crate::support::{
    bank::{
        Payer, TestBank, admin_token, assert_adds_up, balance, bank_server, client, committed,
        ledger, lock_server, lock_server_with, login, open_account, read_bank_db, request_id,
        schema_versions, spawn_transfer, transfer,
    },
    bank_audit::audit_events,
    fixtures::restore_dump,
    lock,
    process::stop,
    status::{error_metadata, expect_code, reason},
    storage::{Backend, Storage},
    wait::wait_until,
};

const LIMIT: Duration = Duration::from_secs(30);
const ADA: &str = "64b54aa9-aaf5-41ba-bec3-112ff21961aa";
const BOB: &str = "80731e76-2686-4466-b69d-48686b6b1435";
/// The fixture's one transfer: 25.00 from Ada to Bob, transaction 3.
const TRANSFER: &str = "26152820-35f4-4ea3-996e-c7165fca2db6";

#[tokio::test]
async fn a_data_dir_made_before_migrations_upgrades_in_place_and_keeps_every_cent_and_request() {
    let (lock_dir, bank_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    restore_dump(
        &lock_dir.path().join("lock.db"),
        include_str!("fixtures/bank-before-migrations/lock.sql"),
    )
    .await;
    restore_dump(
        &bank_dir.path().join("bank.db"),
        include_str!("fixtures/bank-before-migrations/bank.sql"),
    )
    .await;
    let token_file = bank_dir.path().join("admin-token");
    std::fs::write(&token_file, "fixture-admin-token").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let lock = lock_server(lock_dir.path(), None).await;
    let bank = bank_server(bank_dir.path(), &lock.addr.to_string(), None, &[]).await;
    let rpc = client(&bank.addr.to_string(), LIMIT);
    assert_eq!(schema_versions(bank_dir.path()).await, [1, 2, 3]);

    let ada = login(&rpc, "ada", "2468")
        .await
        .expect("Ada's PIN still works");
    let bob = login(&rpc, "bob", "1357")
        .await
        .expect("Bob's PIN still works");
    assert_eq!(balance(&rpc, &ada.session_token, ADA).await.unwrap(), 7_500);
    assert_eq!(balance(&rpc, &bob.session_token, BOB).await.unwrap(), 3_025);
    let ada_ledger = ledger(&rpc, &ada.session_token, ADA).await.unwrap();
    assert_adds_up(&ada_ledger, 7_500);

    let replay = transfer(&rpc, &ada.session_token, ADA, BOB, 2_500, TRANSFER)
        .await
        .expect("the old request's receipt");
    assert_eq!(
        replay.transaction_id, "3",
        "answered from the record, not done again"
    );
    let receipt = transfer(&rpc, &ada.session_token, ADA, BOB, 100, &request_id()).await;
    assert!(receipt.is_ok(), "{receipt:?}; logs:\n{}", bank.logs());
    assert_eq!(balance(&rpc, &ada.session_token, ADA).await.unwrap(), 7_400);
    let logins: Vec<_> = audit_events(&rpc, "fixture-admin-token", "")
        .await
        .into_iter()
        .filter(|e| e.kind == "LOGIN")
        .map(|e| e.holder_name)
        .collect();
    assert_eq!(logins, ["bob", "ada"], "the upgraded bank keeps an audit");
}

#[tokio::test]
async fn after_the_lock_service_loses_lock_db_the_bank_names_the_required_epoch_and_works_at_it() {
    let (lock_dir, bank_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lock_addr = format!("127.0.0.1:{}", free_port());
    let lock = lock_server(lock_dir.path(), Some(&lock_addr)).await;
    let bank = bank_server(bank_dir.path(), &lock_addr, None, &[]).await;
    let rpc = client(&bank.addr.to_string(), LIMIT);
    let payer = Payer::open(&rpc, &admin_token(bank_dir.path()), "ada", "bob").await;
    for _ in 0..3 {
        payer.pay(1).await.expect("a transfer at epoch 1");
    }

    // The lock service comes back with nothing: epoch 1 again, its tokens below the fences.
    stop(lock, libc::SIGTERM).await;
    for entry in std::fs::read_dir(lock_dir.path()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let lock = lock_server(lock_dir.path(), Some(&lock_addr)).await;
    let lost = expect_code(payer.pay(1).await, Code::Aborted);
    assert_eq!(reason(&lost).as_deref(), Some("LOCK_LOST"), "{lost:?}");
    assert_eq!(
        error_metadata(&lost, "required_epoch").as_deref(),
        Some("2"),
        "{lost:?}"
    );
    assert!(
        bank.log_line("--initial-epoch 2", LIMIT).await.is_some(),
        "the bank tells the operator: {}",
        bank.logs()
    );

    stop(lock, libc::SIGTERM).await;
    let _lock =
        lock_server_with(lock_dir.path(), Some(&lock_addr), &["--initial-epoch", "2"]).await;
    let receipt = payer.pay(1).await;
    assert!(receipt.is_ok(), "{receipt:?}; logs:\n{}", bank.logs());
}

#[tokio::test]
async fn a_committed_transfer_frees_its_locks_at_once_and_is_answered_only_once_flushed() {
    // Each flush of the transfers' WAL first waits 10 s: a committed transfer is not yet durable
    // for that long.
    let bank = TestBank::start_with(&["--test-delay-before-flush", "10s"]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, _) = bank.customer("Bob", "5678", 0).await;
    let locks = lock::Rpc::new(bank.lock.channel().await);
    let id = request_id();
    let call = spawn_transfer(&bank.rpc, &ada, &a, &b, 250, &id);

    wait_until("the transfer is committed", LIMIT, async || {
        committed(&bank.storage, &id).await
    })
    .await;
    for account in [&a, &b] {
        let resource = format!("account/{account}");
        // Well before the flush: nobody else waits for it to take these accounts.
        wait_until("the account's lock is free", lock::SOON, async || {
            lock::state(&locks, &resource).await.is_none()
        })
        .await;
    }
    assert!(
        !call.is_finished(),
        "a transfer is not answered before its commit is flushed"
    );

    let receipt = call.await.unwrap().expect("answered once flushed");
    assert_eq!(receipt.balance_cents, 750);
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 750);
}

#[tokio::test]
async fn a_backup_taken_while_the_bank_serves_restores_into_a_fresh_data_dir_that_serves_it() {
    let (lock_dir, bank_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lock_addr = format!("127.0.0.1:{}", free_port());
    let lock = lock_server(lock_dir.path(), Some(&lock_addr)).await;
    let bank = bank_server(bank_dir.path(), &lock_addr, None, &[]).await;
    let rpc = client(&bank.addr.to_string(), LIMIT);
    let admin = admin_token(bank_dir.path());
    let ada = open_account(&rpc, &admin, "ada", "2468", 10_000)
        .await
        .unwrap();
    let bob = open_account(&rpc, &admin, "bob", "1357", 0).await.unwrap();
    let token = login(&rpc, "ada", "2468").await.unwrap().session_token;
    let (from, to) = (&ada.account_id, &bob.account_id);
    for _ in 0..5 {
        transfer(&rpc, &token, from, to, 100, &request_id())
            .await
            .unwrap();
    }

    // The runbook's online backup: `VACUUM INTO` reads one consistent snapshot beside the
    // running bank (as `sqlite3 bank.db "VACUUM INTO '…'"` would).
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("bank.db");
    let mut db = read_bank_db(bank_dir.path()).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "VACUUM INTO '{}'",
        copy.display()
    )))
    .execute(&mut db)
    .await
    .expect("VACUUM INTO makes the backup");
    drop(db);
    // What comes after the backup is not in it.
    transfer(&rpc, &token, from, to, 1, &request_id())
        .await
        .unwrap();

    // The runbook's restore: every bank replica stopped, the backup in a fresh data directory,
    // the lock service restarted (a new epoch, above every token issued before), the bank
    // started on the restored file.
    stop(bank, libc::SIGTERM).await;
    stop(lock, libc::SIGTERM).await;
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, restored.path().join("bank.db")).unwrap();
    let _lock = lock_server(lock_dir.path(), Some(&lock_addr)).await;
    let bank = bank_server(restored.path(), &lock_addr, None, &[]).await;
    let rpc = client(&bank.addr.to_string(), LIMIT);
    let token = login(&rpc, "ada", "2468").await.unwrap().session_token;
    assert_eq!(balance(&rpc, &token, from).await.unwrap(), 10_000 - 500);
    assert_adds_up(&ledger(&rpc, &token, from).await.unwrap(), 10_000 - 500);
    let receipt = transfer(&rpc, &token, from, to, 100, &request_id()).await;
    assert!(
        receipt.is_ok(),
        "the restored bank serves: {receipt:?}; logs:\n{}",
        bank.logs()
    );
    assert_eq!(balance(&rpc, &token, from).await.unwrap(), 10_000 - 600);
    let bob_token = login(&rpc, "bob", "1357").await.unwrap().session_token;
    assert_eq!(balance(&rpc, &bob_token, to).await.unwrap(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pg_dump_taken_while_the_bank_serves_restores_into_a_fresh_database_that_serves_it() {
    let bank = TestBank::start_on(Backend::Postgres, &[]).await;
    let (from, token) = bank.customer("ada", "2468", 10_000).await;
    let (to, _) = bank.customer("bob", "1357", 0).await;
    for _ in 0..5 {
        transfer(&bank.rpc, &token, &from, &to, 100, &request_id())
            .await
            .unwrap();
    }

    // The runbook's online backup: pg_dump reads one consistent snapshot beside the running
    // bank.
    let cluster = bank.storage.cluster().unwrap().clone();
    let name = bank.storage.database_name().unwrap().to_owned();
    let backup = tempfile::tempdir().unwrap();
    let dump = backup.path().join("bank.dump");
    let dump = dump.to_str().unwrap();
    cluster
        .run_client("pg_dump", &["--format=custom", "--file", dump, &name])
        .await;
    // What comes after the backup is not in it.
    transfer(&bank.rpc, &token, &from, &to, 1, &request_id())
        .await
        .unwrap();

    // The runbook's restore: every bank replica stopped, the dump restored into a fresh
    // database, a lock service whose epoch is above every token issued before (here a new one,
    // given --initial-epoch: the old one was at epoch 1), the bank started on the restored
    // database.
    let TestBank {
        server, mut lock, ..
    } = bank;
    stop(server, libc::SIGTERM).await;
    lock.signal(libc::SIGTERM);
    lock.wait_exit(LIMIT).await.expect("the lock-server stops");
    let url = cluster.new_database().await;
    let restored_name = url.rsplit('/').next().unwrap().to_owned();
    cluster
        .run_client("pg_restore", &["--dbname", &restored_name, dump])
        .await;
    let storage = Storage::in_database(&cluster, url);
    let restored = TestBank::start_in(storage, &["--initial-epoch", "2"], &[]).await;
    let token = login(&restored.rpc, "ada", "2468")
        .await
        .unwrap()
        .session_token;
    assert_eq!(
        balance(&restored.rpc, &token, &from).await.unwrap(),
        10_000 - 500
    );
    assert_adds_up(
        &ledger(&restored.rpc, &token, &from).await.unwrap(),
        10_000 - 500,
    );
    let receipt = transfer(&restored.rpc, &token, &from, &to, 100, &request_id()).await;
    assert!(
        receipt.is_ok(),
        "the restored bank serves: {receipt:?}; logs:\n{}",
        restored.server.logs()
    );
    assert_eq!(
        balance(&restored.rpc, &token, &from).await.unwrap(),
        10_000 - 600
    );
    let bob = login(&restored.rpc, "bob", "1357")
        .await
        .unwrap()
        .session_token;
    assert_eq!(balance(&restored.rpc, &bob, &to).await.unwrap(), 600);
}
