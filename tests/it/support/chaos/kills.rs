//! The chaos: a seeded plan of kill -9s and restarts of the replicas and the lock-server (with
//! lock-servers elected on etcd, the one that leads at that moment).

use super::*;

/// One event of the chaos plan; each ends with the killed servers restarted on the same address
/// and data directory after a random downtime.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// kill -9 the bank replica with this index at a random moment.
    KillBank(usize),
    /// kill -9 the lock-server (the leader) at a random moment.
    KillLock,
    /// Freeze the lock-server (the leader; SIGSTOP): operations that already hold their locks commit and are
    /// answered (a release does not wait for the lock-server), the others hang waiting for their
    /// locks. Then kill -9 every bank replica and the frozen lock-server.
    FreezeLockKillBanks,
    /// Restart PostgreSQL as `pg_ctl restart -m immediate` does: every bank connection is cut,
    /// and transactions in flight are lost or committed, each whole.
    RestartDatabase,
}

/// One kill -9 (or, with target `postgres`, one immediate restart of the database).
pub struct Kill {
    pub target: &'static str,
    pub at: Duration,
    /// Client calls in flight at the killed server (for the lock-server, at both replicas).
    pub in_flight: usize,
}

/// Kills (SIGKILL) `process` and waits for it to die.
pub async fn kill_9(process: &mut ServiceProcess) {
    process.signal(libc::SIGKILL);
    process
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("kill -9 ends the process");
}

/// The chaos: first the plan ([`PLAIN_BANK_KILLS`], [`PLAIN_LOCK_KILLS`] and [`FREEZE_KILLS`]
/// events, and on PostgreSQL one [`Event::RestartDatabase`], in a seeded random order), then random events, each after a random pause, until the
/// workload winds down; then a last [`Event::FreezeLockKillBanks`] that stops the workload while
/// every server is down, so the final phase has unanswered requests to settle. Returns the servers
/// (running again) and every kill.
pub async fn chaos(
    shared: Arc<Shared>,
    mut locks: Vec<ServiceProcess>,
    mut banks: Vec<ServiceProcess>,
    seed: u64,
    started: Instant,
) -> (Vec<ServiceProcess>, Vec<ServiceProcess>, Vec<Kill>) {
    let mut rng = Rng(seed ^ 0xC4A0_5C4A_05C4_A05C);
    let replicas = &shared.cluster.replicas;
    let mut plan = Vec::new();
    for _ in 0..PLAIN_BANK_KILLS {
        plan.push(Event::KillBank(rng.below(replicas.len())));
    }
    if shared.cluster.database.is_some() {
        plan.push(Event::RestartDatabase);
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

    let at_bank = |i: usize| replicas[i].in_flight.load(Ordering::SeqCst);
    let at_all = || (0..replicas.len()).map(at_bank).sum();
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
                0 => Event::KillBank(rng.below(replicas.len())),
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
                let leader = shared.cluster.lock_leader().await;
                kill("lock-server", at_all());
                kill_9(&mut locks[leader]).await;
                tokio::time::sleep(rng.millis(20, 900)).await;
                locks[leader] = shared.cluster.lock_server(leader).await;
            }
            Event::RestartDatabase => {
                kill("postgres", at_all());
                shared.cluster.restart_database().await;
            }
            Event::FreezeLockKillBanks => {
                let leader = shared.cluster.lock_leader().await;
                locks[leader].signal(libc::SIGSTOP);
                tokio::time::sleep(rng.millis(150, 400)).await;
                for (i, bank) in banks.iter_mut().enumerate() {
                    kill(replicas[i].name, at_bank(i));
                    kill_9(bank).await;
                }
                kill("lock-server", at_all());
                kill_9(&mut locks[leader]).await;
                if last {
                    // The workload ends now, with every server down.
                    shared.stop.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(rng.millis(20, 500)).await;
                locks[leader] = shared.cluster.lock_server(leader).await;
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
    (locks, banks, kills)
}
