//! Page tokens: where the next page starts, signed with the book's own key so that a client can
//! neither forge a position nor carry a token over to another query or RPC. Tokens stay valid
//! across restarts (the key lives in the database) and are opaque text (URL-safe base64).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::Error;

const FORMAT_VERSION: u8 = 1;
const TAG_BYTES: usize = 16;
/// version, kind, query fingerprint (8), group (1), id (8).
const HEADER_BYTES: usize = 1 + 1 + 8 + 1 + 8;

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

/// What a token belongs to: a listing of the whole book, or one search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// ListEntries.
    List,
    /// Search, with the query's key and digits.
    Search(&'a str, &'a str),
}

impl Scope<'_> {
    fn kind(self) -> u8 {
        match self {
            Scope::List => 1,
            Scope::Search(..) => 2,
        }
    }

    fn fingerprint(self) -> [u8; 8] {
        let mut hash = Sha256::new();
        if let Scope::Search(key, digits) = self {
            hash.update(key.as_bytes());
            hash.update([0]);
            hash.update(digits.as_bytes());
        }
        let digest = hash.finalize();
        let mut out = [0; 8];
        out.copy_from_slice(&digest[..8]);
        out
    }
}

/// Signs and checks page tokens with one secret key.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl PageTokens {
    /// Tokens signed with `key` (at least 32 random bytes).
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self, bytes: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(bytes);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    /// The token for the page after `cursor` in `scope`.
    pub fn issue(&self, scope: Scope<'_>, cursor: &Cursor) -> String {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + cursor.key.len() + TAG_BYTES);
        bytes.push(FORMAT_VERSION);
        bytes.push(scope.kind());
        bytes.extend_from_slice(&scope.fingerprint());
        bytes.push(cursor.group);
        bytes.extend_from_slice(&cursor.id.to_be_bytes());
        bytes.extend_from_slice(cursor.key.as_bytes());
        let tag = self.mac(&bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads the request field `page_token`: `None` for the first page, the cursor for a token this
    /// book issued for `scope`, INVALID_ARGUMENT for anything else.
    pub fn check(&self, scope: Scope<'_>, token: &str) -> Result<Option<Cursor>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        let forged = || Error::invalid("page_token", "not a page token this phone book issued");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| forged())?;
        if bytes.len() < HEADER_BYTES + TAG_BYTES {
            return Err(forged());
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(body);
        mac.verify_truncated_left(tag).map_err(|_| forged())?;
        if body[0] != FORMAT_VERSION {
            return Err(forged());
        }
        if body[1] != scope.kind() || body[2..10] != scope.fingerprint() {
            return Err(Error::invalid(
                "page_token",
                match scope {
                    Scope::List => "belongs to a different request (a token from Search?)",
                    Scope::Search(..) => {
                        "belongs to a different query: repeat the query the token came with"
                    }
                },
            ));
        }
        let group = body[10];
        let id = i64::from_be_bytes(body[11..19].try_into().map_err(|_| forged())?);
        let key = String::from_utf8(body[HEADER_BYTES..].to_vec()).map_err(|_| forged())?;
        Ok(Some(Cursor { group, key, id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(vec![7; 32])
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
        let scope = Scope::Search("zoe", "");
        let token = tokens().issue(scope, &cursor());
        assert_eq!(tokens().check(scope, &token).unwrap(), Some(cursor()));
        assert_eq!(tokens().check(scope, "").unwrap(), None);
    }

    #[test]
    fn altered_or_foreign_tokens_are_rejected() {
        let token = tokens().issue(Scope::List, &cursor());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[12] ^= 1;
        let altered = URL_SAFE_NO_PAD.encode(&bytes);
        for bad in [
            altered.as_str(),
            "garbage!",
            "AAAA",
            &token[..token.len() - 2],
        ] {
            let err = tokens().check(Scope::List, bad).unwrap_err();
            assert!(err.to_string().starts_with("page_token: "), "{bad}: {err}");
        }
        let other_key = PageTokens::new(vec![8; 32]);
        assert!(other_key.check(Scope::List, &token).is_err());
    }

    #[test]
    fn a_token_only_serves_the_query_it_came_from() {
        let token = tokens().issue(Scope::Search("ada", ""), &cursor());
        let err = tokens()
            .check(Scope::Search("bob", ""), &token)
            .unwrap_err();
        assert!(err.to_string().contains("different query"), "{err}");
        assert!(tokens().check(Scope::List, &token).is_err());
    }
}
