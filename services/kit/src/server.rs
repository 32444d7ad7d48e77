//! Serving a set of gRPC services the Township way: health and reflection added, one span per
//! RPC, limits, and a graceful stop under a grace timeout.

use std::{
    convert::Infallible, future::Future, net::SocketAddr, path::PathBuf, pin::Pin, time::Duration,
};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::RoutesBuilder,
    transport::{Server, server::TcpIncoming},
};

use crate::{
    ServerArgs, Shutdown,
    access::{AccessLayer, DenialHook, PolicyFile},
    health::{HealthRegistry, ServingStatus},
    limits::{Limits, LimitsLayer},
    rpc_trace::RpcTraceLayer,
    tls::{TlsConfig, TlsFiles},
};

/// Server-wide settings taken from [`ServerArgs`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long in-flight calls may take to finish once shutdown begins.
    pub shutdown_grace: Duration,
    /// Largest request message accepted, in bytes. Each service applies it to its generated server
    /// with `max_decoding_message_size`.
    pub max_message_bytes: usize,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection.
    pub max_concurrent_streams: u32,
    /// Interval of HTTP/2 keepalive pings, and how long an unanswered one waits: a dead client's
    /// connection (and every stream on it) is closed within twice this. `None`: no pings (each
    /// connection's poll is then a little cheaper; a dead client is noticed only by TCP).
    pub keepalive: Option<Duration>,
    /// TLS (with a client CA, mutual TLS) from these files, re-read on SIGHUP; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// A plaintext listener serving only health, for probes that cannot speak TLS.
    pub health_listen: Option<SocketAddr>,
    /// The authorization policy file, re-read on SIGHUP; `None`: every call allowed.
    pub authz_policy: Option<PathBuf>,
    /// Calls in flight and streams open over every connection, and unary calls' default deadline.
    pub limits: Limits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(10),
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 1024,
            keepalive: Some(Duration::from_secs(10)),
            tls: None,
            health_listen: None,
            authz_policy: None,
            limits: Limits::default(),
        }
    }
}

impl From<&ServerArgs> for ServeOptions {
    fn from(args: &ServerArgs) -> Self {
        Self {
            shutdown_grace: args.shutdown_grace,
            max_message_bytes: args.max_message_bytes as usize,
            max_concurrent_streams: args.max_concurrent_streams,
            keepalive: Some(Duration::from_secs(10)),
            tls: args.tls(),
            health_listen: args.health_listen,
            authz_policy: args.authz_policy.clone(),
            limits: Limits {
                max_calls: args.max_concurrent_calls as usize,
                max_streams: args.max_open_streams as usize,
                call_deadline: args
                    .call_deadline
                    .unwrap_or(Limits::default().call_deadline),
            },
        }
    }
}

/// The services one server offers, with their fully qualified names for health and reflection.
#[derive(Default)]
pub struct ServiceSet {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    on_denial: Option<DenialHook>,
}

impl ServiceSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generated tonic server (e.g. `TimeServiceServer::new(..)`). Its name is reported
    /// SERVING by health once the server runs, and advertised by reflection.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self.names.push(S::NAME);
        self
    }

    /// Tells `hook` of every call the authorization policy refuses (for a service's own audit).
    pub fn on_denial(mut self, hook: DenialHook) -> Self {
        self.on_denial = Some(hook);
        self
    }
}

/// Serves `services` on `listener` until `shutdown` is cancelled, then stops gracefully.
///
/// Adds `grpc.health.v1.Health` (SERVING for the server and each service while serving,
/// NOT_SERVING from the moment shutdown begins) and server reflection v1 and v1alpha over every
/// Township API ([`township_proto::FILE_DESCRIPTOR_SET`]), advertising `services`. With
/// `options.tls`, every connection is TLS (mutual TLS with a client CA), and SIGHUP re-reads the
/// files; a plaintext server listening beyond loopback logs a warning. Once shutdown begins, no
/// new connection is accepted and in-flight calls have `options.shutdown_grace` to finish;
/// streams that outlive it are cut. Returns `Ok` after a graceful stop.
pub async fn serve(
    listener: TcpListener,
    options: &ServeOptions,
    services: ServiceSet,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let ServiceSet {
        mut routes,
        names,
        on_denial,
    } = services;
    let health = HealthRegistry::new(shutdown.clone());
    routes.add_service(tonic_health::pb::health_server::HealthServer::new(
        health.clone(),
    ));
    add_reflection(&mut routes, &names)?;

    let tls = options.tls.clone().map(TlsConfig::load).transpose()?;
    let policy = options
        .authz_policy
        .clone()
        .map(PolicyFile::load)
        .transpose()?;
    let local = listener.local_addr().context("the listener's address")?;
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(%local, "listening beyond loopback without TLS: anyone who can reach this port can read and send everything (set --tls-cert and --tls-key)");
    }
    // Installed before the server reports SERVING: SIGHUP would otherwise end the process.
    watch_hangups(tls.clone(), policy.clone(), shutdown.clone())?;
    if let Some(addr) = options.health_listen {
        serve_health_only(addr, &health, &shutdown).await?;
    }

    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let router = Server::builder()
        .max_concurrent_streams(options.max_concurrent_streams)
        .http2_keepalive_interval(options.keepalive)
        .http2_keepalive_timeout(options.keepalive)
        .layer(RpcTraceLayer)
        .layer(AccessLayer { policy, on_denial })
        .layer(LimitsLayer::new(options.limits))
        .add_routes(routes.routes());
    let stop = shutdown.clone().cancelled_owned();
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match &tls {
            Some(tls) => {
                Box::pin(router.serve_with_incoming_shutdown(tls.incoming(incoming), stop))
            }
            None => Box::pin(router.serve_with_incoming_shutdown(incoming, stop)),
        };
    tokio::pin!(server);

    for name in names.iter().copied().chain([""]) {
        health.set(name, ServingStatus::Serving);
    }
    tokio::select! {
        // Biased: once shutdown has begun, the drain below runs even if the server's own future
        // (which watches the same token) is ready too.
        biased;
        () = shutdown.cancelled() => {}
        result = &mut server => {
            result.context("gRPC server failed")?;
            anyhow::bail!("gRPC server stopped without being asked to");
        }
    }

    health.set_all(ServingStatus::NotServing);
    tracing::info!(grace = ?options.shutdown_grace, "draining in-flight calls");
    match tokio::time::timeout(options.shutdown_grace, server).await {
        Ok(result) => result.context("gRPC server failed while draining")?,
        Err(_) => tracing::warn!(
            grace = ?options.shutdown_grace,
            "grace period over: cutting the calls still open"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Binds `addr`, announces it (`health listening on ...`) and serves only `health` there, in
/// plaintext, until shutdown.
async fn serve_health_only(
    addr: SocketAddr,
    health: &HealthRegistry,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let listener = crate::net::bind(addr).await.context("--health-listen")?;
    crate::net::announce("health", &listener)?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        .add_service(tonic_health::pb::health_server::HealthServer::new(
            health.clone(),
        ))
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::error!(%err, "the health listener failed");
        }
    });
    Ok(())
}

/// On each SIGHUP until shutdown: re-reads the TLS files and the authorization policy (a failure
/// keeps what is in force, logged).
fn watch_hangups(
    tls: Option<TlsConfig>,
    policy: Option<PolicyFile>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = hangups.recv() => {}
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                    Err(err) => tracing::error!(
                        err = format!("{err:#}"),
                        "SIGHUP: TLS certificates not reloaded; the previous ones stay in use"
                    ),
                }
            }
            if let Some(policy) = &policy {
                match policy.reload() {
                    Ok(()) => tracing::info!("SIGHUP: authorization policy reloaded"),
                    Err(err) => tracing::error!(
                        err = format!("{err:#}"),
                        "SIGHUP: authorization policy not reloaded; the previous one stays in force"
                    ),
                }
            }
            if tls.is_none() && policy.is_none() {
                tracing::info!("SIGHUP: no TLS files or policy of the server to reload");
            }
        }
    });
    Ok(())
}

fn add_reflection(routes: &mut RoutesBuilder, names: &[&'static str]) -> anyhow::Result<()> {
    let configure = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
            .register_encoded_file_descriptor_set(township_proto::FILE_DESCRIPTOR_SET);
        for name in names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    routes.add_service(
        configure()
            .build_v1()
            .context("cannot build reflection v1")?,
    );
    routes.add_service(
        configure()
            .build_v1alpha()
            .context("cannot build reflection v1alpha")?,
    );
    Ok(())
}
