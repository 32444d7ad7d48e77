//! Bank: transfers per second and their latency with the lock service in the loop, with one and
//! two bank replicas on SQLite (sharing one data file) and on PostgreSQL (one database, a data
//! directory each), each with its own lock service; beside them, in alternating rounds,
//! PostgreSQL's own pgbench (TPC-B and simple update) on the same throwaway PostgreSQL, the
//! reference a user would otherwise pick. Last, transfers among a few hot accounts, where every
//! transfer waits for another's locks.

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
/// What the bank on SQLite promises of an acknowledged transfer.
const BANK: Durable =
    Durable::Yes("SQLite WAL, each group of transfers flushed (fdatasync) before it is answered");
/// What the bank on PostgreSQL promises of an acknowledged transfer.
const BANK_ON_POSTGRES: Durable = Durable::Yes(
    "PostgreSQL (fsync, synchronous_commit on), each group of transfers committed before it is answered",
);
const POSTGRES: Durable = Durable::Yes("fsync on, synchronous_commit on");

/// The systems measured in each bank scenario: one of its bank setups, or pgbench.
#[derive(Clone, Copy, PartialEq)]
enum System {
    Bank(usize),
    Pgbench(pgbench::Script),
}

/// Where a bank keeps its ledger.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Store {
    Sqlite,
    Postgres,
}

/// One bank under test: how many replicas, on which store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Setup {
    replicas: usize,
    store: Store,
}

/// The bank setups measured side by side at 16 and at 64 clients.
const SETUPS: [Setup; 4] = [
    Setup {
        replicas: 1,
        store: Store::Sqlite,
    },
    Setup {
        replicas: 2,
        store: Store::Sqlite,
    },
    Setup {
        replicas: 1,
        store: Store::Postgres,
    },
    Setup {
        replicas: 2,
        store: Store::Postgres,
    },
];

/// PostgreSQL with pgbench's tables.
struct Pgsql {
    postgres: Postgres,
    pgbench: Pgbench,
    version: String,
    scale: u32,
}

/// Runs the bank scenarios, each against fresh servers; pgbench's database is made once, on the
/// PostgreSQL the banks on PostgreSQL use too (each setup its own database).
pub async fn run(plan: &Plan, smoke: bool) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut reference = start_postgres(if smoke { 1 } else { SCALE }, &mut report).await;
    for clients in CLIENTS {
        let scenario = Scenario {
            setups: &SETUPS,
            clients,
            accounts: ACCOUNTS,
        };
        measure(plan, scenario, &mut reference, &mut report).await?;
    }
    let hot = Scenario {
        setups: &SETUPS[..1],
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

/// One bank scenario: the bank setups side by side, how many clients and accounts.
#[derive(Clone, Copy)]
struct Scenario {
    setups: &'static [Setup],
    clients: usize,
    accounts: usize,
}

impl Scenario {
    /// Whether pgbench runs beside the banks: among the usual accounts.
    fn has_reference(self) -> bool {
        self.accounts == ACCOUNTS
    }

    /// The scenario's name for `setup`.
    fn name(self, setup: Setup) -> String {
        let Setup { replicas, store } = setup;
        let mut name = format!(
            "bank: transfers, {} clients, {replicas} replica{}",
            self.clients,
            if replicas == 1 { "" } else { "s" }
        );
        if store == Store::Postgres {
            name.push_str(" on PostgreSQL");
        }
        if self.accounts != ACCOUNTS {
            name.push_str(&format!(", {} hot accounts", self.accounts));
        }
        name
    }
}

/// A bank setup running: its lock-server and replicas, its accounts and a session, and what
/// its rounds used.
struct Bank {
    setup: Setup,
    lock: server::Server,
    banks: Vec<server::Server>,
    accounts: Vec<String>,
    token: String,
    cpu: Vec<Duration>,
    transfers: u64,
    _dirs: Vec<tempfile::TempDir>,
}

impl Bank {
    /// Starts `setup` (on PostgreSQL, a fresh database of `postgres` named `database`) and
    /// opens `accounts` accounts.
    async fn start(
        setup: Setup,
        postgres: Option<&Postgres>,
        database: &str,
        accounts: usize,
    ) -> anyhow::Result<Bank> {
        let lock_dir = tempfile::tempdir().context("temporary dir")?;
        // Caps raised: the bank replicas are one principal holding every transfer's leases.
        let lock = server::start("lock-server", lock_dir.path(), &lock_client::UNCAPPED).await?;
        let lock_addr = lock.addr.to_string();
        let url = match postgres {
            Some(postgres) => Some(pgbench::new_database(postgres, database).await?),
            None => None,
        };
        let mut dirs = vec![lock_dir];
        let mut banks = Vec::new();
        for replica in 0..setup.replicas {
            // SQLite: the replicas share one data directory; PostgreSQL: one each.
            if replica == 0 || url.is_some() {
                dirs.push(tempfile::tempdir().context("temporary dir")?);
            }
            let dir = dirs.last().expect("a data directory").path();
            let token_file = dirs[1].path().join("admin-token");
            let token_file = token_file.to_str().context("a UTF-8 temporary path")?;
            let mut args = vec!["--lock-addr", &lock_addr, "--admin-token-file", token_file];
            if let Some(url) = &url {
                args.extend(["--database-url", url]);
            }
            banks.push(server::start("bank-server", dir, &args).await?);
        }
        let admin =
            std::fs::read_to_string(dirs[1].path().join("admin-token")).context("admin token")?;
        let first = connect(banks[0].addr).await?;
        let accounts = open_accounts(&first, admin.trim(), accounts).await?;
        let token = login(&first).await?;
        let cpu = vec![Duration::ZERO; 1 + banks.len()];
        Ok(Bank {
            setup,
            lock,
            banks,
            accounts,
            token,
            cpu,
            transfers: 0,
            _dirs: dirs,
        })
    }

    /// The lock-server and the replicas.
    fn servers(&self) -> Vec<&server::Server> {
        std::iter::once(&self.lock).chain(&self.banks).collect()
    }
}

async fn measure(
    plan: &Plan,
    scenario: Scenario,
    reference: &mut Result<Pgsql, String>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let Scenario {
        setups, clients, ..
    } = scenario;
    let mut running = Vec::new();
    let mut missing = Vec::new();
    for (i, &setup) in setups.iter().enumerate() {
        let postgres = match (setup.store, &*reference) {
            (Store::Sqlite, _) => None,
            (Store::Postgres, Ok(pgsql)) => Some(&pgsql.postgres),
            (Store::Postgres, Err(why)) => {
                missing.push((setup, why.clone()));
                continue;
            }
        };
        let database = format!("bank_{clients}_{}_{i}", scenario.accounts);
        running.push(Bank::start(setup, postgres, &database, scenario.accounts).await?);
    }

    let scripts = [pgbench::Script::SimpleUpdate, pgbench::Script::TpcB];
    let mut systems: Vec<System> = (0..running.len()).map(System::Bank).collect();
    if scenario.has_reference() && reference.is_ok() {
        systems.extend(scripts.map(System::Pgbench));
    }
    let measured = plan
        .alternate(&systems, async |system, window| match system {
            System::Bank(i) => {
                let bank = &mut running[*i];
                let round =
                    transfer_round(&bank.banks, clients, &bank.token, &bank.accounts, window);
                let servers = bank.servers();
                let (histogram, used) = tokio::join!(round, server::cpu_during(window, &servers));
                let histogram = histogram?;
                for (total, used) in bank.cpu.iter_mut().zip(used?) {
                    *total += used;
                }
                bank.transfers += histogram.len();
                Ok(histogram)
            }
            System::Pgbench(script) => match reference {
                Ok(running) => running.pgbench.round(*script, clients, window).await,
                Err(why) => anyhow::bail!("PostgreSQL is not running: {why}"),
            },
        })
        .await?;

    let mut rows = Vec::new();
    for (bank, rounds) in running.iter().zip(&measured) {
        let durable = match bank.setup.store {
            Store::Sqlite => BANK,
            Store::Postgres => BANK_ON_POSTGRES,
        };
        rows.push((
            bank.setup,
            rounds.row(scenario.name(bank.setup), "bank-server", durable)?,
        ));
    }
    for (setup, why) in missing {
        let name = scenario.name(setup);
        rows.push((
            setup,
            Row::missing(&name, "bank-server", BANK_ON_POSTGRES, why),
        ));
    }
    let mut references = Vec::new();
    if scenario.has_reference() {
        // Beside the bank's first setup (one replica on SQLite), as one scenario.
        let name = scenario.name(scenario.setups[0]);
        for (i, script) in scripts.into_iter().enumerate() {
            references.push(match &*reference {
                Ok(pgsql) => {
                    let system = format!(
                        "PostgreSQL {}, {} (scale {})",
                        pgsql.version,
                        script.name(),
                        pgsql.scale
                    );
                    measured[running.len() + i].row(&name, system, POSTGRES)?
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
    targets(scenario, &rows, &references, report);
    report.rows.extend(rows.into_iter().map(|(_, row)| row));
    report.rows.extend(references);

    for bank in &running {
        let Setup { replicas, store } = bank.setup;
        let named = format!(
            "{replicas} bank replica(s) on {store:?}, {clients} clients, {} accounts",
            bank.accounts.len()
        );
        let transfers = bank.transfers.max(1) as f64;
        for (server, cpu) in bank.servers().into_iter().zip(&bank.cpu) {
            let mut footprint = server.footprint()?;
            footprint.server = format!("{} (with {named})", footprint.server);
            footprint.cpu_us_per_op = Some(cpu.as_secs_f64() * 1e6 / transfers);
            report.footprints.push(footprint);
        }
    }
    Ok(())
}

/// The targets of a scenario with `rows` (one per setup) and pgbench's `references` (simple
/// update, TPC-B): at 16 clients, the bank on SQLite at least pgbench's simple update and twice
/// TPC-B, and on PostgreSQL at least 0.8× the simple update on the same PostgreSQL; at each
/// client count, two replicas on PostgreSQL at least one.
fn targets(scenario: Scenario, rows: &[(Setup, Row)], references: &[Row], report: &mut Report) {
    let clients = scenario.clients;
    let row = |replicas, store| {
        rows.iter()
            .find(|(setup, _)| *setup == Setup { replicas, store })
            .map(|(_, row)| row)
    };
    if references.len() == 2 && clients == 16 {
        if let Some(sqlite) = row(1, Store::Sqlite) {
            let scripts = [pgbench::Script::SimpleUpdate, pgbench::Script::TpcB];
            for ((reference, script), at_least) in references.iter().zip(scripts).zip([1.0, 2.0]) {
                let target = format!("bank ≥ {at_least}× {}, 16 clients", script.name());
                let target = Target::ratio_at_least(target, sqlite, reference, at_least);
                report.targets.push(target);
            }
        }
        if let Some(postgres) = row(1, Store::Postgres) {
            let target =
                "bank on PostgreSQL, 1 replica ≥ 0.8× pgbench simple update (-N), 16 clients";
            let target = Target::ratio_at_least(target, postgres, &references[0], 0.8);
            report.targets.push(target);
        }
    }
    if let (Some(two), Some(one)) = (row(2, Store::Postgres), row(1, Store::Postgres)) {
        let target = format!("bank on PostgreSQL, 2 replicas ≥ 1 replica, {clients} clients");
        report
            .targets
            .push(Target::ratio_at_least(target, two, one, 1.0));
    }
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
