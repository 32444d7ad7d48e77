//! `township time`: the classic day/time client — the ctime line, then `Have a nice day!`.

use std::time::Duration;

use clap::Args;
use tokio_stream::StreamExt;
use township_proto::time::v1::{
    GetTimeRequest, TimeReply, WatchTimeRequest, time_service_client::TimeServiceClient,
};

use crate::{
    connect::{Connection, unary},
    error::CliError,
    global::Global,
    output::print_json,
};
use township_proto::town;

/// Flags of `township time`.
#[derive(Debug, Args)]
pub struct TimeArgs {
    /// IANA time zone, e.g. Europe/Paris (default: the server's).
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,

    /// Keep printing the time, once per --interval, until Ctrl-C; the greeting comes at the end.
    #[arg(long)]
    watch: bool,

    /// Time between two lines with --watch (100ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "1s", requires = "watch",
          value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// Runs `township time`.
pub async fn run(args: TimeArgs, global: &Global) -> Result<(), CliError> {
    let time = Connection::open(&town::TIME, global, TimeServiceClient::new).await?;
    let mut client = time.client();
    let time_zone = args.time_zone.unwrap_or_default();
    if !args.watch {
        let reply = client
            .get_time(unary(GetTimeRequest { time_zone }, global))
            .await
            .map_err(|s| time.error(s))?
            .into_inner();
        print_reply(&reply, global, true);
        return Ok(());
    }

    let interval = prost_types::Duration::try_from(args.interval)
        .map_err(|e| CliError::Usage(format!("--interval: {e}")))?;
    let request = WatchTimeRequest {
        interval: Some(interval),
        time_zone,
    };
    let mut stream = client
        .watch_time(request)
        .await
        .map_err(|s| time.error(s))?
        .into_inner();
    let mut greeting = None;
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(reply)) => {
                    print_reply(&reply, global, false);
                    greeting = Some(reply.greeting);
                }
                Some(Err(status)) => return Err(time.error(status)),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if let (Some(greeting), false) = (greeting, global.json) {
        println!("{greeting}");
    }
    Ok(())
}

fn print_reply(reply: &TimeReply, global: &Global, with_greeting: bool) {
    if global.json {
        print_json(&serde_json::json!({
            "now": reply.now.as_ref().map(ToString::to_string),
            "ctime": reply.ctime,
            "greeting": reply.greeting,
            "time_zone": reply.time_zone,
        }));
    } else {
        println!("{}", reply.ctime);
        if with_greeting {
            println!("{}", reply.greeting);
        }
    }
}
