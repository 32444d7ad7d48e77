//! Bank: durable transfers per second and their latency with the lock service in the loop, with
//! one bank replica and with two replicas sharing one data file and one lock service.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tonic::{Request, transport::Channel};
use township_proto::bank::v1::{
    LoginRequest, OpenAccountRequest, TransferRequest, bank_service_client::BankServiceClient,
};

use crate::{
    load::{self, Window},
    report::Report,
    row::Row,
    server,
};

/// Accounts the clients move money between (random pairs: a little contention, as at a real bank).
const ACCOUNTS: usize = 200;
/// Concurrent closed-loop clients: 16 ATMs, whose figure is bounded by each transfer's round
/// trips, and 64, enough to keep the bank busy, which is how its capacity is measured.
const CLIENTS: [usize; 2] = [16, 64];
const PIN: &str = "2468";

/// Runs the bank scenarios, each against fresh servers.
pub async fn run(duration: Duration, warmup: Duration) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for replicas in [1, 2] {
        for clients in CLIENTS {
            measure(replicas, clients, duration, warmup, &mut report).await?;
        }
    }
    Ok(report)
}

async fn measure(
    replicas: usize,
    clients: usize,
    duration: Duration,
    warmup: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let lock_dir = tempfile::tempdir().context("temporary dir")?;
    let bank_dir = tempfile::tempdir().context("temporary dir")?;
    let lock = server::start("lock-server", lock_dir.path(), &[]).await?;
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
    let accounts = open_accounts(&first, admin.trim()).await?;
    let token = login(&first).await?;

    let window = Window::starting_now(warmup, duration);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let channel = connect(banks[i % banks.len()].addr).await?;
        let client = Client {
            rpc: BankServiceClient::new(channel),
            token: token.clone(),
            accounts: accounts.clone(),
        };
        tasks.push(tokio::task::spawn_local(
            client.transfers(i as u64 + 1, window),
        ));
    }
    let servers: Vec<&server::Server> = std::iter::once(&lock).chain(&banks).collect();
    let (histogram, cpu) = tokio::join!(load::merge(tasks), server::cpu_during(window, &servers));
    let (histogram, cpu) = (histogram?, cpu?);
    let name = format!(
        "bank: transfers, {clients} clients, {replicas} replica{}",
        if replicas == 1 { "" } else { "s" }
    );
    report.rows.push(Row::from_histogram(
        name,
        "bank-server",
        &histogram,
        duration,
    ));
    let replicas_named = format!("{replicas} bank replica(s), {clients} clients");
    let transfers = histogram.len().max(1) as f64;
    for (server, cpu) in servers.iter().zip(cpu) {
        let mut footprint = server.footprint()?;
        footprint.server = format!("{} (with {replicas_named})", footprint.server);
        footprint.cpu_us_per_op = Some(cpu.as_secs_f64() * 1e6 / transfers);
        report.footprints.push(footprint);
    }
    Ok(())
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

async fn open_accounts(channel: &Channel, admin: &str) -> anyhow::Result<Vec<String>> {
    let mut rpc = BankServiceClient::new(channel.clone());
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
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
