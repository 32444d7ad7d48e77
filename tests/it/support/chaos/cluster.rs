//! The system under test: bank replicas on one store (SQLite: one shared data directory;
//! PostgreSQL: a data directory each and one database on a cluster of the test's own, which the
//! chaos may restart), and the lock service: one lock-server, or three elected on a three-member
//! etcd cluster.

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
    /// Holds [`LOCK_ACL`], which every lock-server is given.
    pub acl_dir: TempDir,
    /// Each lock-server's data directory (one, or three elected ones).
    pub lock_dirs: Vec<TempDir>,
    /// Each lock-server's fixed address.
    pub lock_addrs: Vec<String>,
    /// The etcd cluster the lock-servers are elected on, if they are.
    pub etcd: Option<EtcdCluster>,
    /// Each replica's state: on SQLite one shared data directory (the same `Storage` for all),
    /// on PostgreSQL one data directory each on one database.
    pub storage: Vec<Storage>,
    /// The PostgreSQL cluster, on PostgreSQL: the test's own, so that it may be restarted.
    pub database: Option<Arc<storage::Cluster>>,
    pub replicas: Vec<Replica>,
}

/// How the lock service runs in a chaos run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locks {
    /// One lock-server, its epoch in its data directory.
    Single,
    /// Three lock-servers elected on a three-member etcd cluster.
    Elected,
}

impl Cluster {
    /// A fresh CA with every service's certificate and [`CLIENT`]'s, [`LOCK_ACL`], the
    /// replicas' state on `backend`, fixed loopback addresses for `replicas` replicas and the
    /// lock-servers, and with [`Locks::Elected`] a running etcd cluster; no Township server
    /// started yet.
    pub async fn new(backend: Backend, replicas: usize, locks: Locks) -> Self {
        let certs = Certs::init(&[CLIENT]).await;
        let acl_dir = tempfile::tempdir().unwrap();
        std::fs::write(acl_dir.path().join(ACL_FILE), LOCK_ACL).unwrap();
        let lock_servers = match locks {
            Locks::Single => 1,
            Locks::Elected => 3,
        };
        let etcd = match locks {
            Locks::Single => None,
            Locks::Elected => Some(
                tokio::task::spawn_blocking(|| EtcdCluster::start(3))
                    .await
                    .unwrap()
                    .expect("a three-member etcd cluster starts"),
            ),
        };
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
            acl_dir,
            lock_dirs: (0..lock_servers)
                .map(|_| tempfile::tempdir().unwrap())
                .collect(),
            lock_addrs: (0..lock_servers).map(|_| fixed_address()).collect(),
            etcd,
            storage,
            database,
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

    /// Every lock-server.
    pub async fn lock_servers(&self) -> Vec<ServiceProcess> {
        let mut servers = Vec::new();
        for i in 0..self.lock_addrs.len() {
            servers.push(self.lock_server(i).await);
        }
        servers
    }

    /// Lock-server `i`, on its fixed address and directory, with the ACL, serving mutual TLS;
    /// elected on etcd when the cluster has one.
    pub async fn lock_server(&self, i: usize) -> ServiceProcess {
        let acl = self.acl_dir.path().join(ACL_FILE);
        let mut args: Vec<String> = ["--data-dir", utf8(self.lock_dirs[i].path())]
            .into_iter()
            .chain(["--resource-acl", utf8(&acl)])
            .map(str::to_owned)
            .collect();
        if let Some(etcd) = &self.etcd {
            args.extend(
                [
                    "--etcd-endpoints",
                    &etcd.endpoints().join(","),
                    "--advertise-addr",
                    &self.lock_addrs[i],
                    "--leader-lease",
                    "2s",
                ]
                .map(str::to_owned),
            );
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.start("lock", "a lock-server", &self.lock_addrs[i], &args, "bank")
            .await
    }

    /// The lock-server that leads (a single one always does): asked with the Leader RPC, as the
    /// bank, waiting up to 15 s for an election.
    pub async fn lock_leader(&self) -> usize {
        if self.etcd.is_none() {
            return 0;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            for (i, addr) in self.lock_addrs.iter().enumerate() {
                if self.leads(addr).await {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no lock leader within 15 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the lock-server at `addr` says it leads (bounded: it may be down or frozen).
    async fn leads(&self, addr: &str) -> bool {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(self.certs.client(Some("bank")))
            .unwrap()
            .connect_timeout(Duration::from_secs(1));
        let ask = async {
            let channel = endpoint.connect().await.ok()?;
            let mut rpc = LockServiceClient::new(channel);
            rpc.leader(LeaderRequest {}).await.ok()
        };
        tokio::time::timeout(Duration::from_secs(1), ask)
            .await
            .ok()
            .flatten()
            .is_some_and(|reply| reply.into_inner().serving)
    }

    /// Bank replica `replica`, on its fixed address and its state, serving mutual TLS and
    /// reaching the lock-server over mutual TLS as the bank.
    pub async fn bank_server(&self, replica: usize) -> ServiceProcess {
        let storage = &self.storage[replica % self.storage.len()];
        let token_file = self.storage[0].path().join("admin-token");
        let mut args: Vec<String> = storage.flags();
        args.extend(["--lock-addr".to_owned(), self.lock_addrs.join(",")]);
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
