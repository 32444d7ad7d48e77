//! Jepsen's bank workload, harder, run twice: two bank-server replicas sharing one SQLite data
//! directory with one lock-server, and three replicas on one PostgreSQL database (each its own
//! data directory) with three lock-servers elected on a three-member etcd cluster. At least 16
//! clients move money between six accounts through every replica while a chaos task kill -9s and
//! restarts the replicas and the lock-server — the leader, when elected: at least 5 leader kills —
//! at random moments (seeded; the replicas pause between each lock grant and its commit, so kills
//! land in between), and on PostgreSQL also restarts the database as `pg_ctl restart -m
//! immediate` does.
//! Every connection is mutual TLS, with certificates from `township certs`: the clients show a
//! user's certificate to the replicas, the replicas show the bank's to the lock-server, and the
//! lock-server's resource ACL lets only the bank lock accounts.
//!
//! Every mutation carries its own request id and is retried with that same id after any error
//! until it is answered: applied (a receipt) or rejected (insufficient funds). Afterwards the
//! ledger, read back through the API, must explain every balance exactly: each balance is its
//! opening deposit plus the answered operations that touched it, each applied request appears
//! exactly once in the ledger of each account it touches and rejected ones nowhere, nothing is
//! negative, every balance is the sum of its ledger, and every balance a client read was one the
//! account really had. And the lock-server, restarted many times, still refuses to let anyone but
//! the bank lock an account.
//!
//! Run with `-- --nocapture` to see the counts; `BANK_INVARIANT_SEED=<n>` replays a chaos plan.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::{bank::*, chaos::*, storage::Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mtls_money_is_conserved_and_requests_apply_once_through_kill_9s_of_banks_and_locks() {
    chaos_run(Backend::Sqlite, 2, Locks::Single).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_with_elected_locks_money_is_conserved_through_kill_9s_of_leaders_and_a_crash()
{
    chaos_run(Backend::Postgres, 3, Locks::Elected).await
}

/// The whole test, with `replicas` bank replicas on `backend` and the lock service as `locks`.
async fn chaos_run(backend: Backend, replicas: usize, locks: Locks) {
    let test_started = Instant::now();
    let seed = seed();
    println!("bank invariant: seed {seed} (replay with BANK_INVARIANT_SEED={seed})");
    let mut rng = Rng(seed);

    // The lock service (which lets only the bank lock accounts) and the bank replicas on fixed
    // ports, on one store, every one serving mutual TLS.
    let cluster = Cluster::new(backend, replicas, locks).await;
    let lock_servers = cluster.lock_servers().await;
    let mut banks = Vec::new();
    for replica in 0..replicas {
        banks.push(cluster.bank_server(replica).await);
    }

    // Six accounts for three holders, with known opening deposits; one session per holder.
    let setup = cluster.client(0);
    let admin = cluster.admin_token();
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
    let chaos = tokio::spawn(chaos(shared.clone(), lock_servers, banks, seed, started));
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
    let (lock_servers, _banks, kills) = chaos.await.expect("the chaos task did not panic");
    let mut logs = Vec::new();
    for client in clients {
        logs.push(client.await.expect("a client did not panic"));
    }

    // Every request still unanswered is retried with its request id until it is answered.
    let resolve_started = Instant::now();
    let rpcs = shared.cluster.clients();
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
    let bank_kills = kills
        .iter()
        .filter(|k| k.target.starts_with("bank"))
        .count();
    let lock_kills = kills.iter().filter(|k| k.target == "lock-server").count();
    let database_restarts = kills.iter().filter(|k| k.target == "postgres").count();
    let answered = applied + rejected + reads.len();
    let in_flight: Vec<usize> = kills.iter().map(|k| k.in_flight).collect();
    println!("bank invariant: seed {seed}");
    println!(
        "bank invariant: {CLIENTS} clients for {:.1}s against {replicas} bank replicas on \
         {backend:?} and {} lock-server(s) ({locks:?})",
        workload_time.as_secs_f64(),
        lock_servers.len()
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
        "bank invariant: kill -9s: {bank_kills} bank-server, {lock_kills} lock-server; \
         {database_restarts} immediate database restarts; requests in flight at each: \
         {in_flight:?}"
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
    // Elected: every lock kill is of the leader at that moment.
    let least_lock_kills = if locks == Locks::Elected { 5 } else { 3 };
    assert!(
        lock_kills >= least_lock_kills,
        "at least {least_lock_kills} lock-server kills: {lock_kills}"
    );
    assert_eq!(
        database_restarts,
        usize::from(backend == Backend::Postgres),
        "one immediate restart of PostgreSQL"
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
    let leader = shared.cluster.lock_leader().await;
    check_lock_acl(&shared, &lock_servers[leader]).await;
    println!(
        "bank invariant: the ledgers explain every balance; {lost_answers} requests were applied \
         by an attempt whose answer was lost and answered by a retry with the original receipt; \
         whole test {:.1}s",
        test_started.elapsed().as_secs_f64()
    );
}
