//! The system under test: two bank replicas sharing a data directory, and the lock-server.

use super::*;

/// One bank-server replica's address, and how many client calls it has in flight right now.
pub struct Replica {
    pub name: &'static str,
    pub addr: String,
    pub in_flight: AtomicUsize,
}

/// Counts a call as in flight at a replica while alive.
pub struct InFlight<'a>(pub &'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts one call in flight until dropped.
    pub fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The servers, their fixed addresses and their directories (kept alive for the whole test).
pub struct Cluster {
    pub _lock_dir: TempDir,
    pub data_dir: TempDir,
    pub lock_dir_path: std::path::PathBuf,
    pub lock_addr: String,
    pub replicas: [Replica; 2],
}

impl Cluster {
    /// The lock-server, on its fixed address and directory (a few tries: a test that restarts
    /// servers many times should not fail on one slow start).
    pub async fn lock_server(&self) -> ServiceProcess {
        let mut last = None;
        for _ in 0..3 {
            match try_lock_server(&self.lock_dir_path, Some(&self.lock_addr)).await {
                Ok(process) => return process,
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "the lock-server does not start on {}: {last:?}",
            self.lock_addr
        )
    }

    /// Bank replica `replica`, on its fixed address and the shared data directory.
    pub async fn bank_server(&self, replica: usize) -> ServiceProcess {
        let addr = &self.replicas[replica].addr;
        let mut last = None;
        for _ in 0..3 {
            let data_dir = self.data_dir.path();
            match try_bank_server(data_dir, &self.lock_addr, Some(addr), REPLICA_FLAGS).await {
                Ok(process) => return process,
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "{} does not start on {addr}: {last:?}",
            replica_name(replica)
        )
    }
}

/// An account of the workload.
pub struct Account {
    pub id: String,
    pub holder: usize,
    pub opening_cents: i64,
}
