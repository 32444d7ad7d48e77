//! One producer, several consumers: every consumer takes every item exactly once before the
//! producer writes the next (a `BroadcastSlot`).
//!
//! `cargo run -p township-cell --example multi_consumer -- --consumers 3 --accesses 4`; with no
//! flags on a terminal it asks the classic questions.

mod common;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use township_cell::demo;

/// One producer whose every item each consumer takes.
#[derive(Debug, Parser)]
struct Args {
    /// How many consumer threads.
    #[arg(long, default_value_t = 3)]
    consumers: usize,

    /// How many items the producer writes (and each consumer reads).
    #[arg(long, default_value_t = 4)]
    accesses: u32,

    #[command(flatten)]
    pace: common::PaceArgs,
}

fn main() -> io::Result<ExitCode> {
    let mut args = Args::parse();
    if demo::wants_prompts() {
        let (mut input, mut output) = (io::stdin().lock(), io::stdout());
        args.consumers = demo::ask("Enter the number of consumers: ", &mut input, &mut output)?;
        args.accesses = demo::ask("Enter the number of accesses: ", &mut input, &mut output)?;
    }
    let report = demo::multi_consumer(args.consumers, args.accesses, args.pace.pace(), &|line| {
        println!("{line}")
    });
    let held = report.each_took_every_item_once();
    println!(
        "Summary: {} consumers, {} items, every consumer took every item exactly once: {}",
        report.received.len(),
        report.produced,
        if held { "yes" } else { "no" }
    );
    Ok(if held {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
