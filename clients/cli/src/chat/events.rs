//! How a chat event prints: a transcript line (`name HH:MM:SS: text`) for people, or one JSON
//! object in the proto's field names.

use chrono::{DateTime, Local, Utc};
use township_proto::chat::v1::{ChatEvent, chat_event::Kind};

/// An event's time as `HH:MM:SS` in the local time zone.
fn clock(time: Option<&prost_types::Timestamp>) -> String {
    time.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map(|t| t.with_timezone(&Local).format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "--:--:--".to_owned())
}

/// `text` on one line: control characters (line breaks, escapes) become spaces, so no message
/// can break the one-line-per-event form or drive the terminal.
fn controls_as_spaces(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The event as a transcript line (`None` for a kind this client does not know).
pub(super) fn event_line(event: &ChatEvent) -> Option<String> {
    let time = clock(event.time.as_ref());
    let line = match event.kind.as_ref()? {
        Kind::Message(message) => {
            format!(
                "{} {time}: {}",
                message.from,
                controls_as_spaces(&message.text)
            )
        }
        Kind::Joined(joined) => format!("{} {time}: joined", joined.name),
        Kind::Left(left) if left.reason.is_empty() || left.reason == "left" => {
            format!("{} {time}: left", left.name)
        }
        Kind::Left(left) => format!(
            "{} {time}: left ({})",
            left.name,
            controls_as_spaces(&left.reason)
        ),
        // Not part of the transcript (and its token is never shown).
        Kind::Welcome(_) => return None,
    };
    Some(line)
}

/// The event as one JSON object, in the proto's field names.
pub(super) fn event_json(event: &ChatEvent) -> serde_json::Value {
    let time = event.time.as_ref().map(ToString::to_string);
    match &event.kind {
        Some(Kind::Message(message)) => serde_json::json!({
            "seq": event.seq, "time": time, "kind": "message",
            "from": message.from, "text": message.text,
        }),
        Some(Kind::Joined(joined)) => serde_json::json!({
            "seq": event.seq, "time": time, "kind": "joined", "name": joined.name,
        }),
        Some(Kind::Left(left)) => serde_json::json!({
            "seq": event.seq, "time": time, "kind": "left",
            "name": left.name, "reason": left.reason,
        }),
        Some(Kind::Welcome(_)) => serde_json::json!({ "seq": event.seq, "kind": "welcome" }),
        None => serde_json::json!({ "seq": event.seq, "time": time, "kind": "unknown" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use township_proto::chat::v1::{Joined, Left, Message};

    fn event(kind: Kind) -> ChatEvent {
        ChatEvent {
            seq: 7,
            time: Some(prost_types::Timestamp {
                seconds: 1_498_308_872, // 2017-06-24T12:54:32Z
                nanos: 250_000_000,
            }),
            kind: Some(kind),
        }
    }

    #[test]
    fn events_print_as_transcript_lines_on_one_line_each() {
        let time = clock(event(Kind::Joined(Joined::default())).time.as_ref());
        assert_eq!(time.len(), 8, "{time}");
        let message = event(Kind::Message(Message {
            from: "ada".into(),
            text: "hello\nworld\x1b[2J".into(),
        }));
        assert_eq!(
            event_line(&message).unwrap(),
            format!("ada {time}: hello world [2J")
        );
        let left = |reason: &str| {
            event_line(&event(Kind::Left(Left {
                name: "bob".into(),
                reason: reason.into(),
            })))
            .unwrap()
        };
        assert_eq!(left("left"), format!("bob {time}: left"));
        assert_eq!(left("idle"), format!("bob {time}: left (idle)"));
        let joined = event(Kind::Joined(Joined { name: "cy".into() }));
        assert_eq!(event_line(&joined).unwrap(), format!("cy {time}: joined"));
        let unknown = ChatEvent {
            kind: None,
            ..joined
        };
        assert_eq!(event_line(&unknown), None);
    }

    #[test]
    fn events_print_as_json_in_the_protos_field_names() {
        let message = event(Kind::Message(Message {
            from: "ada".into(),
            text: "hi\n".into(),
        }));
        assert_eq!(
            event_json(&message),
            serde_json::json!({
                "seq": 7, "time": "2017-06-24T12:54:32.250Z", "kind": "message",
                "from": "ada", "text": "hi\n",
            })
        );
        let left = event(Kind::Left(Left {
            name: "bob".into(),
            reason: "idle".into(),
        }));
        assert_eq!(event_json(&left)["reason"], "idle");
        assert_eq!(event_json(&left)["kind"], "left");
    }
}
