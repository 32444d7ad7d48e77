//! Sleepy threads: several threads each sleep a random interval and say when they start and wake.
//!
//! `cargo run -p township-cell --example sleepy_threads -- --threads 4 --max-sleep 3`; with no
//! flags on a terminal it asks the classic questions.

mod common;

use std::io;

use clap::Parser;
use township_cell::demo;

/// Threads that sleep a random interval, then wake up.
#[derive(Debug, Parser)]
struct Args {
    /// How many threads to start.
    #[arg(long, default_value_t = 3)]
    threads: usize,

    /// The longest sleep interval, in seconds (each thread draws 1 to this).
    #[arg(long, default_value_t = 5)]
    max_sleep: u64,

    #[command(flatten)]
    pace: common::PaceArgs,
}

fn main() -> io::Result<()> {
    let mut args = Args::parse();
    if demo::wants_prompts() {
        let (mut input, mut output) = (io::stdin().lock(), io::stdout());
        args.threads = demo::ask("Enter the number of threads: ", &mut input, &mut output)?;
        args.max_sleep = demo::ask("Enter the maximum sleep time: ", &mut input, &mut output)?;
    }
    demo::sleepy_threads(args.threads, args.max_sleep, args.pace.pace(), &|line| {
        println!("{line}")
    });
    Ok(())
}
