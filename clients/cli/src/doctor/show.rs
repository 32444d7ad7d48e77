//! How a doctor session is shown: interactive on a terminal (prompts, sentence case), the
//! engine's text from a pipe, or JSON lines.

use std::io::Write;

use township_proto::doctor::v1::{ReplyResponse, Session};

use crate::{error::CliError, output::write_line};

/// The prompt before each line on a terminal.
const PROMPT: &str = "> ";

/// How the session is shown: interactive on a terminal, the engine's text from a pipe, or JSON.
#[derive(Debug, Clone, Copy)]
pub(super) struct Output {
    pub(super) json: bool,
    /// Whether stdin is a terminal.
    pub(super) terminal: bool,
}

impl Output {
    /// A person is watching: prompts and sentence case.
    fn interactive(self) -> bool {
        self.terminal && !self.json
    }

    pub(super) fn greeting(self, session: &Session) -> Result<(), CliError> {
        if self.json {
            write_line(serde_json::json!({
                "session_id": session.session_id,
                "greeting": session.greeting,
                "display_greeting": session.display_greeting,
                "returning_patient": session.returning_patient,
                "previous_visits": session.previous_visits,
            }))
        } else if self.interactive() {
            write_line(or_text(&session.display_greeting, &session.greeting))
        } else {
            write_line(&session.greeting)
        }
    }

    pub(super) fn reply(self, input: &str, reply: &ReplyResponse) -> Result<(), CliError> {
        if self.json {
            write_line(serde_json::json!({
                "input": input,
                "text": reply.text,
                "display_text": reply.display_text,
            }))
        } else if self.interactive() {
            write_line(or_text(&reply.display_text, &reply.text))
        } else {
            write_line(&reply.text)
        }
    }

    /// The farewell, except from a pipe without `--json` (one line per input line, no more).
    pub(super) fn farewell(self, farewell: &str) -> Result<(), CliError> {
        if self.json {
            write_line(serde_json::json!({ "farewell": farewell }))
        } else if self.interactive() {
            write_line(farewell)
        } else {
            Ok(())
        }
    }

    /// The prompt before a line, on a terminal.
    pub(super) fn prompt(self) {
        if self.interactive() {
            print!("{PROMPT}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Asks a question on a terminal: on stdout, or stderr when stdout is for JSON.
    pub(super) fn ask(self, question: &str) {
        if self.json {
            eprint!("{question}");
            let _ = std::io::stderr().flush();
        } else {
            print!("{question}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Ends the line a prompt left open (after Ctrl-D or Ctrl-C on a terminal).
    pub(super) fn left_prompt(self) {
        if self.interactive() {
            println!();
        }
    }
}

/// `display` unless it is empty, else `text`.
fn or_text<'a>(display: &'a str, text: &'a str) -> &'a str {
    if display.is_empty() { text } else { display }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_form_falls_back_to_the_text() {
        assert_eq!(or_text("", "HELLO"), "HELLO");
        assert_eq!(or_text("Hello.", "HELLO"), "Hello.");
    }
}
