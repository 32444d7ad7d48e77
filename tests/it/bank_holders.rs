//! Holders of joint accounts, and why AddHolder cannot be used to guess PINs: a customer adds a
//! person who shows their own live session, never a PIN, so no answer depends on a PIN or on
//! whether a name exists; staff add anyone by name, as OpenAccount does.

use tonic::Code;
use township_proto::bank::v1 as pb;

use crate::support::{
    bank::{TestBank, add_holder, balance, by_pin, login, request_id, withdraw},
    status::{expect_code, expect_invalid},
};

/// AddHolder of `account` for the person whose session is `session`.
fn joining(account: &str, session: &str) -> pb::AddHolderRequest {
    pb::AddHolderRequest {
        account_id: account.into(),
        holder_session_token: session.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_holder_adds_a_joint_holder_who_shows_their_own_session_and_both_use_the_account() {
    let bank = TestBank::start().await;
    let (a, ada) = bank.customer("Ada", "1234", 5_000).await;
    let (b, bob) = bank.customer("Bob", "5678", 0).await;
    let joint = add_holder(&bank.rpc, &ada, joining(&a, &bob))
        .await
        .unwrap();
    assert_eq!(joint.holders, ["Ada", "Bob"]);
    assert_eq!(joint.balance_cents, 5_000);

    let bob = login(&bank.rpc, "Bob", "5678").await.unwrap();
    assert_eq!(bob.account_ids, [a.clone(), b], "in the order opened");
    let bob = bob.session_token;
    withdraw(&bank.rpc, &bob, &a, 1_000, &request_id())
        .await
        .unwrap();
    assert_eq!(balance(&bank.rpc, &ada, &a).await.unwrap(), 4_000);

    // Naming the joining holder is optional, and must then be right.
    let (c, cy) = bank.customer("Cy", "1111", 0).await;
    let wrong_name = pb::AddHolderRequest {
        holder_name: "Dee".into(),
        ..joining(&c, &ada)
    };
    expect_invalid(add_holder(&bank.rpc, &cy, wrong_name).await, "holder_name");
    let named = pb::AddHolderRequest {
        holder_name: "Ada".into(),
        ..joining(&c, &ada)
    };
    let joint = add_holder(&bank.rpc, &cy, named).await.unwrap();
    assert_eq!(joint.holders, ["Ada", "Cy"]);
}

#[tokio::test]
async fn a_customer_can_neither_test_a_pin_through_add_holder_nor_learn_whether_a_name_exists() {
    let bank = TestBank::start().await;
    let (a, ada) = bank.customer("Ada", "1234", 5_000).await;
    bank.customer("Bob", "5678", 0).await;

    // Bob's right PIN, a wrong one, and a name no one has: one and the same refusal.
    let mut answers = Vec::new();
    for (name, pin) in [("Bob", "5678"), ("Bob", "0000"), ("Nobody", "5678")] {
        let refused = add_holder(&bank.rpc, &ada, by_pin(&a, name, pin)).await;
        answers.push(expect_invalid(refused, "pin").message().to_owned());
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");

    // A made-up session, with an existing name or not: the same refusal again.
    let forged = |name: &str| pb::AddHolderRequest {
        holder_name: name.into(),
        ..joining(&a, "0123456789abcdef")
    };
    let bob = add_holder(&bank.rpc, &ada, forged("Bob")).await;
    let nobody = add_holder(&bank.rpc, &ada, forged("Nobody")).await;
    let bob = expect_invalid(bob, "holder_session_token");
    let nobody = expect_invalid(nobody, "holder_session_token");
    assert_eq!(bob.message(), nobody.message());

    let account = balance(&bank.rpc, &ada, &a).await.unwrap();
    assert_eq!(account, 5_000);
    let bob = login(&bank.rpc, "Bob", "5678").await.unwrap();
    assert_eq!(bob.account_ids.len(), 1, "Bob was added to nothing");
}

#[tokio::test]
async fn staff_add_a_new_holder_with_a_pin_and_an_existing_one_only_with_theirs() {
    let bank = TestBank::start().await;
    let (a, _ada) = bank.customer("Ada", "1234", 5_000).await;
    bank.customer("Bob", "5678", 0).await;

    let joint = add_holder(&bank.rpc, &bank.admin, by_pin(&a, "Cy", "2222")).await;
    assert_eq!(joint.unwrap().holders, ["Ada", "Cy"]);
    let cy = login(&bank.rpc, "Cy", "2222").await.unwrap();
    assert_eq!(cy.account_ids, std::slice::from_ref(&a));

    let wrong = add_holder(&bank.rpc, &bank.admin, by_pin(&a, "Bob", "0000")).await;
    expect_code(wrong, Code::PermissionDenied);
    let joint = add_holder(&bank.rpc, &bank.admin, by_pin(&a, "Bob", "5678")).await;
    assert_eq!(joint.unwrap().holders, ["Ada", "Bob", "Cy"]);

    let unknown = by_pin("00000000-0000-4000-8000-000000000000", "Dee", "3333");
    expect_code(
        add_holder(&bank.rpc, &bank.admin, unknown).await,
        Code::NotFound,
    );
    expect_code(login(&bank.rpc, "Dee", "3333").await, Code::Unauthenticated);
}
