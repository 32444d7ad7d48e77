//! `township-bench`: starts Township servers on loopback and measures them under load beside
//! their references, printing Markdown tables and writing JSON and an SVG chart per benchmark.
//! Run it from a release build: `cargo run --release -p township-bench -- all`.
//!
//! The load generator runs on one thread and each server is started with one worker thread, so
//! the two cores are not oversubscribed. Speed is reported, never asserted.

mod bank;
mod chart;
mod chat;
mod doctor;
mod etcd;
mod load;
mod lock;
mod lock_client;
mod lock_ha;
mod pgbench;
mod phonebook;
mod records;
mod redis;
mod report;
mod row;
mod server;
mod targets;
mod time;
mod tls;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    load::Plan,
    report::{Report, Run},
};

/// Township's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "township-bench", version)]
struct Cli {
    /// Rounds per scenario: its systems take turns, one round each, this many times; each figure
    /// is the median of its rounds.
    #[arg(long, global = true, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    rounds: u32,

    /// How long each round is measured, after its warm-up.
    #[arg(long, global = true, default_value = "2s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Warm-up before each round is measured.
    #[arg(long, global = true, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,

    /// A few seconds per benchmark, for CI: 2 rounds of 300 ms after 100 ms of warm-up, and small
    /// data sets. Proves the benchmarks run; their figures mean little. References that are not
    /// installed are reported missing. Results go to a temporary directory unless --out-dir is
    /// given.
    #[arg(long, global = true)]
    smoke: bool,

    /// Requests per second of the open-loop (fixed-rate, wrk2-style) scenarios.
    #[arg(long, global = true, default_value_t = 10_000.0)]
    rate: f64,

    /// Where to write the results: each benchmark's JSON and SVG, and the Markdown summary of the
    /// latest results of every benchmark there.
    #[arg(long, global = true)]
    out_dir: Option<PathBuf>,

    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum Scenario {
    /// Every benchmark below, one after another, then a Markdown summary of them all.
    All,
    /// Time service: GetTime at 1, 16 and 64 clients and open loop, beside a bare tonic server of
    /// the same API and a raw TCP ping-pong of the same bytes.
    Time,
    /// Lock service: acquire+release cycles, uncontended and contended, beside etcd and Redis.
    Lock,
    /// Mutual TLS beside plaintext: GetTime at 16 clients, a lock Session cycle at 1 and 16
    /// clients, and new connections per second (the handshake's cost).
    Tls,
    /// Bank: transfers with the lock service in the loop, one and two replicas on SQLite and on
    /// PostgreSQL, beside PostgreSQL's pgbench (TPC-B and simple update) on the same throwaway
    /// PostgreSQL.
    Bank,
    /// Phone book: bulk load, lookups, searches and durable adds at 100,000 and 1,000,000
    /// entries, on SQLite and on PostgreSQL in alternating rounds.
    Phonebook,
    /// Chat: fan-out of messages to 1,000 members of one room, delivery latency.
    Chat,
    /// Doctor: Converse exchanges per second at 1 and 16 patients, and the server's footprint.
    Doctor,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::All => "all",
            Scenario::Time => "time",
            Scenario::Lock => "lock",
            Scenario::Tls => "tls",
            Scenario::Bank => "bank",
            Scenario::Phonebook => "phonebook",
            Scenario::Chat => "chat",
            Scenario::Doctor => "doctor",
        }
    }
}

fn main() -> ExitCode {
    if let Ok(spec) = std::env::var(time::SERVE_REFERENCE) {
        return match time::serve(&spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("township-bench reference: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
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
    // Clients run as local tasks on this one thread (the load generator's only core).
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("township-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let out_dir = match (&cli.out_dir, cli.smoke) {
        (Some(dir), _) => dir.clone(),
        (None, true) => std::env::temp_dir().join("township-bench-smoke"),
        (None, false) => PathBuf::from("bench/results"),
    };
    let benchmarks = match cli.scenario {
        Scenario::All => EVERY.to_vec(),
        one => vec![one],
    };
    let plan = if cli.smoke {
        Plan {
            rounds: 2,
            warmup: Duration::from_millis(100),
            round: Duration::from_millis(300),
        }
    } else {
        Plan {
            rounds: cli.rounds,
            warmup: cli.warmup,
            round: cli.duration,
        }
    };
    let run = Run::now(plan.rounds, plan.warmup, plan.round);
    let mut fresh = Vec::new();
    for benchmark in benchmarks {
        eprintln!("township-bench: {} ...", benchmark.name());
        let report = measure(cli, &plan, benchmark).await?;
        report::publish(benchmark.name(), &report, &run, &out_dir)?;
        fresh.push((benchmark, report));
    }
    // The summary has every benchmark: those just measured, and the others' latest records in
    // the same directory (a run of one benchmark keeps the rest of a full run's summary).
    let mut reports = Vec::new();
    for benchmark in EVERY {
        let name = benchmark.name();
        match fresh.iter().position(|(b, _)| *b == benchmark) {
            Some(at) => reports.push((name, fresh.swap_remove(at).1, run.clone())),
            None => match records::read(&out_dir, name) {
                Ok(Some((report, recorded))) => reports.push((name, report, recorded)),
                Ok(None) => {}
                Err(err) => eprintln!("township-bench: {name} is left out of the summary: {err:#}"),
            },
        }
    }
    report::summarize(&reports, &out_dir)
}

/// Every benchmark, in the order `all` runs them and the summary lists them.
const EVERY: [Scenario; 7] = [
    Scenario::Time,
    Scenario::Lock,
    Scenario::Tls,
    Scenario::Bank,
    Scenario::Phonebook,
    Scenario::Chat,
    Scenario::Doctor,
];

async fn measure(cli: &Cli, plan: &Plan, benchmark: Scenario) -> anyhow::Result<Report> {
    match benchmark {
        Scenario::All => anyhow::bail!("`all` is not one benchmark"),
        Scenario::Time => time::run(plan, cli.rate).await,
        Scenario::Lock => lock::run(plan).await,
        Scenario::Tls => tls::run(plan).await,
        Scenario::Bank => bank::run(plan, cli.smoke).await,
        Scenario::Phonebook => phonebook::run(plan, cli.smoke).await,
        Scenario::Chat => chat::run(plan, cli.smoke).await,
        Scenario::Doctor => doctor::run(plan).await,
    }
}
