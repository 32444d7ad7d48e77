//! The bank's security audit: every login, failure, lockout, unlock, PIN change, holder change,
//! staff call and refusal is recorded with its time, holder, account, method and caller (peer
//! address, or certificate principal); staff read it newest first, paged, for one holder or
//! since a time; customers cannot read it; refusals by the authorization policy are in it; and no
//! PIN, token or hash ever appears in it or in any line the bank logs.

use std::time::{Duration, SystemTime};

use tonic::Code;
use township_proto::bank::v1 as pb;

use crate::support::{
    bank::{
        TestBank, add_holder, admin_token, apply_interest, balance, by_pin, change_pin, client,
        client_from, lock_server, login, logout, open_account, request_id, revoke_sessions, unlock,
    },
    bank_audit::{audit_events, audit_page, audit_table, audit_with, first, stored_hashes},
    status::{expect_code, expect_invalid},
};

const LIMIT: Duration = Duration::from_secs(30);
const LOGIN: &str = "township.bank.v1.BankService/Login";

#[tokio::test]
async fn every_security_event_is_recorded_with_its_time_holder_account_method_and_caller() {
    let bank = TestBank::start_with(&["--login-lockout", "2s"]).await;
    let (a, ada) = bank.customer("Ada", "1234", 5_000).await;
    let (b, bob) = bank.customer("Bob", "5678", 0).await;
    let stranger = client_from(&bank.server.addr.to_string(), "127.0.0.2", LIMIT);
    for _ in 0..3 {
        expect_code(login(&stranger, "Ada", "0000").await, Code::Unauthenticated);
    }
    expect_code(
        login(&stranger, "Ada", "1234").await,
        Code::ResourceExhausted,
    );
    unlock(&bank.rpc, &bank.admin, "Ada").await.unwrap();
    change_pin(&bank.rpc, &ada, "1234", "2468").await.unwrap();
    expect_code(balance(&bank.rpc, &bob, &a).await, Code::PermissionDenied);
    expect_code(unlock(&bank.rpc, &bob, "Ada").await, Code::PermissionDenied);
    add_holder(&bank.rpc, &bank.admin, by_pin(&b, "Ada", "2468"))
        .await
        .unwrap();
    assert_eq!(
        revoke_sessions(&bank.rpc, &bank.admin, "Bob")
            .await
            .unwrap(),
        1
    );
    apply_interest(&bank.rpc, &bank.admin, &request_id())
        .await
        .unwrap();
    logout(&bank.rpc, &ada).await.unwrap();

    let kinds = [
        "ACCOUNT_OPENED",
        "LOGIN",
        "LOGIN_FAILED",
        "LOCKOUT",
        "LOCKED_OUT",
        "UNLOCK",
        "PIN_CHANGED",
        "NOT_YOUR_ACCOUNT",
        "STAFF_REFUSED",
        "HOLDER_ADDED",
        "SESSIONS_REVOKED",
        "INTEREST_APPLIED",
        "LOGOUT",
    ];
    let events = audit_with(&bank.rpc, &bank.admin, &kinds, LIMIT).await;
    let ids: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    for event in &events {
        assert!(event.time.is_some() && event.count >= 1, "{event:?}");
        assert!(
            event.method.starts_with("township.bank.v1.BankService/"),
            "{event:?}"
        );
    }
    let caller = |e: &pb::AuditEvent| (e.holder_name.clone(), e.peer.clone(), e.method.clone());
    let from_stranger = ("Ada".to_owned(), "127.0.0.2".to_owned(), LOGIN.to_owned());
    assert_eq!(caller(first(&events, "LOGIN_FAILED")), from_stranger);
    assert_eq!(caller(first(&events, "LOCKOUT")), from_stranger);
    assert_eq!(caller(first(&events, "LOCKED_OUT")), from_stranger);
    let failures: u32 = events
        .iter()
        .filter(|e| e.kind == "LOGIN_FAILED")
        .map(|e| e.count)
        .sum();
    assert_eq!(failures, 3);
    let logins: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "LOGIN")
        .map(|e| (e.holder_name.as_str(), e.peer.as_str()))
        .collect();
    assert_eq!(logins, [("Bob", "127.0.0.1"), ("Ada", "127.0.0.1")]);

    let opened: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "ACCOUNT_OPENED")
        .map(|e| (e.holder_name.as_str(), e.account_id.as_str()))
        .collect();
    assert_eq!(opened, [("Bob", b.as_str()), ("Ada", a.as_str())]);
    let added = first(&events, "HOLDER_ADDED");
    assert_eq!(
        (added.holder_name.as_str(), added.account_id.as_str()),
        ("Ada", b.as_str())
    );
    let not_bobs = first(&events, "NOT_YOUR_ACCOUNT");
    assert_eq!(
        (not_bobs.holder_name.as_str(), not_bobs.account_id.as_str()),
        ("Bob", a.as_str())
    );
    assert_eq!(first(&events, "UNLOCK").holder_name, "Ada");
    assert_eq!(first(&events, "PIN_CHANGED").holder_name, "Ada");
    assert_eq!(first(&events, "LOGOUT").holder_name, "Ada");
    let revoked = first(&events, "SESSIONS_REVOKED");
    assert_eq!(revoked.holder_name, "Bob");
    assert!(revoked.detail.contains('1'), "{revoked:?}");
    let refused = first(&events, "STAFF_REFUSED");
    assert_eq!(refused.method, "township.bank.v1.BankService/Unlock");
    assert_eq!(refused.peer, "127.0.0.1");

    // Reading the audit is itself a staff call on record.
    audit_with(&bank.rpc, &bank.admin, &["AUDIT_READ"], LIMIT).await;
}

#[tokio::test]
async fn staff_page_through_one_holders_events_newest_first_and_since_a_time() {
    let bank = TestBank::start().await;
    bank.customer("Ada", "1234", 0).await;
    bank.customer("Bob", "5678", 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let since = SystemTime::now();
    for _ in 0..4 {
        login(&bank.rpc, "Ada", "1234").await.unwrap();
    }

    let adas = audit_events(&bank.rpc, &bank.admin, "Ada").await;
    assert_eq!(adas.len(), 6, "opened, then five logins: {adas:#?}");
    assert!(adas.iter().all(|e| e.holder_name == "Ada"), "{adas:#?}");
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListAuditRequest {
            holder_name: "Ada".into(),
            page_size: 4,
            page_token,
            ..Default::default()
        };
        let page = audit_page(&bank.rpc, &bank.admin, request).await.unwrap();
        assert!(page.events.len() <= 4);
        paged.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(paged, adas, "pages of 4 give the same events, once each");

    let recent = pb::ListAuditRequest {
        holder_name: "Ada".into(),
        since: Some(since.into()),
        page_size: 2,
        ..Default::default()
    };
    let page = audit_page(&bank.rpc, &bank.admin, recent.clone())
        .await
        .unwrap();
    assert_eq!(page.events, adas[..2]);
    let rest = pb::ListAuditRequest {
        page_token: page.next_page_token,
        ..recent.clone()
    };
    let page = audit_page(&bank.rpc, &bank.admin, rest).await.unwrap();
    assert_eq!(
        page.events,
        adas[2..4],
        "four logins since, and nothing before"
    );
    assert!(page.next_page_token.is_empty());

    let first_page = audit_page(&bank.rpc, &bank.admin, recent.clone())
        .await
        .unwrap();
    let other_holder = pb::ListAuditRequest {
        holder_name: "Bob".into(),
        page_token: first_page.next_page_token,
        ..recent.clone()
    };
    expect_invalid(
        audit_page(&bank.rpc, &bank.admin, other_holder).await,
        "page_token",
    );
    let negative = pb::ListAuditRequest {
        page_size: -1,
        ..recent.clone()
    };
    expect_invalid(
        audit_page(&bank.rpc, &bank.admin, negative).await,
        "page_size",
    );
    let bad_since = pb::ListAuditRequest {
        since: Some(prost_types::Timestamp {
            seconds: 0,
            nanos: -5,
        }),
        ..recent
    };
    expect_invalid(audit_page(&bank.rpc, &bank.admin, bad_since).await, "since");
}

#[tokio::test]
async fn a_customer_cannot_read_the_audit_and_the_attempt_is_recorded() {
    let bank = TestBank::start().await;
    let (_, ada) = bank.customer("Ada", "1234", 0).await;
    let status = expect_code(
        audit_page(&bank.rpc, &ada, pb::ListAuditRequest::default()).await,
        Code::PermissionDenied,
    );
    assert!(!status.message().contains("Ada"), "{status:?}");
    let events = audit_with(&bank.rpc, &bank.admin, &["STAFF_REFUSED"], LIMIT).await;
    assert_eq!(
        first(&events, "STAFF_REFUSED").method,
        "township.bank.v1.BankService/ListAudit"
    );
}

#[tokio::test]
async fn a_call_the_authorization_policy_refuses_is_recorded_with_its_method_and_peer() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{
            "name": "bank",
            "deny_rules": [{ "name": "no-interest",
                             "request": { "paths": ["/township.bank.v1.BankService/ApplyInterest"] } }],
            "allow_rules": [{ "name": "everything-else" }]
        }"#,
    )
    .unwrap();
    let bank = TestBank::start_with(&["--authz-policy", policy.to_str().unwrap()]).await;
    expect_code(
        apply_interest(&bank.rpc, &bank.admin, &request_id()).await,
        Code::PermissionDenied,
    );
    let events = audit_with(&bank.rpc, &bank.admin, &["POLICY_DENIED"], LIMIT).await;
    let denied = first(&events, "POLICY_DENIED");
    assert_eq!(denied.method, "township.bank.v1.BankService/ApplyInterest");
    assert_eq!(
        (denied.peer.as_str(), denied.principal.as_str()),
        ("127.0.0.1", "")
    );
    assert!(
        events.iter().all(|e| e.kind != "INTEREST_APPLIED"),
        "{events:#?}"
    );
}

#[tokio::test]
async fn no_pin_session_token_admin_token_or_hash_appears_in_the_audit_or_in_any_debug_log_line() {
    let lock_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let lock = lock_server(lock_dir.path(), None).await;
    let server = township_tests::spawn_service_with_env(
        "bank-server",
        &[
            "--data-dir",
            data_dir.path().to_str().unwrap(),
            "--lock-addr",
            &lock.addr.to_string(),
        ],
        &[("RUST_LOG", "debug")],
    )
    .await
    .expect("the bank-server starts");
    let rpc = client(&server.addr.to_string(), LIMIT);
    let admin = admin_token(data_dir.path());
    let (ada_pin, bob_pin, new_pin, wrong_pin) = ("90817263", "71625344", "55392017", "66778899");

    let a = open_account(&rpc, &admin, "Ada", ada_pin, 1_000)
        .await
        .unwrap();
    open_account(&rpc, &admin, "Bob", bob_pin, 0).await.unwrap();
    let ada = login(&rpc, "Ada", ada_pin).await.unwrap().session_token;
    let bob = login(&rpc, "Bob", bob_pin).await.unwrap().session_token;
    let mut hashes = stored_hashes(data_dir.path()).await;
    expect_code(login(&rpc, "Ada", wrong_pin).await, Code::Unauthenticated);
    expect_code(unlock(&rpc, &bob, "Ada").await, Code::PermissionDenied);
    expect_code(
        balance(&rpc, &bob, &a.account_id).await,
        Code::PermissionDenied,
    );
    let joining = pb::AddHolderRequest {
        account_id: a.account_id.clone(),
        holder_session_token: bob.clone(),
        ..Default::default()
    };
    add_holder(&rpc, &ada, joining).await.unwrap();
    change_pin(&rpc, &ada, ada_pin, new_pin).await.unwrap();
    let ada_again = login(&rpc, "Ada", new_pin).await.unwrap().session_token;
    hashes.extend(stored_hashes(data_dir.path()).await);
    revoke_sessions(&rpc, &admin, "Bob").await.unwrap();
    logout(&rpc, &ada_again).await.unwrap();
    let kinds = [
        "LOGIN_FAILED",
        "STAFF_REFUSED",
        "NOT_YOUR_ACCOUNT",
        "PIN_CHANGED",
        "LOGOUT",
    ];
    audit_with(&rpc, &admin, &kinds, LIMIT).await;

    let audit = audit_table(data_dir.path()).await;
    let logs = server.logs();
    assert!(audit.contains("|Ada|"), "the audit was read: {audit}");
    assert!(logs.contains("DEBUG"), "the bank logged at debug: {logs}");
    assert!(
        logs.contains("login refused"),
        "the failed login was logged: {logs}"
    );
    let secrets = [
        ada_pin, bob_pin, new_pin, wrong_pin, &admin, &ada, &bob, &ada_again,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(
        // A PIN hash is `$argon2id$v=19$m=…$SALT$HASH`: its salt and hash are the secrets.
        hashes
            .iter()
            .flat_map(|hash| hash.split('$'))
            .filter(|part| part.len() >= 16)
            .map(str::to_owned),
    );
    for secret in secrets {
        assert!(
            !audit.contains(&secret),
            "{secret:?} is in the audit:\n{audit}"
        );
        assert!(
            !logs.contains(&secret),
            "{secret:?} is in the bank's log:\n{logs}"
        );
    }
}
