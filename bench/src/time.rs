//! Time service: GetTime at 1, 16 and 64 concurrent clients, each figure beside its references
//! measured in the same run — a bare tonic server of the same API answering a fixed reply of the
//! same size (built here, no Township code in it) and a raw TCP ping-pong of the same bytes. The
//! references run on a thread of their own with one-thread runtimes, like the server process.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use anyhow::Context;
use hdrhistogram::Histogram;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status, transport::Channel};
use township_proto::time::v1::{
    GetTimeRequest, TimeReply, WatchTimeRequest,
    time_service_client::TimeServiceClient,
    time_service_server::{TimeService, TimeServiceServer},
};

use crate::{
    load::{self, Window},
    report::{Report, Row},
    server,
};

/// Runs the scenario: for each concurrency, Township's time-server, bare tonic, raw TCP.
///
/// Then, open loop: GetTime started at `rate` per second over 16 connections, time-server beside
/// bare tonic, latency from each call's intended start.
pub async fn run(duration: Duration, warmup: Duration, rate: f64) -> anyhow::Result<Report> {
    let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
    let server = server::start("time-server", data.path(), &[]).await?;
    let ours_uri = format!("http://{}", server.addr);
    let request = GetTimeRequest {
        time_zone: "UTC".into(),
    };
    let reply = TimeServiceClient::new(connect(&ours_uri).await?)
        .get_time(request.clone())
        .await
        .context("GetTime")?
        .into_inner();
    let bare_uri = format!("http://{}", start_bare_tonic(reply.clone())?);
    let raw = start_raw_tcp(request.encoded_len(), reply.encode_to_vec())?;
    let mut rows = Vec::new();
    for clients in [1, 16, 64] {
        let window = Window::starting_now(warmup, duration);
        let ours = grpc(&ours_uri, clients, &request, window).await?;
        let window = Window::starting_now(warmup, duration);
        let bare = grpc(&bare_uri, clients, &request, window).await?;
        let window = Window::starting_now(warmup, duration);
        let tcp = tcp(
            raw,
            clients,
            request.encode_to_vec(),
            reply.encoded_len(),
            window,
        )
        .await?;
        let scenario = format!("time: GetTime, {clients} client(s)");
        for (system, histogram) in [
            ("time-server", &ours),
            ("bare tonic, same API and reply", &bare),
            ("raw TCP ping-pong, same bytes", &tcp),
        ] {
            rows.push(Row::from_histogram(&scenario, system, histogram, duration));
        }
    }
    let scenario = format!("time: GetTime, open loop at {rate:.0}/s");
    for (system, uri) in [
        ("time-server", &ours_uri),
        ("bare tonic, same API and reply", &bare_uri),
    ] {
        let window = Window::starting_now(warmup, duration);
        let histogram = grpc_open_loop(uri, rate, &request, window).await?;
        rows.push(Row::from_histogram(&scenario, system, &histogram, duration));
    }
    Ok(Report {
        rows,
        footprints: vec![server.footprint()?],
    })
}

async fn connect(uri: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(uri.to_owned())?
        .connect()
        .await
        .with_context(|| format!("connect to {uri}"))
}

/// `clients` closed-loop GetTime callers, each on its own connection.
async fn grpc(
    uri: &str,
    clients: usize,
    request: &GetTimeRequest,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut rpc = TimeServiceClient::new(connect(uri).await?);
        let request = request.clone();
        tasks.push(tokio::task::spawn_local(async move {
            load::closed_loop(window, async || {
                rpc.get_time(request.clone()).await.context("GetTime")?;
                Ok(())
            })
            .await
        }));
    }
    load::merge(tasks).await
}

/// GetTime started at `rate` per second, spread over 16 connections, at most 1,024 in flight.
async fn grpc_open_loop(
    uri: &str,
    rate: f64,
    request: &GetTimeRequest,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(TimeServiceClient::new(connect(uri).await?));
    }
    load::open_loop(window, rate, 1024, |n| {
        let mut rpc = clients[n as usize % clients.len()].clone();
        let request = request.clone();
        async move {
            rpc.get_time(request).await.context("GetTime")?;
            Ok(())
        }
    })
    .await
}

/// `clients` closed-loop raw TCP callers: send the request's bytes, read the reply's.
async fn tcp(
    addr: SocketAddr,
    clients: usize,
    request: Vec<u8>,
    reply_len: usize,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .context("connect")?;
        stream.set_nodelay(true)?;
        let request = request.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut reply = vec![0; reply_len];
            load::closed_loop(window, async || {
                stream.write_all(&request).await?;
                stream.read_exact(&mut reply).await?;
                Ok(())
            })
            .await
        }));
    }
    load::merge(tasks).await
}

/// The bare tonic reference: the same API, answering `reply` to every GetTime.
struct Bare {
    reply: TimeReply,
}

#[tonic::async_trait]
impl TimeService for Bare {
    async fn get_time(
        &self,
        _request: Request<GetTimeRequest>,
    ) -> Result<Response<TimeReply>, Status> {
        Ok(Response::new(self.reply.clone()))
    }

    type WatchTimeStream = tokio_stream::Empty<Result<TimeReply, Status>>;

    async fn watch_time(
        &self,
        _request: Request<WatchTimeRequest>,
    ) -> Result<Response<Self::WatchTimeStream>, Status> {
        Err(Status::unimplemented("the reference serves GetTime only"))
    }
}

/// Starts the bare tonic server on its own thread (one-thread runtime); returns its address.
fn start_bare_tonic(reply: TimeReply) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("bare-tonic".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else { return };
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let _ = tonic::transport::Server::builder()
                    .add_service(TimeServiceServer::new(Bare { reply }))
                    .serve_with_incoming(incoming)
                    .await;
            });
        })
        .context("spawn the bare tonic thread")?;
    Ok(addr)
}

/// Starts the raw TCP reference on its own thread: reads `request_len` bytes, writes `reply`,
/// per connection (one thread each; the clients keep them busy in turn).
fn start_raw_tcp(request_len: usize, reply: Vec<u8>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("raw-tcp".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let reply = reply.clone();
                let _ = stream.set_nodelay(true);
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut request = vec![0; request_len];
                    while stream.read_exact(&mut request).is_ok() {
                        if stream.write_all(&reply).is_err() {
                            break;
                        }
                    }
                });
            }
        })
        .context("spawn the raw TCP thread")?;
    Ok(addr)
}
