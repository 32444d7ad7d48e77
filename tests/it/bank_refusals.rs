//! What the bank refuses, and how: bad input naming the field, an unknown account NOT_FOUND
//! naming which, an unknown name answered exactly as a wrong PIN is, three strikes that lock a
//! name (one that does not exist too) until a successful login resets them, and a second account
//! for an existing holder opened without their PIN (with it, login lists every account in order).

use tonic::Code;
use township_proto::bank::v1 as pb;

use crate::support::{
    bank::*,
    status::*,
    storage::{Backend, on_both_backends},
};

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

on_both_backends!(
    bad_input_is_refused_naming_the_field,
    an_unknown_account_is_not_found,
    an_unknown_name_and_a_wrong_pin_get_the_same_unauthenticated_answer,
    after_three_wrong_pins_even_the_right_pin_is_refused_with_retry_info,
    three_failed_logins_lock_a_name_that_does_not_exist_too,
    a_successful_login_resets_the_strikes,
    a_second_account_for_an_existing_holder_needs_their_pin_and_login_lists_all_in_the_order_opened,
);
