//! The bank's validated values: each newtype can only hold what the rules allow, so the rest of
//! the code never re-checks. Parsing errors name the request field.

use std::fmt;

use crate::Error;

/// The largest amount one deposit, withdrawal or transfer may move: one billion, in cents.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000_000;
/// The largest balance an account may reach: ten trillion, in cents (far from i64 overflow).
pub const MAX_BALANCE_CENTS: i64 = 1_000_000_000_000_000;
/// Longest holder name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A holder's name: 1 to 100 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HolderName(String);

impl HolderName {
    /// Validates `text` as the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let name = text.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(Error::invalid(
                field,
                format!("must be 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A PIN: 4 to 12 ASCII digits. Never logged (its Debug hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// Validates `text` as the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        if !(4..=12).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid(field, "must be 4 to 12 digits"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The digits, for hashing.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// An account id (a UUID, as the bank issues them).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Validates `text` as the request field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Error> {
        let id = uuid::Uuid::try_parse(text.trim())
            .map_err(|_| Error::invalid(field, "must be an account id (a UUID)"))?;
        Ok(Self(id.to_string()))
    }

    /// An id read back from storage.
    pub(crate) fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lock-service resource that guards this account.
    pub fn resource(&self) -> String {
        format!("account/{}", self.0)
    }
}

impl Default for AccountId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen request id (a UUID) that makes a mutation exactly-once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Validates `text` as the request field `request_id`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let id = uuid::Uuid::try_parse(text.trim())
            .map_err(|_| Error::invalid("request_id", "must be a UUID chosen by the client"))?;
        Ok(Self(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An amount of money to move: more than 0 and at most [`MAX_AMOUNT_CENTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount(i64);

impl Amount {
    /// Validates `cents` as the request field `field`.
    pub fn parse(field: &str, cents: i64) -> Result<Self, Error> {
        if cents <= 0 || cents > MAX_AMOUNT_CENTS {
            return Err(Error::invalid(
                field,
                format!("must be more than 0 and at most {MAX_AMOUNT_CENTS} cents"),
            ));
        }
        Ok(Self(cents))
    }

    /// The amount in cents.
    pub fn cents(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use township_kit::status::InvalidField;

    #[test]
    fn values_are_validated_with_the_field_named() {
        assert!(HolderName::parse("holder_name", "  Ada Lovelace ").is_ok());
        assert!(HolderName::parse("holder_name", "   ").is_err());
        assert!(HolderName::parse("holder_name", &"x".repeat(101)).is_err());
        assert!(HolderName::parse("holder_name", "a\u{0}b").is_err());
        assert!(Pin::parse("pin", "1234").is_ok());
        for bad in ["123", "1234567890123", "12a4", "", "١٢٣٤"] {
            assert!(Pin::parse("pin", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", Pin::parse("pin", "1234").unwrap()),
            "Pin(****)"
        );
        assert!(Amount::parse("amount_cents", 0).is_err());
        assert!(Amount::parse("amount_cents", -1).is_err());
        assert!(Amount::parse("amount_cents", MAX_AMOUNT_CENTS + 1).is_err());
        assert!(RequestId::parse("not-a-uuid").is_err());
        let Err(Error::Invalid(InvalidField { field, .. })) =
            AccountId::parse("to_account_id", "42")
        else {
            panic!("expected invalid")
        };
        assert_eq!(field, "to_account_id");
    }
}
