//! One server per data directory: an advisory lock on `<data dir>/server.lock`, held for the
//! server's life, so that a second server started on the same directory by mistake (two chat
//! servers would hand out the same sequence numbers; two lock servers would grant the same lock)
//! refuses to start with one line naming the holder's PID, instead of corrupting what the first
//! one keeps.
//!
//! The lock is `flock(2)`: the kernel drops it when the holder exits, however it exits (even
//! `kill -9`), so a crash never leaves a stale lock behind, unlike a PID file alone. The file
//! also holds the exclusive holder's PID, for the message; it is never deleted.

use std::{
    fs::{File, TryLockError},
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

use crate::config::InUse;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "server.lock";

/// A data directory held by this process until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes `dir` (created if missing) for this process alone, writing its PID into the lock
    /// file. Fails with [`InUse`] (exit 75), naming the holder's PID, while another process holds
    /// it in either mode.
    pub async fn exclusive(dir: &Path) -> anyhow::Result<Self> {
        Self::take(dir, Mode::Exclusive).await
    }

    /// Takes `dir` (created if missing) together with any other process that takes it shared:
    /// for servers designed to share one directory (bank replicas on one SQLite file). Fails with
    /// [`InUse`] while a process holds it exclusively.
    pub async fn shared(dir: &Path) -> anyhow::Result<Self> {
        Self::take(dir, Mode::Shared).await
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn take(dir: &Path, mode: Mode) -> anyhow::Result<Self> {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || take_blocking(&dir, mode))
            .await
            .context("the data directory lock's thread")?
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Exclusive,
    Shared,
}

fn take_blocking(dir: &Path, mode: Mode) -> anyhow::Result<DataDirLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let taken = match mode {
        Mode::Exclusive => file.try_lock(),
        Mode::Shared => file.try_lock_shared(),
    };
    match taken {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(in_use(dir, &mut file).into()),
        Err(TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    if mode == Mode::Exclusive {
        write_pid(&mut file).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(DataDirLock { _file: file, path })
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())
}

/// The refusal, naming the exclusive holder's PID when the file has it. A holder that has just
/// taken the lock may not have written it yet, hence the short wait; shared holders write none.
fn in_use(dir: &Path, file: &mut File) -> InUse {
    let mut holder = None;
    for _ in 0..10 {
        holder = read_pid(file);
        if holder.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let who = match holder {
        Some(pid) => format!("another server (PID {pid})"),
        None => "other servers sharing it".to_owned(),
    };
    InUse(format!(
        "the data directory {} is in use by {who}: stop it, or give this one another --data-dir",
        dir.display()
    ))
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // flock locks belong to the open file, so two opens in one process conflict as two processes
    // would: these tests need no second process.

    #[tokio::test]
    async fn a_second_exclusive_holder_is_refused_naming_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::exclusive(dir.path()).await.unwrap();
        let err = DataDirLock::exclusive(dir.path()).await.unwrap_err();
        let in_use = err.downcast_ref::<InUse>().expect("an InUse refusal");
        assert!(
            in_use.0.contains(&format!("PID {}", std::process::id())),
            "{in_use}"
        );
        assert!(in_use.0.contains(&dir.path().display().to_string()));
        drop(first);
        DataDirLock::exclusive(dir.path())
            .await
            .expect("free again once the first holder is gone");
    }

    #[tokio::test]
    async fn shared_holders_coexist_and_keep_an_exclusive_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let one = DataDirLock::shared(dir.path()).await.unwrap();
        let two = DataDirLock::shared(dir.path()).await.unwrap();
        let err = DataDirLock::exclusive(dir.path()).await.unwrap_err();
        assert!(err.is::<InUse>(), "{err:#}");
        drop((one, two));
        let alone = DataDirLock::exclusive(dir.path()).await.unwrap();
        let err = DataDirLock::shared(dir.path()).await.unwrap_err();
        assert!(err.is::<InUse>(), "{err:#}");
        assert_eq!(
            std::fs::read_to_string(alone.path()).unwrap().trim(),
            std::process::id().to_string()
        );
    }

    #[tokio::test]
    async fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let lock = DataDirLock::exclusive(&nested).await.unwrap();
        assert_eq!(lock.path(), nested.join(LOCK_FILE));
    }
}
