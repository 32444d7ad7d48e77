//! Requests and their outcomes: the clients that retry every mutation with its request id until
//! it is answered, and the record of every answer.

use super::*;

/// A mutation a client asks for.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Deposit { account: usize, cents: i64 },
    Withdraw { account: usize, cents: i64 },
    Transfer { from: usize, to: usize, cents: i64 },
}

impl Op {
    /// The account the request names (whose session it uses and whose balance the receipt shows).
    pub fn named(self) -> usize {
        match self {
            Op::Deposit { account, .. } | Op::Withdraw { account, .. } => account,
            Op::Transfer { from, .. } => from,
        }
    }

    /// The ledger rows it writes when applied: (account, kind, signed amount, counterparty).
    pub fn rows(self) -> Vec<Row> {
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
pub type Row = (usize, &'static str, i64, Option<usize>);

/// How a request was finally answered.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Answered with a receipt: applied exactly once.
    Applied(pb::Receipt),
    /// Answered FAILED_PRECONDITION / INSUFFICIENT_FUNDS: nothing applied.
    Rejected,
    /// Not answered yet (errors only, so far).
    Unresolved,
}

/// One mutation: its request id, what it asks, and what became of it.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub op: Op,
    pub outcome: Outcome,
    pub attempts: u32,
    /// When its last attempt started (Unix ms).
    pub last_attempt_ms: i64,
}

/// What one attempt's result means for the request.
pub enum Answer {
    Applied(pb::Receipt),
    Rejected,
    /// Any other error: the request may or may not have been applied; retry it with its id.
    Retry(Status),
}

/// What one attempt's answer means for the request.
pub fn classify(result: Result<pb::Receipt, Status>) -> Answer {
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
pub fn is_definite_error(code: Code) -> bool {
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
pub struct Shared {
    pub cluster: Cluster,
    pub accounts: Vec<Account>,
    /// One session token per holder; sessions live in the shared store, so they work on every
    /// replica.
    pub tokens: Vec<String>,
    /// Set when the workload has run long enough: the chaos task then ends it.
    pub wind_down: AtomicBool,
    /// Set when the clients must stop issuing and retrying requests.
    pub stop: AtomicBool,
    pub issued: AtomicUsize,
    /// Operations answered so far (applied, rejected, or a balance read).
    pub answered: AtomicUsize,
    /// Errors seen per gRPC code (the retried ones included).
    pub errors: Mutex<BTreeMap<String, usize>>,
    /// Errors that must not happen, with the request they answered.
    pub definite_errors: Mutex<Vec<String>>,
}

impl Shared {
    /// Counts an attempt that failed with `status`.
    pub fn note_error(&self, status: &Status) {
        *self
            .errors
            .lock()
            .unwrap()
            .entry(format!("{:?}", status.code()))
            .or_default() += 1;
    }
}

/// One attempt of `op` with request id `id` at replica `replica`.
pub async fn attempt(shared: &Shared, rpcs: &[Rpc], replica: usize, op: Op, id: &str) -> Answer {
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
pub async fn drive(
    shared: &Shared,
    rpcs: &[Rpc],
    rng: &mut Rng,
    record: &mut Record,
    keep_going: impl Fn() -> bool,
) {
    let mut replica = rng.below(rpcs.len());
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
            (replica + 1 + rng.below(rpcs.len() - 1)) % rpcs.len()
        };
        tokio::time::sleep(rng.millis(10, 80)).await;
    }
}

/// Now, in ms since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The name of replica `replica` in messages.
pub fn replica_name(replica: usize) -> &'static str {
    ["bank-a", "bank-b", "bank-c", "bank-d"][replica]
}

/// What one client did.
#[derive(Default)]
pub struct ClientLog {
    pub records: Vec<Record>,
    /// Balances it read: (account, cents).
    pub reads: Vec<(usize, i64)>,
    pub failed_reads: usize,
}

/// A client: random transfers (most), deposits, withdrawals and balance reads against a random
/// replica until told to stop.
pub async fn client_loop(shared: Arc<Shared>, seed: u64) -> ClientLog {
    let mut rng = Rng(seed);
    let rpcs = shared.cluster.clients();
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
                let replica = rng.below(rpcs.len());
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
