//! `township certs`: a private CA and the certificates Township's mutual TLS runs on, made with
//! rcgen (no openssl binary). The file names are a contract that tests, compose and the README
//! use: `DIR/ca.pem` and `ca.key`, `DIR/<svc>.pem` and `<svc>.key` for each service, and
//! `DIR/<name>.pem` and `<name>.key` for each certificate issued later. With `--ca-dir CADIR` the
//! CA's pair lives in CADIR instead and DIR gets only a copy of `ca.pem`, so that DIR can be
//! handed to servers without the key that mints identities. Re-running keeps what is there;
//! `--renew` reissues certificates with the same keys; no key is ever overwritten.

mod files;
mod pki;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use clap::{Args, Subcommand};
use rcgen::{Issuer, KeyPair};

use crate::error::CliError;
use files::{Outcome, Pair};
use pki::Subject;

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Make the CA (DIR/ca.pem, ca.key) and a certificate for each service (DIR/<svc>.pem,
    /// <svc>.key for time, doctor, chat, phonebook, bank and lock).
    Init(InitArgs),
    /// Issue one more certificate from DIR's CA: a user's client certificate, or with --server
    /// one for a server outside Township (PostgreSQL, etcd).
    Issue(IssueArgs),
}

/// Where the CA's own pair lives.
#[derive(Debug, Args)]
struct CaDir {
    /// Keep the CA (ca.pem, ca.key) in this directory instead of DIR; DIR then gets a copy of
    /// ca.pem only, never ca.key.
    #[arg(long, value_name = "CADIR")]
    ca_dir: Option<PathBuf>,
}

impl CaDir {
    /// The CA's directory: CADIR if given, else `dir`.
    fn or<'a>(&'a self, dir: &'a Path) -> &'a Path {
        self.ca_dir.as_deref().unwrap_or(dir)
    }
}

/// How long what is issued lasts, and whether to reissue what exists.
#[derive(Debug, Args)]
struct Lifetime {
    /// How long each certificate issued is valid (the CA: 10 years).
    #[arg(long, value_name = "DURATION", default_value = "365days", value_parser = humantime::parse_duration)]
    valid_for: Duration,
    /// Reissue certificates that exist, with the same keys (a key is never replaced).
    #[arg(long)]
    renew: bool,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The directory to write into (made if missing).
    dir: PathBuf,
    #[command(flatten)]
    ca: CaDir,
    #[command(flatten)]
    lifetime: Lifetime,
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// The certificate's name: its files are DIR/<NAME>.pem and <NAME>.key; a user's principal
    /// is spiffe://township/user/<NAME>.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// A server certificate (server and client auth) for a peer outside Township, with the
    /// --dns names and --ip addresses given (its NAME as a DNS name when none is).
    #[arg(long)]
    server: bool,
    /// A DNS name the server answers to (repeatable; with --server).
    #[arg(long, value_name = "NAME", requires = "server")]
    dns: Vec<String>,
    /// An IP address the server answers on (repeatable; with --server).
    #[arg(long, value_name = "ADDR", requires = "server")]
    ip: Vec<IpAddr>,
    /// The directory to write into, which holds the CA (from `township certs init`) unless
    /// --ca-dir says where it is.
    dir: PathBuf,
    #[command(flatten)]
    ca: CaDir,
    #[command(flatten)]
    lifetime: Lifetime,
}

pub fn run(args: CertsArgs) -> Result<(), CliError> {
    match args.command {
        CertsCommand::Init(args) => init(args),
        CertsCommand::Issue(args) => issue(args),
    }
}

fn init(args: InitArgs) -> Result<(), CliError> {
    let Lifetime { valid_for, renew } = args.lifetime;
    let ca_dir = args.ca.or(&args.dir);
    for dir in [&*args.dir, ca_dir] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}", dir.display()))
            .map_err(CliError::Local)?;
    }
    let ca = Pair::new(ca_dir, "ca");
    let outcome = ca
        .ensure(renew, |key| Ok(pki::ca(key, serial())?))
        .map_err(CliError::Local)?;
    report(&ca, &outcome);
    share_ca_cert(&ca, &args.dir)?;
    let issuer = load_issuer(&ca)?;
    for service in pki::SERVICES {
        let pair = Pair::new(&args.dir, service);
        let outcome = pair
            .ensure(renew, |key| {
                Ok(pki::leaf(
                    &Subject::Service(service),
                    key,
                    valid_for,
                    serial(),
                    &issuer,
                )?)
            })
            .map_err(CliError::Local)?;
        report(&pair, &outcome);
    }
    Ok(())
}

fn issue(args: IssueArgs) -> Result<(), CliError> {
    let Lifetime { valid_for, renew } = args.lifetime;
    check_name(&args.name)?;
    let ca_dir = args.ca.or(&args.dir);
    let ca = Pair::new(ca_dir, "ca");
    if !ca.cert.exists() {
        return Err(CliError::Usage(format!(
            "{} holds no CA: run `township certs init {}` first",
            ca_dir.display(),
            ca_dir.display()
        )));
    }
    if !ca.key.exists() {
        return Err(CliError::Usage(format!(
            "{} holds the CA's certificate but not its key: give --ca-dir, the directory with ca.key",
            ca_dir.display()
        )));
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))
        .map_err(CliError::Local)?;
    share_ca_cert(&ca, &args.dir)?;
    let issuer = load_issuer(&ca)?;
    let subject = if args.server {
        Subject::Server {
            name: &args.name,
            dns: &args.dns,
            ips: &args.ip,
        }
    } else {
        Subject::User(&args.name)
    };
    let pair = Pair::new(&args.dir, &args.name);
    let outcome = pair
        .ensure(renew, |key| {
            Ok(pki::leaf(&subject, key, valid_for, serial(), &issuer)?)
        })
        .map_err(CliError::Local)?;
    report(&pair, &outcome);
    Ok(())
}

/// A name fit for a file name and a URI: lowercase letters, digits, '.', '_' and '-', starting
/// with a letter or digit; not one the CA or a service already uses.
fn check_name(name: &str) -> Result<(), CliError> {
    let fits = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !fits {
        return Err(CliError::Usage(format!(
            "--name {name:?}: use 1 to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        )));
    }
    if name == "ca" || pki::SERVICES.contains(&name) {
        return Err(CliError::Usage(format!(
            "--name {name:?} is the CA's or a service's file name: pick another"
        )));
    }
    Ok(())
}

/// The CA as an issuer, from its files (so that a renewed or older CA certificate works alike).
fn load_issuer(ca: &Pair) -> Result<Issuer<'static, KeyPair>, CliError> {
    let loaded = (|| {
        let key = ca.read_key()?;
        let pem = std::fs::read_to_string(&ca.cert)
            .with_context(|| format!("cannot read {}", ca.cert.display()))?;
        Issuer::from_ca_cert_pem(&pem, key)
            .with_context(|| format!("{} is no CA certificate", ca.cert.display()))
    })();
    loaded.map_err(CliError::Local)
}

/// With the CA kept elsewhere, puts (or refreshes) a copy of its certificate in `dir`, where
/// servers and clients look for `ca.pem`; its key never leaves the CA's directory.
fn share_ca_cert(ca: &Pair, dir: &Path) -> Result<(), CliError> {
    let copy = dir.join("ca.pem");
    if same_file(&ca.cert, &copy) {
        return Ok(());
    }
    let shared = (|| {
        let pem = std::fs::read(&ca.cert)
            .with_context(|| format!("cannot read {}", ca.cert.display()))?;
        if std::fs::read(&copy).is_ok_and(|existing| existing == pem) {
            return Ok(false);
        }
        files::write_public(&copy, &pem)?;
        Ok(true)
    })();
    if shared.map_err(CliError::Local)? {
        println!(
            "wrote {} (a copy of {}; the CA's key stays beside it)",
            copy.display(),
            ca.cert.display()
        );
    }
    Ok(())
}

/// Whether two paths name one file (the CA's directory given as DIR, however spelled).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A fresh random serial number.
fn serial() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

fn report(pair: &Pair, outcome: &Outcome) {
    let cert = pair.cert.display();
    let key = pair.key.display();
    match outcome {
        Outcome::Created => println!("wrote {cert} and {key}"),
        Outcome::Completed => println!("wrote {cert} for the existing {key}"),
        Outcome::Kept => println!("kept {cert} (exists; --renew reissues it)"),
        Outcome::Renewed => println!("renewed {cert} (same key {key})"),
    }
}
