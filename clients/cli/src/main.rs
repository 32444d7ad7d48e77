//! `township`: thin command-line clients for every Township service, a gRPC health probe, and
//! `township up`, which runs the whole town on this machine.
//!
//! Exit codes: 0 success; 1 the service answered with an error; 2 bad usage; 3 the service could
//! not be reached (after `--retries`); 4 `health` found the service not SERVING; 5 `up` failed.

mod atm;
mod bank;
mod chat;
mod connect;
mod doctor;
mod error;
mod health;
mod lock;
mod phonebook;
mod time;
mod up;

use std::{process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

/// Township's command-line client.
#[derive(Debug, Parser)]
#[command(name = "township", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the service answered with an error; 2 bad \
usage; 3 the service could not be reached (after --retries); 4 health: not SERVING; 5 up failed.";

/// Flags every subcommand accepts, before or after the subcommand's name.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The service's address, host:port (an http:// in front is accepted). Default: the
    /// service's env var (e.g. TOWNSHIP_TIME_ADDR), else its default port on 127.0.0.1.
    #[arg(long, global = true, value_name = "ADDR")]
    pub addr: Option<String>,

    /// Deadline for connecting and for each call.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s",
          value_parser = humantime::parse_duration, env = "TOWNSHIP_TIMEOUT")]
    pub timeout: Duration,

    /// How many more times to try connecting when the service is unreachable (backoff of about
    /// 200 ms doubling to 2 s, with jitter).
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = 3,
        env = "TOWNSHIP_RETRIES"
    )]
    pub retries: u32,

    /// Print results as JSON, one object per line.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask the time service for the time, like the classic day/time client.
    Time(time::TimeArgs),
    /// Take a lock by hand, or inspect holders and waiters.
    Lock(lock::LockArgs),
    /// Bank from the command line: open accounts, balances, deposits, withdrawals, transfers,
    /// history and interest.
    Bank(bank::BankArgs),
    /// The shared phone book: add, look up, search, list, change and remove entries; import and
    /// export CSV.
    Phonebook(phonebook::PhonebookArgs),
    /// An interactive ATM session: log in with name and PIN, then pick from a menu.
    Atm(atm::AtmArgs),
    /// Talk to the doctor (interactive on a terminal, one reply per line from a pipe), or print
    /// a patient's history.
    Doctor(doctor::DoctorArgs),
    /// Join a chat room: its transcript, then live events, while sending the lines you type; or
    /// list the rooms, or print a room's transcript.
    Chat(chat::ChatArgs),
    /// Probe a service with the gRPC health protocol: exit 0 when SERVING.
    Health(health::HealthArgs),
    /// Start every Township server on its default port and stop them all on Ctrl-C.
    Up(up::UpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("township: cannot start the async runtime: {err}");
            return ExitCode::from(error::EXIT_UP_FAILED);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Time(args) => time::run(args, &cli.global).await,
            Command::Health(args) => health::run(args, &cli.global).await,
            Command::Lock(args) => lock::run(args, &cli.global).await,
            Command::Bank(args) => bank::run(args, &cli.global).await,
            Command::Atm(args) => atm::run(args, &cli.global).await,
            Command::Phonebook(args) => phonebook::run(args, &cli.global).await,
            Command::Doctor(args) => doctor::run(args, &cli.global).await,
            Command::Chat(args) => chat::run(args, &cli.global).await,
            Command::Up(args) => up::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `health` already printed the status it found; anything else gets its one line.
            if !matches!(err, error::CliError::NotServing { .. }) {
                eprintln!("township: {err}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}

/// Prints one JSON value on its own line.
fn print_json(value: &serde_json::Value) {
    println!("{value}");
}
