//! What each certificate says, with no files: the Township CA, a service's certificate, a user's
//! client certificate, and a server certificate for a peer outside Township (PostgreSQL, etcd).
//! Keys are ECDSA P-256; every certificate gets a fresh random serial, so a renewal with the same
//! key is still a new certificate (rcgen would otherwise derive the serial from the key).

use std::{net::IpAddr, time::Duration};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// The services `township certs init` makes certificates for; each file is `<name>.pem`.
pub const SERVICES: [&str; 6] = ["time", "doctor", "chat", "phonebook", "bank", "lock"];

/// The CA's common name, which every certificate it issues names as its issuer.
const CA_NAME: &str = "Township CA";
/// How long the CA is valid: longer than anything it issues, so renewing leaves is routine.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far back `not_before` is set, so that a peer whose clock is a little behind accepts it.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The URI SAN that names a service: the principal an authorization policy matches.
pub fn service_principal(service: &str) -> String {
    format!("spiffe://township/{service}")
}

/// The URI SAN that names a user.
pub fn user_principal(user: &str) -> String {
    format!("spiffe://township/user/{user}")
}

/// What a certificate is for: it decides its names and extended key usages.
pub enum Subject<'a> {
    /// A Township service: server and client auth; DNS `<svc>` and the names of its replicas in
    /// the compose files (the bank's `bank-a`, `bank-b`, `bank-c`; the lock's `lock-2`,
    /// `lock-3`) and `localhost`, IPs 127.0.0.1 and ::1, URI `spiffe://township/<svc>`.
    Service(&'a str),
    /// A person or tool calling Township: client auth only, URI `spiffe://township/user/<name>`.
    User(&'a str),
    /// A server outside Township: server and client auth (etcd peers are both), the DNS names
    /// and IPs given (its name when none is), no URI: it is no Township principal.
    Server {
        name: &'a str,
        dns: &'a [String],
        ips: &'a [IpAddr],
    },
}

/// The self-signed CA certificate for `key`.
pub fn ca(key: &KeyPair, serial: [u8; 16]) -> Result<Certificate, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_LIFETIME, serial);
    params.self_signed(key)
}

/// The certificate of `subject` for `key`, valid for `lifetime`, signed by `issuer`.
pub fn leaf(
    subject: &Subject<'_>,
    key: &KeyPair,
    lifetime: Duration,
    serial: [u8; 16],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<Certificate, rcgen::Error> {
    let mut params = CertificateParams::default();
    let both = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let (name, sans, usages) = match subject {
        Subject::Service(service) => {
            let mut dns = vec![service.to_string()];
            dns.extend(replica_names(service));
            dns.push("localhost".to_owned());
            let mut sans = dns_names(&dns)?;
            sans.extend(
                ["127.0.0.1", "::1"]
                    .map(|ip| SanType::IpAddress(ip.parse().expect("a literal IP"))),
            );
            sans.push(SanType::URI(service_principal(service).try_into()?));
            (*service, sans, both)
        }
        Subject::User(user) => (
            *user,
            vec![SanType::URI(user_principal(user).try_into()?)],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
        Subject::Server { name, dns, ips } => {
            let mut sans = if dns.is_empty() && ips.is_empty() {
                dns_names(&[name.to_string()])?
            } else {
                dns_names(dns)?
            };
            sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
            (*name, sans, both)
        }
    };
    params.distinguished_name = common_name(name);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, lifetime, serial);
    params.signed_by(key, issuer)
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// The DNS names of `service`'s replicas in the compose files, each a container that answers by
/// its own name and shows the service's one certificate.
fn replica_names(service: &str) -> Vec<String> {
    let suffixes: &[&str] = match service {
        "bank" => &["a", "b", "c"],
        "lock" => &["2", "3"],
        _ => &[],
    };
    suffixes.iter().map(|s| format!("{service}-{s}")).collect()
}

fn dns_names(names: &[String]) -> Result<Vec<SanType>, rcgen::Error> {
    names
        .iter()
        .map(|name| Ok(SanType::DnsName(name.as_str().try_into()?)))
        .collect()
}

/// Valid from a few minutes ago for `lifetime`, with a positive random serial (some verifiers,
/// Go's among them, refuse a negative one).
fn set_validity(params: &mut CertificateParams, lifetime: Duration, mut serial: [u8; 16]) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}
