//! Lock service: acquire+release cycles per second and their latency, for 1 client, 16 clients on
//! distinct resources, and 16 clients on one resource (every cycle a hand-off). Each scenario is
//! measured on the lock-server, then on its references in the same run: etcd's v3 Lock API and
//! the usual single-node Redis lock (`SET NX PX`, Lua compare-and-delete release), all durable.
//! A reference that is not installed or does not start gets a row saying so, never a figure.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use township_proto::lock::v1::{
    AcquireRequest, LockTarget, Mode, ReleaseRequest, SessionRequest, SessionResponse,
    lock_service_client::LockServiceClient, session_request, session_response,
};

use crate::{
    etcd,
    load::{self, Window},
    redis::{self, Reply},
    report::Report,
    row::Row,
    server,
};

/// One lock scenario: its name in the report, how many clients, and whether they all contend for
/// one resource (otherwise each has its own).
struct Scenario {
    name: &'static str,
    clients: usize,
    shared: bool,
}

impl Scenario {
    /// The resource (lock name, key) client `i` cycles on.
    fn resource(&self, i: usize) -> String {
        if self.shared {
            "bench/shared".to_owned()
        } else {
            format!("bench/{i}")
        }
    }
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "lock: 1 client",
        clients: 1,
        shared: false,
    },
    Scenario {
        name: "lock: 16 clients, distinct resources",
        clients: 16,
        shared: false,
    },
    Scenario {
        name: "lock: 16 clients, one resource",
        clients: 16,
        shared: true,
    },
];

/// A reference system started for this run under its report name, or why it could not be.
struct Reference<T> {
    system: String,
    running: Result<T, String>,
}

/// Runs the three lock scenarios against one fresh lock-server, then each against etcd and Redis
/// (started once, beside it), so that each scenario's rows come out together, ours first.
pub async fn run(duration: Duration, warmup: Duration) -> anyhow::Result<Report> {
    let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
    let server = server::start("lock-server", data.path(), &[]).await?;
    let uri = format!("http://{}", server.addr);
    let etcd = reference(
        "etcd",
        "v3 Lock API",
        "apt-get install etcd-server",
        etcd::version().await,
        etcd::start,
    )
    .await;
    let redis = reference(
        "Redis",
        "SET NX PX + Lua release",
        "apt-get install redis-server",
        redis::version().await,
        redis::start,
    )
    .await;
    // Leases outlive a scenario's whole window, as a session's keep-alives would make them.
    let etcd_ttl = i64::try_from((warmup + duration).as_secs() + 60).context("lease TTL")?;
    let mut report = Report::default();
    for scenario in &SCENARIOS {
        report
            .rows
            .push(measure_lock_server(scenario, &uri, Api::Session, duration, warmup).await?);
        report
            .rows
            .push(measure_lock_server(scenario, &uri, Api::Unary, duration, warmup).await?);
        report.rows.push(match &etcd.running {
            Ok(running) => {
                measure_etcd(
                    scenario,
                    &etcd.system,
                    &running.uri,
                    etcd_ttl,
                    duration,
                    warmup,
                )
                .await?
            }
            Err(why) => Row::missing(scenario.name, &etcd.system, why),
        });
        report.rows.push(match &redis.running {
            Ok(running) => {
                measure_redis(scenario, &redis.system, &running.addr, duration, warmup).await?
            }
            Err(why) => Row::missing(scenario.name, &redis.system, why),
        });
    }
    report.footprints.push(server.footprint()?);
    if let Ok(running) = etcd.running {
        running.stop().await?;
    }
    if let Ok(running) = redis.running {
        running.stop().await?;
    }
    Ok(report)
}

/// Starts a reference named `name` whose `version` was read from its binary (`None`: not on
/// `PATH`). Its report name is "`name` `version`, `api`"; if it is missing or fails to start the
/// reason (with `install`) is kept instead, and a warning printed.
async fn reference<T>(
    name: &str,
    api: &str,
    install: &str,
    version: anyhow::Result<Option<String>>,
    start: impl AsyncFnOnce() -> anyhow::Result<T>,
) -> Reference<T> {
    let (system, running) = match version {
        Ok(Some(version)) => {
            let system = format!("{name} {version}, {api}");
            let running = start()
                .await
                .map_err(|err| format!("failed to start: {err:#}"));
            (system, running)
        }
        Ok(None) => (name.to_owned(), Err(format!("not installed: {install}"))),
        Err(err) => (name.to_owned(), Err(format!("{err:#}; install: {install}"))),
    };
    if let Err(why) = &running {
        eprintln!("township-bench: {name} is not measured: {why}");
    }
    Reference { system, running }
}

/// Connects `scenario.clients` clients with `connect` (given each client's index), then runs
/// `cycles` on every one of them over one window, and returns the row of `system`.
async fn measure<C, F>(
    scenario: &Scenario,
    system: &str,
    duration: Duration,
    warmup: Duration,
    mut connect: impl AsyncFnMut(usize) -> anyhow::Result<C>,
    cycles: impl Fn(C, Window) -> F,
) -> anyhow::Result<Row>
where
    F: Future<Output = anyhow::Result<Histogram<u64>>> + 'static,
{
    let mut connected = Vec::with_capacity(scenario.clients);
    for i in 0..scenario.clients {
        connected.push(connect(i).await?);
    }
    let window = Window::starting_now(warmup, duration);
    let tasks = connected
        .into_iter()
        .map(|client| tokio::task::spawn_local(cycles(client, window)))
        .collect();
    let histogram = load::merge(tasks).await?;
    Ok(Row::from_histogram(
        scenario.name,
        system,
        &histogram,
        duration,
    ))
}

/// How a lock-server client asks.
#[derive(Clone, Copy)]
enum Api {
    /// One Session stream per client: each cycle is an acquire answered with its lease, and the
    /// release goes out at once, ahead of the next acquire (one round trip per cycle), as the
    /// bank's lock client does.
    Session,
    /// The Acquire and Release RPCs: two calls, two round trips per cycle.
    Unary,
}

/// A lock-server row: each client on its own connection, asking through `api`.
async fn measure_lock_server(
    scenario: &Scenario,
    uri: &str,
    api: Api,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Row> {
    let system = match api {
        Api::Session => "lock-server, Session stream",
        Api::Unary => "lock-server, Acquire + Release RPCs",
    };
    measure(
        scenario,
        system,
        duration,
        warmup,
        async |i| {
            let channel = server::dial(uri).await.context("connect")?;
            Ok((channel, scenario.resource(i)))
        },
        move |(channel, resource), window| async move {
            match api {
                Api::Session => session_cycles(channel, resource, window).await,
                Api::Unary => unary_cycles(channel, resource, window).await,
            }
        },
    )
    .await
}

/// The lock-server's acquire request in every cycle: a write lock with a 10 s lease.
fn acquire_request(resource: String) -> AcquireRequest {
    AcquireRequest {
        targets: vec![LockTarget {
            resource,
            mode: Mode::Write.into(),
        }],
        ttl: Some(prost_types::Duration {
            seconds: 10,
            nanos: 0,
        }),
        wait_timeout: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        owner: "bench".into(),
    }
}

/// One closed-loop lock-server client on a Session stream: acquire (write), and on the grant send
/// the release, whose answer is read while waiting for the next grant. Every answer is checked;
/// after the window the stream is closed and the last release's answer awaited.
async fn session_cycles(
    channel: Channel,
    resource: String,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut client = LockServiceClient::new(channel);
    let request = acquire_request(resource);
    let (tx, rx) = mpsc::channel(4);
    let mut answers = client
        .session(ReceiverStream::new(rx))
        .await
        .context("open a Session")?
        .into_inner();
    let mut next_id = 0u64;
    let histogram = load::closed_loop(window, async || {
        next_id += 1;
        let acquire_id = next_id;
        let acquire = session_request::Op::Acquire(request.clone());
        send(&tx, acquire_id, acquire).await?;
        loop {
            let answer = next_answer(&mut answers).await?;
            match answer.result {
                Some(session_response::Result::Lease(lease)) if answer.request_id == acquire_id => {
                    next_id += 1;
                    let release = session_request::Op::Release(ReleaseRequest {
                        lease_id: lease.lease_id,
                    });
                    return send(&tx, next_id, release).await;
                }
                Some(session_response::Result::Released(_)) => {}
                other => bail!("Session answered request {}: {other:?}", answer.request_id),
            }
        }
    })
    .await?;
    drop(tx);
    while let Some(answer) = answers.message().await.context("Session")? {
        if !matches!(answer.result, Some(session_response::Result::Released(_))) {
            bail!("Session answered a release with {:?}", answer.result);
        }
    }
    Ok(histogram)
}

async fn send(
    tx: &mpsc::Sender<SessionRequest>,
    request_id: u64,
    op: session_request::Op,
) -> anyhow::Result<()> {
    let request = SessionRequest {
        request_id,
        op: Some(op),
    };
    tx.send(request).await.context("the Session stream ended")
}

async fn next_answer(
    answers: &mut tonic::Streaming<SessionResponse>,
) -> anyhow::Result<SessionResponse> {
    answers
        .message()
        .await
        .context("Session")?
        .context("the Session stream ended early")
}

/// One closed-loop lock-server client: Acquire (write) then Release, again and again. Every
/// Acquire creates a lease with a 10 s TTL.
async fn unary_cycles(
    channel: Channel,
    resource: String,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut client = LockServiceClient::new(channel);
    let request = acquire_request(resource);
    load::closed_loop(window, async || {
        let lease = client
            .acquire(request.clone())
            .await
            .context("acquire")?
            .into_inner();
        client
            .release(ReleaseRequest {
                lease_id: lease.lease_id,
            })
            .await
            .context("release")?;
        Ok(())
    })
    .await
}

/// etcd's row: each client on its own connection, with one lease of `lease_ttl` seconds granted
/// before the window and held for all its cycles.
async fn measure_etcd(
    scenario: &Scenario,
    system: &str,
    uri: &str,
    lease_ttl: i64,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Row> {
    measure(
        scenario,
        system,
        duration,
        warmup,
        async |i| {
            let mut client = etcd::Client::connect(uri).await?;
            let lease = client
                .lease_grant(lease_ttl)
                .await
                .context("etcd LeaseGrant")?;
            Ok((client, scenario.resource(i), lease))
        },
        |(client, name, lease), window| etcd_cycles(client, name, lease, window),
    )
    .await
}

/// One closed-loop etcd client: Lock(name, lease) then Unlock(key), again and again, under the
/// one lease granted before the window — the way etcd's own `concurrency.Mutex` reuses its
/// session's lease. This favours etcd: the lock-server creates a lease (with its TTL) on every
/// Acquire, here no cycle pays for one. Contenders for one name queue in etcd (each waits for
/// the key before its own to be deleted), so a hand-off needs no retry.
async fn etcd_cycles(
    mut client: etcd::Client,
    name: String,
    lease: i64,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    load::closed_loop(window, async || {
        let key = client
            .lock(name.as_bytes(), lease)
            .await
            .context("etcd Lock")?;
        client.unlock(key).await.context("etcd Unlock")?;
        Ok(())
    })
    .await
}

/// How long a Redis lock lives unless released, the lock-server's lease TTL.
const REDIS_TTL_MS: &[u8] = b"10000";

/// How long a Redis client waits before asking again for a lock that is held. Redis has no
/// queue: a client that finds the lock taken can only retry. A fixed short delay is the usual
/// pattern; 1 ms is the finest a tokio timer resolves, so it is the most favourable delay that
/// does not busy-spin (spinning would steal the one load-generator thread, and Redis's one core,
/// from the holder's release).
const REDIS_RETRY_DELAY: Duration = Duration::from_millis(1);

/// A Redis client still refused the lock after this long fails the benchmark (the lock-server's
/// `wait_timeout`), so a retry loop can never outlive its window by more.
const REDIS_GIVE_UP: Duration = Duration::from_secs(30);

/// Redis's row: each client on its own connection, with the release script loaded.
async fn measure_redis(
    scenario: &Scenario,
    system: &str,
    addr: &str,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Row> {
    measure(
        scenario,
        system,
        duration,
        warmup,
        async |i| {
            let mut client = redis::Client::connect(addr).await?;
            let sha = match client
                .command(&[b"SCRIPT", b"LOAD", redis::RELEASE_SCRIPT.as_bytes()])
                .await
                .context("Redis SCRIPT LOAD")?
            {
                Reply::Bulk(Some(sha)) => sha,
                other => bail!("Redis SCRIPT LOAD answered {other:?}"),
            };
            Ok((client, scenario.resource(i), i, sha))
        },
        |(client, key, i, sha), window| redis_cycles(client, key, i, sha, window),
    )
    .await
}

/// One closed-loop Redis client (number `index`): `SET key token NX PX 10000`, retried after
/// [`REDIS_RETRY_DELAY`] while the lock is held, then `EVALSHA` of the compare-and-delete script,
/// which must answer 1. Each cycle's token is unique (client index and counter), and its latency
/// includes its retries; only completed cycles are counted.
async fn redis_cycles(
    mut client: redis::Client,
    key: String,
    index: usize,
    release_sha: Vec<u8>,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut counter: u64 = 0;
    load::closed_loop(window, async || {
        counter += 1;
        let token = format!("bench-{index}-{counter}");
        let asked = Instant::now();
        loop {
            let set = [
                b"SET".as_slice(),
                key.as_bytes(),
                token.as_bytes(),
                b"NX",
                b"PX",
                REDIS_TTL_MS,
            ];
            match client.command(&set).await.context("Redis SET NX")? {
                Reply::Simple(ok) if ok == "OK" => break,
                Reply::Bulk(None) if asked.elapsed() < REDIS_GIVE_UP => {
                    tokio::time::sleep(REDIS_RETRY_DELAY).await;
                }
                Reply::Bulk(None) => bail!("Redis lock {key} still held after {REDIS_GIVE_UP:?}"),
                other => bail!("Redis SET NX answered {other:?}"),
            }
        }
        let release = [
            b"EVALSHA".as_slice(),
            &release_sha,
            b"1",
            key.as_bytes(),
            token.as_bytes(),
        ];
        match client.command(&release).await.context("Redis release")? {
            Reply::Integer(1) => Ok(()),
            other => bail!("Redis release of {key} answered {other:?}: the lock was lost"),
        }
    })
    .await
}
