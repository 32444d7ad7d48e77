//! The classic RFC 867 daytime listener, read with a raw TcpStream like the classic client.

use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use tokio::{io::AsyncReadExt, net::TcpStream};
use township_tests::spawn_service;

#[tokio::test]
async fn a_plain_tcp_client_gets_the_ctime_line_and_the_greeting_then_the_connection_closes() {
    let server = spawn_service("time-server", &["--daytime-listen", "127.0.0.1:0"])
        .await
        .unwrap();
    let line = server
        .stdout_line("daytime listening on ", Duration::from_secs(10))
        .await
        .expect("the daytime listener is announced after the gRPC one");
    let addr = line.trim_start_matches("daytime listening on ");

    let before = Utc::now().naive_utc();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_string(&mut text))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    let shown = NaiveDateTime::parse_from_str(lines[0].trim_end(), "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("{:?} is ctime text: {e}", lines[0]));
    let drift = (shown - before).num_seconds().abs();
    assert!(
        drift <= 5,
        "the line shows the current UTC time: {shown} vs {before}"
    );
    assert_eq!(lines[1].trim_end(), "Have a nice day!");
}
