//! PIN hashing: Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), stored as PHC
//! strings. Only hashes are ever stored. Hashing is slow on purpose: callers run it on the
//! blocking pool.

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::SaltString,
};

use crate::{Error, types::Pin};

fn argon2() -> Result<Argon2<'static>, Error> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `pin` with a fresh random salt.
pub fn hash(pin: &Pin) -> Result<String, Error> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| Error::Internal(format!("salt: {e}")))?;
    argon2()?
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

/// Whether `pin` matches `stored` (a PHC string from [`hash`]). An unparseable hash never matches.
pub fn verify(pin: &Pin, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    argon2().is_ok_and(|a| a.verify_password(pin.as_bytes(), &parsed).is_ok())
}

/// Hashes on the blocking pool.
pub async fn hash_blocking(pin: Pin) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || hash(&pin))
        .await
        .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
}

/// Verifies on the blocking pool.
pub async fn verify_blocking(pin: Pin, stored: String) -> bool {
    tokio::task::spawn_blocking(move || verify(&pin, &stored))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_pin_only_and_uses_argon2id() {
        let pin = Pin::parse("pin", "2468").unwrap();
        let stored = hash(&pin).unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify(&pin, &stored));
        assert!(!verify(&Pin::parse("pin", "2469").unwrap(), &stored));
        assert!(!verify(&pin, "not a hash"));
        assert_ne!(stored, hash(&pin).unwrap(), "fresh salt each time");
    }
}
