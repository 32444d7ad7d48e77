//! Lock service: acquire+release cycles per second and their latency, for 1 client, 16 clients on
//! distinct resources, and 16 clients on one resource (every cycle a hand-off). Each scenario
//! measures the lock-server beside its references in alternating rounds: etcd's v3 Lock API
//! (durable: it fsyncs every write) and the usual single-node Redis lock (`SET NX PX`, scripted
//! compare-and-delete release) twice, in memory (the like-for-like reference: the lock-server
//! keeps its leases in memory) and durable (`appendfsync always`). A reference that is not
//! installed or does not start gets a row saying so, never a figure. The lock-server's clients
//! are in [`crate::lock_client`]. Beside the single lock-server: the leader of three lock-servers
//! elected on etcd ([`crate::lock_ha`]), and afterwards the time each of `2 × rounds` failovers
//! takes.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use township_client::Dialer;
use township_references::{Etcd, Redis, RedisDurability};

use crate::{
    etcd,
    load::{self, Plan, Window},
    lock_client::{self, Api, UNCAPPED},
    lock_ha::Elected,
    redis,
    report::{Reference, Report},
    row::{Durable, Row},
    server,
    targets::Target,
};

/// One lock scenario: its name in the report, how many clients, and whether they all contend for
/// one resource (otherwise each has its own).
struct Scenario {
    name: &'static str,
    clients: usize,
    shared: bool,
    /// The least ratio to etcd this scenario's target asks of the lock-server.
    over_etcd: f64,
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

    /// The resource of each client, in order.
    fn resources(&self) -> Vec<String> {
        (0..self.clients).map(|i| self.resource(i)).collect()
    }
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "lock: 1 client",
        clients: 1,
        shared: false,
        over_etcd: 4.0,
    },
    Scenario {
        name: "lock: 16 clients, distinct resources",
        clients: 16,
        shared: false,
        over_etcd: 5.0,
    },
    Scenario {
        name: "lock: 16 clients, one resource",
        clients: 16,
        shared: true,
        over_etcd: 10.0,
    },
];

/// The systems of every scenario, in the order of its rows.
#[derive(Clone, Copy, PartialEq)]
enum System {
    Session,
    Unary,
    /// The leader of three lock-servers elected on etcd, Session stream.
    Elected,
    Etcd,
    Redis(RedisDurability),
}

const SYSTEMS: [System; 6] = [
    System::Session,
    System::Unary,
    System::Elected,
    System::Etcd,
    System::Redis(RedisDurability::InMemory),
    System::Redis(RedisDurability::EveryWrite),
];

/// What the lock-server keeps of a lease.
pub const LOCK_SERVER: Durable = Durable::No("leases in memory");

/// The references, started once for the whole benchmark, or why each could not be.
struct References {
    /// The elected lock-servers, with their leader's address.
    elected: Result<(String, Elected), String>,
    etcd: Result<(String, Etcd), String>,
    redis_memory: Result<(String, Redis), String>,
    redis_durable: Result<(String, Redis), String>,
}

impl References {
    async fn start(report: &mut Report) -> Self {
        let etcd = start(
            "etcd",
            "v3 Lock API",
            township_references::ETCD_PACKAGE,
            township_references::etcd_version(),
            Etcd::start,
            report,
        )
        .await;
        let redis_version = township_references::redis_version();
        let redis_version = || match &redis_version {
            Ok(version) => Ok(version.clone()),
            Err(err) => Err(anyhow::anyhow!("{err:#}")),
        };
        let redis_memory = start(
            "Redis",
            "SET NX PX + EVALSHA release, in memory",
            township_references::REDIS_PACKAGE,
            redis_version(),
            || Redis::start(RedisDurability::InMemory),
            report,
        )
        .await;
        let redis_durable = start(
            "Redis",
            "SET NX PX + EVALSHA release, appendfsync always",
            township_references::REDIS_PACKAGE,
            redis_version(),
            || Redis::start(RedisDurability::EveryWrite),
            report,
        )
        .await;
        report.references.dedup_by(|a, b| a.name == b.name);
        let elected = match Elected::start().await {
            Ok(elected) => match elected.leader_addr().await {
                Ok(leader) => Ok((leader, elected)),
                Err(err) => Err(format!("no leader: {err:#}")),
            },
            Err(err) => Err(format!("failed to start: {err:#}")),
        };
        if let Err(why) = &elected {
            eprintln!("township-bench: the elected lock-servers are not measured: {why}");
        }
        Self {
            elected,
            etcd,
            redis_memory,
            redis_durable,
        }
    }

    /// The report name of `system` and whether it is running (else why not).
    fn name(&self, system: System) -> Result<&str, (&str, &str)> {
        let running = match system {
            System::Session => return Ok("lock-server, Session stream"),
            System::Unary => return Ok("lock-server, Acquire + Release RPCs"),
            System::Elected => {
                return self
                    .elected
                    .as_ref()
                    .map(|_| "3 lock-servers elected on etcd: the leader, Session stream")
                    .map_err(|why| ("3 lock-servers elected on etcd", why.as_str()));
            }
            System::Etcd => self.etcd.as_ref().map(|(name, _)| name),
            System::Redis(RedisDurability::InMemory) => {
                self.redis_memory.as_ref().map(|(name, _)| name)
            }
            System::Redis(RedisDurability::EveryWrite) => {
                self.redis_durable.as_ref().map(|(name, _)| name)
            }
        };
        running.map(String::as_str).map_err(|why| match system {
            System::Etcd => ("etcd", why.as_str()),
            _ => ("Redis", why.as_str()),
        })
    }

    fn stop(self) -> anyhow::Result<()> {
        drop(self.elected);
        if let Ok((_, etcd)) = self.etcd {
            etcd.stop()?;
        }
        for redis in [self.redis_memory, self.redis_durable]
            .into_iter()
            .flatten()
        {
            redis.1.stop()?;
        }
        Ok(())
    }
}

fn durable(system: System) -> Durable {
    match system {
        System::Session | System::Unary | System::Elected => LOCK_SERVER,
        System::Etcd => Durable::Yes("WAL fsync per write"),
        System::Redis(RedisDurability::InMemory) => Durable::No("in memory, no AOF or snapshots"),
        System::Redis(RedisDurability::EveryWrite) => Durable::Yes("AOF, appendfsync always"),
    }
}

/// Starts a reference named `name` whose `version` was read from its binary (`None`: not
/// installed). Its report name is "`name` `version`, `api`"; if it is missing or fails to start,
/// the reason (with the package to install) is kept instead, and a warning printed.
async fn start<T: Send + 'static>(
    name: &str,
    api: &str,
    package: &str,
    version: anyhow::Result<Option<String>>,
    start: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    report: &mut Report,
) -> Result<(String, T), String> {
    let running = match version {
        Ok(Some(version)) => {
            report.references.push(Reference {
                name: name.to_owned(),
                version: version.clone(),
            });
            let started = tokio::task::spawn_blocking(start).await;
            match started {
                Ok(Ok(running)) => Ok((format!("{name} {version}, {api}"), running)),
                Ok(Err(err)) => Err(format!("failed to start: {err:#}")),
                Err(err) => Err(format!("failed to start: {err}")),
            }
        }
        Ok(None) => Err(format!("not installed: apt-get install {package}")),
        Err(err) => Err(format!("{err:#}; install: apt-get install {package}")),
    };
    if let Err(why) = &running {
        eprintln!("township-bench: {name} is not measured: {why}");
    }
    running
}

/// Runs the three lock scenarios, each on the lock-server beside etcd and Redis (started once,
/// beside it) in alternating rounds, so that each scenario's rows come out together, ours first.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
    let server = server::start("lock-server", data.path(), &UNCAPPED).await?;
    let addr = server.addr.to_string();
    let mut report = Report::default();
    let references = References::start(&mut report).await;
    // Leases outlive a scenario's whole run, as a session's keep-alives would make them.
    let whole = (plan.warmup + plan.round) * plan.rounds * SYSTEMS.len() as u32;
    let etcd_ttl = i64::try_from(whole.as_secs() + 60).context("lease TTL")?;
    for scenario in &SCENARIOS {
        let running: Vec<System> = SYSTEMS
            .into_iter()
            .filter(|s| references.name(*s).is_ok())
            .collect();
        let measured = plan
            .alternate(&running, async |system, window| match *system {
                System::Session | System::Unary => {
                    let api = if *system == System::Session {
                        Api::Session
                    } else {
                        Api::Unary
                    };
                    let resources = scenario.resources();
                    lock_client::round(&Dialer::new(), &addr, &resources, api, window).await
                }
                System::Elected => {
                    let (leader, _) = references
                        .elected
                        .as_ref()
                        .map_err(|why| anyhow::anyhow!("{why}"))?;
                    let resources = scenario.resources();
                    lock_client::round(&Dialer::new(), leader, &resources, Api::Session, window)
                        .await
                }
                System::Etcd => {
                    let (_, etcd) = references
                        .etcd
                        .as_ref()
                        .map_err(|why| anyhow::anyhow!("{why}"))?;
                    etcd_round(scenario, etcd.client_url(), etcd_ttl, window).await
                }
                System::Redis(RedisDurability::InMemory) => {
                    let (_, redis) = references
                        .redis_memory
                        .as_ref()
                        .map_err(|why| anyhow::anyhow!("{why}"))?;
                    redis_round(scenario, &redis.url(), window).await
                }
                System::Redis(RedisDurability::EveryWrite) => {
                    let (_, redis) = references
                        .redis_durable
                        .as_ref()
                        .map_err(|why| anyhow::anyhow!("{why}"))?;
                    redis_round(scenario, &redis.url(), window).await
                }
            })
            .await?;
        let mut rows = Vec::new();
        for system in SYSTEMS {
            rows.push(match references.name(system) {
                Ok(name) => {
                    let at = running
                        .iter()
                        .position(|s| *s == system)
                        .context("measured")?;
                    measured[at].row(scenario.name, name, durable(system))?
                }
                Err((name, why)) => Row::missing(scenario.name, name, durable(system), why),
            });
        }

        let (ours, elected, etcd, redis_memory) = (&rows[0], &rows[2], &rows[3], &rows[4]);
        let targets = [
            Target::ratio_at_least(
                format!("{}: elected on etcd ≥ 0.9× one lock-server", scenario.name),
                elected,
                ours,
                0.9,
            ),
            Target::ratio_at_least(
                format!("{} ≥ 1.0× in-memory Redis", scenario.name),
                ours,
                redis_memory,
                1.0,
            ),
            Target::ratio_at_least(
                format!("{} ≥ {}× etcd", scenario.name, scenario.over_etcd),
                ours,
                etcd,
                scenario.over_etcd,
            ),
        ];
        report.targets.extend(targets);
        report.rows.extend(rows);
    }
    report.footprints.push(server.footprint()?);
    let mut references = references;
    let name = "lock failover: kill -9 of the leader to the next grant, 2 s lease: median ≤ 3 s, \
                max ≤ 5 s";
    report.targets.push(match references.elected.as_mut() {
        Ok((_, elected)) => {
            let took = elected.failovers(2 * plan.rounds as usize).await?;
            println!("lock failovers: {took:?}");
            Target::durations_at_most(name, &took, Duration::from_secs(3), Duration::from_secs(5))
        }
        Err(why) => Target::durations_at_most(name, &[], Duration::ZERO, Duration::ZERO)
            .not_measured_because(why),
    });
    tokio::task::spawn_blocking(move || references.stop())
        .await
        .context("stop the references")??;
    Ok(report)
}

/// An etcd round: each client on its own connection, with one lease of `lease_ttl` seconds
/// granted before the window and held for all its cycles.
async fn etcd_round(
    scenario: &Scenario,
    uri: &str,
    lease_ttl: i64,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    load::each_client(
        scenario.clients,
        window,
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

/// A Redis round: the clients share one multiplexed connection, as the `redis` crate's
/// documentation recommends (see [`redis::connect`]).
async fn redis_round(
    scenario: &Scenario,
    url: &str,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let (connection, release) = redis::connect(url).await?;
    load::each_client(
        scenario.clients,
        window,
        async |i| Ok((connection.clone(), scenario.resource(i), i, release.clone())),
        |(connection, key, i, release), window| redis::cycles(connection, key, i, release, window),
    )
    .await
}
