//! Dialling a service from the command line: the address from `--addr`, the service's
//! environment variable or its default (`township_proto::town`), dialled through
//! `township-client` with `--timeout` and `--retries`; and [`Connection`], the one connection
//! type every command holds: its client, and what names the service in errors.

use std::time::Duration;

use tonic::transport::Channel;
use township_client::{DialError, Dialer};
use township_proto::town;

use crate::{error::CliError, global::Global};

/// Connects to `service` at `addr` (`host:port`, optionally with `http://`), trying once plus
/// `global.retries` more times with backoff. Calls on the channel have no deadline of their own:
/// unary calls add `--timeout` with [`unary`], streams run until they end.
pub async fn connect(
    service: &'static str,
    addr: &str,
    global: &Global,
) -> Result<Channel, CliError> {
    dial(service, addr, dialer(global)?).await
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
    dial(service, addr, streaming_dialer(global)?).await
}

/// The dialer of [`connect_streaming`], for a client that dials again by itself after losing its
/// server (`township chat`).
pub fn streaming_dialer(global: &Global) -> Result<Dialer, CliError> {
    Ok(dialer(global)?.keepalive(STREAM_KEEPALIVE))
}

/// The address of `service`: `--addr`, else its environment variable (e.g.
/// `TOWNSHIP_TIME_ADDR`), else its default on 127.0.0.1.
pub fn addr_of(service: &town::Service, global: &Global) -> String {
    global
        .addr
        .clone()
        .or_else(|| {
            std::env::var(service.addr_env)
                .ok()
                .filter(|a| !a.trim().is_empty())
        })
        .unwrap_or_else(|| service.default_addr.to_owned())
}

/// A connection to one service: a tonic client `C` on one channel, with the service's name and
/// address so that every failed call becomes the same [`CliError`].
pub struct Connection<C> {
    client: C,
    service: &'static str,
    addr: String,
}

impl<C: Clone> Connection<C> {
    /// Connects to `service` at its address ([`addr_of`]) and makes its client with `client`
    /// (e.g. `PhoneBookServiceClient::new`).
    pub async fn open(
        service: &town::Service,
        global: &Global,
        client: impl FnOnce(Channel) -> C,
    ) -> Result<Self, CliError> {
        let addr = addr_of(service, global);
        let channel = connect(service.name, &addr, global).await?;
        Ok(Self::on(channel, service.name, addr, client))
    }

    /// Like [`Connection::open`], on a [`connect_streaming`] channel for long-lived streams.
    pub async fn open_streaming(
        service: &town::Service,
        global: &Global,
        client: impl FnOnce(Channel) -> C,
    ) -> Result<Self, CliError> {
        let addr = addr_of(service, global);
        let channel = connect_streaming(service.name, &addr, global).await?;
        Ok(Self::on(channel, service.name, addr, client))
    }

    /// A connection on a channel already dialled to `service` at `addr`.
    pub fn on(
        channel: Channel,
        service: &'static str,
        addr: String,
        client: impl FnOnce(Channel) -> C,
    ) -> Self {
        Self {
            client: client(channel),
            service,
            addr,
        }
    }

    /// A client on the shared channel.
    pub fn client(&self) -> C {
        self.client.clone()
    }

    /// The command's error for a failed call (see [`CliError::from_status`]).
    pub fn error(&self, status: tonic::Status) -> CliError {
        CliError::from_status(self.service, &self.addr, status)
    }

    /// The service's short name, as errors name it.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The address dialled.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// The dialer of `--timeout`, `--retries` and, with `--ca`, TLS (a file named there that cannot
/// be read is bad usage, like any file named on the command line).
pub fn dialer(global: &Global) -> Result<Dialer, CliError> {
    let dialer = Dialer::new()
        .connect_timeout(global.timeout)
        .retries(global.retries);
    Ok(match global.tls() {
        Some(files) => dialer.tls(files.load().map_err(CliError::Usage)?),
        None => dialer,
    })
}

async fn dial(service: &'static str, addr: &str, dialer: Dialer) -> Result<Channel, CliError> {
    dialer
        .connect(addr)
        .await
        .map_err(|err| dial_error(service, err))
}

/// The command's error for a service that could not be dialled: bad usage for an address that
/// cannot be read, else unreachable.
pub fn dial_error(service: &'static str, err: DialError) -> CliError {
    match err {
        DialError::BadAddress { reason, .. } => CliError::Usage(reason),
        DialError::Unreachable {
            addr,
            attempts,
            reason,
        } => CliError::Unreachable {
            service,
            addr,
            attempts,
            reason,
        },
    }
}

/// A request for a unary call, with `--timeout` as its deadline (sent as `grpc-timeout`).
pub fn unary<T>(message: T, global: &Global) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(global.timeout);
    request
}
