//! The time service's test helpers: a time-server with a client, and an independent check of the
//! ctime text a reply carries.

use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};
use tonic::transport::Channel;
use township_proto::time::v1::{TimeReply, time_service_client::TimeServiceClient};
use township_tests::{ServiceProcess, spawn_service};

/// The service's fully qualified name (health).
pub const TIME_SERVICE: &str = "township.time.v1.TimeService";

/// A time-server with `args` and a client of it.
pub async fn time_server(args: &[&str]) -> (ServiceProcess, TimeServiceClient<Channel>) {
    let server = spawn_service("time-server", args)
        .await
        .expect("time-server starts");
    let client = TimeServiceClient::new(server.channel().await);
    (server, client)
}

/// The instant a reply says it is.
pub fn instant(reply: &TimeReply) -> DateTime<Utc> {
    let now = reply.now.expect("reply has `now`");
    Utc.timestamp_opt(now.seconds, now.nanos as u32)
        .single()
        .expect("valid timestamp")
}

/// Parses `ctime` back, independently of the server's formatting code, and checks it shows
/// `reply.now` in `zone` to the second.
#[track_caller]
pub fn assert_ctime_shows_now(reply: &TimeReply, zone: chrono_tz::Tz) {
    let ctime = &reply.ctime;
    assert_eq!(ctime.len(), 24, "ctime() text is 24 characters: {ctime:?}");
    let parsed = NaiveDateTime::parse_from_str(ctime, "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("{ctime:?} is not ctime() text: {e}"));
    let expected = instant(reply).with_timezone(&zone).naive_local();
    assert_eq!(
        parsed,
        expected.with_nanosecond_zero(),
        "ctime {ctime:?} vs now {expected}"
    );
    let day = &ctime[8..10];
    if expected.format("%d").to_string().starts_with('0') {
        assert!(
            day.starts_with(' '),
            "a one-digit day is padded with a space: {ctime:?}"
        );
    } else {
        assert!(
            !day.starts_with(' '),
            "a two-digit day has no padding: {ctime:?}"
        );
    }
}

/// A time to the second.
trait ZeroNanos {
    fn with_nanosecond_zero(self) -> Self;
}

impl ZeroNanos for NaiveDateTime {
    fn with_nanosecond_zero(self) -> Self {
        self.with_nanosecond(0).expect("valid")
    }
}
