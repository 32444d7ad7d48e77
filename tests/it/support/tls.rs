//! Certificates for the TLS tests, made by the real `township certs`, and the client side of a
//! TLS connection: which CA a client trusts and which certificate it shows, an expired one
//! included, and a time-server serving TLS with them.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType,
};
use tonic::{
    Streaming,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use township_proto::time::v1::{
    GetTimeRequest, TimeReply, WatchTimeRequest, time_service_client::TimeServiceClient,
};
use township_tests::{ServiceProcess, spawn_tls_service};

use crate::support::cli::township_with;

/// A directory from `township certs init` (a CA and every service's certificate).
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    /// A fresh CA and service certificates, plus the user certificates `users`.
    pub async fn init(users: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().to_str().expect("a UTF-8 temp dir");
        let out = township_with(&["certs", "init", path], &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        for user in users {
            let out = township_with(&["certs", "issue", "--name", user, path], &[]).await;
            assert_eq!(out.code, Some(0), "{out:?}");
        }
        Self { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `DIR/<name>.pem`, as a string for a command line.
    pub fn pem(&self, name: &str) -> String {
        self.arg(&format!("{name}.pem"))
    }

    /// `DIR/<name>.key`, as a string for a command line.
    pub fn key(&self, name: &str) -> String {
        self.arg(&format!("{name}.key"))
    }

    fn arg(&self, file: &str) -> String {
        self.path(file).to_str().expect("UTF-8").to_owned()
    }

    /// A client that trusts this CA and shows `identity`'s certificate (`None`: none).
    pub fn client(&self, identity: Option<&str>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.path("ca.pem"))));
        match identity {
            Some(name) => tls.identity(Identity::from_pem(
                read(&self.path(&format!("{name}.pem"))),
                read(&self.path(&format!("{name}.key"))),
            )),
            None => tls,
        }
    }

    /// A client that trusts this CA and shows a new certificate for `user`, signed by this CA and
    /// valid from `from` to `until` (relative to now): made here, not by `township certs`, so
    /// that it can be already expired.
    pub fn client_valid(
        &self,
        user: &str,
        from: time::Duration,
        until: time::Duration,
    ) -> ClientTlsConfig {
        let ca_key = KeyPair::from_pem(&fs::read_to_string(self.path("ca.key")).unwrap()).unwrap();
        let ca_pem = fs::read_to_string(self.path("ca.pem")).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, user);
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://township/user/{user}").try_into().unwrap(),
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + from;
        params.not_after = now + until;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.path("ca.pem"))))
            .identity(Identity::from_pem(cert.pem(), key.serialize_pem()))
    }

    /// The time-server's TLS flags: its certificate, and with `mutual` this CA for clients.
    pub fn server_flags(&self, mutual: bool) -> Vec<String> {
        self.service_flags("time", mutual)
    }

    /// `service`'s TLS flags: its certificate, and with `mutual` this CA for clients.
    pub fn service_flags(&self, service: &str, mutual: bool) -> Vec<String> {
        let mut flags = vec![
            "--tls-cert".to_owned(),
            self.pem(service),
            "--tls-key".to_owned(),
            self.key(service),
        ];
        if mutual {
            flags.extend(["--tls-client-ca".to_owned(), self.pem("ca")]);
        }
        flags
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A time-server with `flags`, reached (and probed for SERVING) through `client`.
pub async fn tls_time_server(flags: &[String], client: ClientTlsConfig) -> ServiceProcess {
    tls_service("time-server", flags, client).await
}

/// `binary` with `flags`, reached (and probed for SERVING) through `client`; it must start.
pub async fn tls_service(
    binary: &str,
    flags: &[String],
    client: ClientTlsConfig,
) -> ServiceProcess {
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    spawn_tls_service(binary, &args, client)
        .await
        .unwrap_or_else(|err| panic!("the {binary} starts with TLS: {err:#}"))
}

/// One GetTime to `server` over TLS as `client` sets it up: `Err` with the reason when the
/// connection or the call fails (both are bounded).
pub async fn get_time(server: &ServiceProcess, client: ClientTlsConfig) -> Result<(), String> {
    let endpoint = bounded(&format!("https://{}", server.addr))
        .tls_config(client)
        .map_err(|e| format!("{e:?}"))?;
    get_time_on(endpoint).await
}

/// One GetTime over plaintext: `Err` when it fails.
pub async fn get_time_plaintext(server: &ServiceProcess) -> Result<(), String> {
    get_time_on(bounded(&format!("http://{}", server.addr))).await
}

fn bounded(uri: &str) -> Endpoint {
    Endpoint::from_shared(uri.to_owned())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
}

async fn get_time_on(endpoint: Endpoint) -> Result<(), String> {
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    TimeServiceClient::new(channel)
        .get_time(GetTimeRequest::default())
        .await
        .map(drop)
        .map_err(|status| format!("{status:?}"))
}

/// A channel to the TLS `server` showing `who`'s certificate from `certs` (the handshake must
/// succeed).
pub async fn channel_as(server: &ServiceProcess, certs: &Certs, who: &str) -> Channel {
    server
        .endpoint()
        .tls_config(certs.client(Some(who)))
        .unwrap()
        .connect()
        .await
        .expect("the TLS handshake succeeds")
}

/// A WatchTime stream on `channel` ticking every 100 ms.
pub async fn watch_ticks(channel: Channel) -> Streaming<TimeReply> {
    TimeServiceClient::new(channel)
        .watch_time(WatchTimeRequest {
            interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
            time_zone: String::new(),
        })
        .await
        .expect("WatchTime starts")
        .into_inner()
}
