//! The Township time service: the current time as ctime(3) text and as a timestamp, once
//! (`GetTime`) or as a stream (`WatchTime`), plus an optional classic RFC 867 daytime listener.
//!
//! [`clock`] is the domain, [`types`] reads each request once, and [`run`] serves it on a bound
//! listener until the shutdown token fires; `main.rs` only parses the config, binds and awaits.

pub mod clock;
mod daytime;
mod error;
mod service;
pub mod types;

use tokio::net::TcpListener;
use township_kit::{ServeOptions, ServiceSet, Shutdown};
use township_proto::time::v1::time_service_server::TimeServiceServer;

pub use clock::Zone;
pub use error::Error;
pub use service::TimeApi;

/// The time service's default gRPC port.
pub const DEFAULT_PORT: u16 = township_proto::town::TIME.port;

/// What the time service needs beyond the shared server options.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shared server settings (grace period, limits).
    pub serve: ServeOptions,
    /// The zone used when a request names none.
    pub default_zone: Zone,
}

/// Serves the time service on `listener` (and RFC 867 daytime on `daytime`, if given) until
/// `shutdown` fires; returns once both have stopped.
pub async fn run(
    listener: TcpListener,
    daytime: Option<TcpListener>,
    config: Config,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let daytime = daytime.map(|listener| {
        tokio::spawn(daytime::serve(
            listener,
            config.default_zone,
            shutdown.clone(),
        ))
    });
    let api = TimeApi::new(config.default_zone, shutdown.clone());
    let services = ServiceSet::new().add_service(
        TimeServiceServer::new(api).max_decoding_message_size(config.serve.max_message_bytes),
    );
    let served = township_kit::serve(listener, &config.serve, services, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(daytime) = daytime {
        let _ = daytime.await;
    }
    served
}
