//! `township-bench`: starts Township servers on loopback and measures them under load, printing a
//! Markdown table and writing JSON. Run it from a release build:
//! `cargo run --release -p township-bench -- lock`.
//!
//! The load generator runs on one thread and each server is started with one worker thread, so
//! the two cores are not oversubscribed. Speed is reported, never asserted.

mod bank;
mod chat;
mod load;
mod lock;
mod phonebook;
mod report;
mod server;
mod time;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

/// Township's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "township-bench", version)]
struct Cli {
    /// How long each scenario runs after its warm-up.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Warm-up before each scenario is measured.
    #[arg(long, global = true, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,

    /// A few seconds in all, for CI: proves the benchmark runs, its figures mean little.
    #[arg(long, global = true)]
    smoke: bool,

    /// Where to write the JSON results.
    #[arg(long, global = true, default_value = "bench/results")]
    out_dir: PathBuf,

    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Time service: GetTime at 1, 16 and 64 clients beside a bare tonic server of the same API
    /// and a raw TCP ping-pong of the same bytes.
    Time,
    /// Lock service: acquire+release cycles, uncontended and contended.
    Lock,
    /// Bank: durable transfers with the lock service in the loop, one and two replicas.
    Bank,
    /// Phone book: bulk load, lookups and durable adds at 100,000 and 1,000,000 entries.
    Phonebook,
    /// Chat: fan-out of messages to 1,000 members of one room, delivery latency.
    Chat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("township-bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let (duration, warmup) = if cli.smoke {
        (Duration::from_millis(500), Duration::from_millis(100))
    } else {
        (cli.duration, cli.warmup)
    };
    // Clients run as local tasks on this one thread (the load generator's only core).
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async {
        let (name, rows) = match cli.scenario {
            Scenario::Time => ("time", time::run(duration, warmup).await?),
            Scenario::Lock => ("lock", lock::run(duration, warmup).await?),
            Scenario::Bank => ("bank", bank::run(duration, warmup).await?),
            Scenario::Chat => ("chat", chat::run(duration, warmup, cli.smoke).await?),
            Scenario::Phonebook => (
                "phonebook",
                phonebook::run(duration, warmup, cli.smoke).await?,
            ),
        };
        report::publish(name, &rows, &cli.out_dir, cli.smoke)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("township-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
