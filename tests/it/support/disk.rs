//! A full disk made and taken away for the storage tests, through the servers' hidden
//! `--test-storage-pages-file` (see `township_store::full`), and the refusal it must give.

use std::{path::PathBuf, time::Duration};

use tempfile::TempDir;
use tonic::{Code, Status};

use crate::support::status::retry_delay;

/// The most writes a test makes to fill the disk (each adds at least one row).
pub const MOST_WRITES: usize = 5_000;

/// The "disk" of one server: the file its hidden flag names.
pub struct Disk {
    _dir: TempDir,
    limit_file: PathBuf,
}

impl Disk {
    /// A disk with room, until [`Disk::fill`].
    pub fn with_room() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let limit_file = dir.path().join("pages");
        Self {
            _dir: dir,
            limit_file,
        }
    }

    /// The server flag that puts the server's databases on this disk.
    pub fn flag(&self) -> [&str; 2] {
        let file = self.limit_file.to_str().expect("a UTF-8 temp path");
        ["--test-storage-pages-file", file]
    }

    /// Fills the disk: no page more may be added to the database.
    pub fn fill(&self) {
        // SQLite keeps the limit at the file's size: nothing more fits beyond the pages it has.
        std::fs::write(&self.limit_file, "1").unwrap();
    }

    /// Gives the space back.
    pub fn make_room(&self) {
        std::fs::remove_file(&self.limit_file).unwrap();
    }
}

/// Asserts that `status` is the refusal of a full disk.
#[track_caller]
pub fn assert_storage_full(status: &Status, service: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("the {service}'s storage is full")),
        "{status:?}"
    );
    assert_eq!(retry_delay(status), Duration::from_secs(5));
}

/// Calls `write` with 0, 1, 2, ... until it is refused (within [`MOST_WRITES`]): how many were
/// acknowledged, and the refusal.
pub async fn until_refused<T>(
    mut write: impl AsyncFnMut(usize) -> Result<T, Status>,
) -> (i64, Status) {
    for i in 0..MOST_WRITES {
        if let Err(status) = write(i).await {
            return (i as i64, status);
        }
    }
    panic!("{MOST_WRITES} writes all fitted on a full disk");
}
