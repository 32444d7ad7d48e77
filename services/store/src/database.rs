//! Which database a service keeps its state in: `--database-url` and
//! `--database-password-file`, read once into a [`Database`] that never shows a password.
//!
//! - `sqlite://PATH` (or none: `<data-dir>/<service>.db`): an embedded file, as in the quick start.
//! - `postgres://USER@HOST:PORT/NAME?sslmode=…` (PostgreSQL 13 or newer): the state of several
//!   replicas on several machines. sslmode is honoured (`disable`, `prefer`, `require`,
//!   `verify-ca`, `verify-full`, with `sslrootcert=CA.pem`; sqlx on rustls with ring).
//!
//! The password comes from `--database-password-file` (a file holding it, one trailing newline
//! ignored) rather than from the URL, so that it appears neither on a command line (`ps`) nor in
//! the environment. A URL that carries a password still works, but is never echoed: errors,
//! logs, `--help` and `Debug` show the URL without it.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use township_kit::config::BadConfig;

/// Flags of every server that keeps state in a database. Flatten it into the server's
/// `clap::Parser` beside `ServerArgs`.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Where the state lives: `sqlite://PATH` (a file), or `postgres://USER@HOST:PORT/DBNAME`
    /// with optional `?sslmode=verify-full&sslrootcert=CA.pem` (PostgreSQL 13 or newer).
    /// Default: a SQLite file in --data-dir.
    #[arg(
        long,
        env = "TOWNSHIP_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<DatabaseUrl>,

    /// A file holding the database password (one trailing newline ignored), so that it is
    /// neither on the command line nor in the environment. PostgreSQL only.
    #[arg(long, env = "TOWNSHIP_DATABASE_PASSWORD_FILE", value_name = "FILE")]
    pub database_password_file: Option<PathBuf>,

    /// Most connections this process opens to PostgreSQL (each replica has its own pool: keep
    /// replicas × this below the server's max_connections, 100 by default).
    #[arg(long, env = "TOWNSHIP_DATABASE_MAX_CONNECTIONS", value_name = "N",
          default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub database_max_connections: u32,
}

/// The default of `--database-max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

impl DatabaseArgs {
    /// The database these flags name, `<data_dir>/<file>` when no URL is given. Reads the
    /// password file. A bad combination is a [`BadConfig`] (exit 64): a password file for a
    /// SQLite URL, or a password both in the URL and in a file.
    pub fn database(&self, data_dir: &Path, file: &str) -> anyhow::Result<Database> {
        let url = self.database_url.clone();
        match url {
            None | Some(DatabaseUrl::Sqlite(_)) if self.database_password_file.is_some() => Err(
                BadConfig("--database-password-file is for a postgres:// --database-url".into()),
            )?,
            None => Ok(Database::Sqlite {
                dir: data_dir.to_owned(),
                file: file.to_owned(),
            }),
            Some(DatabaseUrl::Sqlite(path)) => {
                let name = path.file_name().and_then(|name| name.to_str());
                let Some(name) = name else {
                    Err(BadConfig(format!(
                        "--database-url sqlite://{} names no file",
                        path.display()
                    )))?
                };
                let dir = path.parent().unwrap_or(Path::new("."));
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                Ok(Database::Sqlite {
                    dir: dir.to_owned(),
                    file: name.to_owned(),
                })
            }
            Some(DatabaseUrl::Postgres(postgres)) => {
                let mut options = postgres.options;
                if let Some(file) = &self.database_password_file {
                    if postgres.has_password {
                        Err(BadConfig(
                            "the --database-url has a password and --database-password-file \
                             gives another: give it once, in the file"
                                .into(),
                        ))?
                    }
                    options = options.password(&read_password(file)?);
                }
                Ok(Database::Postgres(Box::new(Postgres {
                    options,
                    shown: postgres.shown,
                    max_connections: self.database_max_connections,
                })))
            }
        }
    }
}

/// Reads a password file: its text without one trailing newline; empty is refused.
fn read_password(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).map_err(|err| {
        BadConfig(format!(
            "cannot read --database-password-file {}: {err}",
            file.display()
        ))
    })?;
    let password = text.strip_suffix('\n').map_or(text.as_str(), |line| {
        line.strip_suffix('\r').unwrap_or(line)
    });
    if password.is_empty() {
        Err(BadConfig(format!(
            "--database-password-file {} is empty",
            file.display()
        )))?
    }
    Ok(password.to_owned())
}

/// A `--database-url` as given: a SQLite path or PostgreSQL connect options. Its `Debug` and
/// `Display` never show a password.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` or `sqlite:PATH`.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`.
    Postgres(Box<PostgresUrl>),
}

/// A parsed `postgres://` URL.
#[derive(Clone)]
pub struct PostgresUrl {
    options: PgConnectOptions,
    /// Whether the URL itself carried a password.
    has_password: bool,
    /// The URL as shown: without its password or query.
    shown: String,
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(path) = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
        {
            if path.is_empty() || path.contains('?') {
                return Err("a sqlite URL is sqlite://PATH, a file, with no options".into());
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err("expected sqlite://PATH or postgres://USER@HOST:PORT/DBNAME".into());
        }
        let shown = shown(text);
        let options = PgConnectOptions::from_str(text)
            // sqlx's messages may quote the URL: only the shown form is repeated.
            .map_err(|_| format!("{shown} is not a valid PostgreSQL URL"))?;
        let has_password = text
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .and_then(|authority| authority.rsplit_once('@'))
            .is_some_and(|(user_info, _)| user_info.contains(':'))
            || text.contains("password=");
        Ok(DatabaseUrl::Postgres(Box::new(PostgresUrl {
            options: options.application_name(&application_name()),
            has_password,
            shown,
        })))
    }
}

/// What a URL is shown as: scheme, user, host, port and database, without password or query.
fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "the URL".into();
    };
    let rest = rest.split('?').next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}/{path}")
}

/// The process's name, which PostgreSQL shows in `pg_stat_activity`.
fn application_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name()?.to_str().map(str::to_owned))
        .unwrap_or_else(|| "township".into())
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(postgres) => f.write_str(&postgres.shown),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// The database a service opens.
#[derive(Clone, Debug)]
pub enum Database {
    /// The SQLite file `<dir>/<file>`.
    Sqlite {
        /// Its directory (created if missing).
        dir: PathBuf,
        /// Its name.
        file: String,
    },
    /// A PostgreSQL database, shared by every replica.
    Postgres(Box<Postgres>),
}

impl Database {
    /// The SQLite file `<dir>/<file>`.
    pub fn sqlite(dir: &Path, file: &str) -> Self {
        Database::Sqlite {
            dir: dir.to_owned(),
            file: file.to_owned(),
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }
}

/// How to reach a PostgreSQL database. `Debug` and `Display` show no password.
#[derive(Clone)]
pub struct Postgres {
    pub(crate) options: PgConnectOptions,
    shown: String,
    /// Most connections of this process's pool.
    pub max_connections: u32,
}

impl fmt::Display for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Postgres({}, max_connections: {})",
            self.shown, self.max_connections
        )
    }
}

impl Postgres {
    /// Options for `url` (tests and tools; servers read [`DatabaseArgs`]).
    pub fn from_url(url: &str, max_connections: u32) -> anyhow::Result<Postgres> {
        match url.parse::<DatabaseUrl>() {
            Ok(DatabaseUrl::Postgres(postgres)) => Ok(Postgres {
                options: postgres.options,
                shown: postgres.shown,
                max_connections,
            }),
            Ok(DatabaseUrl::Sqlite(_)) => anyhow::bail!("not a postgres:// URL"),
            Err(err) => Err(anyhow::anyhow!(err)).context("the database URL"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, password_file: Option<&Path>) -> DatabaseArgs {
        DatabaseArgs {
            database_url: url.map(|url| url.parse().unwrap()),
            database_password_file: password_file.map(Path::to_owned),
            database_max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    #[test]
    fn no_url_is_the_service_file_in_the_data_dir() {
        let database = args(None, None)
            .database(Path::new("/data/bank"), "bank.db")
            .unwrap();
        assert!(
            matches!(&database, Database::Sqlite { dir, file } if dir == Path::new("/data/bank") && file == "bank.db"),
            "{database:?}"
        );
    }

    #[test]
    fn a_sqlite_url_names_the_file() {
        for (url, dir, name) in [
            ("sqlite:///var/lib/t/book.db", "/var/lib/t", "book.db"),
            ("sqlite:book.db", ".", "book.db"),
        ] {
            let database = args(Some(url), None)
                .database(Path::new("/unused"), "x.db")
                .unwrap();
            assert!(
                matches!(&database, Database::Sqlite { dir: d, file } if d == Path::new(dir) && file == name),
                "{url}: {database:?}"
            );
        }
        for bad in [
            "sqlite://",
            "sqlite:///t.db?mode=ro",
            "mysql://h/db",
            "t.db",
        ] {
            assert!(bad.parse::<DatabaseUrl>().is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let url = "postgres://bank:hunter2secret@db.example:5433/town?sslmode=require";
        let parsed: DatabaseUrl = url.parse().unwrap();
        assert_eq!(parsed.to_string(), "postgres://bank@db.example:5433/town");
        let database = args(Some(url), None)
            .database(Path::new("/d"), "x.db")
            .unwrap();
        for text in [
            format!("{parsed:?}"),
            format!("{database:?}"),
            format!("{:?}", args(Some(url), None)),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
        }
        let bad = "postgres://bank:hunter2secret@db.example:notaport/town"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(!bad.contains("hunter2"), "{bad}");
    }

    #[test]
    fn the_password_file_gives_the_password_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let database = args(Some("postgres://bank@localhost/town"), Some(&file))
            .database(dir.path(), "x.db")
            .unwrap();
        let Database::Postgres(postgres) = database else {
            panic!("a postgres URL is PostgreSQL");
        };
        assert_eq!(postgres.options.get_username(), "bank");
        assert!(!format!("{postgres:?}").contains("s3cret"));

        let twice = args(
            Some("postgres://bank:Zq9-wrong-pw@localhost/town"),
            Some(&file),
        )
        .database(dir.path(), "x.db")
        .unwrap_err();
        assert!(twice.is::<BadConfig>(), "{twice:#}");
        assert!(!format!("{twice:#}").contains("Zq9-wrong-pw"), "{twice:#}");
        let for_sqlite = args(None, Some(&file))
            .database(dir.path(), "x.db")
            .unwrap_err();
        assert!(for_sqlite.is::<BadConfig>(), "{for_sqlite:#}");
        std::fs::write(&file, "\n").unwrap();
        let empty = args(Some("postgres://bank@localhost/town"), Some(&file))
            .database(dir.path(), "x.db")
            .unwrap_err();
        assert!(format!("{empty:#}").contains("is empty"), "{empty:#}");
    }
}
