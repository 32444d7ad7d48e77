//! Time service: GetTime at 1, 16 and 64 concurrent clients, each figure beside its references
//! measured in the same run — a bare tonic server of the same API answering a fixed reply of the
//! same size (built here, no Township code in it) and a raw TCP ping-pong of the same bytes. The
//! references run as processes of their own (this binary, started again), the bare tonic one on
//! the same runtime as the server process (one worker thread).

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
use township_client::Dialer;
use township_proto::time::v1::{
    GetTimeRequest, TimeReply, WatchTimeRequest,
    time_service_client::TimeServiceClient,
    time_service_server::{TimeService, TimeServiceServer},
};

use crate::{
    load::{self, Plan, Window},
    report::Report,
    row::Durable,
    server,
    targets::Target,
};

/// The systems measured at each concurrency, Township's first (the ratios are taken against it).
#[derive(Clone, Copy)]
enum System {
    /// The time-server with `--keepalive 0s`: no HTTP/2 pings, configured as the references are.
    Ours,
    Bare,
    RawTcp,
    /// The time-server as it ships (10 s keepalive pings).
    Shipped,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Ours => "time-server --keepalive 0s (no pings, as the references)",
            System::Bare => "bare tonic, same API and reply",
            System::RawTcp => "raw TCP ping-pong, same bytes",
            System::Shipped => "time-server, default 10 s HTTP/2 keepalive",
        }
    }
}

/// Runs the scenario: for each concurrency, Township's time-server configured as the references
/// are (no HTTP/2 keepalive pings), bare tonic, raw TCP, and the time-server as it ships (10 s
/// keepalive), taking turns round after round.
///
/// Then, open loop: GetTime started at `rate` per second over 16 connections, time-server beside
/// bare tonic, latency from each call's intended start, also in alternating rounds.
pub async fn run(plan: &Plan, rate: f64) -> anyhow::Result<Report> {
    let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
    // Configured as the references are (no HTTP/2 keepalive pings), and as it ships (10 s).
    let server = server::start("time-server", data.path(), &["--keepalive", "0s"]).await?;
    let ours_uri = format!("http://{}", server.addr);
    let shipped = server::start("time-server", data.path(), &[]).await?;
    let shipped_uri = format!("http://{}", shipped.addr);
    let request = GetTimeRequest {
        time_zone: "UTC".into(),
    };
    let reply = TimeServiceClient::new(connect(&ours_uri).await?)
        .get_time(request.clone())
        .await
        .context("GetTime")?
        .into_inner();
    let bare = start_reference(bare_tonic_spec(&reply)).await?;
    let bare_uri = format!("http://{}", bare.addr);
    let raw_tcp =
        start_reference(raw_tcp_spec(request.encoded_len(), &reply.encode_to_vec())).await?;
    let raw = raw_tcp.addr;
    let mut report = Report::default();
    let systems = [System::Ours, System::Bare, System::RawTcp, System::Shipped];
    for clients in [1, 16, 64] {
        let measured = plan
            .alternate(&systems, async |system, window| match system {
                System::Ours => grpc(&ours_uri, clients, &request, window).await,
                System::Bare => grpc(&bare_uri, clients, &request, window).await,
                System::RawTcp => {
                    let request = request.encode_to_vec();
                    tcp(raw, clients, request, reply.encoded_len(), window).await
                }
                System::Shipped => grpc(&shipped_uri, clients, &request, window).await,
            })
            .await?;
        let scenario = format!("time: GetTime, {clients} client(s)");
        let rows = systems
            .iter()
            .zip(&measured)
            .map(|(system, rounds)| rounds.row(&scenario, system.name(), Durable::NotApplicable))
            .collect::<anyhow::Result<Vec<_>>>()?;

        let target = Target::ratio_at_least(
            format!("time ≥ 0.95× bare tonic, {clients} client(s)"),
            &rows[0],
            &rows[1],
            0.95,
        );
        report.targets.push(target);
        report.rows.extend(rows);
    }
    let scenario = format!("time: GetTime, open loop at {rate:.0}/s");
    let open = [System::Ours, System::Bare];
    let measured = plan
        .alternate(&open, async |system, window| {
            let uri = match system {
                System::Bare => &bare_uri,
                _ => &ours_uri,
            };
            grpc_open_loop(uri, rate, &request, window).await
        })
        .await?;
    for (system, rounds) in open.iter().zip(&measured) {
        report
            .rows
            .push(rounds.row(&scenario, system.name(), Durable::NotApplicable)?);
    }
    report.footprints = vec![
        named(server.footprint()?, "time-server --keepalive 0s"),
        named(shipped.footprint()?, "time-server (default keepalive)"),
    ];
    Ok(report)
}

fn named(mut footprint: crate::report::Footprint, name: &str) -> crate::report::Footprint {
    footprint.server = name.to_owned();
    footprint
}

async fn connect(uri: &str) -> anyhow::Result<Channel> {
    server::dial(uri)
        .await
        .with_context(|| format!("connect to {uri}"))
}

/// `clients` closed-loop GetTime callers, each on its own connection (plaintext).
async fn grpc(
    uri: &str,
    clients: usize,
    request: &GetTimeRequest,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    grpc_dialing(&Dialer::new(), uri, clients, request, window).await
}

/// `clients` closed-loop GetTime callers, each on its own connection dialled by `dialer` (in
/// plaintext or over mutual TLS).
pub async fn grpc_dialing(
    dialer: &Dialer,
    uri: &str,
    clients: usize,
    request: &GetTimeRequest,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    load::each_client(
        clients,
        window,
        async |_| {
            let channel = dialer
                .connect(uri)
                .await
                .with_context(|| format!("connect to {uri}"))?;
            Ok(TimeServiceClient::new(channel))
        },
        |mut rpc, window| {
            let request = request.clone();
            async move {
                load::closed_loop(window, async || {
                    rpc.get_time(request.clone()).await.context("GetTime")?;
                    Ok(())
                })
                .await
            }
        },
    )
    .await
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

/// Set (to a reference's spec) in the environment of this binary when it is started as a
/// reference server: it then serves that reference instead of benchmarking (see [`serve`]).
pub const SERVE_REFERENCE: &str = "TOWNSHIP_BENCH_SERVE_REFERENCE";

/// A reference server: a process of its own, like the time-server (a thread of the benchmark's
/// process would switch to and from the load generator more cheaply than any other process
/// can). Killed when dropped.
struct Reference {
    addr: SocketAddr,
    _process: tokio::process::Child,
}

/// Starts this binary as the reference server described by `spec` and waits for its address.
async fn start_reference(spec: String) -> anyhow::Result<Reference> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut process = tokio::process::Command::new(exe)
        .env(SERVE_REFERENCE, &spec)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a reference server")?;
    let stdout = process.stdout.take().context("no stdout")?;
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::BufReader::new(stdout).lines().next_line(),
    )
    .await
    .context("the reference server did not start within 10 s")??
    .context("the reference server exited")?;
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|addr| addr.parse().ok())
        .with_context(|| format!("the reference server said {line:?}"))?;
    Ok(Reference {
        addr,
        _process: process,
    })
}

/// The bare tonic reference, answering `reply`.
fn bare_tonic_spec(reply: &TimeReply) -> String {
    format!("bare-tonic:{}", hex(&reply.encode_to_vec()))
}

/// The raw TCP reference: reads `request_len` bytes, writes `reply`, per connection.
fn raw_tcp_spec(request_len: usize, reply: &[u8]) -> String {
    format!("raw-tcp:{request_len}:{}", hex(reply))
}

/// Serves the reference of `spec` (see [`start_reference`]): prints `listening on ADDR`, then
/// serves until its stdin closes (the benchmark ended, however it ended).
pub fn serve(spec: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    println!("listening on {}", listener.local_addr()?);
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    match spec.split(':').collect::<Vec<_>>()[..] {
        ["bare-tonic", reply] => {
            let reply = TimeReply::decode(unhex(reply)?.as_slice()).context("reply")?;
            serve_bare_tonic(listener, reply)
        }
        ["raw-tcp", request_len, reply] => {
            let request_len = request_len.parse().context("request length")?;
            serve_raw_tcp(listener, request_len, unhex(reply)?);
            Ok(())
        }
        _ => anyhow::bail!("unknown reference {spec:?}"),
    }
}

/// Serves the bare tonic reference on the runtime the time-server has under the benchmark
/// (`#[tokio::main]` with `TOKIO_WORKER_THREADS=1`): one worker thread serving the connections,
/// the accept loop on the main thread; its sockets set as the kit sets them (no Nagle delay).
fn serve_bare_tonic(listener: TcpListener, reply: TimeReply) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        tonic::transport::Server::builder()
            .add_service(TimeServiceServer::new(Bare { reply }))
            .serve_with_incoming(incoming)
            .await
            .context("bare tonic")
    })
}

/// Serves the raw TCP reference: a thread per connection (the clients keep them busy in turn).
fn serve_raw_tcp(listener: TcpListener, request_len: usize, reply: Vec<u8>) {
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
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|byte| u8::from_str_radix(byte, 16).ok())
                .context("bad hex")
        })
        .collect()
}
