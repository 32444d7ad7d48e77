//! What the phone book's page tokens carry and what they are bound to. Signing and checking is
//! the kit's [`PageTokens`](township_kit::paging::PageTokens), with the key kept in the book's
//! database (so tokens outlive a restart).

use township_kit::paging::{Position, Scope};
use township_proto::phonebook::v1::phone_book_service_server::SERVICE_NAME;

/// Where a page starts: after the entry with this name key and id, in this group (Search lists
/// prefix matches as group 0, then other matches as group 1; ListEntries has one group, 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The group of the last entry served.
    pub group: u8,
    /// The match key of the last entry served.
    pub key: String,
    /// The id of the last entry served.
    pub id: i64,
}

/// group (1), id (8), then the key's UTF-8.
impl Position for Cursor {
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + 8 + self.key.len());
        bytes.push(self.group);
        bytes.extend_from_slice(&self.id.to_be_bytes());
        bytes.extend_from_slice(self.key.as_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&group, rest) = bytes.split_first()?;
        let (id, key) = rest.split_first_chunk::<8>()?;
        Some(Self {
            group,
            id: i64::from_be_bytes(*id),
            key: String::from_utf8(key.to_vec()).ok()?,
        })
    }
}

/// The scope of ListEntries tokens.
pub fn list_scope() -> Scope {
    Scope::rpc(&format!("{SERVICE_NAME}/ListEntries"))
}

/// The scope of Search tokens: bound to the query's match key and digits (see `types::Query`), so
/// the same query in other case or spacing continues and any other query does not.
pub fn search_scope(key: &str, digits: &str) -> Scope {
    Scope::rpc(&format!("{SERVICE_NAME}/Search"))
        .query(key)
        .query(digits)
}

#[cfg(test)]
mod tests {
    use township_kit::paging::PageTokens;

    use super::*;
    use crate::types::Query;

    fn query_scope(text: &str) -> Scope {
        let query = Query::parse(text, "US".parse().unwrap()).unwrap();
        search_scope(&query.key, &query.digits)
    }

    fn tokens() -> PageTokens {
        PageTokens::new(&[7; 32]).unwrap()
    }

    fn cursor() -> Cursor {
        Cursor {
            group: 1,
            key: "zoë".into(),
            id: 42,
        }
    }

    #[test]
    fn a_token_reads_back_as_its_cursor() {
        let scope = query_scope("Zoë");
        let token = tokens().issue(&scope, &cursor());
        let same_query = query_scope("  ZOE ");
        assert_eq!(tokens().check(&same_query, &token), Ok(Some(cursor())));
    }

    #[test]
    fn a_token_only_serves_the_query_and_rpc_it_came_from() {
        let token = tokens().issue(&query_scope("ada"), &cursor());
        let other = query_scope("bob");
        assert!(tokens().check::<Cursor>(&other, &token).is_err());
        assert!(tokens().check::<Cursor>(&list_scope(), &token).is_err());
        let digits = query_scope("201");
        let token = tokens().issue(&digits, &cursor());
        let same_key_as_text = Query {
            digits: String::new(),
            ..Query::parse("201", "US".parse().unwrap()).unwrap()
        };
        assert!(
            tokens()
                .check::<Cursor>(
                    &search_scope(&same_key_as_text.key, &same_key_as_text.digits),
                    &token
                )
                .is_err()
        );
    }

    #[test]
    fn cursors_of_another_layout_read_as_none() {
        assert_eq!(Cursor::from_bytes(&[]), None);
        assert_eq!(Cursor::from_bytes(&[1, 0, 0]), None);
        assert_eq!(Cursor::from_bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]), None);
        assert_eq!(Cursor::from_bytes(&cursor().to_bytes()), Some(cursor()));
    }
}
