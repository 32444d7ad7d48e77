//! Page tokens: where the next page starts, signed so that a client can neither forge a position
//! nor carry a token over to another RPC, query or caller.
//!
//! A token is URL-safe base64 (no padding) of `version ‖ position ‖ tag`, where `position` is the
//! service's own bytes ([`Position`]) and `tag` is the first 16 bytes of
//! HMAC-SHA256(key, `version ‖ scope fingerprint ‖ position`). The scope's fingerprint (a SHA-256
//! of the RPC, query parts and caller) is signed but not carried: a token checked against another
//! scope fails exactly like a forged one, and tells its holder nothing about the query.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::InvalidField;

/// The token layout this code writes and reads (the phone book's own tokens were version 1).
const FORMAT_VERSION: u8 = 2;
/// Bytes of the HMAC kept in a token: 128 bits.
const TAG_BYTES: usize = 16;
/// The shortest key [`PageTokens::new`] accepts.
pub const MIN_KEY_BYTES: usize = 32;

/// What a token is bound to: the RPC, every part of the query that selects or orders the rows,
/// and the caller where there is one. Parts are length-prefixed, so no two different lists of
/// parts share a fingerprint.
#[derive(Clone)]
pub struct Scope {
    hash: Sha256,
}

impl Scope {
    /// A scope for the RPC `method`, by its full gRPC name (`township.doctor.v1.DoctorService/GetHistory`).
    pub fn rpc(method: &str) -> Self {
        Self {
            hash: Sha256::new(),
        }
        .part(b'r', method.as_bytes())
    }

    /// Binds the token to one part of the query (a search's text, a filter): a token serves
    /// only the query it came with.
    pub fn query(self, part: impl AsRef<[u8]>) -> Self {
        self.part(b'q', part.as_ref())
    }

    /// Binds the token to the caller (the doctor's patient, the bank's session holder): a token
    /// serves only the caller it was issued to.
    pub fn caller(self, who: impl AsRef<[u8]>) -> Self {
        self.part(b'c', who.as_ref())
    }

    fn part(mut self, kind: u8, bytes: &[u8]) -> Self {
        self.hash.update([kind]);
        self.hash.update((bytes.len() as u64).to_be_bytes());
        self.hash.update(bytes);
        self
    }

    fn fingerprint(&self) -> [u8; 32] {
        self.hash.clone().finalize().into()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

/// Where a page starts, as the bytes a token carries. The service chooses the encoding (an id;
/// a group, key and id); [`PageTokens::check`] only hands back bytes it signed itself, so
/// `from_bytes` returns `None` only for a token of an older layout.
pub trait Position: Sized {
    /// The bytes a token carries.
    fn to_bytes(&self) -> Vec<u8>;
    /// Reads back what [`Position::to_bytes`] wrote.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// A row id (the common case: the next page starts after this id).
impl Position for i64 {
    fn to_bytes(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(i64::from_be_bytes)
    }
}

/// Signs and checks one service's page tokens with its secret key.
#[derive(Clone)]
pub struct PageTokens {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageTokens").finish_non_exhaustive()
    }
}

impl PageTokens {
    /// Tokens signed with `key`: at least [`MIN_KEY_BYTES`] random bytes, kept where the service
    /// keeps its state (e.g. `randomblob(32)` in its database) so that tokens outlive a restart.
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        if key.len() < MIN_KEY_BYTES {
            anyhow::bail!(
                "a page token key must have at least {MIN_KEY_BYTES} bytes (got {})",
                key.len()
            );
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)?;
        Ok(Self { mac })
    }

    fn mac(&self, scope: &Scope, version: u8, position: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&[version]);
        mac.update(&scope.fingerprint());
        mac.update(position);
        mac
    }

    /// The token for the page that starts after `position`, in `scope`.
    pub fn issue<P: Position>(&self, scope: &Scope, position: &P) -> String {
        let position = position.to_bytes();
        let tag = self.mac(scope, FORMAT_VERSION, &position).finalize();
        let mut bytes = Vec::with_capacity(1 + position.len() + TAG_BYTES);
        bytes.push(FORMAT_VERSION);
        bytes.extend_from_slice(&position);
        bytes.extend_from_slice(&tag.into_bytes()[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a request's `page_token`: `None` when empty (the first page), the position for a
    /// token this key issued in `scope`, and INVALID_ARGUMENT naming `page_token` for anything
    /// else (the tag is compared in constant time).
    pub fn check<P: Position>(
        &self,
        scope: &Scope,
        token: &str,
    ) -> Result<Option<P>, InvalidField> {
        if token.is_empty() {
            return Ok(None);
        }
        let refused = InvalidField::new(
            "page_token",
            "not a page token this service issued for this request",
        );
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| refused.clone())?;
        if bytes.len() < 1 + TAG_BYTES || bytes[0] != FORMAT_VERSION {
            return Err(refused);
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let position = &body[1..];
        self.mac(scope, body[0], position)
            .verify_truncated_left(tag)
            .map_err(|_| refused.clone())?;
        P::from_bytes(position).map(Some).ok_or(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(&[7; 32]).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn any_text_as_a_page_token_is_read_or_refused_never_a_panic(text in ".{0,200}") {
            let _ = tokens().check::<i64>(&history("ada"), &text);
        }

        #[test]
        fn a_token_reads_back_as_its_position_for_its_scope_only(
            position in proptest::prelude::any::<i64>(),
            patient in ".{0,30}",
        ) {
            let token = tokens().issue(&history(&patient), &position);
            proptest::prop_assert_eq!(tokens().check(&history(&patient), &token), Ok(Some(position)));
            let other = format!("{patient}!");
            proptest::prop_assert!(tokens().check::<i64>(&history(&other), &token).is_err());
        }
    }

    fn history(patient: &str) -> Scope {
        Scope::rpc("township.doctor.v1.DoctorService/GetHistory").caller(patient)
    }

    fn refused(result: Result<Option<i64>, InvalidField>) {
        let err = result.unwrap_err();
        assert_eq!(err.field, "page_token");
        assert_eq!(
            err.problem,
            "not a page token this service issued for this request"
        );
    }

    #[test]
    fn a_token_reads_back_as_its_position_and_an_empty_one_as_the_first_page() {
        let token = tokens().issue(&history("ada"), &42_i64);
        assert_eq!(tokens().check(&history("ada"), &token), Ok(Some(42_i64)));
        assert_eq!(tokens().check::<i64>(&history("ada"), ""), Ok(None));
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe: {token}"
        );
    }

    #[test]
    fn a_token_survives_a_restart_with_the_same_key() {
        let token = tokens().issue(&history("ada"), &42_i64);
        let restarted = PageTokens::new(&[7; 32]).unwrap();
        assert_eq!(restarted.check(&history("ada"), &token), Ok(Some(42_i64)));
    }

    #[test]
    fn forged_altered_and_truncated_tokens_are_refused() {
        let token = tokens().issue(&history("ada"), &42_i64);
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let mut altered_position = bytes.clone();
        altered_position[8] ^= 1;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let forged_position = {
            let mut forged = vec![FORMAT_VERSION];
            forged.extend_from_slice(&7_i64.to_be_bytes());
            forged.extend_from_slice(&[0; TAG_BYTES]);
            URL_SAFE_NO_PAD.encode(forged)
        };
        for bad in [
            URL_SAFE_NO_PAD.encode(altered_position),
            URL_SAFE_NO_PAD.encode(bytes),
            forged_position,
            token[..token.len() - 1].to_owned(),
            token[..token.len() - 4].to_owned(),
            token[4..].to_owned(),
            "garbage!".to_owned(),
            "AAAA".to_owned(),
            format!("{token}="),
            format!(" {token}"),
        ] {
            refused(tokens().check(&history("ada"), &bad));
        }
    }

    #[test]
    fn a_token_of_another_key_is_refused() {
        let other = PageTokens::new(&[8; 32]).unwrap();
        let token = other.issue(&history("ada"), &42_i64);
        refused(tokens().check(&history("ada"), &token));
    }

    #[test]
    fn a_token_serves_only_its_own_rpc_query_and_caller() {
        let search = |text: &str| Scope::rpc("pb.Book/Search").query(text);
        let token = tokens().issue(&search("smith"), &3_i64);
        assert_eq!(tokens().check(&search("smith"), &token), Ok(Some(3_i64)));
        refused(tokens().check(&search("jones"), &token));
        refused(tokens().check(&Scope::rpc("pb.Book/List"), &token));
        refused(tokens().check(&Scope::rpc("pb.Book/Search"), &token));

        let token = tokens().issue(&history("ada"), &3_i64);
        refused(tokens().check(&history("bob"), &token));
        refused(tokens().check(&history("ad"), &token));
        refused(tokens().check(
            &Scope::rpc("township.doctor.v1.DoctorService/GetHistory"),
            &token,
        ));
        refused(tokens().check(
            &Scope::rpc("township.doctor.v1.DoctorService/GetHistory").query("ada"),
            &token,
        ));
    }

    #[test]
    fn parts_are_length_prefixed_so_they_cannot_be_regrouped() {
        let token = tokens().issue(&Scope::rpc("m").query("ab").query("c"), &1_i64);
        refused(tokens().check(&Scope::rpc("m").query("a").query("bc"), &token));
        refused(tokens().check(&Scope::rpc("m").query("abc"), &token));
    }

    #[test]
    fn a_position_of_another_layout_is_refused() {
        struct Pair(u8, u8);
        impl Position for Pair {
            fn to_bytes(&self) -> Vec<u8> {
                vec![self.0, self.1]
            }
            fn from_bytes(bytes: &[u8]) -> Option<Self> {
                match bytes {
                    [a, b] => Some(Pair(*a, *b)),
                    _ => None,
                }
            }
        }
        let token = tokens().issue(&history("ada"), &Pair(1, 2));
        refused(tokens().check(&history("ada"), &token));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(PageTokens::new(&[1; 31]).is_err());
        assert!(PageTokens::new(&[]).is_err());
    }
}
