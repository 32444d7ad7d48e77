//! `township`: thin command-line clients for every Township service, a gRPC health probe,
//! `township up`, which runs the whole town on this machine, and the CLI's own shell completions
//! and man pages. This file only parses the command line, builds the runtime, dispatches to the
//! command's module and maps its result to the exit code.
//!
//! Exit codes: 0 success; 1 the service answered with an error; 2 bad usage (including a file
//! named on the command line that cannot be opened); 3 the service could not be reached (after
//! `--retries`); 4 `health` found the service not SERVING; 5 `up` failed; 6 a local failure part
//! way (a file, stdin or stdout could not be read or written, or the command was interrupted,
//! e.g. an export).

mod atm;
mod bank;
mod certs;
mod chat;
mod connect;
mod doctor;
mod error;
mod generate;
mod global;
mod health;
mod input;
mod lock;
mod output;
mod pages;
mod phonebook;
mod time;
mod up;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::{
    error::{CliError, EXIT_CODES},
    global::Global,
};

/// Township's command-line client.
#[derive(Debug, Parser)]
#[command(name = "township", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
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
    /// Make the CA and the certificates for mutual TLS: `certs init DIR`, then `certs issue`.
    Certs(certs::CertsArgs),
    /// Probe a service with the gRPC health protocol: exit 0 when SERVING.
    Health(health::HealthArgs),
    /// Start every Township server on its default port and stop them all on Ctrl-C.
    Up(up::UpArgs),
    /// Print a shell completion script for `township` on stdout.
    Completions(generate::CompletionsArgs),
    /// Write man pages for `township` and each of its subcommands into a directory.
    Man(generate::ManArgs),
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
            return ExitCode::from(error::EXIT_LOCAL);
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
            Command::Certs(args) => certs::run(args),
            Command::Completions(args) => generate::completions(args, Cli::command()),
            Command::Man(args) => generate::man(args, Cli::command()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `health` already printed the status it found; anything else gets its one line.
            if !matches!(err, CliError::NotServing { .. }) {
                eprintln!("township: {err}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
