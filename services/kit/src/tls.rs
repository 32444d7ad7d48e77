//! TLS and mutual TLS for every server: the certificate, key and (for mutual TLS) client CA are
//! read from files at start, and read again on SIGHUP, so certificates rotate without a restart.
//! Connections already open keep the session they have; new ones get the new files. A reload that
//! fails (a missing file, a key that does not match) keeps the old configuration and logs why.
//!
//! The handshakes run beside the accept loop (a slow or silent client holds up no one, and gives
//! up after [`HANDSHAKE_TIMEOUT`]); a failed handshake is logged at DEBUG and dropped, never
//! handed to tonic (which would stop serving on an error it does not expect). The streams are
//! tokio-rustls' own, so tonic hands each request the client's verified certificate chain.

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{net::TcpStream, task::JoinSet};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        crypto::ring,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tokio_stream::Stream;
use tonic::transport::server::TcpIncoming;

/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; beyond it, accepting waits for one to finish.
const MAX_HANDSHAKES: usize = 1024;

/// Where a server's TLS files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// With mutual TLS: the CA (PEM) a client's certificate must be signed by. Without it, any
    /// client may connect without a certificate.
    pub client_ca: Option<PathBuf>,
}

/// The server's TLS configuration as last read, shared by the acceptor and the reloader.
#[derive(Clone)]
pub struct TlsConfig {
    files: TlsFiles,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsConfig {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Reads the files again; on success new connections use them, on failure nothing changes.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Accepted connections from `tcp`, each through the TLS handshake of the configuration
    /// current when it was accepted.
    pub fn incoming(&self, tcp: TcpIncoming) -> TlsIncoming {
        TlsIncoming {
            tcp,
            accepting: true,
            config: self.clone(),
            handshakes: JoinSet::new(),
        }
    }
}

fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; only
    // aws-lc has it, and aws-lc is kept out on purpose (minutes of C build; two providers panic).
    #[allow(deprecated)]
    let provider = Arc::new(ring::default_provider());
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow::anyhow!("{}: no private key: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("{}: not a CA certificate", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("{}: cannot verify clients with it", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "{} and {} do not make a certificate and its key",
            files.cert.display(),
            files.key.display()
        )
    })?;
    // gRPC is HTTP/2: clients (tonic's, grpc-go's) insist on negotiating it.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in it",
        path.display()
    );
    Ok(certs)
}

/// Accepted TCP connections after their TLS handshake: the server's incoming stream.
pub struct TlsIncoming {
    tcp: TcpIncoming,
    /// False once the listener has ended (then only the handshakes in progress remain).
    accepting: bool,
    config: TlsConfig,
    handshakes: JoinSet<Option<TlsStream<TcpStream>>>,
}

impl Stream for TlsIncoming {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            // Finished handshakes first; this also registers for the next one to finish.
            while let Poll::Ready(Some(done)) = this.handshakes.poll_join_next(cx) {
                match done {
                    Ok(Some(tls)) => return Poll::Ready(Some(Ok(tls))),
                    Ok(None) => {}
                    Err(err) => tracing::warn!(%err, "a TLS handshake task failed"),
                }
            }
            if !this.accepting {
                return if this.handshakes.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
            if this.handshakes.len() >= MAX_HANDSHAKES {
                return Poll::Pending;
            }
            match Pin::new(&mut this.tcp).poll_next(cx) {
                Poll::Ready(Some(Ok(tcp))) => {
                    let acceptor = this.config.acceptor();
                    this.handshakes.spawn(handshake(acceptor, tcp));
                }
                // Errors the plaintext server would see too (tonic skips the transient ones).
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => this.accepting = false,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

async fn handshake(acceptor: TlsAcceptor, tcp: TcpStream) -> Option<TlsStream<TcpStream>> {
    let peer = tcp.peer_addr().ok();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            tracing::debug!(?peer, %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
    }
}
