//! The system under test: bank replicas on one store (SQLite: one shared data directory;
//! PostgreSQL: a data directory each and one database on a cluster of the test's own, which the
//! chaos may restart), and the lock-server.

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

/// The servers, their fixed addresses, their directories and their certificates (kept alive for
/// the whole test). Every server serves mutual TLS: the lock-server and each replica require a
/// client certificate from the cluster's CA, the replicas reach the lock-server with the bank's
/// own certificate (their `--lock-*` flags default to their server TLS settings), and the clients
/// show [`CLIENT`]'s. The lock-server's resource ACL ([`LOCK_ACL`]) lets only the bank lock.
pub struct Cluster {
    pub certs: Certs,
    pub lock_dir: TempDir,
    /// Each replica's state: on SQLite one shared data directory (the same `Storage` for all),
    /// on PostgreSQL one data directory each on one database.
    pub storage: Vec<Storage>,
    /// The PostgreSQL cluster, on PostgreSQL: the test's own, so that it may be restarted.
    pub database: Option<Arc<storage::Cluster>>,
    pub lock_addr: String,
    pub replicas: Vec<Replica>,
}

impl Cluster {
    /// A fresh CA with every service's certificate and [`CLIENT`]'s, a lock directory holding
    /// [`LOCK_ACL`], the replicas' state on `backend` and fixed loopback addresses for
    /// `replicas` replicas; nothing started yet.
    pub async fn new(backend: Backend, replicas: usize) -> Self {
        let certs = Certs::init(&[CLIENT]).await;
        let lock_dir = tempfile::tempdir().unwrap();
        std::fs::write(lock_dir.path().join(ACL_FILE), LOCK_ACL).unwrap();
        let (storage, database) = match backend {
            Backend::Sqlite => (vec![Storage::new(backend).await], None),
            Backend::Postgres => {
                let database = storage::Cluster::start_with(Default::default()).await;
                let first = Storage::on(&database).await;
                let mut storage: Vec<Storage> = (1..replicas).map(|_| first.replica()).collect();
                storage.insert(0, first);
                (storage, Some(database))
            }
        };
        Self {
            certs,
            lock_dir,
            storage,
            database,
            lock_addr: fixed_address(),
            replicas: (0..replicas)
                .map(|i| Replica {
                    name: replica_name(i),
                    addr: fixed_address(),
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    /// The staff token, made by the first replica to start (in the first one's data directory;
    /// every replica is given that file).
    pub fn admin_token(&self) -> String {
        admin_token(self.storage[0].path())
    }

    /// The lock-server, on its fixed address and directory, with its ACL, serving mutual TLS.
    pub async fn lock_server(&self) -> ServiceProcess {
        let acl = self.lock_dir.path().join(ACL_FILE);
        let args = [
            "--data-dir",
            utf8(self.lock_dir.path()),
            "--resource-acl",
            utf8(&acl),
        ];
        self.start("lock", "the lock-server", &self.lock_addr, &args, "bank")
            .await
    }

    /// Bank replica `replica`, on its fixed address and its state, serving mutual TLS and
    /// reaching the lock-server over mutual TLS as the bank.
    pub async fn bank_server(&self, replica: usize) -> ServiceProcess {
        let storage = &self.storage[replica % self.storage.len()];
        let token_file = self.storage[0].path().join("admin-token");
        let mut args: Vec<String> = storage.flags();
        args.extend(["--lock-addr".to_owned(), self.lock_addr.clone()]);
        args.extend([
            "--admin-token-file".to_owned(),
            utf8(&token_file).to_owned(),
        ]);
        args.extend(REPLICA_FLAGS.iter().map(|flag| flag.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let addr = &self.replicas[replica].addr;
        self.start("bank", replica_name(replica), addr, &args, CLIENT)
            .await
    }

    /// Restarts PostgreSQL as `pg_ctl restart -m immediate` does (on PostgreSQL only).
    pub async fn restart_database(&self) {
        let database = self
            .database
            .as_ref()
            .expect("the replicas are on PostgreSQL");
        database.restart_immediately().await;
    }

    /// `<service>-server` with `args` and `service`'s mutual TLS flags on the fixed address
    /// `listen`, probed for SERVING with `probe_as`'s certificate (a few tries: a test that
    /// restarts servers many times should not fail on one slow start).
    async fn start(
        &self,
        service: &str,
        name: &str,
        listen: &str,
        args: &[&str],
        probe_as: &str,
    ) -> ServiceProcess {
        let tls = self.certs.service_flags(service, true);
        let args: Vec<&str> = args
            .iter()
            .copied()
            .chain(tls.iter().map(String::as_str))
            .collect();
        let binary = format!("{service}-server");
        let mut last = None;
        for _ in 0..3 {
            let probe = self.certs.client(Some(probe_as));
            match spawn_tls_service_at(&binary, listen, &args, probe).await {
                Ok(process) => return process,
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("{name} does not start on {listen}: {last:?}")
    }

    /// A client of each replica (see [`Cluster::client`]).
    pub fn clients(&self) -> Vec<Rpc> {
        (0..self.replicas.len()).map(|i| self.client(i)).collect()
    }

    /// A client of bank replica `replica` over mutual TLS, showing [`CLIENT`]'s certificate; it
    /// connects when first used (and again after a restart), and gives each attempt
    /// [`ATTEMPT_TIMEOUT`].
    pub fn client(&self, replica: usize) -> Rpc {
        let addr = &self.replicas[replica].addr;
        tls_client(addr, ATTEMPT_TIMEOUT, self.certs.client(Some(CLIENT)))
    }
}

/// `path` as a command-line argument.
fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// An account of the workload.
pub struct Account {
    pub id: String,
    pub holder: usize,
    pub opening_cents: i64,
}
