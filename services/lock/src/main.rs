//! `lock-server`: parses its config, starts tracing, binds, announces and serves until a signal.

use std::process::ExitCode;

use clap::Parser;
use township_kit::{ServerArgs, config, net, shutdown};
use township_lock::{Config, DEFAULT_PORT};

/// The Township lock service (gRPC `township.lock.v1.LockService`).
#[derive(Debug, Parser)]
#[command(name = "lock-server", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    config::run_server(|args: &Args| &args.server, serve).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = net::bind(args.server.listen_or(DEFAULT_PORT)).await?;
    let config = Config {
        serve: (&args.server).into(),
        data_dir: args.server.data_dir_or("lock"),
    };
    let shutdown = shutdown::on_signals();
    // Calls that arrive before `run` has advanced the fencing epoch wait in the listen backlog:
    // no token of an old epoch is ever issued.
    net::announce("", &listener)?;
    township_lock::run(listener, config, shutdown).await
}
