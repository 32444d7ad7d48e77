//! Producer/consumer: a producer writes 1, 2, 3, … and a consumer reads as many times, through the
//! one-slot cell (nothing missed or repeated) or, with `--unsynchronized`, through a cell nobody
//! waits on (data missed and repeated). Ends with a summary line.
//!
//! `cargo run -p township-cell --example producer_consumer -- --accesses 5 --unsynchronized`; with
//! no flags on a terminal it asks the classic question.

mod common;

use std::io;

use clap::Parser;
use township_cell::demo;

/// A producer and a consumer sharing one cell.
#[derive(Debug, Parser)]
struct Args {
    /// How many items the producer writes and the consumer reads.
    #[arg(long, default_value_t = 5)]
    accesses: u32,

    /// Share the data through a cell nobody waits on, to show missed and repeated data.
    #[arg(long)]
    unsynchronized: bool,

    #[command(flatten)]
    pace: common::PaceArgs,
}

fn main() -> io::Result<()> {
    let mut args = Args::parse();
    if demo::wants_prompts() {
        let (mut input, mut output) = (io::stdin().lock(), io::stdout());
        args.accesses = demo::ask("Enter the number of accesses: ", &mut input, &mut output)?;
    }
    let report = demo::producer_consumer(
        args.accesses,
        !args.unsynchronized,
        args.pace.pace(),
        &|line| println!("{line}"),
    );
    println!("{}", report.summary());
    Ok(())
}
