//! The bank service against a real bank-server and lock-server: accounts, sessions, money
//! movements and their ledger, history pages and their tokens, exactly-once request ids, who may
//! do what (a session, its logout, the staff token, across two replicas), and interest.

use tonic::{Code, Request};
use township_proto::bank::v1::{self as pb};

use crate::support::{
    bank::*,
    status::*,
    storage::{Backend, on_both_backends},
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

on_both_backends!(
    a_customer_opens_logs_in_deposits_withdraws_transfers_and_the_ledger_adds_up,
    history_pages_two_at_a_time_newest_first_and_a_forged_page_token_is_refused,
    a_history_page_token_is_refused_for_another_account_or_another_session,
    an_overdraft_is_refused_with_insufficient_funds_and_changes_nothing,
    a_retry_with_the_same_request_id_returns_the_same_receipt_and_applies_once,
    the_same_request_id_with_other_parameters_is_refused_as_reused,
    a_call_without_a_valid_session_is_unauthenticated,
    another_holders_account_is_permission_denied,
    logout_revokes_the_session_token,
    staff_calls_without_or_with_a_wrong_admin_token_are_permission_denied,
    a_session_token_works_on_a_second_replica,
    a_logout_on_one_replica_stops_transfers_on_another_that_had_just_made_one,
    interest_is_two_percent_rounded_down_and_a_retry_credits_nothing_more,
);
