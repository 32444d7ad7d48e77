//! Bank: transfers per second and their latency with the lock service in the loop, with one
//! bank replica and with two replicas sharing one data file and one lock service; beside the one
//! replica, in alternating rounds, PostgreSQL's own pgbench (TPC-B and simple update) on a
//! throwaway PostgreSQL, the reference a user would otherwise pick. Last, transfers among a few
//! hot accounts, where every transfer waits for another's locks.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tonic::{Request, transport::Channel};
use township_proto::bank::v1::{
    LoginRequest, OpenAccountRequest, TransferRequest, bank_service_client::BankServiceClient,
};
use township_references::Postgres;

use crate::{
    load::{self, Plan, Window},
    lock_client,
    pgbench::{self, Pgbench},
    report::{Reference, Report},
    row::{Durable, Row},
    server,
    targets::Target,
};

/// Accounts the clients move money between (random pairs: a little contention, as at a real bank).
const ACCOUNTS: usize = 200;
/// Concurrent closed-loop clients: 16 ATMs, whose figure is bounded by each transfer's round
/// trips, and 64, enough to keep the bank busy, which is how its capacity is measured.
const CLIENTS: [usize; 2] = [16, 64];
/// Accounts of the hot scenario (one replica, 16 clients): every transfer contends for its
/// accounts' locks, so the figure is bounded by how long each transfer holds them.
const HOT_ACCOUNTS: usize = 4;
const PIN: &str = "2468";
/// pgbench's scale: 16 branches (one per client at 16), 1.6 million accounts.
const SCALE: u32 = 16;
/// What the bank promises of an acknowledged transfer.
const BANK: Durable =
    Durable::Yes("SQLite WAL, each group of transfers flushed (fdatasync) before it is answered");
const POSTGRES: Durable = Durable::Yes("fsync on, synchronous_commit on");

/// The systems measured in each bank scenario.
#[derive(Clone, Copy, PartialEq)]
enum System {
    Bank,
    Pgbench(pgbench::Script),
}

/// PostgreSQL with pgbench's tables.
struct Pgsql {
    postgres: Postgres,
    pgbench: Pgbench,
    version: String,
    scale: u32,
}

/// Runs the bank scenarios, each against fresh servers; pgbench's database is made once.
pub async fn run(plan: &Plan, smoke: bool) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut reference = start_postgres(if smoke { 1 } else { SCALE }, &mut report).await;
    for replicas in [1, 2] {
        for clients in CLIENTS {
            let scenario = Scenario {
                replicas,
                clients,
                accounts: ACCOUNTS,
            };
            measure(plan, scenario, &mut reference, &mut report).await?;
        }
    }
    let hot = Scenario {
        replicas: 1,
        clients: 16,
        accounts: HOT_ACCOUNTS,
    };
    measure(plan, hot, &mut reference, &mut report).await?;
    if let Ok(running) = reference {
        tokio::task::spawn_blocking(move || running.postgres.stop())
            .await
            .context("stop PostgreSQL")??;
    }
    Ok(report)
}

/// Starts PostgreSQL and initializes pgbench's tables at `scale`, or says why it could not.
async fn start_postgres(scale: u32, report: &mut Report) -> Result<Pgsql, String> {
    let package = township_references::POSTGRES_PACKAGE;
    let started = async {
        let Some(version) = township_references::postgres_version()? else {
            anyhow::bail!("not installed: apt-get install {package}");
        };
        report.references.push(Reference {
            name: "PostgreSQL".into(),
            version: version.clone(),
        });
        let postgres = tokio::task::spawn_blocking(Postgres::start)
            .await
            .context("start PostgreSQL")??;
        let pgbench = Pgbench::init(&postgres, scale).await?;
        Ok(Pgsql {
            postgres,
            pgbench,
            version,
            scale,
        })
    };
    started.await.map_err(|err: anyhow::Error| {
        let why = format!("{err:#}");
        eprintln!("township-bench: PostgreSQL is not measured: {why}");
        why
    })
}

/// One bank scenario: how many replicas, clients and accounts.
#[derive(Clone, Copy)]
struct Scenario {
    replicas: usize,
    clients: usize,
    accounts: usize,
}

impl Scenario {
    /// Whether pgbench runs beside it: one replica among the usual accounts.
    fn has_reference(self) -> bool {
        self.replicas == 1 && self.accounts == ACCOUNTS
    }
}

async fn measure(
    plan: &Plan,
    scenario: Scenario,
    reference: &mut Result<Pgsql, String>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let Scenario {
        replicas,
        clients,
        accounts,
    } = scenario;
    let lock_dir = tempfile::tempdir().context("temporary dir")?;
    let bank_dir = tempfile::tempdir().context("temporary dir")?;
    // Caps raised: the bank replicas are one principal holding every transfer's leases.
    let lock = server::start("lock-server", lock_dir.path(), &lock_client::UNCAPPED).await?;
    let lock_addr = lock.addr.to_string();
    let mut banks = Vec::new();
    for _ in 0..replicas {
        banks.push(
            server::start("bank-server", bank_dir.path(), &["--lock-addr", &lock_addr]).await?,
        );
    }
    let admin =
        std::fs::read_to_string(bank_dir.path().join("admin-token")).context("admin token")?;
    let first = connect(banks[0].addr).await?;
    let accounts = open_accounts(&first, admin.trim(), accounts).await?;
    let token = login(&first).await?;

    let scripts = [pgbench::Script::SimpleUpdate, pgbench::Script::TpcB];
    let mut systems = vec![System::Bank];
    if scenario.has_reference() && reference.is_ok() {
        systems.extend(scripts.map(System::Pgbench));
    }
    let servers: Vec<&server::Server> = std::iter::once(&lock).chain(&banks).collect();
    let mut cpu = vec![Duration::ZERO; servers.len()];
    let mut transfers = 0u64;
    let measured = plan
        .alternate(&systems, async |system, window| match system {
            System::Bank => {
                let round = transfer_round(&banks, clients, &token, &accounts, window);
                let (histogram, used) = tokio::join!(round, server::cpu_during(window, &servers));
                let histogram = histogram?;
                for (total, used) in cpu.iter_mut().zip(used?) {
                    *total += used;
                }
                transfers += histogram.len();
                Ok(histogram)
            }
            System::Pgbench(script) => match reference {
                Ok(running) => running.pgbench.round(*script, clients, window).await,
                Err(why) => anyhow::bail!("PostgreSQL is not running: {why}"),
            },
        })
        .await?;
    let mut name = format!(
        "bank: transfers, {clients} clients, {replicas} replica{}",
        if replicas == 1 { "" } else { "s" }
    );
    if accounts.len() != ACCOUNTS {
        name.push_str(&format!(", {} hot accounts", accounts.len()));
    }
    let mut rows = vec![measured[0].row(&name, "bank-server", BANK)?];
    if scenario.has_reference() {
        for (i, script) in scripts.into_iter().enumerate() {
            rows.push(match &*reference {
                Ok(running) => {
                    let system = format!(
                        "PostgreSQL {}, {} (scale {})",
                        running.version,
                        script.name(),
                        running.scale
                    );
                    measured[i + 1].row(&name, system, POSTGRES)?
                }
                Err(why) => Row::missing(
                    &name,
                    format!("PostgreSQL, {}", script.name()),
                    POSTGRES,
                    why,
                ),
            });
        }
    }

    if scenario.has_reference() && clients == 16 {
        for (i, at_least) in [1.0, 2.0].into_iter().enumerate() {
            let target = format!("bank ≥ {at_least}× {}, 16 clients", scripts[i].name());
            let target = Target::ratio_at_least(target, &rows[0], &rows[i + 1], at_least);
            report.targets.push(target);
        }
    }
    report.rows.extend(rows);
    let replicas_named = format!(
        "{replicas} bank replica(s), {clients} clients, {} accounts",
        accounts.len()
    );
    let transfers = transfers.max(1) as f64;
    for (server, cpu) in servers.iter().zip(cpu) {
        let mut footprint = server.footprint()?;
        footprint.server = format!("{} (with {replicas_named})", footprint.server);
        footprint.cpu_us_per_op = Some(cpu.as_secs_f64() * 1e6 / transfers);
        report.footprints.push(footprint);
    }
    Ok(())
}

/// One round of `clients` closed-loop clients transferring, spread over the replicas.
async fn transfer_round(
    banks: &[server::Server],
    clients: usize,
    token: &str,
    accounts: &[String],
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut tasks = Vec::new();
    for i in 0..clients {
        let channel = connect(banks[i % banks.len()].addr).await?;
        let client = Client {
            rpc: BankServiceClient::new(channel),
            token: token.to_owned(),
            accounts: accounts.to_vec(),
        };
        tasks.push(tokio::task::spawn_local(
            client.transfers(i as u64 + 1, window),
        ));
    }
    load::merge(tasks).await
}

async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    server::dial(&addr.to_string())
        .await
        .context("connect to the bank")
}

fn authorized<T>(message: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

async fn open_accounts(channel: &Channel, admin: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut rpc = BankServiceClient::new(channel.clone());
    let mut accounts = Vec::new();
    for _ in 0..n {
        let open = OpenAccountRequest {
            holder_name: "bench".into(),
            pin: PIN.into(),
            initial_deposit_cents: 1_000_000_000,
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        accounts.push(
            rpc.open_account(authorized(open, admin)?)
                .await
                .context("open account")?
                .into_inner()
                .account_id,
        );
    }
    Ok(accounts)
}

async fn login(channel: &Channel) -> anyhow::Result<String> {
    let mut rpc = BankServiceClient::new(channel.clone());
    let login = LoginRequest {
        holder_name: "bench".into(),
        pin: PIN.into(),
    };
    Ok(rpc
        .login(login)
        .await
        .context("login")?
        .into_inner()
        .session_token)
}

struct Client {
    rpc: BankServiceClient<Channel>,
    token: String,
    accounts: Vec<String>,
}

impl Client {
    /// Transfers 1 cent between random accounts, again and again.
    async fn transfers(mut self, seed: u64, window: Window) -> anyhow::Result<Histogram<u64>> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        load::closed_loop(window, async || {
            let from = next(self.accounts.len());
            let to = (from + 1 + next(self.accounts.len() - 1)) % self.accounts.len();
            let transfer = TransferRequest {
                from_account_id: self.accounts[from].clone(),
                to_account_id: self.accounts[to].clone(),
                amount_cents: 1,
                request_id: uuid::Uuid::new_v4().to_string(),
            };
            self.rpc
                .transfer(authorized(transfer, &self.token)?)
                .await
                .context("transfer")?;
            Ok(())
        })
        .await
    }
}
