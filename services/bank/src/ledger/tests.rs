//! The ledger's behaviour through its typed API, on a real SQLite file: exactly once, fencing,
//! the money rules, the append-only ledger, and the transfers' group commit.

use std::task::{Context, Waker};

use tokio::task::JoinSet;

use super::*;
use crate::{
    audit::{Call, Kind},
    types::MAX_BALANCE_CENTS,
};

/// Runs one SQL statement on the writer, as a mutation would.
async fn run_sql(ledger: &Ledger, sql: &'static str) -> Result<(), Error> {
    ledger
        .writer
        .run(move |db| async move {
            either!(pool & db, |pool| sqlx::query(sql)
                .execute(pool)
                .await?
                .rows_affected());
            Ok(())
        })
        .await
}

/// A fresh, empty ledger in a temporary directory.
async fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&township_store::Database::sqlite(dir.path(), "bank.db"))
        .await
        .unwrap();
    (dir, ledger)
}

/// A new request id.
fn rid() -> RequestId {
    RequestId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
}

/// A fresh ledger with one account of Ada's holding `initial` cents.
async fn ledger_with_account(initial: i64) -> (tempfile::TempDir, Ledger, AccountId) {
    let (dir, ledger) = ledger().await;
    let ada = HolderName::parse("holder_name", "Ada").unwrap();
    let account = ledger
        .open_account(&rid(), &ada, Some("hash"), initial, 200, event())
        .await
        .unwrap();
    (dir, ledger, account)
}

/// An audit event, as a call with no principal or peer would make it.
fn event() -> Event {
    Call::default().event(Kind::Login)
}

/// An amount of `n` cents.
fn cents(n: i64) -> Amount {
    Amount::parse("amount_cents", n).unwrap()
}

/// A fresh ledger with one account of Ada's per balance given.
async fn ledger_with(balances: &[i64]) -> (tempfile::TempDir, Ledger, Vec<AccountId>) {
    let (dir, ledger) = ledger().await;
    let ada = HolderName::parse("holder_name", "Ada").unwrap();
    let mut accounts = Vec::new();
    for (i, balance) in balances.iter().enumerate() {
        let hash = (i == 0).then_some("hash");
        let account = ledger
            .open_account(&rid(), &ada, hash, *balance, 0, event())
            .await
            .unwrap();
        accounts.push(account);
    }
    ledger
        .create_session(SESSION, &ada, now_ms(), i64::MAX, event())
        .await
        .unwrap();
    (dir, ledger, accounts)
}

/// The token hash of Ada's session in [`ledger_with`].
const SESSION: &str = "ada-session";

#[tokio::test]
async fn a_retried_request_returns_the_original_receipt_and_applies_once() {
    let (_dir, ledger, account) = ledger_with_account(1_000).await;
    let id = rid();
    let amount = Amount::parse("amount_cents", 250).unwrap();
    let first = ledger
        .move_money(Movement::Withdraw, &account, amount, &id, 1)
        .await
        .unwrap();
    let again = ledger
        .move_money(Movement::Withdraw, &account, amount, &id, 2)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(ledger.balance(&account, 3).await.unwrap(), 750);
    let other = Amount::parse("amount_cents", 1).unwrap();
    let reused = ledger
        .move_money(Movement::Withdraw, &account, other, &id, 4)
        .await;
    assert!(matches!(reused, Err(Error::RequestIdReused)));
}

#[tokio::test]
async fn a_stale_token_can_neither_write_nor_overwrite_a_newer_holders_work() {
    let (_dir, ledger, account) = ledger_with_account(1_000).await;
    let amount = Amount::parse("amount_cents", 100).unwrap();
    assert_eq!(
        ledger.balance(&account, 20).await.unwrap(),
        1_000,
        "a newer holder reads"
    );
    let stale = ledger
        .move_money(Movement::Deposit, &account, amount, &rid(), 10)
        .await;
    assert!(matches!(
        stale,
        Err(Error::StaleLease {
            token: 10,
            recorded: 20
        })
    ));
    ledger
        .move_money(Movement::Deposit, &account, amount, &rid(), 20)
        .await
        .unwrap();
    assert!(matches!(
        ledger.balance(&account, 15).await,
        Err(Error::StaleLease { .. })
    ));
    assert_eq!(
        ledger.balance(&account, 18).await.ok(),
        None,
        "older than the last write"
    );
    assert_eq!(ledger.balance(&account, 21).await.unwrap(), 1_100);
    assert_eq!(
        ledger.balance(&account, 20).await.unwrap(),
        1_100,
        "readers' tokens may interleave"
    );
}

#[tokio::test]
async fn overdrafts_and_overflows_change_nothing() {
    let (_dir, ledger) = ledger().await;
    let ada = HolderName::parse("holder_name", "Ada").unwrap();
    let a = ledger
        .open_account(&rid(), &ada, Some("hash"), 100, 200, event())
        .await
        .unwrap();
    let b = ledger
        .open_account(&rid(), &ada, None, MAX_BALANCE_CENTS, 200, event())
        .await
        .unwrap();
    ledger
        .create_session("ada", &ada, now_ms(), i64::MAX, event())
        .await
        .unwrap();
    let too_much = Amount::parse("amount_cents", 101).unwrap();
    let over = ledger
        .transfer("ada", &a, &b, too_much, &rid(), (1, 1))
        .await;
    assert!(matches!(
        over,
        Err(Error::InsufficientFunds { balance_cents: 100 })
    ));
    let one = Amount::parse("amount_cents", 1).unwrap();
    assert!(matches!(
        ledger.transfer("ada", &a, &b, one, &rid(), (1, 1)).await,
        Err(Error::BalanceLimit)
    ));
    assert_eq!(ledger.balance(&a, 2).await.unwrap(), 100);
    assert_eq!(
        ledger.history(&a, 2, None, 10).await.unwrap().len(),
        1,
        "only the OPEN row"
    );
}

#[tokio::test]
async fn a_refusal_is_final_for_its_request_id() {
    let (_dir, ledger, account) = ledger_with_account(1_000).await;
    let id = rid();
    let big = Amount::parse("amount_cents", 1_500).unwrap();
    let refused = ledger
        .move_money(Movement::Withdraw, &account, big, &id, 1)
        .await;
    assert!(matches!(
        refused,
        Err(Error::InsufficientFunds {
            balance_cents: 1_000
        })
    ));
    let top_up = Amount::parse("amount_cents", 1_000).unwrap();
    ledger
        .move_money(Movement::Deposit, &account, top_up, &rid(), 2)
        .await
        .unwrap();
    let again = ledger
        .move_money(Movement::Withdraw, &account, big, &id, 3)
        .await;
    assert!(
        matches!(
            again,
            Err(Error::InsufficientFunds {
                balance_cents: 1_000
            })
        ),
        "the same answer as the first time, not a late withdrawal: {again:?}"
    );
    assert_eq!(ledger.balance(&account, 4).await.unwrap(), 2_000);
}

#[tokio::test]
async fn a_mutation_runs_to_its_end_even_if_its_caller_goes_away() {
    let (_dir, ledger, account) = ledger_with_account(1_000).await;
    let id = rid();
    let deposit = ledger.move_money(Movement::Deposit, &account, cents(250), &id, 1);
    let mut abandoned = Box::pin(deposit);
    let mut polled_once = Context::from_waker(Waker::noop());
    let _ = abandoned.as_mut().poll(&mut polled_once);
    drop(abandoned);
    assert_eq!(
        ledger.balance(&account, 1).await.unwrap(),
        1_250,
        "the writer finished the deposit its caller dropped"
    );
    let retried = ledger
        .move_money(Movement::Deposit, &account, cents(250), &id, 1)
        .await
        .unwrap();
    assert_eq!(retried.balance_cents, 1_250, "and recorded its request id");
}

#[tokio::test]
async fn the_ledger_is_append_only() {
    let (_dir, ledger, _account) = ledger_with_account(100).await;
    let update = run_sql(&ledger, "UPDATE ledger SET amount_cents = 0").await;
    assert!(update.is_err());
    let delete = run_sql(&ledger, "DELETE FROM ledger").await;
    assert!(delete.is_err());
}

#[tokio::test]
async fn concurrent_transfers_are_each_decided_as_if_done_one_after_another() {
    let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
    let (a, b) = (accounts[0].clone(), accounts[1].clone());
    let ids: Vec<RequestId> = (0..30).map(|_| rid()).collect();
    let mut running = JoinSet::new();
    for id in &ids {
        let (ledger, a, b, id) = (ledger.clone(), a.clone(), b.clone(), id.clone());
        running.spawn(async move {
            ledger
                .transfer(SESSION, &a, &b, cents(50), &id, (5, 5))
                .await
        });
    }
    let outcomes = running.join_all().await;
    let done = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Error::InsufficientFunds { .. })))
        .count();
    assert_eq!((done, refused), (20, 10), "{outcomes:?}");
    assert_eq!(ledger.balance(&a, 5).await.unwrap(), 0);
    assert_eq!(ledger.balance(&b, 5).await.unwrap(), 1_000);
    let receipts: Vec<&Receipt> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let mut after: Vec<i64> = receipts.iter().map(|r| r.balance_cents).collect();
    after.sort_unstable();
    let expected: Vec<i64> = (0..20).map(|i| i * 50).collect();
    assert_eq!(
        after, expected,
        "each applied transfer saw the ones before it"
    );

    for id in &ids {
        let again = ledger
            .transfer(SESSION, &a, &b, cents(50), id, (5, 5))
            .await;
        match again {
            Ok(receipt) => assert!(receipts.contains(&&receipt)),
            Err(Error::InsufficientFunds { .. }) => {}
            other => panic!("a retry gets its first answer, not {other:?}"),
        }
    }
    assert_eq!(ledger.balance(&a, 5).await.unwrap(), 0);
}

#[tokio::test]
async fn the_same_request_id_sent_twice_at_once_applies_once() {
    let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
    let id = rid();
    let first = ledger.transfer(SESSION, &accounts[0], &accounts[1], cents(100), &id, (1, 1));
    let second = ledger.transfer(SESSION, &accounts[0], &accounts[1], cents(100), &id, (1, 1));
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), second.unwrap());
    assert_eq!(ledger.balance(&accounts[0], 1).await.unwrap(), 900);
    assert_eq!(ledger.balance(&accounts[1], 1).await.unwrap(), 100);
}

#[tokio::test]
async fn a_batch_reports_unknown_accounts_and_stale_tokens_per_transfer() {
    let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
    let (a, b) = (&accounts[0], &accounts[1]);
    assert_eq!(
        ledger.balance(a, 9).await.unwrap(),
        1_000,
        "a newer holder reads"
    );
    let nowhere = AccountId::new();
    let ids = [rid(), rid(), rid()];
    let (unknown, stale, fine) = tokio::join!(
        ledger.transfer(SESSION, a, &nowhere, cents(1), &ids[0], (9, 9)),
        ledger.transfer(SESSION, a, b, cents(1), &ids[1], (3, 9)),
        ledger.transfer(SESSION, a, b, cents(1), &ids[2], (9, 9)),
    );
    assert!(matches!(
        unknown,
        Err(Error::AccountNotFound {
            field: "to_account_id"
        })
    ));
    assert!(matches!(stale, Err(Error::StaleLease { token: 3, .. })));
    assert_eq!(fine.unwrap().balance_cents, 999);
}

#[tokio::test]
async fn a_batch_that_fails_applies_none_of_its_transfers_and_their_retries_apply_once() {
    let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
    let (a, b) = (&accounts[0], &accounts[1]);
    // Every write of a transfer's request id fails until the trigger is dropped.
    run_sql(
        &ledger,
        "CREATE TRIGGER refuse_requests BEFORE INSERT ON requests
         BEGIN SELECT RAISE(ABORT, 'storage refuses'); END",
    )
    .await
    .unwrap();
    let ids = [rid(), rid(), rid()];
    let (first, second, third) = tokio::join!(
        ledger.transfer(SESSION, a, b, cents(10), &ids[0], (1, 1)),
        ledger.transfer(SESSION, a, b, cents(20), &ids[1], (1, 1)),
        ledger.transfer(SESSION, a, b, cents(30), &ids[2], (1, 1)),
    );
    for outcome in [first, second, third] {
        assert!(matches!(outcome, Err(Error::Internal(_))), "{outcome:?}");
    }
    assert_eq!(
        ledger.balance(a, 1).await.unwrap(),
        1_000,
        "nothing applied"
    );

    run_sql(&ledger, "DROP TRIGGER refuse_requests")
        .await
        .unwrap();
    for (id, amount) in ids.iter().zip([10, 20, 30]) {
        for _ in 0..2 {
            let receipt = ledger.transfer(SESSION, a, b, cents(amount), id, (1, 1));
            receipt
                .await
                .expect("the writer carries on after a failed batch");
        }
    }
    assert_eq!(ledger.balance(a, 1).await.unwrap(), 940);
    assert_eq!(ledger.balance(b, 1).await.unwrap(), 60);
}

#[tokio::test]
async fn a_transfer_is_refused_in_its_transaction_once_its_session_has_ended() {
    let (_dir, ledger, accounts) = ledger_with(&[1_000, 0]).await;
    let (a, b) = (&accounts[0], &accounts[1]);
    let bob = HolderName::parse("holder_name", "Bob").unwrap();
    ledger
        .create_session("bob-session", &bob, now_ms(), i64::MAX, event())
        .await
        .unwrap();
    assert!(ledger.delete_session(SESSION, event()).await.unwrap());
    let ids = [rid(), rid()];
    let (ended, not_bobs) = tokio::join!(
        ledger.transfer(SESSION, a, b, cents(1), &ids[0], (1, 1)),
        ledger.transfer("bob-session", a, b, cents(1), &ids[1], (1, 1)),
    );
    for refused in [ended, not_bobs] {
        assert!(
            matches!(refused, Err(Error::Unauthenticated(_))),
            "{refused:?}"
        );
    }
    assert_eq!(ledger.balance(a, 1).await.unwrap(), 1_000);
    assert_eq!(ledger.balance(b, 1).await.unwrap(), 0);
}
