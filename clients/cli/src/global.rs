//! The flags every subcommand accepts (`--addr`, `--timeout`, `--retries`, `--json`, and TLS's
//! `--ca`, `--cert`, `--key`), shared by the command modules so that none of them imports from
//! the binary's root.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use township_client::ClientTlsFiles;

/// Flags every subcommand accepts, before or after the subcommand's name.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The service's address, host:port (an http:// in front is accepted), or several separated
    /// by commas (servers of one service, sharing its state: the first that answers is used).
    /// Default: the service's env var (e.g. TOWNSHIP_TIME_ADDR), else its default port on
    /// 127.0.0.1.
    #[arg(long, global = true, value_name = "ADDR[,ADDR...]", value_parser = addrs)]
    pub addr: Option<String>,

    /// Deadline for connecting and for each call.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s",
          value_parser = humantime::parse_duration, env = "TOWNSHIP_TIMEOUT")]
    pub timeout: Duration,

    /// How many more times to try connecting when the service is unreachable (backoff of about
    /// 200 ms doubling to 2 s, with jitter).
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = 3,
        env = "TOWNSHIP_RETRIES"
    )]
    pub retries: u32,

    /// Print results as JSON, one object per line.
    #[arg(long, global = true)]
    pub json: bool,

    /// Connect over TLS, trusting servers whose certificate this CA (PEM) signed, e.g.
    /// certs/ca.pem from `township certs init certs`.
    #[arg(long, global = true, value_name = "FILE", env = "TOWNSHIP_CA")]
    pub ca: Option<PathBuf>,

    /// Mutual TLS: the certificate (PEM) to show the server, e.g. certs/alice.pem from
    /// `township certs issue --name alice certs`. Needs --ca and --key.
    #[arg(long, global = true, value_name = "FILE", env = "TOWNSHIP_CERT", requires_all = ["ca", "key"])]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "TOWNSHIP_KEY",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
}

impl Global {
    /// The TLS files, when --ca is given (plaintext otherwise).
    pub fn tls(&self) -> Option<ClientTlsFiles> {
        Some(ClientTlsFiles {
            ca: self.ca.clone()?,
            identity: self.cert.clone().zip(self.key.clone()),
        })
    }
}

/// `--addr`, checked (one address or several, comma-separated) and kept as given.
fn addrs(text: &str) -> Result<String, String> {
    township_client::addr_list(text)?;
    Ok(text.to_owned())
}
