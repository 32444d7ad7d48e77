//! PIN hashing: Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), stored as PHC
//! strings. Only hashes are ever stored. Hashing is slow on purpose, so it runs on hashing threads
//! of its own, one per core: a burst of logins or new accounts queues instead of taking 19 MiB
//! per request at once.
//!
//! Each hash's 19 MiB goes back to the system when it is done. Left to the argon2 crate, each
//! hash's memory came from the allocator's heap, which kept it: a bank that had opened 200
//! accounts held 144 to 240 MiB. Here the memory is reserved as one block of more than 32 MiB (of
//! which only the 19 MiB used are ever touched), a size glibc's malloc always maps and unmaps by
//! itself.

use std::sync::{Arc, LazyLock, Mutex, mpsc};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString},
};
use tokio::sync::oneshot;

use crate::{Error, types::Pin};

/// Blocks (1 KiB each) reserved for every hash: above glibc's largest mmap threshold (32 MiB).
const RESERVED_BLOCKS: usize = 33 * 1024;

fn argon2() -> Result<Argon2<'static>, Error> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `pin` with a fresh random salt.
pub fn hash(pin: &Pin) -> Result<String, Error> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| Error::Internal(format!("salt: {e}")))?;
    hash_with_salt(pin, &salt)
}

fn hash_with_salt(pin: &Pin, salt: &SaltString) -> Result<String, Error> {
    let failed = |e: &dyn std::fmt::Display| Error::Internal(format!("argon2: {e}"));
    let argon2 = argon2()?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| failed(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon2, pin.as_bytes(), salt_bytes, &mut out).map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `pin` matches `stored` (a PHC string from [`hash`], whatever its Argon2 parameters).
/// An unparseable hash never matches; the comparison takes constant time.
pub fn verify(pin: &Pin, stored: &str) -> bool {
    let matches = || -> Option<bool> {
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(version) => Version::try_from(version).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, params);
        compute(&argon2, pin.as_bytes(), salt, &mut out).ok()?;
        Some(Output::new(&out).ok()? == expected)
    };
    matches().unwrap_or(false)
}

/// Runs Argon2 in memory of its own that is returned to the system afterwards (see the top).
fn compute(argon2: &Argon2, pin: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    let count = argon2.params().block_count();
    let mut blocks = Vec::with_capacity(count.max(RESERVED_BLOCKS));
    blocks.resize(count, Block::default());
    argon2.hash_password_into_with_memory(pin, salt, out, &mut blocks)
}

/// Hashes on a hashing thread.
pub async fn hash_blocking(pin: Pin) -> Result<String, Error> {
    on_hasher(move || hash(&pin)).await?
}

/// Verifies on a hashing thread.
pub async fn verify_blocking(pin: Pin, stored: String) -> bool {
    on_hasher(move || verify(&pin, &stored))
        .await
        .unwrap_or(false)
}

type Job = Box<dyn FnOnce() + Send>;

/// The queue of the hashing threads, started on first use.
static HASHERS: LazyLock<mpsc::Sender<Job>> = LazyLock::new(|| {
    let (queue, jobs) = mpsc::channel::<Job>();
    let jobs = Arc::new(Mutex::new(jobs));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    for i in 0..threads {
        let jobs = jobs.clone();
        let started = std::thread::Builder::new()
            .name(format!("pin-hasher-{i}"))
            .spawn(move || {
                loop {
                    let job = match jobs.lock() {
                        Ok(jobs) => jobs.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
        if let Err(err) = started {
            tracing::error!(error = %err, "cannot start a PIN hashing thread");
        }
    }
    queue
});

/// Runs `work` on a hashing thread and waits for its result.
async fn on_hasher<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Error> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    HASHERS
        .send(job)
        .map_err(|_| Error::Internal("no PIN hashing thread is running".into()))?;
    result
        .await
        .map_err(|_| Error::Internal("a PIN hashing job was lost".into()))
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

    #[test]
    fn hashes_are_the_argon2_crates_own_and_verify_either_way() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let pin = Pin::parse("pin", "2468").unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = argon2()
            .unwrap()
            .hash_password(pin.as_bytes(), &salt)
            .unwrap()
            .to_string();
        let ours = hash_with_salt(&pin, &salt).unwrap();
        assert_eq!(ours, theirs);
        assert!(verify(&pin, &theirs));
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            argon2()
                .unwrap()
                .verify_password(pin.as_bytes(), &parsed)
                .is_ok()
        );
        let cheaper = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(pin.as_bytes(), &salt)
        .unwrap()
        .to_string();
        assert!(verify(&pin, &cheaper), "older parameters still verify");
        assert!(!verify(&Pin::parse("pin", "2469").unwrap(), &cheaper));
    }
}
