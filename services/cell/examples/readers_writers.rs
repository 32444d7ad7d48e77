//! Readers/writers: readers read and writers increment a counter kept in a `SharedCell`; the
//! counter ends at the number of writes and no reader sees a half-done write.
//!
//! `cargo run -p township-cell --example readers_writers -- --readers 3 --writers 2`; with no flags
//! on a terminal it asks the classic questions.

mod common;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use township_cell::demo;

/// Readers and writers sharing a counter.
#[derive(Debug, Parser)]
struct Args {
    /// How many reader threads.
    #[arg(long, default_value_t = 3)]
    readers: usize,

    /// How many writer threads.
    #[arg(long, default_value_t = 2)]
    writers: usize,

    /// How many times each reader reads and each writer increments.
    #[arg(long, default_value_t = 3)]
    accesses: u32,

    #[command(flatten)]
    pace: common::PaceArgs,
}

fn main() -> io::Result<ExitCode> {
    let mut args = Args::parse();
    if demo::wants_prompts() {
        let (mut input, mut output) = (io::stdin().lock(), io::stdout());
        args.readers = demo::ask("Enter the number of readers: ", &mut input, &mut output)?;
        args.writers = demo::ask("Enter the number of writers: ", &mut input, &mut output)?;
        args.accesses = demo::ask("Enter the number of accesses: ", &mut input, &mut output)?;
    }
    let report = demo::readers_writers(
        args.readers,
        args.writers,
        args.accesses,
        args.pace.pace(),
        &|line| println!("{line}"),
    );
    println!(
        "Summary: counter ends at {} after {} writes, torn reads {}",
        report.final_count, report.writes, report.torn_reads
    );
    let held = report.final_count == report.writes && report.torn_reads == 0;
    Ok(if held {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
