//! The client side of TLS: which CA a client trusts for the server's certificate and, for mutual
//! TLS, which certificate it shows, read from PEM files. Used by the `township` CLI (`--ca`,
//! `--cert`, `--key`) and by the bank for its lock service.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Where a client's TLS files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA (PEM) the server's certificate must be signed by.
    pub ca: PathBuf,
    /// For mutual TLS: the client's certificate (PEM) and its key (PEM).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTlsFiles {
    /// Reads the files into tonic's client TLS settings; the error names the file that could not
    /// be read. Whether they hold what they should is found at the handshake, which then fails
    /// with rustls' reason.
    pub fn load(&self) -> Result<ClientTlsConfig, String> {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca)?));
        Ok(match &self.identity {
            Some((cert, key)) => tls.identity(Identity::from_pem(read(cert)?, read(key)?)),
            None => tls,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}
