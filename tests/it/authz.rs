//! The authorization policy (`--authz-policy`, gRPC's authz JSON), on a mutual-TLS time-server:
//! a principal the policy allows calls, one it does not gets PERMISSION_DENIED naming the method
//! (not the rule), deny rules win over allow rules, anything not allowed is denied (a plaintext
//! caller, health and reflection too unless allowed), SIGHUP reloads the policy without dropping
//! open streams, and a broken policy stops the start or, on reload, keeps the one in force.

use std::{fs, path::Path, time::Duration};

use tokio_stream::StreamExt;
use tonic::Code;
use township_proto::time::v1::{
    GetTimeRequest, WatchTimeRequest, time_service_client::TimeServiceClient,
};
use township_tests::run;

use crate::support::{
    process::run_binary,
    tls::{Certs, channel_as, tls_time_server, watch_ticks},
    wait::{wait_until, within},
};

const LIMIT: Duration = Duration::from_secs(30);
const GET_TIME: &str = "/township.time.v1.TimeService/GetTime";

/// Health to everyone; the time service to alice and bob; WatchTime denied to bob.
const POLICY: &str = r#"{
  "name": "township-time",
  "deny_rules": [
    { "name": "no-watching-for-bob",
      "source": { "principals": ["spiffe://township/user/bob"] },
      "request": { "paths": ["/township.time.v1.TimeService/WatchTime"] } }
  ],
  "allow_rules": [
    { "name": "probes", "request": { "paths": ["/grpc.health.v1.Health/*"] } },
    { "name": "users",
      "source": { "principals": ["spiffe://township/user/alice", "spiffe://township/user/bob"] },
      "request": { "paths": ["/township.time.v1.TimeService/*"] } }
  ]
}"#;

fn write_policy(dir: &Path, json: &str) -> String {
    let path = dir.join("policy.json");
    fs::write(&path, json).unwrap();
    path.to_str().unwrap().to_owned()
}

fn flags(certs: &Certs, policy: &str) -> Vec<String> {
    let mut flags = certs.server_flags(true);
    flags.extend(["--authz-policy".to_owned(), policy.to_owned()]);
    flags
}

async fn get_time(
    server: &township_tests::ServiceProcess,
    certs: &Certs,
    who: &str,
) -> Result<(), tonic::Status> {
    // The handshake succeeds: authorization comes after it.
    let channel = channel_as(server, certs, who).await;
    TimeServiceClient::new(channel)
        .get_time(GetTimeRequest::default())
        .await
        .map(drop)
}

fn expect_denied(result: Result<(), tonic::Status>, method: &str) {
    let status = result.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(method), "{status:?}");
    assert!(
        !status.message().contains("users") && !status.message().contains("no-watching"),
        "the refusal names no rule: {status:?}"
    );
}

#[tokio::test]
async fn an_allowed_principal_calls_while_others_get_permission_denied_naming_the_method() {
    let certs = Certs::init(&["alice", "bob", "mallory"]).await;
    let policy = write_policy(certs.path("").as_path(), POLICY);
    let server = tls_time_server(&flags(&certs, &policy), certs.client(Some("alice"))).await;

    assert!(get_time(&server, &certs, "alice").await.is_ok());
    assert!(get_time(&server, &certs, "bob").await.is_ok());
    expect_denied(get_time(&server, &certs, "mallory").await, GET_TIME);
    expect_denied(get_time(&server, &certs, "bank").await, GET_TIME);

    // Deny rules come first: bob is allowed the service, but not WatchTime.
    let watch = |who: &'static str| {
        let certs = &certs;
        let server = &server;
        async move {
            let channel = channel_as(server, certs, who).await;
            TimeServiceClient::new(channel)
                .watch_time(WatchTimeRequest::default())
                .await
                .map(drop)
        }
    };
    assert!(watch("alice").await.is_ok());
    expect_denied(
        watch("bob").await,
        "/township.time.v1.TimeService/WatchTime",
    );
}

#[tokio::test]
async fn reflection_is_reachable_only_when_the_policy_allows_it_and_the_health_listener_stays_open()
{
    let certs = Certs::init(&["alice"]).await;
    let policy = write_policy(certs.path("").as_path(), POLICY);
    let mut server_flags = flags(&certs, &policy);
    server_flags.extend(["--health-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let server = tls_time_server(&server_flags, certs.client(Some("alice"))).await;
    let list = |with_identity: bool| {
        let mut command = township_tests::grpcurl();
        command.args(["-cacert", &certs.pem("ca")]);
        if with_identity {
            command.args(["-cert", &certs.pem("alice"), "-key", &certs.key("alice")]);
        }
        command.args([&server.addr.to_string(), "list"]);
        command
    };
    let out = run(list(true), LIMIT).await;
    assert_ne!(
        out.code,
        Some(0),
        "reflection is not in the policy: {out:?}"
    );
    assert!(
        out.stderr.contains("PermissionDenied") || out.stderr.contains("permission denied"),
        "{out:?}"
    );

    let allowing = POLICY.replace(
        r#"{ "name": "probes", "request": { "paths": ["/grpc.health.v1.Health/*"] } }"#,
        r#"{ "name": "probes", "request": { "paths": ["/grpc.health.v1.Health/*", "/grpc.reflection.*"] } }"#,
    );
    assert_ne!(allowing, POLICY);
    fs::write(&policy, allowing).unwrap();
    server.signal(libc::SIGHUP);
    wait_until("reflection allowed after the reload", LIMIT, async || {
        run(list(true), LIMIT).await.code == Some(0)
    })
    .await;
    let out = run(list(true), LIMIT).await;
    assert!(
        out.stdout.contains("township.time.v1.TimeService"),
        "{out:?}"
    );

    // The plaintext health listener is outside the policy (probes); the TLS port is not.
    let health = server
        .stdout_line("health listening on ", LIMIT)
        .await
        .unwrap();
    let addr: std::net::SocketAddr = health["health listening on ".len()..].parse().unwrap();
    assert!(township_tests::health_status(addr, "").await.is_ok());
}

#[tokio::test]
async fn a_reload_takes_effect_without_dropping_open_streams_and_a_broken_file_keeps_the_policy_in_force()
 {
    let certs = Certs::init(&["alice", "bob"]).await;
    let policy = write_policy(certs.path("").as_path(), POLICY);
    let server = tls_time_server(&flags(&certs, &policy), certs.client(Some("alice"))).await;

    let mut watch = watch_ticks(channel_as(&server, &certs, "alice").await).await;
    within("a first tick", LIMIT, watch.next())
        .await
        .unwrap()
        .unwrap();

    // Alice loses the service; her open stream, authorized when it started, goes on.
    fs::write(
        &policy,
        POLICY.replace(r#""spiffe://township/user/alice", "#, ""),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    wait_until("alice is denied after the reload", LIMIT, async || {
        get_time(&server, &certs, "alice").await.is_err()
    })
    .await;
    expect_denied(get_time(&server, &certs, "alice").await, GET_TIME);
    assert!(get_time(&server, &certs, "bob").await.is_ok());
    for _ in 0..3 {
        within("a tick after the reload", LIMIT, watch.next())
            .await
            .expect("still open")
            .expect("a reply");
    }

    fs::write(&policy, r#"{ "name": "broken", "allow_rules": [] }"#).unwrap();
    server.signal(libc::SIGHUP);
    assert!(
        server
            .log_line("authorization policy not reloaded", LIMIT)
            .await
            .is_some(),
        "{}",
        server.logs()
    );
    assert!(
        get_time(&server, &certs, "bob").await.is_ok(),
        "the policy in force stays"
    );
    expect_denied(get_time(&server, &certs, "alice").await, GET_TIME);
}

#[tokio::test]
async fn a_policy_that_does_not_parse_or_check_stops_the_start_naming_the_file_and_the_fault() {
    let certs = Certs::init(&[]).await;
    let cases = [
        ("{ not json", "policy.json"),
        (r#"{ "name": "p" }"#, "\"allow_rules\" is not present"),
        (
            r#"{ "name": "p", "allow_rules": [ { "name": "r", "surprise": 1 } ] }"#,
            "surprise",
        ),
    ];
    for (json, named) in cases {
        let policy = write_policy(certs.path("").as_path(), json);
        let out = run_binary(
            "time-server",
            &["--listen", "127.0.0.1:0", "--authz-policy", &policy],
            &[],
        )
        .await;
        assert_eq!(out.code, Some(1), "{json}: {out:?}");
        assert!(out.stderr.contains(named), "{json}: {}", out.stderr);
    }
}

#[tokio::test]
async fn on_a_plaintext_server_a_policy_denies_every_call_naming_principals_and_allows_what_names_none()
 {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), POLICY);
    let server = township_tests::spawn_service("time-server", &["--authz-policy", &policy])
        .await
        .expect("starts: health is allowed to everyone");
    let status = TimeServiceClient::new(server.channel().await)
        .get_time(GetTimeRequest::default())
        .await
        .expect_err("a plaintext caller has no principal");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(GET_TIME), "{status:?}");

    let everyone = POLICY.replace(
        r#""source": { "principals": ["spiffe://township/user/alice", "spiffe://township/user/bob"] },"#,
        "",
    );
    assert_ne!(everyone, POLICY);
    fs::write(&policy, everyone).unwrap();
    server.signal(libc::SIGHUP);
    wait_until(
        "a rule with no source lets plaintext in",
        LIMIT,
        async || {
            TimeServiceClient::new(server.channel().await)
                .get_time(GetTimeRequest::default())
                .await
                .is_ok()
        },
    )
    .await;
}
