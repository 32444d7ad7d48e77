//! `phonebook-server`: parses its config, starts tracing, binds, announces and serves until a
//! signal.

use std::process::ExitCode;

use clap::Parser;
use township_kit::{ServerArgs, config, net, shutdown};
use township_phonebook::{Config, DEFAULT_PORT, Region};
use township_store::DatabaseArgs;

/// The Township phone book (gRPC `township.phonebook.v1.PhoneBookService`).
#[derive(Debug, Parser)]
#[command(name = "phonebook-server", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    /// Region (ISO 3166 code) of numbers written without +country code, e.g. US, GB, DE.
    #[arg(long, env = "TOWNSHIP_PHONEBOOK_REGION", default_value = "US")]
    region: Region,
}

#[tokio::main]
async fn main() -> ExitCode {
    config::run_server(|args: &Args| &args.server, serve).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    township_store::full::apply_test_flags(&args.server);
    let listener = net::bind(args.server.listen_or(DEFAULT_PORT)).await?;
    let data_dir = args.server.data_dir_or("phonebook");
    let config = Config {
        serve: (&args.server).into(),
        database: args.database.database(&data_dir, "phonebook.db")?,
        data_dir,
        region: args.region,
    };
    let shutdown = shutdown::on_signals();
    net::announce("", &listener)?;
    township_phonebook::run(listener, config, shutdown).await
}
