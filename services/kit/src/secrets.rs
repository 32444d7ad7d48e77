//! Secrets a service hands out (patient keys, member tokens): made random, kept only as a hash,
//! and compared without telling an attacker, through the time a comparison takes, how much of a
//! guess was right. They are random (244 bits), so a fast hash is enough to store them; a
//! person's chosen secret (a PIN) needs a slow one instead.

use sha2::{Digest, Sha256};

/// A fresh secret: 64 hex digits (two v4 UUIDs, 244 random bits).
pub fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// What a service keeps of `token`: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `presented` is the token whose [`token_hash`] is `stored`, in constant time.
pub fn token_matches(presented: &str, stored: &str) -> bool {
    constant_time_eq(token_hash(presented).as_bytes(), stored.as_bytes())
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_and_the_length_are() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_token_matches_its_hash_only() {
        let token = new_token();
        assert_eq!(token.len(), 64);
        assert_ne!(token, new_token());
        let stored = token_hash(&token);
        assert!(!stored.contains(&token));
        assert!(token_matches(&token, &stored));
        assert!(!token_matches(&new_token(), &stored));
        assert!(!token_matches("", &stored));
    }
}
