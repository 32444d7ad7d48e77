//! Writing results: JSON lines, lines that end a command quietly when their reader has gone
//! (`township ... | head`), and numbers for people (`12,345`, `2 entries`).

use std::io::{self, Write};

use anyhow::Context;

use crate::error::CliError;

/// Prints one JSON value on its own line.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// Writes one line on stdout. Unlike `println!`, a reader that went away is an error to return
/// (see [`is_broken_pipe`]), never a panic.
pub fn write_line(text: impl std::fmt::Display) -> Result<(), CliError> {
    writeln!(io::stdout(), "{text}")
        .context("cannot write stdout")
        .map_err(CliError::Local)
}

/// Whether `err` is, at any depth, a write to a pipe whose reader has gone: an I/O error or a
/// CSV writer's I/O error of kind `BrokenPipe`.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let io = cause.downcast_ref::<io::Error>().or_else(|| {
            match cause.downcast_ref::<csv::Error>().map(csv::Error::kind) {
                Some(csv::ErrorKind::Io(io)) => Some(io),
                _ => None,
            }
        });
        io.is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Turns a failure to write to a reader that went away into success: the command stops early
/// and quietly, as `head` expects of it.
pub fn unless_broken_pipe(result: Result<(), CliError>) -> Result<(), CliError> {
    match result {
        Err(CliError::Local(err)) if is_broken_pipe(&err) => Ok(()),
        other => other,
    }
}

/// `12345` as `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        short => short,
    };
    let mut out = digits[..head].to_owned();
    let mut rest = &digits[head..];
    while !rest.is_empty() {
        out.push(',');
        out.push_str(&rest[..3]);
        rest = &rest[3..];
    }
    out
}

/// `1 entry`, `2 entries`: `n` with thousands separated, and the word that fits it.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(count(1, "entry", "entries"), "1 entry");
        assert_eq!(count(2, "entry", "entries"), "2 entries");
    }

    #[test]
    fn only_a_gone_reader_counts_as_a_broken_pipe() {
        let gone = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(
            &anyhow::Error::from(gone).context("cannot write stdout")
        ));
        let csv_gone = csv::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&anyhow::Error::from(csv_gone)));
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert!(!is_broken_pipe(&anyhow::Error::from(full)));
        assert!(
            unless_broken_pipe(Err(CliError::Local(anyhow::Error::from(io::Error::from(
                io::ErrorKind::BrokenPipe
            )))))
            .is_ok()
        );
    }
}
