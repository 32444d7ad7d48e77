//! Reading what the user types: one rule for reading a line (lossy UTF-8, without its line
//! ending; an unreadable input counts as its end), used both by the blocking reader of
//! `township atm` and by [`StdinLines`], the background reader of `doctor` and `chat`. What is
//! then trimmed is each command's choice, named where it reads: [`StdinLines::next_as_typed`]
//! or [`StdinLines::next_trimmed`].

use std::io::BufRead;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::error::CliError;

/// Lines read ahead of the command by [`StdinLines`].
const READ_AHEAD: usize = 64;

/// The next line of `input` without its line ending (`\n`, `\r\n`), with text that is not UTF-8
/// read lossily; `None` at the end of the input, or when it cannot be read.
pub fn read_line(input: &mut impl BufRead) -> Option<String> {
    let mut buffer = Vec::new();
    match input.read_until(b'\n', &mut buffer) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(
            String::from_utf8_lossy(&buffer)
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
    }
}

/// Stdin's lines (by [`read_line`]'s rule), read on a thread of their own: waiting for the user
/// never holds up the runtime, so events and Ctrl-C are seen at once.
pub struct StdinLines {
    lines: mpsc::Receiver<String>,
}

impl StdinLines {
    /// Starts reading this process's stdin. The reader thread is not waited for: it ends with
    /// the input, or with the process.
    pub fn start() -> Result<Self, CliError> {
        let (sender, lines) = mpsc::channel(READ_AHEAD);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                while let Some(line) = read_line(&mut stdin) {
                    if sender.blocking_send(line).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start reading stdin")?;
        Ok(Self { lines })
    }

    /// The next line as typed (only its line ending removed); `None` at the end of the input.
    pub async fn next_as_typed(&mut self) -> Option<String> {
        self.lines.recv().await
    }

    /// The next line without spaces at either end; `None` at the end of the input.
    pub async fn next_trimmed(&mut self) -> Option<String> {
        self.lines.recv().await.map(|line| line.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_loses_its_ending_and_nothing_else() {
        let mut input: &[u8] = b"  hello \r\nw\xffrld\nlast";
        assert_eq!(read_line(&mut input).as_deref(), Some("  hello "));
        assert_eq!(read_line(&mut input).as_deref(), Some("w\u{fffd}rld"));
        assert_eq!(read_line(&mut input).as_deref(), Some("last"));
        assert_eq!(read_line(&mut input), None);
    }
}
