//! `time-server`: parses its config, starts tracing, binds, announces and serves until a signal.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::Parser;
use township_kit::{ServeOptions, ServerArgs, config, net, shutdown};
use township_time::{Config, DEFAULT_PORT, Zone};

/// The Township time service (gRPC `township.time.v1.TimeService`).
#[derive(Debug, Parser)]
#[command(name = "time-server", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// IANA time zone used when a request names none.
    #[arg(long, env = "TOWNSHIP_TIME_ZONE", default_value = "UTC", value_parser = parse_zone)]
    time_zone: Zone,

    /// Also serve the classic RFC 867 daytime protocol on this plain TCP address.
    #[arg(long, env = "TOWNSHIP_DAYTIME_LISTEN", value_name = "ADDR",
          value_parser = config::parse_listen_addr)]
    daytime_listen: Option<SocketAddr>,

    /// HTTP/2 keepalive interval (and timeout): a WatchTime client whose connection died is
    /// noticed within about twice this. `0s` sends no pings: each call is then a little cheaper
    /// (5-8% more calls per second on one connection), and a dead client is noticed only by TCP.
    #[arg(long, env = "TOWNSHIP_TIME_KEEPALIVE", default_value = "10s",
          value_parser = humantime::parse_duration)]
    keepalive: Duration,
}

/// The shortest keepalive interval taken (shorter ones are raised to it).
const MIN_KEEPALIVE: Duration = Duration::from_millis(100);

fn parse_zone(text: &str) -> Result<Zone, String> {
    text.parse()
        .map_err(|e: township_time::Error| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    config::run_server(|args: &Args| &args.server, serve).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = net::bind(args.server.listen_or(DEFAULT_PORT)).await?;
    let daytime = match args.daytime_listen {
        Some(addr) => Some(net::bind(addr).await?),
        None => None,
    };
    net::announce("", &listener)?;
    if let Some(daytime) = &daytime {
        net::announce("daytime", daytime)?;
    }
    let shutdown = shutdown::on_signals();
    let config = Config {
        serve: ServeOptions {
            keepalive: (!args.keepalive.is_zero()).then_some(args.keepalive.max(MIN_KEEPALIVE)),
            ..(&args.server).into()
        },
        default_zone: args.time_zone,
    };
    township_time::run(listener, daytime, config, shutdown).await
}
