//! `chat-server`: parses its config, starts tracing, binds, announces and serves until a signal.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use township_chat::{Config, DEFAULT_PORT};
use township_kit::{ServeOptions, ServerArgs, config, net, shutdown};
use township_store::DatabaseArgs;

/// The Township chat (gRPC `township.chat.v1.ChatService`).
#[derive(Debug, Parser)]
#[command(name = "chat-server", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    /// A member who sends nothing for this long is let go (their stream ends with a Left
    /// event); `0s` never lets anyone go.
    #[arg(long, env = "TOWNSHIP_CHAT_IDLE_TIMEOUT", default_value = "1h",
          value_parser = humantime::parse_duration)]
    idle_timeout: Duration,

    /// HTTP/2 keepalive interval (and timeout): a member whose connection died is noticed, and
    /// their name freed, within about twice this.
    #[arg(long, env = "TOWNSHIP_CHAT_KEEPALIVE", default_value = "2s",
          value_parser = humantime::parse_duration)]
    keepalive: Duration,

    /// New rooms one caller (its certificate's principal, else its IP address) may create per
    /// minute; more get RESOURCE_EXHAUSTED with a RetryInfo. Joining an existing room is free.
    #[arg(long, env = "TOWNSHIP_CHAT_MAX_NEW_ROOMS_PER_MINUTE", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_new_rooms_per_minute: u32,

    /// On PostgreSQL, how long this server's presence lasts unless renewed (it renews three
    /// times per lease): after a crash, its members' names stay held for at most this plus a
    /// third, until another server stores their Lefts ("server lost").
    #[arg(long, env = "TOWNSHIP_CHAT_PRESENCE_LEASE", default_value = "10s",
          value_parser = parse_lease)]
    presence_lease: Duration,
}

fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if lease < Duration::from_secs(1) {
        return Err("must be at least 1s".to_owned());
    }
    Ok(lease)
}

/// One thread for the whole server (SQLite has its own). A message is a burst of small sends to
/// every member's stream; on this scheduler the woken streams queue behind each other, so each
/// connection's frames leave in one write. The multi-threaded scheduler runs each woken
/// connection task at once (its LIFO slot) and wrote 3–4 times per delivery: fan-out p99 to 1,000
/// members fell from 30 to 11 ms with this change (township-bench chat).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    config::run_server(|args: &Args| &args.server, serve).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    township_store::full::apply_test_flags(&args.server);
    let data_dir = args.server.data_dir_or("chat");
    let database = args.database.database(&data_dir, "chat.db")?;
    let listener = net::bind(args.server.listen_or(DEFAULT_PORT)).await?;
    let config = Config {
        serve: ServeOptions {
            keepalive: Some(args.keepalive.max(Duration::from_millis(100))),
            ..(&args.server).into()
        },
        data_dir,
        database,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        new_rooms_per_minute: args.max_new_rooms_per_minute,
        presence_lease: args.presence_lease,
    };
    let shutdown = shutdown::on_signals();
    net::announce("", &listener)?;
    township_chat::run(listener, config, shutdown).await
}
