//! Patient keys: the credential a patient's first session returns, once, and every later call
//! for that name presents. Random (244 bits from two v4 UUIDs), so a fast hash is enough to store
//! them: SHA-256, hex; a presented key is hashed and compared in constant time.

use sha2::{Digest, Sha256};
use township_kit::secrets::constant_time_eq;

/// A fresh key: 64 hex digits.
pub fn new_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// What the records keep of `key`.
pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `presented` is the key whose hash is `stored`.
pub fn matches(presented: &str, stored: &str) -> bool {
    constant_time_eq(hash(presented).as_bytes(), stored.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_matches_its_hash_only() {
        let key = new_key();
        assert_eq!(key.len(), 64);
        assert_ne!(key, new_key());
        let stored = hash(&key);
        assert!(!stored.contains(&key));
        assert!(matches(&key, &stored));
        assert!(!matches(&new_key(), &stored));
        assert!(!matches("", &stored));
    }
}
