//! Reading what `township certs` wrote: a certificate's names, usages, serial, key and lifetime
//! (parsed with x509-parser, independent of rcgen, which wrote them), whether a CA signed it, and
//! a file's mode.

use std::{fs, net::IpAddr, os::unix::fs::PermissionsExt, path::Path};

use x509_parser::{certificate::X509Certificate, extensions::GeneralName, pem::parse_x509_pem};

/// What a certificate says, owned.
#[derive(Debug)]
pub struct Cert {
    pub subject: String,
    pub issuer: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub server_auth: bool,
    pub client_auth: bool,
    pub is_ca: bool,
    pub serial: Vec<u8>,
    pub public_key: Vec<u8>,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// Parses the PEM certificate at `path` and hands it to `f`.
fn with_cert<T>(path: &Path, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let text = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, pem) = parse_x509_pem(&text).expect("a PEM block");
    assert_eq!(pem.label, "CERTIFICATE", "{}", path.display());
    let cert = pem.parse_x509().expect("an X.509 certificate");
    f(&cert)
}

/// What the certificate at `path` says.
pub fn read_cert(path: &Path) -> Cert {
    with_cert(path, |cert| {
        let (mut dns, mut ips, mut uris) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(san) = cert.subject_alternative_name().expect("a valid SAN") {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(name) => dns.push(name.to_string()),
                    GeneralName::URI(uri) => uris.push(uri.to_string()),
                    GeneralName::IPAddress(bytes) => ips.push(match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()),
                        _ => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()),
                    }),
                    other => panic!("unexpected SAN {other:?}"),
                }
            }
        }
        let eku = cert.extended_key_usage().expect("a valid EKU");
        Cert {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns,
            ips,
            uris,
            server_auth: eku.as_ref().is_some_and(|e| e.value.server_auth),
            client_auth: eku.as_ref().is_some_and(|e| e.value.client_auth),
            is_ca: cert.is_ca(),
            serial: cert.raw_serial().to_vec(),
            public_key: cert.public_key().raw.to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        }
    })
}

/// Whether the certificate at `cert` carries a valid signature by the key of the one at `ca`.
pub fn is_signed_by(cert: &Path, ca: &Path) -> bool {
    with_cert(ca, |ca| {
        with_cert(cert, |cert| {
            cert.verify_signature(Some(ca.public_key())).is_ok()
        })
    })
}

/// The file's permission bits.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
