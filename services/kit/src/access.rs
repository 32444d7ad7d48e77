//! Who is calling, and whether they may: a tower layer around every route that reads the caller's
//! identities from its verified client certificate (URI SANs, else DNS SANs) into a [`Caller`]
//! in the request's extensions, for handlers that act on who is asking (the lock service's
//! ownership), and that refuses, with PERMISSION_DENIED naming the method, every call the
//! authorization policy (`--authz-policy`) does not allow. Health and reflection are routes like
//! any other: reachable only when the policy allows them.
//!
//! The policy file is read at start (a broken one stops the start) and again on SIGHUP, when a
//! broken one keeps the policy in force and logs why. A service that keeps an audit of its own
//! learns of each refusal through a [`DenialHook`].

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::authz::{Decision, Peer, Policy, Subject};

/// The caller, as its verified client certificate names it. Absent from a request that came in
/// plaintext or over TLS without a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    uris: Vec<String>,
    dns: Vec<String>,
}

impl Caller {
    /// The principal: the first URI SAN (`spiffe://township/bank`), else the first DNS SAN.
    pub fn principal(&self) -> &str {
        self.uris
            .first()
            .or(self.dns.first())
            .map_or("", String::as_str)
    }

    /// The caller of `request`, if it showed a certificate.
    pub fn of<B>(request: &tonic::Request<B>) -> Option<&Caller> {
        request.extensions().get::<Caller>()
    }

    /// The names in a verified leaf certificate; `None` when it names nothing a principal can
    /// be read from (no URI or DNS SAN: such a caller matches the policy only as the empty
    /// principal; grpc-go would fall back to the subject, which Township's certificates never need).
    fn from_leaf(leaf: &tokio_rustls::rustls::pki_types::CertificateDer<'_>) -> Option<Caller> {
        let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
        let uris: Vec<String> = cert.valid_uri_names().map(str::to_owned).collect();
        let dns: Vec<String> = cert.valid_dns_names().map(str::to_owned).collect();
        (!uris.is_empty() || !dns.is_empty()).then_some(Caller { uris, dns })
    }
}

/// The RPC a request calls, `township.bank.v1.BankService/Login` (no leading slash): put in
/// every request's extensions by the kit, for a service that records who called what (tonic's
/// own `GrpcMethod` is set only on the client side).
/// It shares the request's own bytes (no copy on every call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcMethod(http::uri::PathAndQuery);

impl RpcMethod {
    /// The RPC `request` calls; empty if it did not come through the kit's server.
    pub fn of<B>(request: &tonic::Request<B>) -> &str {
        request
            .extensions()
            .get::<RpcMethod>()
            .map_or("", |method| method.0.path().trim_start_matches('/'))
    }
}

/// A call the authorization policy refused, as a [`DenialHook`] is told of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The RPC, `township.bank.v1.BankService/Login` (no leading slash).
    pub method: String,
    /// The caller's principal ([`Caller::principal`]), or empty.
    pub principal: String,
    /// The caller's address, if known.
    pub peer: Option<SocketAddr>,
}

/// Told of every call the policy refuses, on the refusing task: it must return at once (queue
/// the denial, never wait on I/O).
#[derive(Clone)]
pub struct DenialHook(Arc<dyn Fn(Denial) + Send + Sync>);

impl DenialHook {
    /// A hook that calls `tell` with each denial.
    pub fn new(tell: impl Fn(Denial) + Send + Sync + 'static) -> Self {
        Self(Arc::new(tell))
    }
}

impl fmt::Debug for DenialHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DenialHook")
    }
}

/// The authorization policy in force, swapped whole on reload.
#[derive(Clone, Debug)]
pub struct PolicyFile {
    path: PathBuf,
    current: Arc<RwLock<Arc<Policy>>>,
}

impl PolicyFile {
    /// Reads and checks the policy at `path`.
    pub fn load(path: PathBuf) -> anyhow::Result<Self> {
        let policy = Policy::from_file(&path)?;
        tracing::info!(policy = policy.name(), path = %path.display(), "authorization policy in force");
        Ok(Self {
            path,
            current: Arc::new(RwLock::new(Arc::new(policy))),
        })
    }

    /// Reads the file again; on success it is in force for the next call, on failure nothing
    /// changes.
    pub fn reload(&self) -> anyhow::Result<()> {
        let policy = Policy::from_file(&self.path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        Ok(())
    }

    fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The layer: [`Caller`] into every request, and the policy (if any) enforced.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccessLayer {
    pub(crate) policy: Option<PolicyFile>,
    pub(crate) on_denial: Option<DenialHook>,
}

impl<S> Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Access {
            inner,
            policy: self.policy.clone(),
            on_denial: self.on_denial.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Access<S> {
    inner: S,
    policy: Option<PolicyFile>,
    on_denial: Option<DenialHook>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Access<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AccessFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let tls = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        // Only a TLS connection has a peer at all; only a client certificate makes a caller.
        let peer_certs = tls.map(|tls| tls.peer_certs());
        let caller = peer_certs
            .as_ref()
            .and_then(|certs| certs.as_ref()?.first().and_then(Caller::from_leaf));
        if let Some(policy) = &self.policy {
            let peer = peer_certs.as_ref().map(|_| match &caller {
                Some(caller) => Peer {
                    uris: caller.uris.clone(),
                    dns: caller.dns.clone(),
                    subject: String::new(),
                },
                None => Peer::default(),
            });
            let path = request.uri().path();
            let subject = Subject {
                peer: peer.as_ref(),
                path,
                headers: request.headers(),
            };
            if let Decision::Deny { reason } = policy.current().decide(&subject) {
                // The rule is for the log only: the caller learns the method, nothing more.
                let principal = caller.as_ref().map_or("", Caller::principal);
                tracing::info!(method = path, principal, %reason, "denied by the authorization policy");
                if let Some(hook) = &self.on_denial {
                    (hook.0)(Denial {
                        method: path.trim_start_matches('/').to_owned(),
                        principal: principal.to_owned(),
                        peer: peer_addr(&request),
                    });
                }
                let status = tonic::Status::permission_denied(format!("permission denied: {path}"));
                return AccessFuture::Denied {
                    response: Some(status.into_http()),
                };
            }
        }
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        if let Some(path) = request.uri().path_and_query().cloned() {
            request.extensions_mut().insert(RpcMethod(path));
        }
        AccessFuture::Inner {
            inner: self.inner.call(request),
        }
    }
}

/// The remote address of the connection `request` came on, plaintext or TLS.
fn peer_addr<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|tls| tls.get_ref().remote_addr())
        .or_else(|| extensions.get::<TcpConnectInfo>()?.remote_addr())
}

pin_project! {
    /// The inner service's answer, or the refusal.
    #[project = AccessFutureProj]
    pub(crate) enum AccessFuture<F, B> {
        Inner { #[pin] inner: F },
        Denied { response: Option<http::Response<B>> },
    }
}

impl<F, B, E> Future for AccessFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AccessFutureProj::Inner { inner } => inner.poll(cx),
            AccessFutureProj::Denied { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}
