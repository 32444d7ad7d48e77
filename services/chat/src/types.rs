//! The chat's validated values (room names, member names, message text) and each request message
//! read once into the domain request a handler passes on: the handlers hold no validation of
//! their own.

use township_kit::paging::{PageRequest, PageTokens, Scope};
use township_proto::chat::v1::{self as pb, chat_service_server::SERVICE_NAME};

use crate::Error;

/// The room a join or send without a room name goes to.
pub const DEFAULT_ROOM: &str = "lobby";
/// Longest room or member name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest message, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Longest client message id, in bytes.
const MAX_CLIENT_ID_BYTES: usize = 128;

/// A room name: 1 to 64 characters from `a-z`, `0-9`, `.`, `_`, `-`; empty means `lobby`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Validates the request field `room`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self(DEFAULT_ROOM.to_owned()));
        }
        if text.chars().count() > MAX_NAME_CHARS {
            return Err(Error::invalid(
                "room",
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c)))
        {
            return Err(Error::invalid(
                "room",
                format!("{bad:?} is not allowed: use a-z, 0-9, '.', '_' and '-'"),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// Rebuilds a name read back from storage.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A member's name as others see it: trimmed, 1 to 64 characters, no control characters. Two
/// live members of a room may not share a name, compared ignoring case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberName {
    name: String,
    key: String,
}

impl MemberName {
    /// Validates the request field `name`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let name = text.trim();
        let chars = name.chars().count();
        if chars == 0 {
            return Err(Error::invalid("name", "must not be empty"));
        }
        if chars > MAX_NAME_CHARS {
            return Err(Error::invalid(
                "name",
                format!("must be at most {MAX_NAME_CHARS} characters (got {chars})"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            key: name.to_lowercase(),
        })
    }

    /// The name as shown.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// What uniqueness compares.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Validates message text: 1 to 4096 bytes, not only white space.
pub fn text(text: &str) -> Result<&str, Error> {
    if text.trim().is_empty() {
        return Err(Error::invalid("text", "must not be empty"));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid(
            "text",
            format!(
                "must be at most {MAX_TEXT_BYTES} bytes (got {})",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// Validates the optional `client_message_id`: at most 128 bytes.
pub fn client_message_id(id: &str) -> Result<&str, Error> {
    if id.len() > MAX_CLIENT_ID_BYTES {
        return Err(Error::invalid(
            "client_message_id",
            format!("must be at most {MAX_CLIENT_ID_BYTES} bytes"),
        ));
    }
    Ok(id.trim())
}

/// A Join request: who joins which room, resuming after which seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// The room.
    pub room: RoomName,
    /// The member's name.
    pub name: MemberName,
    /// The last seq the member saw (0: the whole transcript); checked against the room by
    /// [`Rooms::join`](crate::rooms::Rooms::join).
    pub after_seq: u64,
}

impl TryFrom<pb::JoinRequest> for Join {
    type Error = Error;

    fn try_from(r: pb::JoinRequest) -> Result<Self, Error> {
        Ok(Self {
            room: RoomName::parse(&r.room)?,
            name: MemberName::parse(&r.name)?,
            after_seq: r.after_seq,
        })
    }
}

/// A Send request: one message from a member to a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The room.
    pub room: RoomName,
    /// The sender.
    pub name: MemberName,
    /// The text (see [`text`]).
    pub text: String,
    /// The client's id for the message, trimmed (empty: none); a retry with it is sent once.
    pub client_message_id: String,
    /// The member token of the sender's Join (not empty).
    pub member_token: String,
}

impl TryFrom<pb::SendRequest> for Message {
    type Error = Error;

    fn try_from(r: pb::SendRequest) -> Result<Self, Error> {
        Ok(Self {
            room: RoomName::parse(&r.room)?,
            name: MemberName::parse(&r.name)?,
            text: text(&r.text)?.to_owned(),
            client_message_id: client_message_id(&r.client_message_id)?.to_owned(),
            member_token: member_token(&r.member_token)?.to_owned(),
        })
    }
}

/// Longest member token accepted (a real one has 64 characters).
pub const MAX_TOKEN_CHARS: usize = 128;

/// Validates a Send's member token: required, at most [`MAX_TOKEN_CHARS`].
pub fn member_token(token: &str) -> Result<&str, Error> {
    if token.is_empty() {
        return Err(Error::invalid(
            "member_token",
            "required: the member_token of your Join's Welcome",
        ));
    }
    if token.len() > MAX_TOKEN_CHARS {
        return Err(Error::invalid(
            "member_token",
            format!("must be at most {MAX_TOKEN_CHARS} characters"),
        ));
    }
    Ok(token)
}

/// A GetTranscript request: which room, and which page of its events.
#[derive(Debug)]
pub struct TranscriptQuery {
    /// The room.
    pub room: RoomName,
    /// Which page; a position is an event's seq.
    pub page: PageRequest<i64>,
}

impl TranscriptQuery {
    /// Reads a GetTranscript request; its page token must be one `tokens` issued for this room.
    pub fn parse(r: &pb::GetTranscriptRequest, tokens: &PageTokens) -> Result<Self, Error> {
        let room = RoomName::parse(&r.room)?;
        let scope = Scope::rpc(&format!("{SERVICE_NAME}/GetTranscript")).query(room.as_str());
        let page = PageRequest::read(tokens, scope, r.page_size, &r.page_token)?;
        Ok(Self { room, page })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use township_kit::status::InvalidField;

    proptest::proptest! {
        #[test]
        fn any_text_is_a_room_or_member_name_or_a_refusal_and_a_name_reads_back(input in ".{0,80}") {
            if let Ok(room) = RoomName::parse(&input) {
                proptest::prop_assert_eq!(RoomName::parse(room.as_str()).ok(), Some(room));
            }
            if let Ok(name) = MemberName::parse(&input) {
                let again = MemberName::parse(name.as_str()).expect("a name reads back");
                proptest::prop_assert_eq!(again.key(), name.key());
            }
            let _ = text(&input);
            let _ = member_token(&input);
        }
    }

    #[test]
    fn rooms_default_to_the_lobby_and_use_a_small_alphabet() {
        assert_eq!(RoomName::parse("").unwrap().as_str(), "lobby");
        assert_eq!(
            RoomName::parse("rust-2026.q4_x").unwrap().as_str(),
            "rust-2026.q4_x"
        );
        for bad in ["Lobby", "a b", "../x", "é", &"a".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn member_names_are_trimmed_bounded_and_compared_ignoring_case() {
        let name = MemberName::parse("  Zoë ").unwrap();
        assert_eq!((name.as_str(), name.key()), ("Zoë", "zoë"));
        assert!(MemberName::parse(" ").is_err());
        assert!(MemberName::parse(&"é".repeat(64)).is_ok());
        assert!(MemberName::parse(&"é".repeat(65)).is_err());
        assert!(MemberName::parse("a\nb").is_err());
    }

    #[test]
    fn text_is_bounded_in_bytes() {
        assert!(text(&"a".repeat(4096)).is_ok());
        assert!(text(&"a".repeat(4097)).is_err());
        assert!(text(&"é".repeat(2049)).is_err());
        assert!(text("  ").is_err());
    }

    #[test]
    fn a_send_is_read_field_by_field_and_names_the_bad_one() {
        let send = |room: &str, name: &str, text: &str, id: &str| pb::SendRequest {
            room: room.into(),
            name: name.into(),
            text: text.into(),
            client_message_id: id.into(),
            member_token: "t".into(),
        };
        let message = Message::try_from(send("", " Ada ", "hi", " m-1 ")).unwrap();
        assert_eq!(message.room.as_str(), "lobby");
        assert_eq!(message.name.as_str(), "Ada");
        assert_eq!(message.client_message_id, "m-1");
        let field = |err| match err {
            Error::Invalid(InvalidField { field, .. }) => field,
            other => panic!("not INVALID_ARGUMENT: {other}"),
        };
        let bad_room = Message::try_from(send("A B", "", "", "")).unwrap_err();
        assert_eq!(field(bad_room), "room");
        let bad_text = Message::try_from(send("", "Ada", " ", "")).unwrap_err();
        assert_eq!(field(bad_text), "text");
        let long_id = "x".repeat(129);
        let bad_id = Message::try_from(send("", "Ada", "hi", &long_id)).unwrap_err();
        assert_eq!(field(bad_id), "client_message_id");
        for token in ["", &"t".repeat(MAX_TOKEN_CHARS + 1)] {
            let request = pb::SendRequest {
                member_token: token.to_owned(),
                ..send("", "Ada", "hi", "")
            };
            assert_eq!(
                field(Message::try_from(request).unwrap_err()),
                "member_token"
            );
        }
    }
}
