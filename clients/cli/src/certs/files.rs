//! A certificate and its key on disk, as `DIR/<stem>.pem` and `DIR/<stem>.key`. A key is written
//! once, mode 0600, with `create_new`: nothing here ever replaces a key. A certificate is
//! replaced only when asked to renew it, atomically (a temporary file renamed over it).

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;
use rcgen::{Certificate, KeyPair};

/// One certificate's pair of files.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What [`Pair::ensure`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new key and certificate.
    Created,
    /// A certificate for the key that was there (left by an earlier run cut short).
    Completed,
    /// Both were there and are left as they are.
    Kept,
    /// A new certificate for the same key (`--renew`).
    Renewed,
}

impl Pair {
    pub fn new(dir: &Path, stem: &str) -> Self {
        Self {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    /// Makes sure both files exist: keeps them (or, with `renew`, reissues the certificate for
    /// the same key), completes a key left alone, or creates both. A certificate whose key is
    /// missing is an error: a new key would silently make it a different identity.
    pub fn ensure(
        &self,
        renew: bool,
        issue: impl FnOnce(&KeyPair) -> anyhow::Result<Certificate>,
    ) -> anyhow::Result<Outcome> {
        let (has_cert, has_key) = (self.cert.exists(), self.key.exists());
        if has_cert && !has_key {
            anyhow::bail!(
                "{} exists without its key {}: remove the certificate to issue a new pair",
                self.cert.display(),
                self.key.display()
            );
        }
        if has_cert && !renew {
            return Ok(Outcome::Kept);
        }
        let (key, outcome) = if has_key {
            let outcome = if has_cert {
                Outcome::Renewed
            } else {
                Outcome::Completed
            };
            (self.read_key()?, outcome)
        } else {
            let key = KeyPair::generate().context("cannot generate a key")?;
            write_key(&self.key, &key)?;
            (key, Outcome::Created)
        };
        let cert = issue(&key)?;
        write_cert(&self.cert, &cert)?;
        Ok(outcome)
    }

    /// The key, which must not be readable by others.
    pub fn read_key(&self) -> anyhow::Result<KeyPair> {
        let path = &self.key;
        let mode = fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is readable by others (mode {:o}): chmod 600 it first",
                path.display(),
                mode & 0o777
            );
        }
        let pem =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        KeyPair::from_pem(&pem).with_context(|| format!("{} holds no PKCS#8 key", path.display()))
    }
}

fn write_key(path: &Path, key: &KeyPair) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(key.serialize_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn write_cert(path: &Path, cert: &Certificate) -> anyhow::Result<()> {
    write_public(path, cert.pem().as_bytes())
}

/// Writes a public file (a certificate, mode 0644) atomically: a temporary file renamed over it.
pub fn write_public(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("pem.new");
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, path));
    written.with_context(|| format!("cannot write {}", path.display()))
}
