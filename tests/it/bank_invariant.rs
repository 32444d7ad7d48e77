//! Jepsen's bank workload, harder: two bank-server replicas share one data directory and one
//! lock-server while at least 16 clients move money between six accounts through both of them,
//! and a chaos task kill -9s and restarts the replicas and the lock-server at random moments
//! (seeded; the replicas pause between each lock grant and its commit, so kills land in between).
//!
//! Every mutation carries its own request id and is retried with that same id after any error
//! until it is answered: applied (a receipt) or rejected (insufficient funds). Afterwards the
//! ledger, read back through the API, must explain every balance exactly: each balance is its
//! opening deposit plus the answered operations that touched it, each applied request appears
//! exactly once in the ledger of each account it touches and rejected ones nowhere, nothing is
//! negative, every balance is the sum of its ledger, and every balance a client read was one the
//! account really had.
//!
//! Run with `-- --nocapture` to see the counts; `BANK_INVARIANT_SEED=<n>` replays a chaos plan.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tempfile::TempDir;
use tonic::{Code, Status};
use township_proto::bank::v1 as pb;
use township_tests::{ServiceProcess, free_port};

use crate::support::bank::{
    Rpc, admin_token, assert_adds_up, balance, client, deposit, ledger, login, open_account,
    transfer, try_bank_server, try_lock_server, withdraw,
};
use crate::support::status::reason;

/// Concurrent clients.
const CLIENTS: usize = 16;
/// How long the clients keep issuing new requests: at least this long, and until the chaos plan
/// is done and [`MIN_ANSWERED`] operations are answered (a slow machine gets more time), but
/// never past [`HARD_STOP`].
const WORKLOAD: Duration = Duration::from_secs(30);
/// At most this many requests are issued in all.
const MAX_OPS: usize = 20_000;
/// The workload ends by then even if the chaos plan is still running.
const HARD_STOP: Duration = Duration::from_secs(50);
/// One attempt of one request may take this long before the client gives up on it and retries.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the final phase may spend getting an answer for every unanswered request.
const RESOLVE_BUDGET: Duration = Duration::from_secs(45);
/// The chaos plan: plain kill -9s of a bank replica and of the lock-server, and kill -9s of both
/// bank replicas while the lock-server is frozen (each also kills the lock-server): 9 bank-server
/// and 5 lock-server kills in all.
const PLAIN_BANK_KILLS: usize = 1;
const PLAIN_LOCK_KILLS: usize = 1;
const FREEZE_KILLS: usize = 4;
/// The least the workload must get answered for the run to count.
const MIN_ANSWERED: usize = 1_000;
/// Every replica's flags beyond the shared ones: short leases, a pause between each lock grant
/// and its commit so that kills land in between, and a short one between each commit and its
/// answer so that some applied requests may lose their answer (their retries must then get the
/// original receipt; `bank::a_transfer_applied_but_unanswered_...` makes sure of one).
const REPLICA_FLAGS: &[&str] = &[
    "--lock-ttl",
    "2s",
    "--test-delay-after-grant",
    "30ms",
    "--test-delay-after-commit",
    "5ms",
];
const HOLDERS: [(&str, &str); 3] = [("Ada", "1111"), ("Bob", "2222"), ("Cy", "3333")];
const ACCOUNTS_PER_HOLDER: usize = 2;

/// SplitMix64: small, seedable, good enough to pick operations and moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.between(low, high))
    }
}

// ----- the system under test -----

/// One bank-server replica's address, and how many client calls it has in flight right now.
struct Replica {
    name: &'static str,
    addr: String,
    in_flight: AtomicUsize,
}

/// Counts a call as in flight at a replica while alive.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The servers, their fixed addresses and their directories (kept alive for the whole test).
struct Cluster {
    _lock_dir: TempDir,
    data_dir: TempDir,
    lock_dir_path: std::path::PathBuf,
    lock_addr: String,
    replicas: [Replica; 2],
}

impl Cluster {
    /// The lock-server, on its fixed address and directory (a few tries: a test that restarts
    /// servers many times should not fail on one slow start).
    async fn lock_server(&self) -> ServiceProcess {
        let mut last = None;
        for _ in 0..3 {
            match try_lock_server(&self.lock_dir_path, Some(&self.lock_addr)).await {
                Ok(process) => return process,
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "the lock-server does not start on {}: {last:?}",
            self.lock_addr
        )
    }

    /// Bank replica `replica`, on its fixed address and the shared data directory.
    async fn bank_server(&self, replica: usize) -> ServiceProcess {
        let addr = &self.replicas[replica].addr;
        let mut last = None;
        for _ in 0..3 {
            let data_dir = self.data_dir.path();
            match try_bank_server(data_dir, &self.lock_addr, Some(addr), REPLICA_FLAGS).await {
                Ok(process) => return process,
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "{} does not start on {addr}: {last:?}",
            replica_name(replica)
        )
    }
}

/// An account of the workload.
struct Account {
    id: String,
    holder: usize,
    opening_cents: i64,
}

// ----- requests and their outcomes -----

#[derive(Clone, Copy, Debug)]
enum Op {
    Deposit { account: usize, cents: i64 },
    Withdraw { account: usize, cents: i64 },
    Transfer { from: usize, to: usize, cents: i64 },
}

impl Op {
    /// The account the request names (whose session it uses and whose balance the receipt shows).
    fn named(self) -> usize {
        match self {
            Op::Deposit { account, .. } | Op::Withdraw { account, .. } => account,
            Op::Transfer { from, .. } => from,
        }
    }

    /// The ledger rows it writes when applied: (account, kind, signed amount, counterparty).
    fn rows(self) -> Vec<Row> {
        match self {
            Op::Deposit { account, cents } => vec![(account, "DEPOSIT", cents, None)],
            Op::Withdraw { account, cents } => vec![(account, "WITHDRAW", -cents, None)],
            Op::Transfer { from, to, cents } => vec![
                (from, "TRANSFER_OUT", -cents, Some(to)),
                (to, "TRANSFER_IN", cents, Some(from)),
            ],
        }
    }
}

/// A ledger row an applied request writes: (account, kind, signed amount, counterparty).
type Row = (usize, &'static str, i64, Option<usize>);

#[derive(Clone, Debug)]
enum Outcome {
    /// Answered with a receipt: applied exactly once.
    Applied(pb::Receipt),
    /// Answered FAILED_PRECONDITION / INSUFFICIENT_FUNDS: nothing applied.
    Rejected,
    /// Not answered yet (errors only, so far).
    Unresolved,
}

/// One mutation: its request id, what it asks, and what became of it.
#[derive(Clone, Debug)]
struct Record {
    id: String,
    op: Op,
    outcome: Outcome,
    attempts: u32,
    /// When its last attempt started (Unix ms).
    last_attempt_ms: i64,
}

/// What one attempt's result means for the request.
enum Answer {
    Applied(pb::Receipt),
    Rejected,
    /// Any other error: the request may or may not have been applied; retry it with its id.
    Retry(Status),
}

fn classify(result: Result<pb::Receipt, Status>) -> Answer {
    match result {
        Ok(receipt) => Answer::Applied(receipt),
        Err(status)
            if status.code() == Code::FailedPrecondition
                && reason(&status).as_deref() == Some("INSUFFICIENT_FUNDS") =>
        {
            Answer::Rejected
        }
        Err(status) => Answer::Retry(status),
    }
}

/// Errors that no amount of chaos explains: a request id reused with the same parameters, a
/// session refused, a field refused. They fail the test (after the run, with the counts).
fn is_definite_error(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
    )
}

/// What every client and the chaos task share.
struct Shared {
    cluster: Cluster,
    accounts: Vec<Account>,
    /// One session token per holder; sessions live in the shared store, so they work on both.
    tokens: Vec<String>,
    /// Set when the workload has run long enough: the chaos task then ends it.
    wind_down: AtomicBool,
    /// Set when the clients must stop issuing and retrying requests.
    stop: AtomicBool,
    issued: AtomicUsize,
    /// Operations answered so far (applied, rejected, or a balance read).
    answered: AtomicUsize,
    /// Errors seen per gRPC code (the retried ones included).
    errors: Mutex<BTreeMap<String, usize>>,
    /// Errors that must not happen, with the request they answered.
    definite_errors: Mutex<Vec<String>>,
}

impl Shared {
    fn note_error(&self, status: &Status) {
        *self
            .errors
            .lock()
            .unwrap()
            .entry(format!("{:?}", status.code()))
            .or_default() += 1;
    }
}

/// One attempt of `op` with request id `id` at replica `replica`.
async fn attempt(shared: &Shared, rpcs: &[Rpc; 2], replica: usize, op: Op, id: &str) -> Answer {
    let rpc = &rpcs[replica];
    let token = &shared.tokens[shared.accounts[op.named()].holder];
    let account = |i: usize| shared.accounts[i].id.as_str();
    let _in_flight = InFlight::enter(&shared.cluster.replicas[replica].in_flight);
    classify(match op {
        Op::Deposit { account: a, cents } => deposit(rpc, token, account(a), cents, id).await,
        Op::Withdraw { account: a, cents } => withdraw(rpc, token, account(a), cents, id).await,
        Op::Transfer { from, to, cents } => {
            transfer(rpc, token, account(from), account(to), cents, id).await
        }
    })
}

/// Sends `record` (retrying with its request id after any error, switching replicas) until it
/// is answered or `keep_going` says to stop.
async fn drive(
    shared: &Shared,
    rpcs: &[Rpc; 2],
    rng: &mut Rng,
    record: &mut Record,
    keep_going: impl Fn() -> bool,
) {
    let mut replica = rng.below(2);
    loop {
        record.attempts += 1;
        record.last_attempt_ms = unix_ms();
        match attempt(shared, rpcs, replica, record.op, &record.id).await {
            Answer::Applied(receipt) => {
                record.outcome = Outcome::Applied(receipt);
                shared.answered.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Answer::Rejected => {
                record.outcome = Outcome::Rejected;
                shared.answered.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Answer::Retry(status) => {
                shared.note_error(&status);
                if is_definite_error(status.code()) {
                    shared.definite_errors.lock().unwrap().push(format!(
                        "{record:?} at {}: {status:?}",
                        replica_name(replica)
                    ));
                    return;
                }
            }
        }
        if !keep_going() {
            return;
        }
        // Another replica, or the same, after a short pause.
        replica = if rng.below(3) == 0 {
            replica
        } else {
            1 - replica
        };
        tokio::time::sleep(rng.millis(10, 80)).await;
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn replica_name(replica: usize) -> &'static str {
    ["bank-a", "bank-b"][replica]
}

/// What one client did.
#[derive(Default)]
struct ClientLog {
    records: Vec<Record>,
    /// Balances it read: (account, cents).
    reads: Vec<(usize, i64)>,
    failed_reads: usize,
}

/// A client: random transfers (most), deposits, withdrawals and balance reads against a random
/// replica until told to stop.
async fn client_loop(shared: Arc<Shared>, seed: u64) -> ClientLog {
    let mut rng = Rng(seed);
    let rpcs = [0, 1].map(|i| client(&shared.cluster.replicas[i].addr, ATTEMPT_TIMEOUT));
    let mut log = ClientLog::default();
    let accounts = shared.accounts.len();
    while !shared.stop.load(Ordering::SeqCst)
        && shared.issued.fetch_add(1, Ordering::SeqCst) < MAX_OPS
    {
        let account = rng.below(accounts);
        let cents = rng.between(1, 30_000) as i64;
        let op = match rng.below(100) {
            0..60 => {
                let to = (account + 1 + rng.below(accounts - 1)) % accounts;
                Op::Transfer {
                    from: account,
                    to,
                    cents,
                }
            }
            60..72 => Op::Deposit { account, cents },
            72..84 => Op::Withdraw { account, cents },
            _ => {
                let replica = rng.below(2);
                let token = &shared.tokens[shared.accounts[account].holder];
                let _in_flight = InFlight::enter(&shared.cluster.replicas[replica].in_flight);
                match balance(&rpcs[replica], token, &shared.accounts[account].id).await {
                    Ok(cents) => {
                        log.reads.push((account, cents));
                        shared.answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(status) => {
                        shared.note_error(&status);
                        log.failed_reads += 1;
                    }
                }
                continue;
            }
        };
        let mut record = Record {
            id: uuid::Uuid::new_v4().to_string(),
            op,
            outcome: Outcome::Unresolved,
            attempts: 0,
            last_attempt_ms: 0,
        };
        drive(&shared, &rpcs, &mut rng, &mut record, || {
            !shared.stop.load(Ordering::SeqCst)
        })
        .await;
        log.records.push(record);
    }
    log
}

// ----- chaos -----

/// One event of the chaos plan; each ends with the killed servers restarted on the same address
/// and data directory after a random downtime.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// kill -9 the bank replica with this index at a random moment.
    KillBank(usize),
    /// kill -9 the lock-server at a random moment.
    KillLock,
    /// Freeze the lock-server (SIGSTOP): operations that already hold their locks commit and are
    /// answered (a release does not wait for the lock-server), the others hang waiting for their
    /// locks. Then kill -9 both bank replicas and the frozen lock-server.
    FreezeLockKillBanks,
}

/// One kill -9.
struct Kill {
    target: &'static str,
    at: Duration,
    /// Client calls in flight at the killed server (for the lock-server, at both replicas).
    in_flight: usize,
}

/// Kills (SIGKILL) `process` and waits for it to die.
async fn kill_9(process: &mut ServiceProcess) {
    process.signal(libc::SIGKILL);
    process
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("kill -9 ends the process");
}

/// The chaos: first the plan ([`PLAIN_BANK_KILLS`], [`PLAIN_LOCK_KILLS`] and [`FREEZE_KILLS`]
/// events in a seeded random order), then random events, each after a random pause, until the
/// workload winds down; then a last [`Event::FreezeLockKillBanks`] that stops the workload while
/// every server is down, so the final phase has unanswered requests to settle. Returns the servers
/// (running again) and every kill.
async fn chaos(
    shared: Arc<Shared>,
    mut lock: ServiceProcess,
    mut banks: [ServiceProcess; 2],
    seed: u64,
    started: Instant,
) -> (ServiceProcess, [ServiceProcess; 2], Vec<Kill>) {
    let mut rng = Rng(seed ^ 0xC4A0_5C4A_05C4_A05C);
    let mut plan = Vec::new();
    for _ in 0..PLAIN_BANK_KILLS {
        plan.push(Event::KillBank(rng.below(2)));
    }
    for _ in 0..PLAIN_LOCK_KILLS {
        plan.push(Event::KillLock);
    }
    for _ in 0..FREEZE_KILLS {
        plan.push(Event::FreezeLockKillBanks);
    }
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.below(i + 1));
    }
    let mut plan = plan.into_iter();

    let replicas = &shared.cluster.replicas;
    let at_bank = |i: usize| replicas[i].in_flight.load(Ordering::SeqCst);
    let at_both = || at_bank(0) + at_bank(1);
    let mut kills = Vec::new();
    loop {
        tokio::time::sleep(rng.millis(1_500, 3_000)).await;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let planned = plan.next();
        let last = planned.is_none() && shared.wind_down.load(Ordering::SeqCst);
        let event = match (planned, last) {
            (Some(event), _) => event,
            (None, true) => Event::FreezeLockKillBanks,
            (None, false) => match rng.below(3) {
                0 => Event::KillBank(rng.below(2)),
                1 => Event::KillLock,
                _ => Event::FreezeLockKillBanks,
            },
        };
        let first_kill = kills.len();
        let event_started = Instant::now();
        let mut kill = |target: &'static str, in_flight: usize| {
            let at = started.elapsed();
            kills.push(Kill {
                target,
                at,
                in_flight,
            });
        };
        match event {
            Event::KillBank(i) => {
                kill(replicas[i].name, at_bank(i));
                kill_9(&mut banks[i]).await;
                tokio::time::sleep(rng.millis(20, 900)).await;
                banks[i] = shared.cluster.bank_server(i).await;
            }
            Event::KillLock => {
                kill("lock-server", at_both());
                kill_9(&mut lock).await;
                tokio::time::sleep(rng.millis(20, 900)).await;
                lock = shared.cluster.lock_server().await;
            }
            Event::FreezeLockKillBanks => {
                lock.signal(libc::SIGSTOP);
                tokio::time::sleep(rng.millis(150, 400)).await;
                for (i, bank) in banks.iter_mut().enumerate() {
                    kill(replicas[i].name, at_bank(i));
                    kill_9(bank).await;
                }
                kill("lock-server", at_both());
                kill_9(&mut lock).await;
                if last {
                    // The workload ends now, with every server down.
                    shared.stop.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(rng.millis(20, 500)).await;
                lock = shared.cluster.lock_server().await;
                for (i, bank) in banks.iter_mut().enumerate() {
                    *bank = shared.cluster.bank_server(i).await;
                }
            }
        }
        let label = if last { "last " } else { "" };
        for kill in &kills[first_kill..] {
            println!(
                "chaos: {label}{event:?}: kill -9 {} at {:.1}s with {} requests in flight",
                kill.target,
                kill.at.as_secs_f64(),
                kill.in_flight,
            );
        }
        println!(
            "chaos: {label}{event:?}: serving again after {:.2}s",
            event_started.elapsed().as_secs_f64()
        );
        if last {
            break;
        }
    }
    (lock, banks, kills)
}

// ----- the test -----

fn seed() -> u64 {
    match std::env::var("BANK_INVARIANT_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .expect("BANK_INVARIANT_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42),
    }
}

/// Retries a read-only check call a few times (the servers have just been through chaos).
async fn settled<T>(what: &str, mut call: impl AsyncFnMut() -> Result<T, Status>) -> T {
    let mut last = None;
    for _ in 0..50 {
        match call().await {
            Ok(value) => return value,
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} never answered: {last:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_conserved_and_every_request_applies_once_through_kill_9s_of_banks_and_locks() {
    let test_started = Instant::now();
    let seed = seed();
    println!("bank invariant: seed {seed} (replay with BANK_INVARIANT_SEED={seed})");
    let mut rng = Rng(seed);

    // One lock-server and two bank replicas on fixed ports, sharing one data directory.
    let lock_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let cluster = Cluster {
        lock_dir_path: lock_dir.path().to_owned(),
        _lock_dir: lock_dir,
        data_dir,
        lock_addr: format!("127.0.0.1:{}", free_port()),
        replicas: [0, 1].map(|i| Replica {
            name: replica_name(i),
            addr: format!("127.0.0.1:{}", free_port()),
            in_flight: AtomicUsize::new(0),
        }),
    };
    let lock = cluster.lock_server().await;
    let bank_a = cluster.bank_server(0).await;
    let bank_b = cluster.bank_server(1).await;

    // Six accounts for three holders, with known opening deposits; one session per holder.
    let setup = client(&cluster.replicas[0].addr, ATTEMPT_TIMEOUT);
    let admin = admin_token(cluster.data_dir.path());
    let mut accounts = Vec::new();
    for (holder, (name, pin)) in HOLDERS.iter().enumerate() {
        for _ in 0..ACCOUNTS_PER_HOLDER {
            let opening_cents = rng.between(20_000, 70_000) as i64;
            let opened = open_account(&setup, &admin, name, pin, opening_cents)
                .await
                .expect("open an account");
            accounts.push(Account {
                id: opened.account_id,
                holder,
                opening_cents,
            });
        }
    }
    let mut tokens = Vec::new();
    for (name, pin) in HOLDERS {
        let session = login(&setup, name, pin).await.expect("log in");
        assert_eq!(session.account_ids.len(), ACCOUNTS_PER_HOLDER);
        tokens.push(session.session_token);
    }
    let shared = Arc::new(Shared {
        cluster,
        accounts,
        tokens,
        wind_down: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        issued: AtomicUsize::new(0),
        answered: AtomicUsize::new(0),
        errors: Mutex::new(BTreeMap::new()),
        definite_errors: Mutex::new(Vec::new()),
    });

    // The workload and the chaos, until the plan is done and the time (or the op count) is up.
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let client_seed = seed
                .wrapping_add(1 + i as u64)
                .wrapping_mul(0x2545_F491_4F6C_DD1D);
            tokio::spawn(client_loop(shared.clone(), client_seed))
        })
        .collect();
    let chaos = tokio::spawn(chaos(shared.clone(), lock, [bank_a, bank_b], seed, started));
    // The chaos task stops the workload (see `chaos`) once it winds down; a hard stop bounds it.
    while !shared.stop.load(Ordering::SeqCst) && !chaos.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = started.elapsed();
        let enough = elapsed >= WORKLOAD && shared.answered.load(Ordering::SeqCst) >= MIN_ANSWERED;
        if enough || shared.issued.load(Ordering::SeqCst) >= MAX_OPS {
            shared.wind_down.store(true, Ordering::SeqCst);
        }
        if elapsed >= HARD_STOP {
            shared.stop.store(true, Ordering::SeqCst);
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    let workload_time = started.elapsed();
    let (_lock, _banks, kills) = chaos.await.expect("the chaos task did not panic");
    let mut logs = Vec::new();
    for client in clients {
        logs.push(client.await.expect("a client did not panic"));
    }

    // Every request still unanswered is retried with its request id until it is answered.
    let resolve_started = Instant::now();
    let rpcs = [0, 1].map(|i| client(&shared.cluster.replicas[i].addr, ATTEMPT_TIMEOUT));
    let mut records: Vec<Record> = logs.iter_mut().flat_map(|l| l.records.drain(..)).collect();
    let unresolved_after_workload = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Unresolved))
        .count();
    for record in records
        .iter_mut()
        .filter(|r| matches!(r.outcome, Outcome::Unresolved))
    {
        drive(&shared, &rpcs, &mut rng, record, || {
            resolve_started.elapsed() < RESOLVE_BUDGET
        })
        .await;
    }
    let resolve_time = resolve_started.elapsed();

    // The counts, printed before any assertion so that a failure shows them too.
    let applied = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Applied(_)))
        .count();
    let rejected = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Rejected))
        .count();
    let unresolved: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Unresolved))
        .collect();
    let reads: Vec<(usize, i64)> = logs.iter().flat_map(|l| l.reads.iter().copied()).collect();
    let failed_reads: usize = logs.iter().map(|l| l.failed_reads).sum();
    let retries: u32 = records.iter().map(|r| r.attempts.saturating_sub(1)).sum();
    let bank_kills = kills.iter().filter(|k| k.target != "lock-server").count();
    let lock_kills = kills.len() - bank_kills;
    let answered = applied + rejected + reads.len();
    let in_flight: Vec<usize> = kills.iter().map(|k| k.in_flight).collect();
    println!("bank invariant: seed {seed}");
    println!(
        "bank invariant: {CLIENTS} clients for {:.1}s against 2 bank replicas and 1 lock-server",
        workload_time.as_secs_f64()
    );
    println!(
        "bank invariant: {answered} operations answered: {applied} mutations applied, {rejected} \
         rejected (insufficient funds), {} balance reads",
        reads.len()
    );
    println!(
        "bank invariant: {} mutations issued, {retries} retries with the same request id, \
         {failed_reads} failed reads; {unresolved_after_workload} unanswered when the workload \
         stopped, {} after {:.1}s of final retries",
        records.len(),
        unresolved.len(),
        resolve_time.as_secs_f64()
    );
    println!(
        "bank invariant: kill -9s: {bank_kills} bank-server, {lock_kills} lock-server; requests in \
         flight at each: {in_flight:?}"
    );
    println!(
        "bank invariant: errors by code: {:?}",
        shared.errors.lock().unwrap()
    );

    let definite = shared.definite_errors.lock().unwrap().clone();
    assert!(
        definite.is_empty(),
        "errors no chaos explains: {definite:#?}"
    );
    assert!(
        unresolved.is_empty(),
        "requests never answered: {unresolved:#?}"
    );
    assert!(
        bank_kills >= 3,
        "at least 3 bank-server kills: {bank_kills}"
    );
    assert!(
        lock_kills >= 3,
        "at least 3 lock-server kills: {lock_kills}"
    );
    assert!(
        kills.iter().any(|k| k.in_flight > 0),
        "at least one kill with requests in flight"
    );
    assert!(
        answered >= MIN_ANSWERED,
        "only {answered} operations answered"
    );
    assert!(rejected > 0, "the workload exercised overdrafts");

    let lost_answers = check_ledgers(&shared, &rpcs, &records, &reads).await;
    println!(
        "bank invariant: the ledgers explain every balance; {lost_answers} requests were applied \
         by an attempt whose answer was lost and answered by a retry with the original receipt; \
         whole test {:.1}s",
        test_started.elapsed().as_secs_f64()
    );
}

/// The checks, through the API: balances, ledgers, receipts, reads and the total. Returns how
/// many requests were applied by an attempt whose answer was lost (the row is older than the
/// attempt that got the receipt).
async fn check_ledgers(
    shared: &Shared,
    rpcs: &[Rpc; 2],
    records: &[Record],
    reads: &[(usize, i64)],
) -> usize {
    let accounts = &shared.accounts;
    // What each account's ledger must hold beyond its OPEN row: request id → (kind, amount,
    // counterparty), from the applied requests alone.
    let mut expected_rows: Vec<HashMap<&str, Row>> = vec![HashMap::new(); accounts.len()];
    let mut expected_balance: Vec<i64> = accounts.iter().map(|a| a.opening_cents).collect();
    let mut rejected_ids = HashSet::new();
    let mut net_inflow = 0i64;
    for record in records {
        match &record.outcome {
            Outcome::Applied(_) => {
                for row in record.op.rows() {
                    let (account, _, cents, _) = row;
                    expected_balance[account] += cents;
                    let fresh = expected_rows[account].insert(&record.id, row).is_none();
                    assert!(fresh, "request ids are unique: {record:?}");
                    if matches!(record.op, Op::Deposit { .. } | Op::Withdraw { .. }) {
                        net_inflow += cents;
                    }
                }
            }
            Outcome::Rejected => {
                rejected_ids.insert(record.id.as_str());
            }
            Outcome::Unresolved => unreachable!("checked before"),
        }
    }

    let mut ledgers = Vec::new();
    let mut total = 0i64;
    for (index, account) in accounts.iter().enumerate() {
        let token = &shared.tokens[account.holder];
        let what = format!("the ledger of account {index}");
        let rows = settled(&what, async || {
            ledger(&rpcs[index % 2], token, &account.id).await
        })
        .await;
        let what = format!("the balance of account {index}");
        let now = settled(&what, async || {
            balance(&rpcs[1 - index % 2], token, &account.id).await
        })
        .await;
        total += now;

        // Its opening deposit plus the answered operations that touched it; never negative; the
        // sum of its ledger.
        assert!(now >= 0, "account {index}: negative balance {now}");
        assert_eq!(
            now, expected_balance[index],
            "account {index}: the balance is its opening deposit plus its applied operations"
        );
        assert_eq!(rows[0].kind, "OPEN", "account {index}");
        assert_eq!(
            rows[0].amount_cents, account.opening_cents,
            "account {index}"
        );
        assert_adds_up(&rows, now);

        // Each applied request exactly once, each row explained by one, no rejected one at all.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for row in &rows[1..] {
            assert!(
                !rejected_ids.contains(row.request_id.as_str()),
                "account {index}: a rejected request is in the ledger: {row:?}"
            );
            let Some(&(_, kind, cents, counterparty)) =
                expected_rows[index].get(row.request_id.as_str())
            else {
                panic!("account {index}: a ledger row no applied request explains: {row:?}");
            };
            assert_eq!(
                (row.kind.as_str(), row.amount_cents),
                (kind, cents),
                "{row:?}"
            );
            let counterparty = counterparty.map(|c| accounts[c].id.as_str()).unwrap_or("");
            assert_eq!(row.counterparty_account_id, counterparty, "{row:?}");
            *seen.entry(row.request_id.as_str()).or_default() += 1;
        }
        for id in expected_rows[index].keys() {
            assert_eq!(
                seen.get(id).copied().unwrap_or(0),
                1,
                "account {index}: applied request {id} appears exactly once in its ledger"
            );
        }

        // Every balance a client read is one the account really had.
        let had: HashSet<i64> = rows.iter().map(|r| r.balance_after_cents).collect();
        for &(_, cents) in reads.iter().filter(|(a, _)| *a == index) {
            assert!(
                had.contains(&cents),
                "account {index}: a read saw {cents}, a balance it never had"
            );
        }
        ledgers.push(rows);
    }

    // Every receipt (the first answer or a retry's) is the row its request wrote.
    let mut lost_answers = 0;
    for record in records {
        let Outcome::Applied(receipt) = &record.outcome else {
            continue;
        };
        let row = ledgers[record.op.named()]
            .iter()
            .find(|r| r.request_id == record.id)
            .expect("checked above");
        assert_eq!(receipt.transaction_id, row.id, "{record:?}");
        assert_eq!(receipt.balance_cents, row.balance_after_cents, "{record:?}");
        let written_ms = row
            .time
            .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
            .unwrap_or(i64::MAX);
        if written_ms < record.last_attempt_ms {
            lost_answers += 1;
        }
    }

    // Transfers move money; only deposits and withdrawals change the total.
    let opening: i64 = accounts.iter().map(|a| a.opening_cents).sum();
    assert_eq!(total, opening + net_inflow, "the total is conserved");
    lost_answers
}
