//! Patient keys on this machine: the doctor returns a patient's key once, at their first
//! session, and wants it at every later one. The CLI keeps each in its own file,
//! `$TOWNSHIP_CONFIG_DIR/doctor/<patient>.key` (default `~/.config/township`), mode 0600 in a
//! 0700 directory, and sends it itself, so a person at their own terminal is welcomed back as
//! before. The file name comes from the name folded as the doctor folds it (case, spacing), with
//! anything but letters, digits, `-` and `_` percent-encoded, so a name never reaches a path.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::PathBuf,
};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::error::CliError;

/// Longest file name kept readable; longer ones become a hash of the name.
const MAX_READABLE: usize = 200;

/// The directory of patient keys.
pub(super) struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// `$TOWNSHIP_CONFIG_DIR/doctor`, else `$HOME/.config/township/doctor` (not created yet).
    pub(super) fn new() -> Result<Self, CliError> {
        let base = match std::env::var_os("TOWNSHIP_CONFIG_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => {
                let home = std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        CliError::Usage(
                            "doctor: set TOWNSHIP_CONFIG_DIR or HOME: patient keys are kept there"
                                .into(),
                        )
                    })?;
                PathBuf::from(home).join(".config/township")
            }
        };
        Ok(Self {
            dir: base.join("doctor"),
        })
    }

    /// Where the key of `name` is kept.
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.key", file_stem(name)))
    }

    /// The key of `name`, if this machine has it.
    pub(super) fn get(&self, name: &str) -> Result<Option<String>, CliError> {
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(CliError::Local(
                anyhow::Error::new(err).context(format!("cannot read {}", path.display())),
            )),
        }
    }

    /// Keeps `key` as the key of `name` (replacing any), readable by this user only.
    pub(super) fn put(&self, name: &str, key: &str) -> Result<PathBuf, CliError> {
        let path = self.path(name);
        let write = || -> anyhow::Result<()> {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .with_context(|| format!("cannot create {}", self.dir.display()))?;
            let partial = path.with_extension("key.partial");
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            writeln!(file, "{key}")?;
            file.sync_all()?;
            fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))
        };
        write().map_err(CliError::Local)?;
        Ok(path)
    }
}

/// The file name of `name`'s key, without `.key`.
fn file_stem(name: &str) -> String {
    let folded = name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let mut stem = String::new();
    for c in folded.chars() {
        if c.is_alphanumeric() || c == '-' || c == '_' {
            stem.push(c);
        } else {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                stem.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    if stem.len() <= MAX_READABLE {
        return stem;
    }
    Sha256::digest(folded.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_never_reaches_a_path_and_case_and_spacing_do_not_matter() {
        assert_eq!(file_stem("  Ada   LOVELACE "), "ada%20lovelace");
        assert_eq!(
            file_stem("../../etc/passwd"),
            "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"
        );
        assert_eq!(file_stem("Σωκράτης"), file_stem("ΣΩΚΡΆΤΗΣ"));
        let long = "€".repeat(100);
        let stem = file_stem(&long);
        assert_eq!(stem.len(), 64, "{stem}");
        assert!(stem.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn keys_are_kept_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore {
            dir: dir.path().join("doctor"),
        };
        assert_eq!(store.get("Ada").unwrap(), None);
        let path = store.put("Ada", "k1").unwrap();
        store.put("ADA", "k2").unwrap();
        assert_eq!(store.get(" ada ").unwrap().as_deref(), Some("k2"));
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&store.dir), 0o700);
    }
}
