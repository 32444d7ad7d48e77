//! Running the real grpcurl against a server: a call with `-d` and flags, and its JSON output.

use std::{net::SocketAddr, time::Duration};

use tokio::process::Command;
use township_tests::{Output, grpcurl, run};

/// `grpcurl -plaintext [-d DATA] [FLAGS...] ADDR ARGS...` (grpcurl wants its flags before the
/// address; ARGS is a method, or `list`/`describe` and what to show).
pub fn grpcurl_command(
    addr: SocketAddr,
    data: Option<&str>,
    flags: &[&str],
    args: &[&str],
) -> Command {
    let mut command = grpcurl();
    command.arg("-plaintext");
    if let Some(data) = data {
        command.args(["-d", data]);
    }
    command.args(flags).arg(addr.to_string()).args(args);
    command
}

/// Runs `grpcurl -plaintext -d DATA ADDR SERVICE/METHOD` (bounded: 30 s) and returns its output.
pub async fn grpcurl_call(addr: SocketAddr, service: &str, method: &str, data: &str) -> Output {
    let command = grpcurl_command(addr, Some(data), &[], &[&format!("{service}/{method}")]);
    run(command, Duration::from_secs(30)).await
}

/// Every JSON value grpcurl printed (one per response message).
#[track_caller]
pub fn json_values(out: &Output) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(&out.stdout)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("grpcurl printed JSON ({err}): {out:?}"))
}

/// Runs `grpcurl -plaintext [-d DATA] ADDR ARGS...` (bounded: 30 s), which must succeed.
pub async fn grpcurl_at(addr: SocketAddr, data: Option<&str>, args: &[&str]) -> Output {
    let command = grpcurl_command(addr, data, &[], args);
    let out = run(command, Duration::from_secs(30)).await;
    assert_eq!(out.code, Some(0), "grpcurl {args:?}: {out:?}");
    out
}
