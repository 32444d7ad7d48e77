//! PIN hashing: Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), stored as PHC
//! strings. Only hashes are ever stored. Hashing is slow on purpose: callers run it on the
//! blocking pool, at most one hash per core at a time, so a burst of logins or new accounts
//! queues instead of taking 19 MiB per request at once (and starving the server's own threads).

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::SaltString,
};

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use crate::{Error, types::Pin};

/// Hashes running at once: one per core.
static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

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

/// Hashes on the blocking pool, once a core is free for it.
pub async fn hash_blocking(pin: Pin) -> Result<String, Error> {
    let permit = HASHING
        .acquire()
        .await
        .map_err(|e| Error::Internal(format!("hashing queue: {e}")))?;
    // The permit goes with the work: a caller that gives up does not free the core early.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash(&pin)
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
}

/// Verifies on the blocking pool, once a core is free for it.
pub async fn verify_blocking(pin: Pin, stored: String) -> bool {
    let Ok(permit) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        verify(&pin, &stored)
    })
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
