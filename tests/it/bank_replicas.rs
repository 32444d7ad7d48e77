//! Bank replicas on one PostgreSQL database, each with a data directory of its own: replicas
//! started together on an empty database all come up and honour one provisioned staff token, a
//! history page token one signs another honours, and transfers made through three replicas at
//! once (with retries sent to another replica) conserve the total and apply once; a batch of
//! transfers whose account changed between its read and its write is decided again, not written
//! over it, and one whose session was logged out meanwhile is refused; one new holder opened
//! through two replicas at once is created once; and the database itself keeps the ledger and
//! the audit append-only and no balance negative. (The core bank tests in `bank.rs` run on
//! PostgreSQL too, some across two replicas.)

use std::{collections::HashMap, os::unix::fs::PermissionsExt, time::Duration};

use crate::support::{
    bank::*,
    process::CALL_TIMEOUT,
    storage::{Backend, Storage},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_started_at_once_on_an_empty_database_all_come_up_with_one_staff_token() {
    let lock_dir = tempfile::tempdir().unwrap();
    let lock = lock_server(lock_dir.path(), None).await;
    let lock_addr = lock.addr.to_string();
    // The staff token, provisioned for every replica as an operator would (a secret file).
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("admin-token");
    std::fs::write(&token_file, "a-provisioned-staff-token").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token_flag = ["--admin-token-file", token_file.to_str().unwrap()];

    let first = Storage::new(Backend::Postgres).await;
    let storage = [first.replica(), first.replica(), first];
    // Together: their migrations race.
    let (a, b, c) = tokio::join!(
        bank_server_on(&storage[0], &lock_addr, None, &token_flag),
        bank_server_on(&storage[1], &lock_addr, None, &token_flag),
        bank_server_on(&storage[2], &lock_addr, None, &token_flag),
    );
    let servers = [a, b, c];
    let rpcs: Vec<Rpc> = servers
        .iter()
        .map(|server| client(&server.addr.to_string(), CALL_TIMEOUT))
        .collect();
    let mut accounts = Vec::new();
    for (n, rpc) in rpcs.iter().enumerate() {
        let name = format!("Replica {n}");
        let account = open_account(rpc, "a-provisioned-staff-token", &name, "1234", 100)
            .await
            .unwrap();
        accounts.push((name, account.account_id));
    }
    // Every account is seen through every replica.
    for (name, account) in &accounts {
        for rpc in &rpcs {
            let session = login(rpc, name, "1234").await.unwrap().session_token;
            assert_eq!(balance(rpc, &session, account).await.unwrap(), 100);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_history_page_token_from_one_replica_pages_on_another() {
    let bank = TestBank::start_on(Backend::Postgres, &[]).await;
    let other = bank.replica(&[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    for cents in [10, 20, 30, 40] {
        deposit(&bank.rpc, &ada, &a, cents, &request_id())
            .await
            .unwrap();
    }
    let all = page(&bank.rpc, &ada, &a, 0, "").await.unwrap().transactions;
    let first = page(&bank.rpc, &ada, &a, 2, "").await.unwrap();
    let second = page(&other.rpc, &ada, &a, 2, &first.next_page_token)
        .await
        .unwrap();
    let third = page(&bank.rpc, &ada, &a, 2, &second.next_page_token)
        .await
        .unwrap();
    assert!(third.next_page_token.is_empty());
    assert_eq!(
        [first.transactions, second.transactions, third.transactions].concat(),
        all,
        "pages signed by one replica continue on the other"
    );
}

/// How many customers the transfer test moves money between, and how much each starts with.
const CUSTOMERS: usize = 4;
const OPENING_CENTS: i64 = 10_000;
/// How many callers transfer at once, and how many transfers each makes.
const CALLERS: usize = 12;
const TRANSFERS_EACH: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_through_three_replicas_at_once_conserve_the_total_and_apply_once() {
    let bank = TestBank::start_on(Backend::Postgres, &[]).await;
    let (second, third) = (bank.replica(&[]).await, bank.replica(&[]).await);
    let rpcs = [bank.rpc.clone(), second.rpc.clone(), third.rpc.clone()];
    let mut customers = Vec::new();
    for n in 0..CUSTOMERS {
        customers.push(bank.customer(&format!("C{n}"), "1234", OPENING_CENTS).await);
    }

    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let (rpcs, customers) = (rpcs.clone(), customers.clone());
        callers.spawn(async move {
            let mut applied = Vec::new();
            for n in 0..TRANSFERS_EACH {
                let (from, token) = &customers[(caller + n) % CUSTOMERS];
                let (to, _) = &customers[(caller + n + 1) % CUSTOMERS];
                let cents = 1 + ((caller * 7 + n * 13) % 50) as i64;
                let id = request_id();
                // Sent through one replica, then retried with its id through the next one: the
                // retry gets the first answer, or applies it if the first failed.
                let first = transfer(&rpcs[(caller + n) % 3], token, from, to, cents, &id).await;
                let retry = transfer(&rpcs[(caller + n + 1) % 3], token, from, to, cents, &id)
                    .await
                    .expect("the retry is answered");
                if let Ok(first) = first {
                    assert_eq!(first, retry, "one receipt per request id");
                }
                applied.push((id, from.clone(), cents));
            }
            applied
        });
    }
    let mut applied = Vec::new();
    while let Some(done) = tokio::time::timeout(Duration::from_secs(120), callers.join_next())
        .await
        .expect("the transfers end within 2 minutes")
    {
        applied.extend(done.unwrap());
    }
    assert_eq!(applied.len(), CALLERS * TRANSFERS_EACH);

    let mut total = 0;
    let mut rows_per_request: HashMap<String, usize> = HashMap::new();
    for (n, (account, token)) in customers.iter().enumerate() {
        let rows = ledger(&rpcs[n % 3], token, account).await.unwrap();
        let balance = balance(&rpcs[(n + 1) % 3], token, account).await.unwrap();
        assert_adds_up(&rows, balance);
        total += balance;
        for row in rows.iter().filter(|row| row.kind.starts_with("TRANSFER")) {
            *rows_per_request.entry(row.request_id.clone()).or_default() += 1;
        }
    }
    assert_eq!(
        total,
        OPENING_CENTS * CUSTOMERS as i64,
        "the total is conserved"
    );
    for (id, _, _) in &applied {
        assert_eq!(
            rows_per_request.get(id),
            Some(&2),
            "each transfer is one row out and one row in: {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgresql_the_ledger_and_the_audit_are_append_only_and_no_balance_goes_negative() {
    use sqlx::Connection;

    let bank = TestBank::start_on(Backend::Postgres, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    deposit(&bank.rpc, &ada, &a, 250, &request_id())
        .await
        .unwrap();
    let url = bank.storage.database_url().unwrap();
    let mut db = sqlx::PgConnection::connect(url).await.unwrap();
    for sql in [
        "UPDATE ledger SET amount_cents = 0",
        "DELETE FROM ledger",
        "TRUNCATE ledger CASCADE",
        "UPDATE audit SET holder = 'someone else'",
        "DELETE FROM audit",
        "TRUNCATE audit",
        "UPDATE accounts SET balance_cents = -1",
    ] {
        let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut db)
            .await;
        assert!(refused.is_err(), "{sql} was not refused");
    }
    let rows = ledger(&bank.rpc, &ada, &a).await.unwrap();
    assert_eq!(kinds(&rows), ["OPEN", "DEPOSIT"]);
    assert_adds_up(&rows, 1_250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_whose_account_changed_after_its_batch_read_it_is_decided_again_not_written_over()
 {
    use sqlx::Connection;

    // Each batch of transfers pauses between its read (made without locks) and its write.
    let bank = TestBank::start_on(Backend::Postgres, &["--test-delay-before-write", "2s"]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, _) = bank.customer("Bob", "1234", 10).await;
    let id = request_id();
    let sent = spawn_transfer(&bank.rpc, &ada, &a, &b, 100, &id);
    // Meanwhile a change the bank's locks did not keep out (as a lost lease would let through).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = bank.storage.database_url().unwrap();
    let mut db = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("UPDATE accounts SET balance_cents = balance_cents + 500 WHERE id = $1")
        .bind(&a)
        .execute(&mut db)
        .await
        .unwrap();

    // Decided on the balance as changed, not written over it with the one it read (900).
    let receipt = sent.await.unwrap().unwrap();
    assert_eq!(receipt.balance_cents, 1_400);
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 1_400);
    let sql = format!("SELECT count(*) FROM ledger WHERE request_id = '{id}'");
    assert_eq!(bank.storage.count("bank.db", &sql).await, 2, "applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_another_replica_after_a_transfer_batch_read_its_session_stops_the_transfer() {
    // Each batch of transfers pauses between its read (made without locks) and its write.
    let bank = TestBank::start_on(Backend::Postgres, &["--test-delay-before-write", "2s"]).await;
    let other = bank.replica(&[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, _) = bank.customer("Bob", "1234", 10).await;
    let sent = spawn_transfer(&bank.rpc, &ada, &a, &b, 100, &request_id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    logout(&other.rpc, &ada).await.unwrap();

    let refused = sent.await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let session = login(&other.rpc, "Ada", "1234")
        .await
        .unwrap()
        .session_token;
    assert_eq!(balance(&other.rpc, &session, &a).await.unwrap(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_new_holder_opened_through_two_replicas_at_once_is_created_once_with_one_pin() {
    let bank = TestBank::start_on(Backend::Postgres, &[]).await;
    let other = bank.replica(&[]).await;
    // Each OpenAccount hashes a new holder's PIN before it writes (slow on purpose), so requests
    // sent together all find no holder yet and race to create them. Whichever PIN creates the
    // holder is theirs: every open with it succeeds, every open with the other is refused as
    // for any existing holder.
    for round in 0..3 {
        let name = format!("Newcomer {round}");
        let pins = ["1234", "1234", "5678", "5678"];
        let (a, b, c, d) = tokio::join!(
            open_account(&bank.rpc, &bank.admin, &name, pins[0], 100),
            open_account(&other.rpc, &bank.admin, &name, pins[1], 100),
            open_account(&bank.rpc, &bank.admin, &name, pins[2], 100),
            open_account(&other.rpc, &bank.admin, &name, pins[3], 100),
        );
        let mut opened = HashMap::<&str, Vec<String>>::new();
        for (pin, result) in pins.into_iter().zip([a, b, c, d]) {
            match result {
                Ok(account) => opened.entry(pin).or_default().push(account.account_id),
                Err(refused) => assert_eq!(
                    refused.code(),
                    tonic::Code::PermissionDenied,
                    "{name}, PIN {pin}: {refused:?}"
                ),
            }
        }
        assert_eq!(opened.len(), 1, "{name}: one PIN wins, got {opened:?}");
        let (pin, mut accounts) = opened.into_iter().next().unwrap();
        assert_eq!(accounts.len(), 2, "{name}: both opens with PIN {pin}");
        let mut held = login(&bank.rpc, &name, pin).await.unwrap().account_ids;
        held.sort();
        accounts.sort();
        assert_eq!(held, accounts);
    }
}
