//! Transcripts: files of patient inputs and the replies expected to them, replayed against a
//! fresh conversation to check an engine (or a whole service) answers exactly so.
//!
//! The format, line by line:
//!
//! ```text
//! # a comment; comments and blank lines are ignored
//! > what the patient types
//! < the reply expected (its `text`, compared exactly)
//! ```
//!
//! Every `>` line is followed (after any comments or blank lines) by exactly one `<` line. One
//! space after the marker is part of the syntax; the rest of the line, without trailing white
//! space, is the input or the expected reply.

use crate::classic::{Classic, ClassicState};
use crate::engine::Engine;
use crate::script::Script;
use crate::state::EngineState;

/// One input and the reply expected to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// What the patient types.
    pub input: String,
    /// The reply expected.
    pub expected: String,
    /// The 1-based line of the expected reply in the transcript.
    pub line: usize,
}

/// A transcript that is malformed or was not followed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranscriptError {
    /// The file does not follow the format.
    #[error("line {line}: {problem}")]
    Malformed {
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A reply differed from the one expected.
    #[error("line {line}: to {input:?} expected {expected:?} but got {actual:?}")]
    Mismatch {
        /// The 1-based line of the expected reply.
        line: usize,
        /// The input.
        input: String,
        /// The reply the transcript expects.
        expected: String,
        /// The reply given.
        actual: String,
    },
}

/// A parsed transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript {
    exchanges: Vec<Exchange>,
}

impl Transcript {
    /// Reads a transcript; any line that is not a comment, blank, `>` or `<` in its turn is an
    /// error naming its line.
    pub fn parse(text: &str) -> Result<Transcript, TranscriptError> {
        let mut exchanges = Vec::new();
        let mut pending: Option<(String, usize)> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim_end();
            if content.trim_start().is_empty() || content.starts_with('#') {
                continue;
            }
            match (
                content.strip_prefix('>'),
                content.strip_prefix('<'),
                pending.take(),
            ) {
                (Some(input), _, None) => pending = Some((unmark(input), line)),
                (_, Some(expected), Some((input, _))) => exchanges.push(Exchange {
                    input,
                    expected: unmark(expected),
                    line,
                }),
                (Some(_), _, Some((_, earlier))) => {
                    return Err(malformed(
                        earlier,
                        "this input has no expected reply (< ...)",
                    ));
                }
                (_, Some(_), None) => {
                    return Err(malformed(line, "a reply (<) with no input (>) before it"));
                }
                _ => {
                    return Err(malformed(
                        line,
                        "expected '> input', '< reply' or '# comment'",
                    ));
                }
            }
        }
        match pending {
            Some((_, line)) => Err(malformed(line, "this input has no expected reply (< ...)")),
            None => Ok(Transcript { exchanges }),
        }
    }

    /// The exchanges, in order.
    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }

    /// Feeds every input to `reply` in order and compares; stops at the first mismatch. Returns
    /// how many exchanges were checked.
    pub fn replay(&self, mut reply: impl FnMut(&str) -> String) -> Result<usize, TranscriptError> {
        for exchange in &self.exchanges {
            let actual = reply(&exchange.input);
            if actual != exchange.expected {
                return Err(TranscriptError::Mismatch {
                    line: exchange.line,
                    input: exchange.input.clone(),
                    expected: exchange.expected.clone(),
                    actual,
                });
            }
        }
        Ok(self.exchanges.len())
    }
}

/// Replays a transcript against `script` with a fresh engine state, comparing each reply's
/// `text`. Returns how many exchanges matched, or the first error.
pub fn replay_script(script: &Script, transcript: &str) -> Result<usize, TranscriptError> {
    let mut state = EngineState::new();
    Transcript::parse(transcript)?.replay(|input| Engine::reply(script, &mut state, input).text)
}

/// Replays a transcript against classic mode with a fresh state seeded with `seed`.
pub fn replay_classic(seed: u64, transcript: &str) -> Result<usize, TranscriptError> {
    let mut state = ClassicState::new(seed);
    Transcript::parse(transcript)?.replay(|input| Classic::reply(&mut state, input).text)
}

/// Writes a transcript of `inputs` and the replies `reply` gives them, in the format above (to
/// start a new transcript; read every reply before trusting it).
pub fn record<'a>(
    inputs: impl IntoIterator<Item = &'a str>,
    mut reply: impl FnMut(&str) -> String,
) -> String {
    let mut out = String::new();
    for input in inputs {
        let answer = reply(input);
        out.push_str(&format!("> {input}\n< {answer}\n"));
    }
    out
}

/// The text after a marker, without the one space that follows it.
fn unmark(rest: &str) -> String {
    rest.strip_prefix(' ').unwrap_or(rest).to_string()
}

fn malformed(line: usize, problem: &str) -> TranscriptError {
    TranscriptError::Malformed {
        line,
        problem: problem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_pairs_inputs_with_replies() {
        let text = "# greeting skipped\n\n> hello\n< HI THERE\n>   spaced  \n<\n";
        let transcript = Transcript::parse(text).expect("parses");
        let exchanges = transcript.exchanges();
        assert_eq!(exchanges.len(), 2);
        assert_eq!(exchanges[0].input, "hello");
        assert_eq!(exchanges[0].expected, "HI THERE");
        assert_eq!(exchanges[0].line, 4);
        assert_eq!(exchanges[1].input, "  spaced");
        assert_eq!(exchanges[1].expected, "");
    }

    #[test]
    fn malformed_transcripts_name_the_line() {
        let two_inputs = Transcript::parse("> a\n> b\n< c\n");
        assert!(matches!(
            two_inputs,
            Err(TranscriptError::Malformed { line: 1, .. })
        ));
        let orphan = Transcript::parse("< c\n");
        assert!(matches!(
            orphan,
            Err(TranscriptError::Malformed { line: 1, .. })
        ));
        let dangling = Transcript::parse("> a\n< b\n> c\n");
        assert!(matches!(
            dangling,
            Err(TranscriptError::Malformed { line: 3, .. })
        ));
        let junk = Transcript::parse("hello\n");
        assert!(matches!(
            junk,
            Err(TranscriptError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn replay_reports_the_first_mismatch_with_its_line() {
        let transcript = Transcript::parse("> a\n< A\n> b\n< B\n> c\n< C\n").expect("parses");
        let result = transcript.replay(|input| {
            if input == "b" {
                "WRONG".to_string()
            } else {
                input.to_uppercase()
            }
        });
        assert_eq!(
            result,
            Err(TranscriptError::Mismatch {
                line: 4,
                input: "b".into(),
                expected: "B".into(),
                actual: "WRONG".into(),
            })
        );
    }

    #[test]
    fn a_recorded_transcript_replays() {
        let recorded = record(["one", "two"], |input| input.to_uppercase());
        assert_eq!(recorded, "> one\n< ONE\n> two\n< TWO\n");
        let transcript = Transcript::parse(&recorded).expect("parses");
        assert_eq!(transcript.replay(|input| input.to_uppercase()), Ok(2));
    }
}
