//! The time service's API, spoken to over gRPC.

use std::time::Duration;

use chrono::Utc;
use tokio_stream::StreamExt;
use tonic::Code;
use township_proto::time::v1::{
    GetTimeRequest, WatchTimeRequest, time_service_client::TimeServiceClient,
};
use township_tests::spawn_service_with_env;

use crate::support::time::*;

#[tokio::test]
async fn get_time_answers_the_ctime_line_and_the_greeting_in_utc_by_default() {
    let (_server, mut client) = time_server(&[]).await;
    let before = Utc::now();
    let reply = client
        .get_time(GetTimeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let after = Utc::now();
    assert_eq!(reply.greeting, "Have a nice day!");
    assert_eq!(reply.time_zone, "UTC");
    let now = instant(&reply);
    assert!(
        before - chrono::Duration::seconds(1) <= now && now <= after + chrono::Duration::seconds(1)
    );
    assert_ctime_shows_now(&reply, chrono_tz::UTC);
}

#[tokio::test]
async fn get_time_gives_ctime_in_the_requested_zone() {
    let (_server, mut client) = time_server(&[]).await;
    for zone in [
        chrono_tz::Asia::Tokyo,
        chrono_tz::America::St_Johns,
        chrono_tz::Europe::Paris,
    ] {
        let request = GetTimeRequest {
            time_zone: zone.name().to_owned(),
        };
        let reply = client.get_time(request).await.unwrap().into_inner();
        assert_eq!(reply.time_zone, zone.name());
        assert_ctime_shows_now(&reply, zone);
    }
}

#[tokio::test]
async fn an_empty_zone_means_the_servers_time_zone_flag() {
    let (_server, mut client) = time_server(&["--time-zone", "Australia/Adelaide"]).await;
    let reply = client
        .get_time(GetTimeRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.time_zone, "Australia/Adelaide");
    assert_ctime_shows_now(&reply, chrono_tz::Australia::Adelaide);
}

#[tokio::test]
async fn an_unknown_zone_is_invalid_argument_naming_time_zone() {
    let (_server, mut client) = time_server(&[]).await;
    for bad in ["Mars/Olympus_Mons", "UTC+25", "../../etc/passwd"] {
        let err = client
            .get_time(GetTimeRequest {
                time_zone: bad.to_owned(),
            })
            .await
            .expect_err("an unknown zone is refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(
            err.message().starts_with("time_zone:"),
            "{bad}: {}",
            err.message()
        );
    }
}

#[tokio::test]
async fn watch_time_sends_one_reply_at_once_then_one_per_interval() {
    let (_server, mut client) = time_server(&[]).await;
    let request = WatchTimeRequest {
        interval: Some(prost_types::Duration {
            seconds: 0,
            nanos: 200_000_000,
        }),
        time_zone: "Asia/Kolkata".into(),
    };
    let start = std::time::Instant::now();
    let mut stream = client.watch_time(request).await.unwrap().into_inner();
    let mut replies = Vec::new();
    while replies.len() < 5 {
        let reply = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a reply within 10 s")
            .expect("the stream goes on")
            .expect("no error");
        if replies.is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the first reply comes at once"
            );
        }
        assert_eq!(reply.time_zone, "Asia/Kolkata");
        assert_ctime_shows_now(&reply, chrono_tz::Asia::Kolkata);
        replies.push(instant(&reply));
    }
    for pair in replies.windows(2) {
        let gap = (pair[1] - pair[0]).to_std().expect("time moves forward");
        assert!(
            gap >= Duration::from_millis(150),
            "replies come one interval apart: {gap:?}"
        );
    }
}

#[tokio::test]
async fn watch_time_without_an_interval_ticks_every_second() {
    let (_server, mut client) = time_server(&[]).await;
    let mut stream = client
        .watch_time(WatchTimeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a second reply")
        .unwrap()
        .unwrap();
    let gap = (instant(&second) - instant(&first)).to_std().unwrap();
    assert!(
        gap >= Duration::from_millis(900),
        "default interval is 1 s, saw {gap:?}"
    );
}

#[tokio::test]
async fn watch_time_refuses_intervals_outside_100ms_to_1h() {
    let (_server, mut client) = time_server(&[]).await;
    let cases = [
        prost_types::Duration {
            seconds: 0,
            nanos: 99_999_999,
        },
        prost_types::Duration {
            seconds: 3600,
            nanos: 1,
        },
        prost_types::Duration {
            seconds: -1,
            nanos: 0,
        },
        prost_types::Duration {
            seconds: 0,
            nanos: 0,
        },
    ];
    for interval in cases {
        let request = WatchTimeRequest {
            interval: Some(interval),
            time_zone: String::new(),
        };
        let err = client.watch_time(request).await.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{interval:?}");
        assert!(err.message().starts_with("interval:"), "{}", err.message());
    }
    let edge = WatchTimeRequest {
        interval: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        time_zone: "Nowhere/Special".into(),
    };
    let err = client
        .watch_time(edge)
        .await
        .expect_err("bad zone in a watch");
    assert!(err.message().starts_with("time_zone:"), "{}", err.message());
}

#[tokio::test]
async fn a_watch_ends_on_the_server_when_its_client_goes_away() {
    let env = [("RUST_LOG", "info,township_time=debug")];
    let server = spawn_service_with_env("time-server", &[], &env)
        .await
        .expect("starts");
    let mut client = TimeServiceClient::new(server.channel().await);
    let request = WatchTimeRequest {
        interval: Some(prost_types::Duration {
            seconds: 0,
            nanos: 100_000_000,
        }),
        time_zone: String::new(),
    };
    let mut stream = client.watch_time(request).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    drop(client);
    let ended = server
        .log_line("watch ended", Duration::from_secs(10))
        .await;
    assert!(
        ended.is_some(),
        "the watch task ends when its client goes away:\n{}",
        server.logs()
    );
    let call = server
        .log_line("WatchTime", Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert!(
        call.contains("Cancelled"),
        "the call is logged as cancelled: {call}"
    );
}
