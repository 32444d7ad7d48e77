//! The client side of TLS: which CA a client trusts for the server's certificate and, for mutual
//! TLS, which certificate it shows, read from PEM files. Used by the `township` CLI (`--ca`,
//! `--cert`, `--key`) and by the bank for its lock service, which reads them again on SIGHUP.

use std::path::{Path, PathBuf};

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
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
    /// Reads the files into tonic's client TLS settings. Each file must hold what its flag says
    /// (at least one certificate; one private key), so that a missing, empty or half-written file
    /// is refused here, naming it, rather than at every later handshake. Whether the certificates
    /// fit together (the server's is signed by this CA, this key is the certificate's) is found at
    /// the handshake, which then fails with rustls' reason.
    pub fn load(&self) -> Result<ClientTlsConfig, String> {
        let ca = read_certificates(&self.ca)?;
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        Ok(match &self.identity {
            Some((cert, key)) => {
                tls.identity(Identity::from_pem(read_certificates(cert)?, read_key(key)?))
            }
            None => tls,
        })
    }
}

/// The PEM text of `path`, which must hold at least one certificate.
fn read_certificates(path: &Path) -> Result<Vec<u8>, String> {
    let pem = read(path)?;
    let mut certificates = CertificateDer::pem_slice_iter(&pem).peekable();
    match certificates.peek() {
        None => return Err(format!("{} holds no PEM certificate", path.display())),
        Some(Err(err)) => return Err(format!("{} is not valid PEM: {err}", path.display())),
        Some(Ok(_)) => {}
    }
    if let Some(Err(err)) = certificates.find(Result::is_err) {
        return Err(format!("{} is not valid PEM: {err}", path.display()));
    }
    Ok(pem)
}

/// The PEM text of `path`, which must hold a private key.
fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let pem = read(path)?;
    // The error names the file only: never the key's bytes.
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| format!("{} holds no PEM private key", path.display()))?;
    Ok(pem)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, as PEM.
    fn certificate() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, ca: &str, cert: &str, key: &str) -> ClientTlsFiles {
        std::fs::write(dir.join("ca.pem"), ca).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        ClientTlsFiles {
            ca: dir.join("ca.pem"),
            identity: Some((dir.join("cert.pem"), dir.join("key.pem"))),
        }
    }

    #[test]
    fn certificates_and_a_key_in_the_right_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate();
        files(dir.path(), &cert, &cert, &key).load().unwrap();
    }

    #[test]
    fn an_empty_garbled_or_swapped_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate();

        let err = files(dir.path(), "", &cert, &key).load().unwrap_err();
        assert!(err.contains("ca.pem holds no PEM certificate"), "{err}");

        let garbled = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let err = files(dir.path(), &cert, garbled, &key).load().unwrap_err();
        assert!(err.contains("cert.pem is not valid PEM"), "{err}");

        let err = files(dir.path(), &cert, &key, &cert).load().unwrap_err();
        assert!(err.contains("cert.pem holds no PEM certificate"), "{err}");

        let err = files(dir.path(), &cert, &cert, &cert).load().unwrap_err();
        assert!(err.contains("key.pem holds no PEM private key"), "{err}");
        assert!(
            !err.contains("BEGIN"),
            "no file's contents are echoed: {err}"
        );
    }

    #[test]
    fn a_missing_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ClientTlsFiles {
            ca: dir.path().join("nowhere.pem"),
            identity: None,
        };
        let err = missing.load().unwrap_err();
        assert!(
            err.contains("cannot read") && err.contains("nowhere.pem"),
            "{err}"
        );
    }
}
