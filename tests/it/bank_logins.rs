//! Logins against guessing, and against strangers who would lock customers out: attempts sent
//! together cannot outrun the three strikes, strikes count per source (certificate principal or
//! IP address) so the owner still gets in while a stranger fails, many sources together lock a
//! name only briefly, and failed logins are forgotten after the longest lockout. A customer
//! changes their PIN (ending their other sessions; a wrong old PIN is a failed login), and staff
//! lift lockouts and end a holder's sessions.

use std::time::Duration;

use tonic::{Code, Status};

use crate::support::{
    bank::{
        Rpc, TestBank, balance, change_pin, client_from, login, names_with_strikes,
        revoke_sessions, strikes, unlock,
    },
    status::{expect_code, reason, retry_delay},
    wait::wait_until,
};

const LIMIT: Duration = Duration::from_secs(30);

/// A failed login (wrong PIN) of `name` through `rpc`: the PIN was checked.
async fn fails(rpc: &Rpc, name: &str) {
    expect_code(login(rpc, name, "0000").await, Code::Unauthenticated);
}

/// A login of `name` through `rpc` refused before any PIN check, with a RetryInfo.
async fn refused(rpc: &Rpc, name: &str, pin: &str) -> Status {
    let status = expect_code(login(rpc, name, pin).await, Code::ResourceExhausted);
    retry_delay(&status);
    status
}

#[tokio::test]
async fn forty_wrong_pins_sent_together_get_three_pin_checks_and_the_right_pin_waits_out_the_lockout()
 {
    let bank = TestBank::start_with(&["--login-lockout", "5s"]).await;
    bank.customer("Ada", "1234", 0).await;
    let mut burst: Vec<_> = (0..40)
        .map(|_| {
            let rpc = bank.rpc.clone();
            tokio::spawn(async move { login(&rpc, "Ada", "0000").await })
        })
        .collect();
    // The right PIN joins the burst once its first three attempts are counted: while they are
    // checked, or after.
    wait_until("three attempts are counted", LIMIT, async || {
        strikes(bank.data_dir(), "Ada").await >= 3
    })
    .await;
    let rpc = bank.rpc.clone();
    burst.push(tokio::spawn(
        async move { login(&rpc, "Ada", "1234").await },
    ));

    let mut checked = 0;
    for (i, attempt) in burst.into_iter().enumerate() {
        match attempt.await.unwrap() {
            Err(status) if status.code() == Code::Unauthenticated => checked += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                retry_delay(&status);
            }
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    assert!(checked <= 3, "{checked} PIN checks ran (UNAUTHENTICATED)");

    // The right PIN, now that the burst is over: refused until the lockout ends, then welcome.
    let status = refused(&bank.rpc, "Ada", "1234").await;
    assert_eq!(reason(&status).as_deref(), Some("TOO_MANY_ATTEMPTS"));
    assert!(retry_delay(&status) <= Duration::from_secs(5));
    wait_until("the lockout ends", LIMIT, async || {
        login(&bank.rpc, "Ada", "1234").await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_stranger_failing_again_and_again_from_another_address_does_not_lock_the_owner_out() {
    let bank = TestBank::start().await;
    bank.customer("Ada", "1234", 0).await;
    let stranger = client_from(&bank.server.addr.to_string(), "127.0.0.2", LIMIT);
    for _ in 0..3 {
        fails(&stranger, "Ada").await;
    }
    for _ in 0..5 {
        let status = refused(&stranger, "Ada", "1234").await;
        assert_eq!(reason(&status).as_deref(), Some("TOO_MANY_ATTEMPTS"));
    }
    let owner = login(&bank.rpc, "Ada", "1234").await;
    assert!(
        owner.is_ok(),
        "the owner, from 127.0.0.1, still gets in: {owner:?}"
    );
    refused(&stranger, "Ada", "1234").await;
}

#[tokio::test]
async fn many_sources_failing_on_one_name_lock_it_for_everyone_only_for_the_name_lockout() {
    let bank = TestBank::start_with(&["--login-name-lockout", "2s"]).await;
    bank.customer("Ada", "1234", 0).await;
    let addr = bank.server.addr.to_string();
    // Ten failures from four addresses: three, three, three and one.
    for (from, failures) in [
        ("127.0.0.2", 3),
        ("127.0.0.3", 3),
        ("127.0.0.4", 3),
        ("127.0.0.5", 1),
    ] {
        let stranger = client_from(&addr, from, LIMIT);
        for _ in 0..failures {
            fails(&stranger, "Ada").await;
        }
    }
    let status = refused(&bank.rpc, "Ada", "1234").await;
    assert!(
        retry_delay(&status) <= Duration::from_secs(2),
        "bounded by --login-name-lockout: {status:?}"
    );
    wait_until("the name lockout ends", LIMIT, async || {
        login(&bank.rpc, "Ada", "1234").await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn failed_logins_are_forgotten_once_the_longest_lockout_has_passed() {
    let bank = TestBank::start_with(&["--login-lockout", "1s", "--login-max-lockout", "1s"]).await;
    fails(&bank.rpc, "Ghost").await;
    assert_eq!(names_with_strikes(bank.data_dir()).await, ["Ghost"]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    fails(&bank.rpc, "Someone else").await;
    assert_eq!(
        names_with_strikes(bank.data_dir()).await,
        ["Someone else"],
        "Ghost's row was pruned"
    );
}

#[tokio::test]
async fn change_pin_needs_the_old_pin_and_ends_the_holders_other_sessions() {
    let bank = TestBank::start().await;
    let (a, first) = bank.customer("Ada", "1234", 100).await;
    let second = login(&bank.rpc, "Ada", "1234").await.unwrap().session_token;

    let wrong = change_pin(&bank.rpc, &first, "9999", "5678").await;
    let status = expect_code(wrong, Code::PermissionDenied);
    assert!(status.message().starts_with("old_pin"), "{status:?}");
    let changed = change_pin(&bank.rpc, &first, "1234", "5678").await.unwrap();
    assert_eq!(changed.sessions_ended, 1);

    assert_eq!(
        balance(&bank.rpc, &first, &a).await.unwrap(),
        100,
        "this session stays"
    );
    expect_code(balance(&bank.rpc, &second, &a).await, Code::Unauthenticated);
    expect_code(login(&bank.rpc, "Ada", "1234").await, Code::Unauthenticated);
    login(&bank.rpc, "Ada", "5678").await.expect("the new PIN");
}

#[tokio::test]
async fn wrong_old_pins_at_change_pin_count_as_failed_logins() {
    let bank = TestBank::start().await;
    let (_, session) = bank.customer("Ada", "1234", 0).await;
    for _ in 0..3 {
        let wrong = change_pin(&bank.rpc, &session, "0000", "5678").await;
        expect_code(wrong, Code::PermissionDenied);
    }
    let right = change_pin(&bank.rpc, &session, "1234", "5678").await;
    let status = expect_code(right, Code::ResourceExhausted);
    assert_eq!(reason(&status).as_deref(), Some("TOO_MANY_ATTEMPTS"));
    refused(&bank.rpc, "Ada", "1234").await;
}

#[tokio::test]
async fn staff_unlock_a_locked_out_name_and_revoke_every_session_of_a_holder() {
    let bank = TestBank::start().await;
    let (a, session) = bank.customer("Ada", "1234", 0).await;
    for _ in 0..3 {
        fails(&bank.rpc, "Ada").await;
    }
    refused(&bank.rpc, "Ada", "1234").await;
    expect_code(
        unlock(&bank.rpc, &session, "Ada").await,
        Code::PermissionDenied,
    );
    assert_eq!(unlock(&bank.rpc, &bank.admin, "Ada").await.unwrap(), 1);
    let again = login(&bank.rpc, "Ada", "1234").await.unwrap().session_token;

    expect_code(
        revoke_sessions(&bank.rpc, &session, "Ada").await,
        Code::PermissionDenied,
    );
    assert_eq!(
        revoke_sessions(&bank.rpc, &bank.admin, "Ada")
            .await
            .unwrap(),
        2
    );
    for token in [session, again] {
        expect_code(balance(&bank.rpc, &token, &a).await, Code::Unauthenticated);
    }
    assert_eq!(unlock(&bank.rpc, &bank.admin, "Nobody").await.unwrap(), 0);
}
