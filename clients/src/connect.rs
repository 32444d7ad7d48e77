//! Dialling a service: address normalisation, timeouts, and retries with exponential backoff.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::{Global, error::CliError};

/// The first retry waits this long; each further retry waits twice as long as the one before.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Connects to `service` at `addr` (`host:port`, optionally with `http://`), trying once plus
/// `global.retries` more times with exponential backoff. Calls on the channel have no deadline of
/// their own: unary calls add `--timeout` with [`unary`], streams run until they end.
pub async fn connect(
    service: &'static str,
    addr: &str,
    global: &Global,
) -> Result<Channel, CliError> {
    dial(service, addr, global, |endpoint| endpoint).await
}

/// HTTP/2 keepalive of [`connect_streaming`]: a ping this often, and the connection is given up
/// when one goes unanswered this long.
const STREAM_KEEPALIVE: Duration = Duration::from_secs(10);

/// Like [`connect`], for a long-lived stream: HTTP/2 keepalive pings every 10 s (even with no
/// call in flight) find a dead server or network within about 20 s, instead of the stream waiting
/// forever.
pub async fn connect_streaming(
    service: &'static str,
    addr: &str,
    global: &Global,
) -> Result<Channel, CliError> {
    dial(service, addr, global, |endpoint| {
        endpoint
            .http2_keep_alive_interval(STREAM_KEEPALIVE)
            .keep_alive_timeout(STREAM_KEEPALIVE)
            .keep_alive_while_idle(true)
    })
    .await
}

/// [`connect`] with the endpoint adjusted by `configure`.
async fn dial(
    service: &'static str,
    addr: &str,
    global: &Global,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, CliError> {
    let uri = township_kit::config::endpoint_uri(addr).map_err(CliError::Usage)?;
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| CliError::Usage(format!("`{addr}` is not a valid address: {e}")))?
        .connect_timeout(global.timeout);
    let endpoint = configure(endpoint);
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(err) if attempts > global.retries => {
                return Err(CliError::Unreachable {
                    service,
                    addr: addr.to_owned(),
                    attempts,
                    reason: root_cause(&err),
                });
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

/// The innermost error message ("Connection refused (os error 111)"), which says the most.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A request for a unary call, with `--timeout` as its deadline (sent as `grpc-timeout`).
pub fn unary<T>(message: T, global: &Global) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(global.timeout);
    request
}
