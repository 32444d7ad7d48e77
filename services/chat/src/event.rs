//! A room's events: messages, joins and leaves, each with its place in the room's one sequence.

use chrono::{DateTime, SecondsFormat, Utc};

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A member said something.
    Message {
        /// The member's name.
        from: String,
        /// What they said.
        text: String,
    },
    /// A member joined.
    Joined {
        /// The member's name.
        name: String,
    },
    /// A member's stream ended.
    Left {
        /// The member's name.
        name: String,
        /// `left`, `disconnected`, `idle` or `server shutdown`.
        reason: String,
    },
}

/// One event of a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its place in the room: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// When it happened, ms since the Unix epoch (UTC).
    pub time_ms: i64,
    /// What happened.
    pub kind: Kind,
}

impl Event {
    /// The classic transcript line: `name time: text` (joins and leaves as `joined` / `left`),
    /// the time in RFC 3339 UTC to the second; line breaks in the text are escaped (`\\n`).
    pub fn line(&self) -> String {
        let time = DateTime::<Utc>::from_timestamp_millis(self.time_ms)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default();
        match &self.kind {
            Kind::Message { from, text } => format!("{from} {time}: {}", one_line(text)),
            Kind::Joined { name } => format!("{name} {time}: joined"),
            Kind::Left { name, reason } if reason == "left" => format!("{name} {time}: left"),
            Kind::Left { name, reason } => format!("{name} {time}: left ({reason})"),
        }
    }
}

/// `text` on one line: backslashes doubled, line breaks written `\\n` and `\\r`, so a message can
/// never forge a line of the transcript.
fn one_line(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a message's text back from its transcript line's escaped form.
    fn unescape(line: &str) -> String {
        let mut text = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match (c, c == '\\') {
                (_, true) => match chars.next() {
                    Some('n') => text.push('\n'),
                    Some('r') => text.push('\r'),
                    Some(other) => text.push(other),
                    None => text.push('\\'),
                },
                (c, false) => text.push(c),
            }
        }
        text
    }

    proptest::proptest! {
        #[test]
        fn a_message_is_one_transcript_line_that_reads_back_as_it_was_said(text in ".{0,200}|[a\\\\\n\r]{0,40}") {
            let event = Event {
                seq: 1,
                time_ms: 0,
                kind: Kind::Message { from: "ada".into(), text: text.clone() },
            };
            let line = event.line();
            proptest::prop_assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
            let said = line.split_once(": ").map(|(_, said)| said).unwrap_or_default();
            proptest::prop_assert_eq!(unescape(said), text);
        }
    }

    #[test]
    fn transcript_lines_read_name_time_text() {
        let at = 1_498_308_872_000; // 2017-06-24T12:54:32Z
        let line = |kind| {
            Event {
                seq: 1,
                time_ms: at,
                kind,
            }
            .line()
        };
        assert_eq!(
            line(Kind::Message {
                from: "ada".into(),
                text: "hello".into()
            }),
            "ada 2017-06-24T12:54:32Z: hello"
        );
        assert_eq!(
            line(Kind::Joined { name: "ada".into() }),
            "ada 2017-06-24T12:54:32Z: joined"
        );
        assert_eq!(
            line(Kind::Left {
                name: "ada".into(),
                reason: "idle".into()
            }),
            "ada 2017-06-24T12:54:32Z: left (idle)"
        );
        assert_eq!(
            line(Kind::Message {
                from: "ada".into(),
                text: "a\nbob x: b\\n".into()
            }),
            "ada 2017-06-24T12:54:32Z: a\\nbob x: b\\\\n"
        );
    }
}
