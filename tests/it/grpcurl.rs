//! The real grpcurl against a real server: reflection (list, describe), a call with -d, health.

use std::time::Duration;

use township_tests::{run, spawn_service};

use crate::support::grpcurl::{grpcurl_at, grpcurl_command};

#[tokio::test]
async fn grpcurl_list_shows_the_time_health_and_reflection_services() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let out = grpcurl_at(server.addr, None, &["list"]).await;
    let services: Vec<&str> = out.stdout.lines().collect();
    for expected in [
        "township.time.v1.TimeService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&expected), "{expected} in {services:?}");
    }
    let methods = grpcurl_at(server.addr, None, &["list", "township.time.v1.TimeService"]).await;
    assert!(
        methods
            .stdout
            .contains("township.time.v1.TimeService.GetTime")
    );
    assert!(
        methods
            .stdout
            .contains("township.time.v1.TimeService.WatchTime")
    );
}

#[tokio::test]
async fn grpcurl_describe_shows_the_messages() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let out = grpcurl_at(
        server.addr,
        None,
        &["describe", "township.time.v1.TimeReply"],
    )
    .await;
    for field in [
        "google.protobuf.Timestamp now",
        "string ctime",
        "string greeting",
        "string time_zone",
    ] {
        assert!(out.stdout.contains(field), "{field} in {}", out.stdout);
    }
    let all = grpcurl_at(server.addr, None, &["describe"]).await;
    assert!(all.stdout.contains("rpc WatchTime"), "{}", all.stdout);
}

#[tokio::test]
async fn grpcurl_calls_get_time_with_a_zone() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let data = r#"{"time_zone": "Europe/Lisbon"}"#;
    let out = grpcurl_at(
        server.addr,
        Some(data),
        &["township.time.v1.TimeService/GetTime"],
    )
    .await;
    assert!(
        out.stdout.contains(r#""greeting": "Have a nice day!""#),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(r#""timeZone": "Europe/Lisbon""#),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(r#""ctime": ""#), "{}", out.stdout);
}

#[tokio::test]
async fn grpcurl_sees_a_bad_zone_as_invalid_argument_with_a_readable_detail() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let data = r#"{"time_zone": "Nowhere"}"#;
    let command = grpcurl_command(
        server.addr,
        Some(data),
        &[],
        &["township.time.v1.TimeService/GetTime"],
    );
    let out = run(command, Duration::from_secs(30)).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("InvalidArgument"), "{}", out.stderr);
    assert!(
        out.stderr.contains(r#""field":"time_zone""#),
        "BadRequest detail decoded: {}",
        out.stderr
    );
}

#[tokio::test]
async fn grpcurl_health_check_says_serving() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    let out = grpcurl_at(server.addr, None, &["grpc.health.v1.Health/Check"]).await;
    assert!(
        out.stdout.contains(r#""status": "SERVING""#),
        "{}",
        out.stdout
    );
    let data = r#"{"service": "township.time.v1.TimeService"}"#;
    let out = grpcurl_at(server.addr, Some(data), &["grpc.health.v1.Health/Check"]).await;
    assert!(
        out.stdout.contains(r#""status": "SERVING""#),
        "{}",
        out.stdout
    );
}
