//! The lock service guards its resources: with a resource ACL (`--resource-acl`) only the
//! principals a rule names may take the modes it lists on the prefixes it covers, and anything
//! else is PERMISSION_DENIED naming only the field; each principal is held to its caps (live
//! leases, waiting acquires, the longest ttl) with RESOURCE_EXHAUSTED and a RetryInfo; the ACL
//! reloads on SIGHUP, a broken file keeping the one in force.

use std::{fs, time::Duration};

use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;
use township_proto::lock::v1::{
    AcquireRequest, LockTarget, Mode, ReleaseRequest, lock_service_client::LockServiceClient,
};
use township_tests::ServiceProcess;

use crate::support::{
    lock::{Session, ask, wait_for_waiters},
    tls::{Certs, channel_as, tls_service},
    wait::wait_until,
};

const LIMIT: Duration = Duration::from_secs(30);

/// The bank may lock accounts; users may read-lock scratch/, two leases at most, 30 s at most.
const ACL: &str = r#"{"rules": [
  {"principals": ["spiffe://township/bank"], "prefixes": ["account/"], "modes": ["MODE_READ", "MODE_WRITE"]},
  {"principals": ["spiffe://township/user/*"], "prefixes": ["scratch/"], "modes": ["MODE_READ"],
   "max_leases": 2, "max_ttl": "30s"}
]}"#;

type Rpc = LockServiceClient<Channel>;

async fn lock_server(
    certs: &Certs,
    acl: &str,
    extra: &[&str],
) -> (ServiceProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let acl_path = dir.path().join("acl.json");
    fs::write(&acl_path, acl).unwrap();
    let mut args = vec![
        "--data-dir".to_owned(),
        dir.path().to_str().unwrap().to_owned(),
        "--resource-acl".to_owned(),
        acl_path.to_str().unwrap().to_owned(),
    ];
    args.extend(certs.service_flags("lock", true));
    args.extend(extra.iter().map(|s| s.to_string()));
    (
        tls_service("lock-server", &args, certs.client(Some("bank"))).await,
        dir,
    )
}

/// An acquire that waits at most 1 s for its grant.
async fn acquire(rpc: &Rpc, resource: &str, mode: Mode, ttl_secs: i64) -> Result<String, Status> {
    acquire_waiting(rpc, resource, mode, ttl_secs, 1).await
}

async fn acquire_waiting(
    rpc: &Rpc,
    resource: &str,
    mode: Mode,
    ttl_secs: i64,
    wait_secs: i64,
) -> Result<String, Status> {
    rpc.clone()
        .acquire(AcquireRequest {
            targets: vec![LockTarget {
                resource: resource.into(),
                mode: mode.into(),
            }],
            ttl: Some(prost_types::Duration {
                seconds: ttl_secs,
                nanos: 0,
            }),
            wait_timeout: Some(prost_types::Duration {
                seconds: wait_secs,
                nanos: 0,
            }),
            owner: "test".into(),
        })
        .await
        .map(|lease| lease.into_inner().lease_id)
}

fn expect_denied(result: Result<String, Status>, field: &str) {
    let status = result.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().starts_with(field),
        "names {field}: {status:?}"
    );
    assert!(
        !status.message().contains("account/"),
        "names no resource: {status:?}"
    );
}

fn expect_over_cap(result: Result<String, Status>, says: &str) {
    let status = result.expect_err("over a cap");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(says), "{status:?}");
    let retry = status.get_details_retry_info().expect("a RetryInfo");
    assert!(
        retry.retry_delay.is_some_and(|d| d > Duration::ZERO),
        "{retry:?}"
    );
}

#[tokio::test]
async fn with_an_acl_only_the_bank_takes_accounts_and_whatever_no_rule_allows_is_denied() {
    let certs = Certs::init(&["mallory"]).await;
    let (server, _dir) = lock_server(&certs, ACL, &[]).await;
    let bank = LockServiceClient::new(channel_as(&server, &certs, "bank").await);
    let mallory = LockServiceClient::new(channel_as(&server, &certs, "mallory").await);

    let lease = acquire(&bank, "account/1", Mode::Write, 10)
        .await
        .expect("the bank locks an account");
    expect_denied(
        acquire(&mallory, "account/2", Mode::Write, 10).await,
        "targets[0]",
    );
    expect_denied(
        acquire(&mallory, "account/2", Mode::Read, 10).await,
        "targets[0]",
    );
    expect_denied(
        acquire(&mallory, "scratch/x", Mode::Write, 10).await,
        "targets[0]",
    );
    expect_denied(
        acquire(&bank, "scratch/x", Mode::Read, 10).await,
        "targets[0]",
    );
    expect_denied(
        acquire(&mallory, "elsewhere", Mode::Read, 10).await,
        "targets[0]",
    );
    acquire(&mallory, "scratch/x", Mode::Read, 10)
        .await
        .expect("what the ACL allows");

    // The same on a Session stream.
    let session = &mut Session::open(&mallory).await;
    session
        .acquire(1, ask("test", &[("account/1", Mode::Write)], LIMIT))
        .await;
    let error = session.error(1).await;
    assert_eq!(error.code, Code::PermissionDenied as i32, "{error:?}");
    bank.clone()
        .release(ReleaseRequest { lease_id: lease })
        .await
        .unwrap();
}

#[tokio::test]
async fn each_principal_is_held_to_its_caps_with_resource_exhausted_and_a_retry_info() {
    let certs = Certs::init(&["mallory"]).await;
    let (server, _dir) = lock_server(&certs, ACL, &["--max-waiters-per-principal", "1"]).await;
    let bank = LockServiceClient::new(channel_as(&server, &certs, "bank").await);
    let mallory = LockServiceClient::new(channel_as(&server, &certs, "mallory").await);

    expect_over_cap(acquire(&mallory, "scratch/a", Mode::Read, 60).await, "ttl");
    let first = acquire(&mallory, "scratch/a", Mode::Read, 30)
        .await
        .unwrap();
    acquire(&mallory, "scratch/b", Mode::Read, 30)
        .await
        .unwrap();
    expect_over_cap(
        acquire(&mallory, "scratch/c", Mode::Read, 30).await,
        "leases",
    );
    mallory
        .clone()
        .release(ReleaseRequest { lease_id: first })
        .await
        .unwrap();
    acquire(&mallory, "scratch/c", Mode::Read, 30)
        .await
        .expect("under the cap again");

    // Waiters: the bank holds account/1; one acquire of it may wait, a second is refused.
    let held = acquire(&bank, "account/1", Mode::Write, 60).await.unwrap();
    let waiting = {
        let bank = bank.clone();
        tokio::spawn(async move { acquire_waiting(&bank, "account/1", Mode::Write, 60, 30).await })
    };
    wait_for_waiters(&bank, "account/1", &["test"]).await;
    expect_over_cap(
        acquire(&bank, "account/1", Mode::Write, 60).await,
        "waiting",
    );
    bank.clone()
        .release(ReleaseRequest { lease_id: held })
        .await
        .unwrap();
    waiting
        .await
        .unwrap()
        .expect("the waiter is granted once the lease ends");
}

#[tokio::test]
async fn the_acl_reloads_on_sighup_and_a_broken_file_keeps_the_one_in_force() {
    let certs = Certs::init(&["mallory"]).await;
    let (server, dir) = lock_server(&certs, ACL, &[]).await;
    let mallory = LockServiceClient::new(channel_as(&server, &certs, "mallory").await);
    expect_denied(
        acquire(&mallory, "account/9", Mode::Write, 10).await,
        "targets[0]",
    );

    let opened = ACL.replace(
        r#"["spiffe://township/bank"]"#,
        r#"["spiffe://township/bank", "spiffe://township/user/mallory"]"#,
    );
    assert_ne!(opened, ACL);
    fs::write(dir.path().join("acl.json"), opened).unwrap();
    server.signal(libc::SIGHUP);
    wait_until(
        "mallory may lock accounts after the reload",
        LIMIT,
        async || {
            acquire(&mallory, "account/9", Mode::Write, 10)
                .await
                .is_ok()
        },
    )
    .await;

    fs::write(dir.path().join("acl.json"), "{ not json").unwrap();
    server.signal(libc::SIGHUP);
    assert!(
        server
            .log_line("resource ACL not reloaded", LIMIT)
            .await
            .is_some(),
        "{}",
        server.logs()
    );
    acquire(&mallory, "account/10", Mode::Write, 10)
        .await
        .expect("the ACL in force stays");
}
