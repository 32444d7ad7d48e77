//! PostgreSQL as a reference: a throwaway cluster from Debian's package. `initdb` makes it in a
//! fresh temporary directory (trust authentication, UTF8, the C locale) and the postmaster runs as
//! our direct child on a free loopback port, its Unix socket in the same directory. Durability is
//! PostgreSQL's default: `fsync` and `synchronous_commit` on.
//!
//! PostgreSQL refuses to run as root, so as root both `initdb` and `postgres` run as the
//! `postgres` user (which the package creates) through `setpriv`, which execs: the child's PID is
//! still the postmaster's. The temporary directory must then be reachable by that user, which the
//! usual temporary directory (/tmp) is.

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};

use crate::{
    account,
    process::{self, Process, Shutdown},
};

/// The Debian package that installs PostgreSQL (`apt-get install postgresql`).
pub const POSTGRES_PACKAGE: &str = "postgresql";

/// Where Debian installs each PostgreSQL major version, as `<version>/bin`.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The account the server runs as when we are root.
const SERVICE_USER: &str = "postgres";

/// The host it listens on.
const HOST: &str = "127.0.0.1";

/// How long `initdb` may take (it fsyncs the new cluster).
const INITDB_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the postmaster may take to accept connections after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fast shutdown (SIGINT) may take before the postmaster is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How long an immediate shutdown (SIGQUIT, on drop) may take before the postmaster is killed.
const DROP_GRACE: Duration = Duration::from_secs(5);

/// The bound on each `pg_isready` probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The installed PostgreSQL's version, e.g. "15.18", from `postgres --version` in the directory
/// [`Postgres::start`] would use; `None` when none is installed (install [`POSTGRES_PACKAGE`]).
pub fn postgres_version() -> anyhow::Result<Option<String>> {
    let Some(bin) = find_bin_dir() else {
        return Ok(None);
    };
    let Some(text) = process::version_output(&bin.join("postgres"))? else {
        return Ok(None);
    };
    let version = text
        .split_once("(PostgreSQL)")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned)
        .with_context(|| format!("unexpected `postgres --version` output {text:?}"))?;
    Ok(Some(version))
}

/// A running throwaway PostgreSQL. [`Postgres::stop`] ends it with a fast shutdown; dropping it
/// instead asks for an immediate shutdown (SIGQUIT, at most 5 s, then SIGKILL), which, unlike a
/// bare SIGKILL, makes the postmaster end its backends before it exits. Either way its
/// temporary directory is removed after the postmaster is gone.
pub struct Postgres {
    /// The postmaster; declared before `dir` so that a drop ends it before removing its data.
    process: Process,
    /// The directory holding the installation's programs (`postgres`, `psql`, ...).
    bin: PathBuf,
    /// The port it listens on, on 127.0.0.1.
    port: u16,
    /// The superuser `initdb` made.
    user: String,
    /// The server settings it was started with (`-c`), to start it again alike.
    settings: Vec<String>,
    /// Holds the cluster (`data/`), the logs (`initdb.log`, `postgres.log`) and the Unix socket.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Finds the newest `/usr/lib/postgresql/<N>/bin` (or else `initdb` and `postgres` together
    /// on `PATH`), runs `initdb` into a fresh temporary directory (trust authentication, UTF8,
    /// the C locale) and starts the postmaster there directly as our child on a free loopback
    /// port (`listen_addresses=127.0.0.1`, the Unix socket in the same directory), with `fsync`
    /// and `synchronous_commit` left on. As root, both run as the `postgres` user via `setpriv`
    /// and the directory is given to that user. Waits (at most 30 s) until
    /// `pg_isready -h 127.0.0.1 -p PORT` succeeds.
    ///
    /// Fails if PostgreSQL is not installed (naming [`POSTGRES_PACKAGE`]), if `initdb` fails
    /// (quoting its output), or if the postmaster exits while starting or does not accept
    /// connections in time (quoting its log).
    pub fn start() -> anyhow::Result<Postgres> {
        Postgres::start_with(&Setup::default())
    }

    /// [`Postgres::start`], set up as `setup` asks: serving TLS with a given certificate, and
    /// asking every user but the superuser for a password.
    pub fn start_with(setup: &Setup) -> anyhow::Result<Postgres> {
        let Some(bin) = find_bin_dir() else {
            bail!("PostgreSQL is not installed (apt-get install {POSTGRES_PACKAGE})");
        };
        let dir = tempfile::Builder::new()
            .prefix("township-postgres-")
            .tempdir()
            .context("cannot create a temporary directory for PostgreSQL")?;
        let user = if account::is_root() {
            let service = account::by_name(SERVICE_USER)?.with_context(|| {
                format!(
                    "there is no `{SERVICE_USER}` user to run PostgreSQL as (apt-get install \
                     {POSTGRES_PACKAGE} creates it)"
                )
            })?;
            std::os::unix::fs::chown(dir.path(), Some(service.uid), Some(service.gid))
                .with_context(|| {
                    format!("cannot give {} to {SERVICE_USER}", dir.path().display())
                })?;
            service.name
        } else {
            account::current()?
                .context("the current user has no account entry, which initdb needs")?
                .name
        };
        let data = dir.path().join("data");
        initdb(&bin, &data, &user, dir.path())?;
        let settings = setup.apply(&data, &user)?;
        let port = process::free_port()?;
        let process = spawn_postmaster(&bin, &data, port, &settings, dir.path(), &user)?;
        Ok(Postgres {
            process,
            bin,
            port,
            user,
            settings,
            dir,
        })
    }

    /// What `pg_ctl restart -m immediate` does, by the PID: [`Postgres::crash`], then
    /// [`Postgres::start_again`]. Every committed transaction is there after it; its PID is new.
    pub fn restart_immediately(&mut self) -> anyhow::Result<()> {
        self.crash()?;
        self.start_again()
    }

    /// What `pg_ctl stop -m immediate` does, by the PID: SIGQUIT to the postmaster (an immediate
    /// shutdown, like a crash: no checkpoint, every backend ended at once, every client's
    /// connection cut). Nothing listens on its port until [`Postgres::start_again`].
    pub fn crash(&mut self) -> anyhow::Result<()> {
        self.process.end(Shutdown {
            signal: libc::SIGQUIT,
            grace: STOP_GRACE,
        })
    }

    /// After [`Postgres::crash`]: a new postmaster on the same cluster and port, which recovers
    /// from the WAL before it takes connections (waited for, at most 30 s).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let data = self.dir.path().join("data");
        self.process = spawn_postmaster(
            &self.bin,
            &data,
            self.port,
            &self.settings,
            self.dir.path(),
            &self.user,
        )?;
        Ok(())
    }

    /// The host it listens on, "127.0.0.1".
    pub fn host(&self) -> &str {
        HOST
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser `initdb` made: "postgres" when we run as root, else the current user. It
    /// logs in without a password (trust authentication).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// "postgres://USER@127.0.0.1:PORT/postgres", for PostgreSQL clients.
    pub fn url(&self) -> String {
        format!("postgres://{}@{HOST}:{}/postgres", self.user, self.port)
    }

    /// A program of the same PostgreSQL installation, e.g. `pgbench`, `psql`, `pg_isready` or
    /// `createdb` (the path is not checked).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// The postmaster's PID (our direct child).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its temporary directory: the cluster `data/`, the logs `initdb.log` and `postgres.log`,
    /// and the Unix socket. Removed by [`Postgres::stop`] or the drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file, for a caller that wants to explain a failure of its own.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Sends SIGINT (a fast shutdown: sessions are ended, a checkpoint is written) to the
    /// postmaster's PID, waits at most 30 s for it to exit (then SIGKILL; its backends notice
    /// the postmaster's death and exit on their own), reaps it and removes its directory. Fails
    /// if it had already exited on its own (quoting its log) or the directory cannot be removed;
    /// the postmaster is gone either way.
    pub fn stop(self) -> anyhow::Result<()> {
        let Postgres { process, dir, .. } = self;
        let stopped = process.stop(Shutdown {
            signal: libc::SIGINT,
            grace: STOP_GRACE,
        });
        let path = dir.path().to_owned();
        let removed = dir
            .close()
            .with_context(|| format!("cannot remove PostgreSQL's directory {}", path.display()));
        stopped.and(removed)
    }
}

/// Starts the postmaster on the cluster `data` (in `dir`, which holds its log and socket) on
/// `port` with `settings`, and waits until it accepts connections as `user`.
fn spawn_postmaster(
    bin: &Path,
    data: &Path,
    port: u16,
    settings: &[String],
    dir: &Path,
    user: &str,
) -> anyhow::Result<Process> {
    let mut process = Process::spawn(
        "postgres",
        as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(data)
            .args(["-p", &port.to_string()])
            .args(["-c", &format!("listen_addresses={HOST}")])
            .args(settings.iter().flat_map(|setting| ["-c", setting]))
            .arg("-k")
            .arg(dir)
            .current_dir(dir),
        dir.join("postgres.log"),
        Shutdown {
            signal: libc::SIGQUIT,
            grace: DROP_GRACE,
        },
    )?;
    let pg_isready = bin.join("pg_isready");
    process.wait_ready(START_TIMEOUT, || is_ready(&pg_isready, port, user))?;
    Ok(process)
}

/// How [`Postgres::start_with`] sets a cluster up beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Serve TLS (`ssl=on`) with this certificate chain and private key, both PEM. Clients that
    /// do not ask for TLS are still served in plaintext.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Over TCP, users other than the superuser log in with a password (scram-sha-256); the
    /// superuser needs none.
    pub passwords: bool,
    /// The server's `max_connections`, if not PostgreSQL's 100 (a cluster that many tests share
    /// at once, each with servers holding pools, needs more).
    pub max_connections: Option<u32>,
}

impl Setup {
    /// Writes what `self` needs into the new cluster `data` (owned by the server's `user`):
    /// `pg_hba.conf`, and the TLS files readable by the server's user only. Returns the
    /// server settings to pass with `-c`.
    fn apply(&self, data: &Path, user: &str) -> anyhow::Result<Vec<String>> {
        let mut settings = Vec::new();
        if let Some(max) = self.max_connections {
            settings.push(format!("max_connections={max}"));
        }
        let others = if self.passwords {
            "scram-sha-256"
        } else {
            "trust"
        };
        let hba = format!(
            "local all all trust\n\
             host all {user} {HOST}/32 trust\n\
             host all all {HOST}/32 {others}\n"
        );
        write_as_server(data, "pg_hba.conf", hba.as_bytes())?;
        if let Some((cert, key)) = &self.tls {
            write_as_server(data, "server.crt", cert)?;
            write_as_server(data, "server.key", key)?;
            settings.extend([
                "ssl=on".to_owned(),
                "ssl_cert_file=server.crt".to_owned(),
                "ssl_key_file=server.key".to_owned(),
            ]);
        }
        Ok(settings)
    }
}

/// Writes `name` in `data` with mode 0600, owned (as root) by the server's account, which
/// PostgreSQL requires of its private key.
fn write_as_server(data: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = data.join(name);
    fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    if account::is_root() {
        let service = account::by_name(SERVICE_USER)?
            .with_context(|| format!("there is no `{SERVICE_USER}` user"))?;
        std::os::unix::fs::chown(&path, Some(service.uid), Some(service.gid))
            .with_context(|| format!("cannot give {} to {SERVICE_USER}", path.display()))?;
    }
    Ok(())
}

/// Runs `initdb` for a new cluster in `data` whose superuser is `user`, keeping its output in
/// `initdb.log` in `dir`.
fn initdb(bin: &Path, data: &Path, user: &str, dir: &Path) -> anyhow::Result<()> {
    let output = process::run_within(
        as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(data)
            .args(["-U", user])
            .args(["-A", "trust"])
            .args(["-E", "UTF8", "--locale=C"])
            // No fsync of the new cluster's files: a throwaway cluster need not survive a power
            // loss before its first checkpoint (the server itself keeps fsync on).
            .arg("--no-sync")
            .current_dir(dir),
        INITDB_TIMEOUT,
    )
    .context("cannot run initdb")?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let log = dir.join("initdb.log");
    fs::write(&log, &text).with_context(|| format!("cannot write {}", log.display()))?;
    if !output.status.success() {
        bail!(
            "initdb failed with {}; {}",
            output.status,
            process::tail_of("its last lines", &text)
        );
    }
    Ok(())
}

/// A command that runs `program` as the server's user: through `setpriv` as the `postgres` user
/// when we are root (setpriv execs, so the PID stays the program's), else directly.
fn as_server_user(program: &Path) -> Command {
    if account::is_root() {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={SERVICE_USER}"))
            .arg(format!("--regid={SERVICE_USER}"))
            .args(["--init-groups", "--"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Whether the server on `port` accepts connections, by `pg_isready` (bounded by its own `-t` and
/// by [`PROBE_TIMEOUT`]).
fn is_ready(pg_isready: &Path, port: u16, user: &str) -> bool {
    process::run_within(
        Command::new(pg_isready)
            .args(["-h", HOST, "-p", &port.to_string()])
            .args(["-U", user, "-d", "postgres", "-t", "2"]),
        PROBE_TIMEOUT,
    )
    .is_ok_and(|output| output.status.success())
}

/// The newest `/usr/lib/postgresql/<N>/bin` holding both `postgres` and `initdb`, or else the
/// first `PATH` directory holding both.
fn find_bin_dir() -> Option<PathBuf> {
    let has_server = |bin: &Path| bin.join("postgres").is_file() && bin.join("initdb").is_file();
    let debian = fs::read_dir(DEBIAN_ROOT).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let version = major_version(&entry.file_name())?;
                let bin = entry.path().join("bin");
                has_server(&bin).then_some((version, bin))
            })
            .max()
            .map(|(_, bin)| bin)
    });
    debian.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).find(|dir| has_server(dir))
    })
}

/// "15" or "9.6" as numbers that order like versions; `None` for other names.
fn major_version(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?
        .split('.')
        .map(|part| part.parse().ok())
        .collect()
}
