//! The bank service against a real bank-server and lock-server: accounts, sessions, money
//! movements and their ledger, exactly-once request ids, field-naming errors, three strikes,
//! joint accounts, interest, an unreachable lock service, and a kill -9 right after an
//! acknowledged deposit.

use std::time::{Duration, Instant};

use tonic::{Code, Request};
use township_proto::bank::v1::{self as pb};
use township_tests::free_port;

use crate::support::{
    bank::*,
    process::CALL_TIMEOUT,
    status::*,
    storage::{Backend, on_both_backends},
    wait::wait_until,
};

// ----- the happy path and the ledger -----

async fn a_customer_opens_logs_in_deposits_withdraws_transfers_and_the_ledger_adds_up(
    backend: Backend,
) {
    let bank = TestBank::start_on(backend, &[]).await;
    let opened = open_account(&bank.rpc, &bank.admin, "Ada Lovelace", "1234", 10_000)
        .await
        .unwrap();
    assert_eq!(opened.holders, ["Ada Lovelace"]);
    assert_eq!(opened.balance_cents, 10_000);
    assert_eq!(opened.interest_rate_bp, 200);
    let a = opened.account_id;
    let session = login(&bank.rpc, "Ada Lovelace", "1234").await.unwrap();
    assert_eq!(session.account_ids, std::slice::from_ref(&a));
    assert!(session.expires_at.is_some());
    let ada = session.session_token;
    let (b, bob) = bank.customer("Bob", "5678", 0).await;

    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 10_000);
    let d = request_id();
    let dep = deposit(&bank.rpc, &ada, &a, 2_550, &d).await.unwrap();
    assert_eq!(dep.balance_cents, 12_550);
    let w = request_id();
    let wd = withdraw(&bank.rpc, &ada, &a, 1_000, &w).await.unwrap();
    assert_eq!(wd.balance_cents, 11_550);
    let t = request_id();
    let tr = transfer(&bank.rpc, &ada, &a, &b, 3_000, &t).await.unwrap();
    assert_eq!(
        tr.balance_cents, 8_550,
        "a transfer's receipt shows the source"
    );
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 8_550);
    assert_eq!(balance(&bank.rpc, &bob, &b).await.unwrap(), 3_000);

    let ada_ledger = ledger(&bank.rpc, &ada, &a).await.unwrap();
    assert_eq!(
        kinds(&ada_ledger),
        ["OPEN", "DEPOSIT", "WITHDRAW", "TRANSFER_OUT"]
    );
    let amounts: Vec<i64> = ada_ledger.iter().map(|t| t.amount_cents).collect();
    assert_eq!(amounts, [10_000, 2_550, -1_000, -3_000]);
    assert_adds_up(&ada_ledger, 8_550);
    let ids: Vec<&str> = ada_ledger[1..]
        .iter()
        .map(|t| t.request_id.as_str())
        .collect();
    assert_eq!(ids, [d.as_str(), w.as_str(), t.as_str()]);
    for (row, receipt) in ada_ledger[1..].iter().zip([&dep, &wd, &tr]) {
        assert_eq!(row.id, receipt.transaction_id, "the receipt names its row");
        assert_eq!(row.balance_after_cents, receipt.balance_cents);
        assert!(row.time.is_some());
    }
    assert_eq!(ada_ledger[3].counterparty_account_id, b);

    let bob_ledger = ledger(&bank.rpc, &bob, &b).await.unwrap();
    assert_eq!(kinds(&bob_ledger), ["OPEN", "TRANSFER_IN"]);
    assert_eq!(bob_ledger[1].amount_cents, 3_000);
    assert_eq!(bob_ledger[1].counterparty_account_id, a);
    assert_eq!(bob_ledger[1].request_id, t);
    assert_adds_up(&bob_ledger, 3_000);
}

async fn history_pages_two_at_a_time_newest_first_and_a_forged_page_token_is_refused(
    backend: Backend,
) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    for cents in [10, 20, 30, 40] {
        deposit(&bank.rpc, &ada, &a, cents, &request_id())
            .await
            .unwrap();
    }
    let all = page(&bank.rpc, &ada, &a, 0, "").await.unwrap();
    assert_eq!(all.transactions.len(), 5, "page_size 0 means 50");
    assert!(all.next_page_token.is_empty());
    let amounts: Vec<i64> = all.transactions.iter().map(|t| t.amount_cents).collect();
    assert_eq!(amounts, [40, 30, 20, 10, 1_000], "newest first");

    let mut pages = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let reply = page(&bank.rpc, &ada, &a, 2, &token).await.unwrap();
        pages.push(reply.transactions);
        token = reply.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(
        pages.concat(),
        all.transactions,
        "the pages are the whole ledger"
    );

    for forged in ["42", "before-zz", "before-0", "before--1", "after-1"] {
        expect_invalid(page(&bank.rpc, &ada, &a, 2, forged).await, "page_token");
    }
}

async fn a_history_page_token_is_refused_for_another_account_or_another_session(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, bea) = bank.customer("Bea", "5678", 1_000).await;
    for (account, session) in [(&a, &ada), (&b, &bea)] {
        deposit(&bank.rpc, session, account, 10, &request_id())
            .await
            .unwrap();
    }
    let ada_token = page(&bank.rpc, &ada, &a, 1, "")
        .await
        .unwrap()
        .next_page_token;
    let bea_token = page(&bank.rpc, &bea, &b, 1, "")
        .await
        .unwrap()
        .next_page_token;
    assert!(!ada_token.is_empty() && !bea_token.is_empty());

    // Bea's token on Ada's account, and Ada's token in another session of hers: refused like a
    // forged one.
    expect_invalid(page(&bank.rpc, &ada, &a, 1, &bea_token).await, "page_token");
    let again = login(&bank.rpc, "Ada", "1234").await.unwrap().session_token;
    expect_invalid(
        page(&bank.rpc, &again, &a, 1, &ada_token).await,
        "page_token",
    );
    // The genuine token, in its own session, goes on.
    let rest = page(&bank.rpc, &ada, &a, 1, &ada_token).await.unwrap();
    assert_eq!(rest.transactions.len(), 1);
    assert!(rest.next_page_token.is_empty());
}

async fn an_overdraft_is_refused_with_insufficient_funds_and_changes_nothing(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, bob) = bank.customer("Bob", "5678", 0).await;
    let before = ledger(&bank.rpc, &ada, &a).await.unwrap();

    expect_insufficient_funds(withdraw(&bank.rpc, &ada, &a, 1_001, &request_id()).await);
    expect_insufficient_funds(transfer(&bank.rpc, &ada, &a, &b, 1_001, &request_id()).await);
    expect_insufficient_funds(withdraw(&bank.rpc, &bob, &b, 1, &request_id()).await);

    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 1_000);
    assert_eq!(balance(&bank.rpc, &bob, &b).await.unwrap(), 0);
    assert_eq!(ledger(&bank.rpc, &ada, &a).await.unwrap(), before);
    assert_eq!(kinds(&ledger(&bank.rpc, &bob, &b).await.unwrap()), ["OPEN"]);
    let all = withdraw(&bank.rpc, &ada, &a, 1_000, &request_id()).await;
    assert_eq!(all.unwrap().balance_cents, 0, "the whole balance may go");
}

// ----- exactly once -----

async fn a_retry_with_the_same_request_id_returns_the_same_receipt_and_applies_once(
    backend: Backend,
) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, bob) = bank.customer("Bob", "5678", 0).await;

    let d = request_id();
    let first = deposit(&bank.rpc, &ada, &a, 500, &d).await.unwrap();
    let w = request_id();
    let withdrawn = withdraw(&bank.rpc, &ada, &a, 200, &w).await.unwrap();
    let t = request_id();
    let moved = transfer(&bank.rpc, &ada, &a, &b, 300, &t).await.unwrap();
    for _ in 0..3 {
        assert_eq!(deposit(&bank.rpc, &ada, &a, 500, &d).await.unwrap(), first);
        assert_eq!(
            withdraw(&bank.rpc, &ada, &a, 200, &w).await.unwrap(),
            withdrawn
        );
        assert_eq!(
            transfer(&bank.rpc, &ada, &a, &b, 300, &t).await.unwrap(),
            moved
        );
    }
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 1_000);
    assert_eq!(balance(&bank.rpc, &bob, &b).await.unwrap(), 300);
    let rows = ledger(&bank.rpc, &ada, &a).await.unwrap();
    assert_eq!(
        kinds(&rows),
        ["OPEN", "DEPOSIT", "WITHDRAW", "TRANSFER_OUT"]
    );
    assert_eq!(
        kinds(&ledger(&bank.rpc, &bob, &b).await.unwrap()),
        ["OPEN", "TRANSFER_IN"]
    );
}

async fn the_same_request_id_with_other_parameters_is_refused_as_reused(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, _bob) = bank.customer("Bob", "5678", 0).await;
    let id = request_id();
    deposit(&bank.rpc, &ada, &a, 500, &id).await.unwrap();
    let before = ledger(&bank.rpc, &ada, &a).await.unwrap();

    let reuses = [
        deposit(&bank.rpc, &ada, &a, 501, &id).await,
        withdraw(&bank.rpc, &ada, &a, 500, &id).await,
        transfer(&bank.rpc, &ada, &a, &b, 500, &id).await,
    ];
    for reuse in reuses {
        let status = expect_code(reuse, Code::AlreadyExists);
        assert_eq!(
            reason(&status).as_deref(),
            Some("REQUEST_ID_REUSED"),
            "{status:?}"
        );
    }
    let interest = apply_interest(&bank.rpc, &bank.admin, &id).await;
    let status = expect_code(interest, Code::AlreadyExists);
    assert_eq!(reason(&status).as_deref(), Some("REQUEST_ID_REUSED"));
    assert_eq!(ledger(&bank.rpc, &ada, &a).await.unwrap(), before);
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 1_500);
}

// ----- bad input -----

async fn bad_input_is_refused_naming_the_field(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, _bob) = bank.customer("Bob", "5678", 0).await;
    let (rpc, admin) = (&bank.rpc, bank.admin.as_str());

    let long_name = "x".repeat(101);
    for name in ["", "   ", long_name.as_str(), "a\u{7}b"] {
        expect_invalid(
            open_account(rpc, admin, name, "1234", 0).await,
            "holder_name",
        );
        expect_invalid(login(rpc, name, "1234").await, "holder_name");
    }
    assert!(
        open_account(rpc, admin, &"y".repeat(100), "1234", 0)
            .await
            .is_ok(),
        "100 characters are allowed"
    );
    for pin in ["", "123", "12a4", "1234567890123", "12 34"] {
        expect_invalid(open_account(rpc, admin, "Cy", pin, 0).await, "pin");
        expect_invalid(login(rpc, "Ada", pin).await, "pin");
    }
    for cents in [-1, 100_000_000_001] {
        let opened = open_account(rpc, admin, "Cy", "1234", cents).await;
        expect_invalid(opened, "initial_deposit_cents");
    }
    let bad_id = pb::OpenAccountRequest {
        holder_name: "Cy".into(),
        pin: "1234".into(),
        initial_deposit_cents: 0,
        request_id: "not-a-uuid".into(),
    };
    expect_invalid(
        rpc.clone().open_account(authed(admin, bad_id)).await,
        "request_id",
    );

    for cents in [0, -5, i64::MIN, 100_000_000_001, i64::MAX] {
        expect_invalid(
            deposit(rpc, &ada, &a, cents, &request_id()).await,
            "amount_cents",
        );
        expect_invalid(
            withdraw(rpc, &ada, &a, cents, &request_id()).await,
            "amount_cents",
        );
        let moved = transfer(rpc, &ada, &a, &b, cents, &request_id()).await;
        expect_invalid(moved, "amount_cents");
    }
    for id in [
        "",
        "42",
        "not-a-uuid",
        "123e4567-e89b-12d3-a456-42661417400",
    ] {
        expect_invalid(deposit(rpc, &ada, &a, 1, id).await, "request_id");
        expect_invalid(transfer(rpc, &ada, &a, &b, 1, id).await, "request_id");
    }
    expect_invalid(
        deposit(rpc, &ada, "42", 1, &request_id()).await,
        "account_id",
    );
    expect_invalid(balance(rpc, &ada, "").await, "account_id");
    expect_invalid(
        transfer(rpc, &ada, "x", &b, 1, &request_id()).await,
        "from_account_id",
    );
    expect_invalid(
        transfer(rpc, &ada, &a, "x", 1, &request_id()).await,
        "to_account_id",
    );
    expect_invalid(
        transfer(rpc, &ada, &a, &a, 1, &request_id()).await,
        "to_account_id",
    );
    // AIP-158, as in every service: a negative size is refused, one above 1000 is served as 1000.
    for size in [-1, i32::MIN] {
        expect_invalid(page(rpc, &ada, &a, size, "").await, "page_size");
    }
    for size in [1000, 1001, i32::MAX] {
        assert_eq!(
            page(rpc, &ada, &a, size, "")
                .await
                .unwrap()
                .transactions
                .len(),
            1
        );
    }

    let add = pb::AddHolderRequest {
        account_id: a.clone(),
        holder_name: "Cy".into(),
        pin: "12".into(),
        ..Default::default()
    };
    expect_invalid(rpc.clone().add_holder(authed(&ada, add)).await, "pin");
    let interest = apply_interest(rpc, admin, "nope").await;
    expect_invalid(interest, "request_id");
    assert_eq!(
        balance(rpc, &ada, &a).await.unwrap(),
        1_000,
        "nothing moved"
    );
    assert_eq!(ledger(rpc, &ada, &a).await.unwrap().len(), 1);
}

async fn an_unknown_account_is_not_found(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let nobody = uuid::Uuid::new_v4().to_string();
    let rpc = &bank.rpc;

    let status = expect_code(balance(rpc, &ada, &nobody).await, Code::NotFound);
    assert!(status.message().starts_with("account_id"), "{status:?}");
    expect_code(
        deposit(rpc, &ada, &nobody, 1, &request_id()).await,
        Code::NotFound,
    );
    expect_code(
        withdraw(rpc, &ada, &nobody, 1, &request_id()).await,
        Code::NotFound,
    );
    expect_code(ledger(rpc, &ada, &nobody).await, Code::NotFound);
    let to_nobody = transfer(rpc, &ada, &a, &nobody, 1, &request_id()).await;
    let status = expect_code(to_nobody, Code::NotFound);
    assert!(status.message().starts_with("to_account_id"), "{status:?}");
    let from_nobody = transfer(rpc, &ada, &nobody, &a, 1, &request_id()).await;
    let status = expect_code(from_nobody, Code::NotFound);
    assert!(
        status.message().starts_with("from_account_id"),
        "{status:?}"
    );
    assert_eq!(balance(rpc, &ada, &a).await.unwrap(), 1_000);
}

// ----- who may do what -----

async fn a_call_without_a_valid_session_is_unauthenticated(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, _ada) = bank.customer("Ada", "1234", 1_000).await;
    let bare = pb::GetBalanceRequest {
        account_id: a.clone(),
    };
    let status = expect_code(
        bank.rpc.clone().get_balance(bare).await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("authorization"), "{status:?}");
    expect_code(
        deposit(&bank.rpc, "not-a-session", &a, 1, &request_id()).await,
        Code::Unauthenticated,
    );
    let mut basic = Request::new(pb::GetBalanceRequest { account_id: a });
    basic
        .metadata_mut()
        .insert("authorization", "Basic QWRhOjEyMzQ=".parse().unwrap());
    expect_code(
        bank.rpc.clone().get_balance(basic).await,
        Code::Unauthenticated,
    );
    expect_code(
        bank.rpc.clone().logout(pb::LogoutRequest {}).await,
        Code::Unauthenticated,
    );
}

async fn another_holders_account_is_permission_denied(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, bob) = bank.customer("Bob", "5678", 1_000).await;
    let rpc = &bank.rpc;

    expect_code(balance(rpc, &bob, &a).await, Code::PermissionDenied);
    expect_code(
        deposit(rpc, &bob, &a, 1, &request_id()).await,
        Code::PermissionDenied,
    );
    expect_code(
        withdraw(rpc, &bob, &a, 1, &request_id()).await,
        Code::PermissionDenied,
    );
    expect_code(ledger(rpc, &bob, &a).await, Code::PermissionDenied);
    let stolen = transfer(rpc, &bob, &a, &b, 1, &request_id()).await;
    let status = expect_code(stolen, Code::PermissionDenied);
    assert!(
        status.message().starts_with("from_account_id"),
        "{status:?}"
    );
    let add = pb::AddHolderRequest {
        account_id: a.clone(),
        holder_session_token: bob.clone(),
        ..Default::default()
    };
    expect_code(
        rpc.clone().add_holder(authed(&bob, add)).await,
        Code::PermissionDenied,
    );

    assert_eq!(balance(rpc, &ada, &a).await.unwrap(), 1_000);
    assert_eq!(ledger(rpc, &ada, &a).await.unwrap().len(), 1);
    let gift = transfer(rpc, &bob, &b, &a, 100, &request_id()).await;
    assert_eq!(
        gift.unwrap().balance_cents,
        900,
        "paying into another's account is fine"
    );
    assert_eq!(balance(rpc, &ada, &a).await.unwrap(), 1_100);
}

async fn logout_revokes_the_session_token(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let other = login(&bank.rpc, "Ada", "1234").await.unwrap().session_token;
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 1_000);

    let logout = bank
        .rpc
        .clone()
        .logout(authed(&ada, pb::LogoutRequest {}))
        .await;
    logout.unwrap();
    expect_code(balance(&bank.rpc, &ada, &a).await, Code::Unauthenticated);
    expect_code(
        deposit(&bank.rpc, &ada, &a, 1, &request_id()).await,
        Code::Unauthenticated,
    );
    let again = bank
        .rpc
        .clone()
        .logout(authed(&ada, pb::LogoutRequest {}))
        .await;
    expect_code(again, Code::Unauthenticated);
    assert_eq!(
        balance(&bank.rpc, &other, &a).await.unwrap(),
        1_000,
        "only that session ended"
    );
}

async fn staff_calls_without_or_with_a_wrong_admin_token_are_permission_denied(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 10_000).await;
    let request = || pb::OpenAccountRequest {
        holder_name: "Mallory".into(),
        pin: "1234".into(),
        initial_deposit_cents: 1_000_000,
        request_id: request_id(),
    };
    let bare = bank.rpc.clone().open_account(request()).await;
    expect_code(bare, Code::PermissionDenied);
    let wrong_admin = format!("{}x", bank.admin);
    for token in [wrong_admin.as_str(), "", ada.as_str()] {
        let opened = bank
            .rpc
            .clone()
            .open_account(authed(token, request()))
            .await;
        expect_code(opened, Code::PermissionDenied);
        let interest = apply_interest(&bank.rpc, token, &request_id()).await;
        expect_code(interest, Code::PermissionDenied);
    }
    let bare = pb::ApplyInterestRequest {
        request_id: request_id(),
    };
    expect_code(
        bank.rpc.clone().apply_interest(bare).await,
        Code::PermissionDenied,
    );

    expect_code(
        login(&bank.rpc, "Mallory", "1234").await,
        Code::Unauthenticated,
    );
    assert_eq!(
        balance(&bank.rpc, &ada, &a).await.unwrap(),
        10_000,
        "no interest paid"
    );
}

async fn a_session_token_works_on_a_second_replica(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let replica = bank.replica(&[]).await;
    let replica = &replica.rpc;

    assert_eq!(balance(replica, &ada, &a).await.unwrap(), 1_000);
    let receipt = deposit(replica, &ada, &a, 250, &request_id())
        .await
        .unwrap();
    assert_eq!(receipt.balance_cents, 1_250);
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 1_250);
    assert_eq!(admin_token(bank.data_dir()), bank.admin, "one staff token");
    replica
        .clone()
        .logout(authed(&ada, pb::LogoutRequest {}))
        .await
        .unwrap();
    expect_code(balance(&bank.rpc, &ada, &a).await, Code::Unauthenticated);
}

async fn a_logout_on_one_replica_stops_transfers_on_another_that_had_just_made_one(
    backend: Backend,
) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, _) = bank.customer("Bob", "5678", 0).await;
    let replica = bank.replica(&[]).await;
    let replica = &replica.rpc;

    transfer(&bank.rpc, &ada, &a, &b, 100, &request_id())
        .await
        .unwrap();
    replica
        .clone()
        .logout(authed(&ada, pb::LogoutRequest {}))
        .await
        .unwrap();
    expect_code(
        transfer(&bank.rpc, &ada, &a, &b, 100, &request_id()).await,
        Code::Unauthenticated,
    );
    let again = login(&bank.rpc, "Ada", "1234").await.unwrap().session_token;
    assert_eq!(balance(&bank.rpc, &again, &a).await.unwrap(), 900);
}

// ----- three strikes -----

async fn an_unknown_name_and_a_wrong_pin_get_the_same_unauthenticated_answer(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    bank.customer("Ada", "1234", 0).await;
    let wrong_pin = expect_code(login(&bank.rpc, "Ada", "9999").await, Code::Unauthenticated);
    let unknown = expect_code(
        login(&bank.rpc, "Nobody", "1234").await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong_pin.message(), unknown.message());
    assert_eq!(reason(&wrong_pin), reason(&unknown));
}
async fn after_three_wrong_pins_even_the_right_pin_is_refused_with_retry_info(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    bank.customer("Ada", "1234", 0).await;
    assert_three_strikes_lock(&bank.rpc, "Ada", "1234").await;
    let other = bank.customer("Cy", "4321", 0).await;
    assert!(!other.1.is_empty(), "other names are not locked");
}

async fn three_failed_logins_lock_a_name_that_does_not_exist_too(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    assert_three_strikes_lock(&bank.rpc, "Nobody", "1234").await;
    // Opening the account does not lift the lock on the name.
    open_account(&bank.rpc, &bank.admin, "Nobody", "1234", 0)
        .await
        .unwrap();
    expect_code(
        login(&bank.rpc, "Nobody", "1234").await,
        Code::ResourceExhausted,
    );
}

async fn a_successful_login_resets_the_strikes(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    bank.customer("Ada", "1234", 0).await;
    for _ in 0..2 {
        expect_code(login(&bank.rpc, "Ada", "0000").await, Code::Unauthenticated);
    }
    login(&bank.rpc, "Ada", "1234").await.unwrap();
    for _ in 0..2 {
        expect_code(login(&bank.rpc, "Ada", "0000").await, Code::Unauthenticated);
    }
    login(&bank.rpc, "Ada", "1234").await.unwrap();
}

async fn a_second_account_for_an_existing_holder_needs_their_pin_and_login_lists_all_in_the_order_opened(
    backend: Backend,
) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, _ada) = bank.customer("Ada", "1234", 100).await;
    let wrong = open_account(&bank.rpc, &bank.admin, "Ada", "9999", 500).await;
    expect_code(wrong, Code::PermissionDenied);
    assert_eq!(
        login(&bank.rpc, "Ada", "1234").await.unwrap().account_ids,
        std::slice::from_ref(&a)
    );
    expect_code(login(&bank.rpc, "Ada", "9999").await, Code::Unauthenticated);

    let second = open_account(&bank.rpc, &bank.admin, "Ada", "1234", 500)
        .await
        .unwrap();
    assert_eq!(second.holders, ["Ada"]);
    let mut opened = vec![a, second.account_id.clone()];
    for _ in 0..3 {
        let more = open_account(&bank.rpc, &bank.admin, "Ada", "1234", 0).await;
        opened.push(more.unwrap().account_id);
    }
    let session = login(&bank.rpc, "Ada", "1234").await.unwrap();
    assert_eq!(session.account_ids, opened, "not sorted by id: as opened");
    let token = session.session_token;
    assert_eq!(
        balance(&bank.rpc, &token, &second.account_id)
            .await
            .unwrap(),
        500
    );
}

// ----- interest -----

async fn interest_is_two_percent_rounded_down_and_a_retry_credits_nothing_more(backend: Backend) {
    let bank = TestBank::start_on(backend, &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 10_049).await;
    let (b, bob) = bank.customer("Bob", "5678", 149).await;
    let (c, cy) = bank.customer("Cy", "4321", 49).await;

    let id = request_id();
    let paid = apply_interest(&bank.rpc, &bank.admin, &id).await.unwrap();
    assert_eq!(
        paid,
        (2, 202),
        "10,049 earns 200 and 149 earns 2; 49 earns nothing"
    );
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 10_249);
    assert_eq!(balance(&bank.rpc, &bob, &b).await.unwrap(), 151);
    assert_eq!(balance(&bank.rpc, &cy, &c).await.unwrap(), 49);

    let again = apply_interest(&bank.rpc, &bank.admin, &id).await.unwrap();
    assert_eq!(again, (0, 0), "a retry credits nothing more");
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 10_249);
    let rows = ledger(&bank.rpc, &ada, &a).await.unwrap();
    assert_eq!(kinds(&rows), ["OPEN", "INTEREST"]);
    assert_eq!(rows[1].amount_cents, 200);
    assert_eq!(rows[1].request_id, id);
    assert_adds_up(&rows, 10_249);
    assert_eq!(kinds(&ledger(&bank.rpc, &cy, &c).await.unwrap()), ["OPEN"]);

    let next = apply_interest(&bank.rpc, &bank.admin, &request_id()).await;
    assert_eq!(
        next.unwrap(),
        (2, 204 + 3),
        "a new run pays on the new balances"
    );
}

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
    a_customer_opens_logs_in_deposits_withdraws_transfers_and_the_ledger_adds_up,
    history_pages_two_at_a_time_newest_first_and_a_forged_page_token_is_refused,
    a_history_page_token_is_refused_for_another_account_or_another_session,
    an_overdraft_is_refused_with_insufficient_funds_and_changes_nothing,
    a_retry_with_the_same_request_id_returns_the_same_receipt_and_applies_once,
    the_same_request_id_with_other_parameters_is_refused_as_reused,
    bad_input_is_refused_naming_the_field,
    an_unknown_account_is_not_found,
    a_call_without_a_valid_session_is_unauthenticated,
    another_holders_account_is_permission_denied,
    logout_revokes_the_session_token,
    staff_calls_without_or_with_a_wrong_admin_token_are_permission_denied,
    a_session_token_works_on_a_second_replica,
    a_logout_on_one_replica_stops_transfers_on_another_that_had_just_made_one,
    an_unknown_name_and_a_wrong_pin_get_the_same_unauthenticated_answer,
    after_three_wrong_pins_even_the_right_pin_is_refused_with_retry_info,
    three_failed_logins_lock_a_name_that_does_not_exist_too,
    a_successful_login_resets_the_strikes,
    a_second_account_for_an_existing_holder_needs_their_pin_and_login_lists_all_in_the_order_opened,
    interest_is_two_percent_rounded_down_and_a_retry_credits_nothing_more,
    an_acknowledged_deposit_survives_kill_9_of_the_bank_server,
    a_transfer_applied_but_unanswered_when_the_bank_is_killed_is_answered_by_its_retry,
    every_balance_equals_the_sum_of_its_ledger,
);
