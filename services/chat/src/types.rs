//! The chat's validated values: room names, member names and message text.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
