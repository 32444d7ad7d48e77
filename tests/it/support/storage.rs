//! Where a test's servers keep their state, on either backend: SQLite (a file in a fresh data
//! directory) or PostgreSQL (a fresh database on a throwaway cluster from Debian's package,
//! started by `township_references`, shared by the tests that run at the same time and stopped
//! by its PID when the last of them ends).
//!
//! A test body written once takes the [`Backend`] as a parameter; [`on_both_backends!`] makes a
//! test of it per backend, named `<body>::on_sqlite` and `<body>::on_postgres`.

use std::{
    path::Path,
    sync::{
        Arc, Weak,
        atomic::{AtomicU32, Ordering},
    },
};

use sqlx::Connection;
use tempfile::TempDir;
use township_references::{Postgres, PostgresSetup};

/// The database a test's servers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: a SQLite file in the server's data directory.
    Sqlite,
    /// `--database-url postgres://…`: a database of its own on a throwaway cluster.
    Postgres,
}

/// One test per backend for each listed body (an `async fn(Backend)`), as
/// `<body>::on_sqlite` and `<body>::on_postgres`, each on a multi-threaded runtime.
macro_rules! on_both_backends {
    ($($body:ident),+ $(,)?) => {
        $(
            mod $body {
                use crate::support::storage::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn on_sqlite() {
                    super::$body(Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn on_postgres() {
                    super::$body(Backend::Postgres).await
                }
            }
        )+
    };
}
pub(crate) use on_both_backends;

/// A running throwaway PostgreSQL cluster.
pub struct Cluster {
    /// Locked only to restart it.
    postgres: std::sync::Mutex<Postgres>,
    /// Its superuser, host and port (the same across restarts).
    user: String,
    host: String,
    port: u16,
    /// The number of the next database made on it.
    databases: AtomicU32,
}

/// The shared cluster's `max_connections`.
const MAX_CONNECTIONS: u32 = 400;

/// The cluster the tests running now share, while any of them holds it.
static SHARED: tokio::sync::Mutex<Weak<Cluster>> = tokio::sync::Mutex::const_new(Weak::new());

impl Cluster {
    /// The shared cluster, started if no test holds it now.
    pub async fn shared() -> Arc<Cluster> {
        let mut shared = SHARED.lock().await;
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        // Every test running now shares it, each with servers that hold pools of up to 10
        // connections (`--database-max-connections`): PostgreSQL's 100 would run out on a
        // machine that runs many tests at once.
        let cluster = Cluster::start_with(PostgresSetup {
            max_connections: Some(MAX_CONNECTIONS),
            ..PostgresSetup::default()
        })
        .await;
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// A cluster of the caller's own, set up as `setup` asks (for a test that restarts it, or
    /// needs TLS or passwords).
    pub async fn start_with(setup: PostgresSetup) -> Arc<Cluster> {
        let postgres = tokio::task::spawn_blocking(move || Postgres::start_with(&setup))
            .await
            .unwrap()
            .unwrap_or_else(|err| {
                panic!("a throwaway PostgreSQL starts (./scripts/test installs it): {err:#}")
            });
        Arc::new(Cluster {
            user: postgres.user().to_owned(),
            host: postgres.host().to_owned(),
            port: postgres.port(),
            postgres: std::sync::Mutex::new(postgres),
            databases: AtomicU32::new(0),
        })
    }

    /// The URL of a fresh, empty database on this cluster, for its superuser.
    pub async fn new_database(&self) -> String {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::SeqCst)
        );
        self.execute(&format!("CREATE DATABASE {name}")).await;
        self.url(&name)
    }

    /// The URL of database `name` on this cluster, for its superuser (no password).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{}@{}:{}/{name}",
            self.user, self.host, self.port
        )
    }

    /// The host and port it listens on.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Runs PostgreSQL's client `program` (`pg_dump`, `pg_restore`, ...) from the cluster's own
    /// installation with `args`, connecting as its superuser; it must succeed.
    pub async fn run_client(&self, program: &str, args: &[&str]) {
        let path = self.postgres.lock().unwrap().program(program);
        let shown = format!("{program} {args:?}");
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let (host, port, user) = (self.host.clone(), self.port.to_string(), self.user.clone());
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(&path)
                .args(&args)
                .env("PGHOST", host)
                .env("PGPORT", port)
                .env("PGUSER", user)
                .output()
        })
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
        assert!(
            output.status.success(),
            "{shown} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Restarts the cluster as `pg_ctl restart -m immediate` does (SIGQUIT, no shutdown
    /// checkpoint: a crash restart) on the same port, and returns once it takes connections.
    /// Only for a cluster of the test's own ([`Cluster::start_with`]).
    pub async fn restart_immediately(self: &Arc<Self>) {
        self.crash().await;
        self.start_again().await;
    }

    /// Stops the cluster as `pg_ctl stop -m immediate` does: nothing listens on its port until
    /// [`Cluster::start_again`]. Only for a cluster of the test's own.
    pub async fn crash(self: &Arc<Self>) {
        let cluster = Arc::clone(self);
        tokio::task::spawn_blocking(move || cluster.postgres.lock().unwrap().crash())
            .await
            .unwrap()
            .expect("PostgreSQL stops");
    }

    /// Starts the cluster again after [`Cluster::crash`], on the same port, and returns once it
    /// takes connections.
    pub async fn start_again(self: &Arc<Self>) {
        let cluster = Arc::clone(self);
        tokio::task::spawn_blocking(move || cluster.postgres.lock().unwrap().start_again())
            .await
            .unwrap()
            .expect("PostgreSQL starts again");
    }

    /// The one integer `sql` selects, in the `postgres` database as the superuser.
    pub async fn count(&self, sql: &str) -> i64 {
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("the test cluster takes connections");
        let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
        conn.close().await.ok();
        count
    }

    /// Runs `sql` (statements, no results) in the `postgres` database as the superuser.
    pub async fn execute(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("the test cluster takes connections");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
        conn.close().await.ok();
    }
}

/// A server's state: its data directory, and on PostgreSQL its database. Keep it as long as
/// the server.
pub struct Storage {
    dir: TempDir,
    database: Option<(Arc<Cluster>, String)>,
}

impl Storage {
    /// Fresh state on `backend`: an empty data directory, and on PostgreSQL a new database.
    pub async fn new(backend: Backend) -> Storage {
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let cluster = Cluster::shared().await;
                let url = cluster.new_database().await;
                Some((cluster, url))
            }
        };
        Storage {
            dir: tempfile::tempdir().unwrap(),
            database,
        }
    }

    /// Fresh state on `cluster` (a cluster of the test's own): an empty data directory and a new
    /// database.
    pub async fn on(cluster: &Arc<Cluster>) -> Storage {
        let url = cluster.new_database().await;
        Storage {
            dir: tempfile::tempdir().unwrap(),
            database: Some((Arc::clone(cluster), url)),
        }
    }

    /// The database's name, on PostgreSQL.
    pub fn database_name(&self) -> Option<&str> {
        self.database_url().and_then(|url| url.rsplit('/').next())
    }

    /// A fresh data directory on the database `url` of `cluster` (made by the test, e.g. a
    /// restored backup).
    pub fn in_database(cluster: &Arc<Cluster>, url: String) -> Storage {
        Storage {
            dir: tempfile::tempdir().unwrap(),
            database: Some((Arc::clone(cluster), url)),
        }
    }

    /// The cluster its database is on, on PostgreSQL.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.database.as_ref().map(|(cluster, _)| cluster)
    }

    /// A replica's state beside this one: its own data directory, the same database. Only
    /// PostgreSQL has replicas.
    pub fn replica(&self) -> Storage {
        assert!(
            self.database.is_some(),
            "replicas share a PostgreSQL database"
        );
        Storage {
            dir: tempfile::tempdir().unwrap(),
            database: self.database.clone(),
        }
    }

    /// The server's data directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The database's URL, on PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|(_, url)| url.as_str())
    }

    /// The one integer `sql` selects in the server's database: on SQLite `<data dir>/<file>`,
    /// opened read-only beside the running server.
    pub async fn count(&self, file: &str, sql: &str) -> i64 {
        let text = sql;
        let sql = || sqlx::AssertSqlSafe(text.to_owned());
        let count = match self.database_url() {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url)
                    .await
                    .expect("the test cluster takes connections");
                let count = sqlx::query_scalar(sql()).fetch_one(&mut conn).await;
                conn.close().await.ok();
                count
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.path().join(file))
                    .read_only(true);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .expect("open the server's database");
                sqlx::query_scalar(sql()).fetch_one(&mut conn).await
            }
        };
        count.unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    /// The flags that point a server at this state: `--data-dir`, and `--database-url` on
    /// PostgreSQL.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--data-dir".to_owned(),
            self.path().to_str().expect("a UTF-8 temp path").to_owned(),
        ];
        if let Some(url) = self.database_url() {
            flags.extend(["--database-url".to_owned(), url.to_owned()]);
        }
        flags
    }
}
