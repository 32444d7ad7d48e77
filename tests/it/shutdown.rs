//! Health reporting and the graceful stop: SIGTERM flips health to NOT_SERVING, ends open streams
//! cleanly and exits 0 within the grace period.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use township_proto::time::v1::{WatchTimeRequest, time_service_client::TimeServiceClient};
use township_tests::{health_status, spawn_service};

use crate::support::time::TIME_SERVICE;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_for_the_time_service() {
    let server = spawn_service("time-server", &[]).await.unwrap();
    assert_eq!(
        health_status(server.addr, "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health_status(server.addr, TIME_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    let err = health_status(server.addr, "no.such.Service")
        .await
        .unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn health_watch_flips_to_not_serving_when_shutdown_begins_then_ends() {
    let mut server = spawn_service("time-server", &[]).await.unwrap();
    let mut health = HealthClient::new(server.channel().await);
    let request = HealthCheckRequest {
        service: TIME_SERVICE.into(),
    };
    let mut watch = health.watch(request).await.unwrap().into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    server.signal(libc::SIGTERM);
    let next = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an update after SIGTERM")
        .expect("an update, not the end")
        .expect("not an error");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    let end = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the end");
    assert!(end.is_none(), "the watch ends cleanly: {end:?}");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the server exits");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sigterm_ends_an_open_watch_time_stream_cleanly_and_exits_0_within_the_grace_period() {
    let mut server = spawn_service("time-server", &["--shutdown-grace", "5s"])
        .await
        .unwrap();
    let mut client = TimeServiceClient::new(server.channel().await);
    let mut stream = client
        .watch_time(WatchTimeRequest::default())
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();

    let signalled = std::time::Instant::now();
    server.signal(libc::SIGTERM);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => panic!("the stream ends with OK, not {status:?}"),
                None => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ended within 10 s of SIGTERM");
    let status = server
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the server exits");
    assert_eq!(status.code(), Some(0), "a graceful stop exits 0");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "stopped within the 5 s grace period plus slack, took {:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn sigint_stops_the_server_gracefully_too() {
    let mut server = spawn_service("time-server", &[]).await.unwrap();
    server.signal(libc::SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the server exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        server
            .log_line("stopped", Duration::from_secs(1))
            .await
            .is_some(),
        "{}",
        server.logs()
    );
}
