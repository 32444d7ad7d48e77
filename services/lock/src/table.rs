//! The lock table: every resource's holders and waiters, leases and their expiry, and the fencing
//! tokens — plain Rust, no gRPC. Admission per resource is the shared readers/writers policy
//! ([`township_cell::RwQueue`]); this file adds what crossing processes needs:
//!
//! - **All or nothing.** A request for several resources waits in each one's queue and is granted
//!   only when it is admissible in all of them at once; nothing is held while waiting, and queue
//!   positions follow one global arrival order, so two requests over the same resources in opposite
//!   orders cannot deadlock.
//! - **Leases.** A grant creates a lease that expires `ttl` after the grant or the last refresh;
//!   expiry releases its grants and admits the waiters. Release and refresh match the lease's
//!   secret id, so nobody can end another client's lease.
//! - **Fencing tokens.** Each grant carries a token greater than every earlier one: the high bits
//!   are the server's start epoch (persisted, incremented at every start), the low bits count grants.
//! - **No ghost grants.** A waiter that gives up (timeout, cancelled call) is withdrawn; one granted
//!   at the moment it gave up has its lease released at once.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    str::FromStr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use township_cell::{Mode, RwQueue};

pub use crate::guard::Caps;
use township_kit::Shutdown;

use crate::Error;

/// Bits of a fencing token that count grants within one epoch.
const COUNTER_BITS: u32 = 40;

/// One resource and how it is wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The resource's name (already validated).
    pub resource: String,
    /// Read (shared) or write (exclusive).
    pub mode: Mode,
}

/// A validated acquire request.
#[derive(Clone, Debug)]
pub struct Request {
    /// One or more distinct resources.
    pub targets: Vec<Target>,
    /// Lease lifetime without refresh.
    pub ttl: Duration,
    /// Who asks, for inspection.
    pub owner: String,
    /// Who asks, as its client certificate names it (empty for a caller without one): only the
    /// same principal may release or refresh the lease.
    pub principal: String,
}

/// Identifies a lease: its arrival number and a random secret, shown as `<seq>-<secret>` in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId {
    seq: u64,
    secret: u64,
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{:016x}", self.seq, self.secret)
    }
}

impl FromStr for LeaseId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let parse = || {
            let (seq, secret) = text.split_once('-')?;
            Some(LeaseId {
                seq: u64::from_str_radix(seq, 16).ok()?,
                secret: u64::from_str_radix(secret, 16).ok()?,
            })
        };
        parse().ok_or(Error::LeaseNotFound)
    }
}

/// One granted resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The resource.
    pub resource: String,
    /// How it is held.
    pub mode: Mode,
    /// Greater than every token issued before for this resource.
    pub token: u64,
}

/// What a successful acquire returns.
#[derive(Clone, Debug)]
pub struct Granted {
    /// The lease to refresh and release.
    pub lease: LeaseId,
    /// One grant per target, in the request's order.
    pub grants: Vec<Grant>,
    /// When the lease ends unless refreshed.
    pub expires_at: SystemTime,
    /// The lease's lifetime.
    pub ttl: Duration,
}

/// A holder, as [`LockTable::inspect`] shows it.
#[derive(Clone, Debug)]
pub struct HolderView {
    /// Who holds it: the principal that took the lease (never the lease id, which would let a
    /// reader act on it).
    pub principal: String,
    /// Who holds it, as it calls itself.
    pub owner: String,
    /// How.
    pub mode: Mode,
    /// The grant's fencing token.
    pub token: u64,
    /// Time since the grant.
    pub age: Duration,
    /// When the lease ends unless refreshed.
    pub expires_at: SystemTime,
}

/// A waiter, as [`LockTable::inspect`] shows it.
#[derive(Clone, Debug)]
pub struct WaiterView {
    /// Who waits.
    pub owner: String,
    /// For what.
    pub mode: Mode,
    /// Since when.
    pub waiting_for: Duration,
}

/// One resource's holders and waiters (in arrival order).
#[derive(Clone, Debug)]
pub struct ResourceView {
    /// The resource.
    pub resource: String,
    /// Who holds it.
    pub holders: Vec<HolderView>,
    /// Who waits for it, first come first.
    pub waiters: Vec<WaiterView>,
}

struct Waiter {
    request: Request,
    arrived: Instant,
    reply: oneshot::Sender<Result<Granted, Error>>,
}

struct Lease {
    secret: u64,
    owner: String,
    principal: String,
    grants: Vec<Grant>,
    ttl: Duration,
    granted: Instant,
    expires: Instant,
}

#[derive(Default)]
struct State {
    resources: HashMap<String, RwQueue<u64>>,
    waiting: BTreeMap<u64, Waiter>,
    leases: HashMap<u64, Lease>,
    expiries: BTreeSet<(Instant, u64)>,
    next_seq: u64,
    epoch: u64,
    granted_in_epoch: u64,
}

/// The lock table. Share it behind an `Arc`; run [`LockTable::expire_leases`] in the background.
pub struct LockTable {
    state: Mutex<State>,
    /// Woken when a lease's expiry may now be earlier than the reaper's next wake-up.
    expiry_changed: Notify,
}

impl LockTable {
    /// An empty table whose fencing tokens start in `epoch` (persisted; one more at every start).
    pub fn new(epoch: u64) -> Self {
        let state = State {
            epoch,
            next_seq: 1,
            ..State::default()
        };
        Self {
            state: Mutex::new(state),
            expiry_changed: Notify::new(),
        }
    }

    /// Waits until every target can be granted at once, up to `wait`, then grants them all in a
    /// new lease. On timeout (or when the returned future is dropped) the request is withdrawn —
    /// and if it was granted in that very moment, the lease is released — so nothing is left behind.
    ///
    /// A principal already at `caps` (live leases, waiting acquires) is [`Error::OverCap`], and
    /// nothing is queued.
    pub async fn acquire(
        &self,
        request: Request,
        wait: Duration,
        caps: Caps,
    ) -> Result<Granted, Error> {
        let (reply, granted) = oneshot::channel();
        let seq = {
            let mut state = self.lock();
            state.reap(Instant::now());
            state.within_caps(&request.principal, caps)?;
            let seq = state.enqueue(request, reply);
            state.grant_ready(Instant::now());
            seq
        };
        self.expiries_changed();
        let mut pending = Pending {
            table: self,
            seq,
            delivered: false,
        };
        match tokio::time::timeout(wait, granted).await {
            Ok(Ok(result)) => {
                pending.delivered = result.is_ok();
                result
            }
            Ok(Err(_)) => Err(Error::Internal("the lock table dropped a waiter".into())),
            Err(_) => Err(Error::WaitTimedOut(wait)),
        }
    }

    /// Ends lease `id`, taken by `principal`, and admits whoever can now enter. A lease that is
    /// unknown, already released, expired or another principal's is [`Error::LeaseNotFound`]
    /// (alike: a stranger learns nothing), and nothing else changes.
    pub fn release(&self, id: LeaseId, principal: &str) -> Result<(), Error> {
        let mut state = self.lock();
        let now = Instant::now();
        state.reap(now);
        state.live_lease(id, principal)?;
        state.end_lease(id.seq);
        state.grant_ready(now);
        drop(state);
        self.expiries_changed();
        Ok(())
    }

    /// Extends lease `id`, taken by `principal`, to `ttl` from now and returns the new expiry;
    /// errors as [`LockTable::release`].
    pub fn refresh(&self, id: LeaseId, principal: &str) -> Result<SystemTime, Error> {
        let mut state = self.lock();
        let now = Instant::now();
        if state.reap(now) {
            state.grant_ready(now);
        }
        let lease = state.live_lease(id, principal)?;
        let old = lease.expires;
        let expires = now + lease.ttl;
        if let Some(lease) = state.leases.get_mut(&id.seq) {
            lease.expires = expires;
        }
        state.expiries.remove(&(old, id.seq));
        state.expiries.insert((expires, id.seq));
        drop(state);
        self.expiries_changed();
        Ok(wall_clock(expires, now))
    }

    /// Every resource whose name starts with `prefix`, sorted by name.
    pub fn inspect(&self, prefix: &str) -> Vec<ResourceView> {
        let state = self.lock();
        let now = Instant::now();
        let mut views: Vec<ResourceView> = state
            .resources
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, queue)| ResourceView {
                resource: name.clone(),
                holders: queue
                    .holders()
                    .filter_map(|(seq, mode)| {
                        let lease = state.leases.get(&seq)?;
                        let token = lease.grants.iter().find(|g| &g.resource == name)?.token;
                        Some(HolderView {
                            principal: lease.principal.clone(),
                            owner: lease.owner.clone(),
                            mode,
                            token,
                            age: now.saturating_duration_since(lease.granted),
                            expires_at: wall_clock(lease.expires, now),
                        })
                    })
                    .collect(),
                waiters: queue
                    .waiters()
                    .filter_map(|(seq, mode)| {
                        let waiter = state.waiting.get(&seq)?;
                        Some(WaiterView {
                            owner: waiter.request.owner.clone(),
                            mode,
                            waiting_for: now.saturating_duration_since(waiter.arrived),
                        })
                    })
                    .collect(),
            })
            .collect();
        views.sort_by(|a, b| a.resource.cmp(&b.resource));
        views
    }

    /// Ends expired leases as they expire (and admits their waiters) until `shutdown`.
    pub async fn expire_leases(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            let next = {
                let mut state = self.lock();
                let now = Instant::now();
                if state.reap(now) {
                    state.grant_ready(now);
                }
                state.expiries.first().map(|(at, _)| *at)
            };
            let sleep = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = tokio::time::sleep_until(sleep) => {}
                () = self.expiry_changed.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Wakes the reaper: a grant or refresh may have made the earliest expiry earlier. Every
    /// public call that can grant or refresh ends with this.
    fn expiries_changed(&self) {
        self.expiry_changed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation leaves the state consistent before any call that could panic, so a
        // poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Withdraws an acquire that was not delivered to its caller (timed out or cancelled).
struct Pending<'a> {
    table: &'a LockTable,
    seq: u64,
    delivered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.delivered {
            return;
        }
        let mut state = self.table.lock();
        if let Some(waiter) = state.waiting.remove(&self.seq) {
            for target in &waiter.request.targets {
                state.with_queue(&target.resource, |q| q.withdraw(self.seq));
            }
        } else if state.leases.contains_key(&self.seq) {
            state.end_lease(self.seq);
        }
        state.grant_ready(Instant::now());
        drop(state);
        self.table.expiries_changed();
    }
}

impl State {
    /// Whether `principal` may queue one more acquire under `caps`. Counts by scanning: the caps
    /// bound what any one principal holds, and the table is small.
    fn within_caps(&self, principal: &str, caps: Caps) -> Result<(), Error> {
        let leases = self
            .leases
            .values()
            .filter(|l| l.principal == principal)
            .count();
        if leases >= caps.max_leases {
            return Err(Error::OverCap(format!(
                "targets: this caller holds {leases} leases, its cap"
            )));
        }
        let waiting = self
            .waiting
            .values()
            .filter(|w| w.request.principal == principal)
            .count();
        if waiting >= caps.max_waiters {
            return Err(Error::OverCap(format!(
                "targets: this caller has {waiting} acquires waiting, its cap"
            )));
        }
        Ok(())
    }

    fn enqueue(&mut self, request: Request, reply: oneshot::Sender<Result<Granted, Error>>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        for target in &request.targets {
            self.resources
                .entry(target.resource.clone())
                .or_default()
                .enqueue(seq, target.mode);
        }
        let waiter = Waiter {
            request,
            arrived: Instant::now(),
            reply,
        };
        self.waiting.insert(seq, waiter);
        seq
    }

    /// Grants, in arrival order, every waiter that is admissible for all its targets now.
    fn grant_ready(&mut self, now: Instant) {
        let ready: Vec<u64> = self.waiting.keys().copied().collect();
        for seq in ready {
            let admissible = self.waiting[&seq].request.targets.iter().all(|t| {
                self.resources
                    .get(&t.resource)
                    .is_some_and(|q| q.admissible(seq))
            });
            if admissible {
                self.grant(seq, now);
            }
        }
    }

    fn grant(&mut self, seq: u64, now: Instant) {
        let Some(waiter) = self.waiting.remove(&seq) else {
            return;
        };
        for target in &waiter.request.targets {
            self.with_queue(&target.resource, |q| q.admit(seq));
        }
        let mut grants = Vec::with_capacity(waiter.request.targets.len());
        for target in &waiter.request.targets {
            match self.next_token() {
                Ok(token) => grants.push(Grant {
                    resource: target.resource.clone(),
                    mode: target.mode,
                    token,
                }),
                Err(err) => {
                    for target in &waiter.request.targets {
                        self.with_queue(&target.resource, |q| q.release(seq));
                    }
                    let _ = waiter.reply.send(Err(err));
                    return;
                }
            }
        }
        let secret = uuid::Uuid::new_v4().as_u64_pair().0;
        let ttl = waiter.request.ttl;
        let expires = now + ttl;
        let granted = Granted {
            lease: LeaseId { seq, secret },
            grants: grants.clone(),
            expires_at: wall_clock(expires, now),
            ttl,
        };
        let lease = Lease {
            secret,
            owner: waiter.request.owner,
            principal: waiter.request.principal,
            grants,
            ttl,
            granted: now,
            expires,
        };
        self.leases.insert(seq, lease);
        self.expiries.insert((expires, seq));
        if waiter.reply.send(Ok(granted)).is_err() {
            // The caller is gone already: no ghost grant.
            self.end_lease(seq);
        }
    }

    fn next_token(&mut self) -> Result<u64, Error> {
        if self.granted_in_epoch + 1 >= 1 << COUNTER_BITS {
            return Err(Error::TokensExhausted);
        }
        self.granted_in_epoch += 1;
        Ok((self.epoch << COUNTER_BITS) | self.granted_in_epoch)
    }

    /// The lease `id`, if it exists, matches its secret and has not expired.
    fn live_lease(&self, id: LeaseId, principal: &str) -> Result<&Lease, Error> {
        self.leases
            .get(&id.seq)
            .filter(|lease| {
                lease.secret == id.secret
                    && lease.principal == principal
                    && lease.expires > Instant::now()
            })
            .ok_or(Error::LeaseNotFound)
    }

    /// Ends every lease that expired by `now`. Returns whether any did.
    fn reap(&mut self, now: Instant) -> bool {
        let mut reaped = false;
        while let Some(&(at, seq)) = self.expiries.first() {
            if at > now {
                break;
            }
            tracing::info!(lease = seq, "lease expired");
            self.end_lease(seq);
            reaped = true;
        }
        reaped
    }

    fn end_lease(&mut self, seq: u64) {
        let Some(lease) = self.leases.remove(&seq) else {
            return;
        };
        self.expiries.remove(&(lease.expires, seq));
        for grant in &lease.grants {
            self.with_queue(&grant.resource, |q| q.release(seq));
        }
    }

    /// Runs `change` on a resource's queue and forgets the resource once it is idle.
    fn with_queue(&mut self, resource: &str, change: impl FnOnce(&mut RwQueue<u64>) -> bool) {
        if let Some(queue) = self.resources.get_mut(resource) {
            change(queue);
            if queue.is_idle() {
                self.resources.remove(resource);
            }
        }
    }
}

/// The wall-clock time of a monotonic instant, for clients.
fn wall_clock(at: Instant, now: Instant) -> SystemTime {
    SystemTime::now() + at.saturating_duration_since(now)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn request(targets: &[(&str, Mode)], ttl_secs: u64) -> Request {
        Request {
            targets: targets
                .iter()
                .map(|(r, m)| Target {
                    resource: (*r).to_owned(),
                    mode: *m,
                })
                .collect(),
            ttl: Duration::from_secs(ttl_secs),
            owner: "test".into(),
            principal: PRINCIPAL.into(),
        }
    }

    const LONG: Duration = Duration::from_secs(60);
    const PRINCIPAL: &str = "spiffe://township/bank";
    const CAPS: Caps = Caps {
        max_leases: 1000,
        max_waiters: 1000,
        max_ttl: Duration::from_secs(300),
    };

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_releases_its_grants_and_admits_the_waiter() {
        let table = Arc::new(LockTable::new(1));
        let shutdown = Shutdown::new();
        tokio::spawn(table.clone().expire_leases(shutdown.clone()));
        let first = table
            .acquire(request(&[("a", Mode::Write)], 5), LONG, CAPS)
            .await
            .unwrap();
        let started = Instant::now();
        let second = table
            .acquire(request(&[("a", Mode::Write)], 5), LONG, CAPS)
            .await
            .unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "granted exactly at the expiry"
        );
        assert!(second.grants[0].token > first.grants[0].token);
        assert!(matches!(
            table.release(first.lease, PRINCIPAL),
            Err(Error::LeaseNotFound)
        ));
        table.release(second.lease, PRINCIPAL).unwrap();
        assert!(table.inspect("").is_empty());
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_granted_by_a_release_expires_on_time() {
        let table = Arc::new(LockTable::new(1));
        let shutdown = Shutdown::new();
        tokio::spawn(table.clone().expire_leases(shutdown.clone()));
        let long = table
            .acquire(request(&[("a", Mode::Write)], 60), LONG, CAPS)
            .await
            .unwrap();
        let short = {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .acquire(request(&[("a", Mode::Write)], 1), LONG, CAPS)
                    .await
            })
        };
        tokio::task::yield_now().await;
        table.release(long.lease, PRINCIPAL).unwrap();
        short.await.unwrap().expect("granted on the release");
        let started = Instant::now();
        table
            .acquire(request(&[("a", Mode::Write)], 1), LONG, CAPS)
            .await
            .unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "the 1 s lease expired on time"
        );
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_moves_the_expiry_and_a_wrong_secret_is_not_found() {
        let table = LockTable::new(1);
        let held = table
            .acquire(request(&[("a", Mode::Read)], 2), LONG, CAPS)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(1500)).await;
        table.refresh(held.lease, PRINCIPAL).unwrap();
        tokio::time::advance(Duration::from_millis(1500)).await;
        let forged = LeaseId {
            seq: held.lease.seq,
            secret: held.lease.secret ^ 1,
        };
        assert!(matches!(
            table.refresh(forged, PRINCIPAL),
            Err(Error::LeaseNotFound)
        ));
        assert!(matches!(
            table.release(forged, PRINCIPAL),
            Err(Error::LeaseNotFound)
        ));
        table
            .refresh(held.lease, PRINCIPAL)
            .expect("still live 3 s after the grant thanks to the refresh");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(
            matches!(
                table.refresh(held.lease, PRINCIPAL),
                Err(Error::LeaseNotFound)
            ),
            "expired"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_waiter_is_withdrawn_and_unblocks_the_readers_behind_it() {
        let table = Arc::new(LockTable::new(1));
        let reader = table
            .acquire(request(&[("a", Mode::Read)], 60), LONG, CAPS)
            .await
            .unwrap();
        let writer = {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .acquire(
                        request(&[("a", Mode::Write)], 60),
                        Duration::from_secs(1),
                        CAPS,
                    )
                    .await
            })
        };
        tokio::task::yield_now().await;
        let late_reader = {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .acquire(request(&[("a", Mode::Read)], 60), LONG, CAPS)
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(
            table.inspect("a")[0].waiters.len(),
            2,
            "writer preference: the reader waits"
        );
        assert!(matches!(writer.await.unwrap(), Err(Error::WaitTimedOut(_))));
        let late = late_reader
            .await
            .unwrap()
            .expect("admitted once the writer gave up");
        let view = &table.inspect("a")[0];
        assert_eq!(view.holders.len(), 2);
        assert!(view.waiters.is_empty());
        table.release(reader.lease, PRINCIPAL).unwrap();
        table.release(late.lease, PRINCIPAL).unwrap();
        assert!(table.inspect("").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_acquire_leaves_no_waiter_and_no_lease() {
        let table = LockTable::new(1);
        let held = table
            .acquire(request(&[("a", Mode::Write)], 60), LONG, CAPS)
            .await
            .unwrap();
        let waiting = table.acquire(
            request(&[("a", Mode::Write), ("b", Mode::Write)], 60),
            LONG,
            CAPS,
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(1), waiting)
                .await
                .is_err()
        );
        let views = table.inspect("");
        assert_eq!(
            views.len(),
            1,
            "b is forgotten once its only waiter left: {views:?}"
        );
        assert!(views[0].waiters.is_empty());
        table.release(held.lease, PRINCIPAL).unwrap();
        assert!(table.inspect("").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_multi_target_request_is_all_or_nothing() {
        let table = Arc::new(LockTable::new(1));
        let b = table
            .acquire(request(&[("b", Mode::Write)], 60), LONG, CAPS)
            .await
            .unwrap();
        let both = {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .acquire(
                        request(&[("a", Mode::Write), ("b", Mode::Write)], 60),
                        LONG,
                        CAPS,
                    )
                    .await
            })
        };
        tokio::task::yield_now().await;
        let a_view = table.inspect("a");
        assert!(
            a_view[0].holders.is_empty(),
            "a is not held while b is unavailable"
        );
        table.release(b.lease, PRINCIPAL).unwrap();
        let both = both.await.unwrap().unwrap();
        assert_eq!(both.grants.len(), 2);
        assert_eq!(both.grants[0].resource, "a");
        assert!(both.grants[1].token > both.grants[0].token);
    }

    #[test]
    fn tokens_carry_the_epoch_in_their_high_bits() {
        let mut state = State {
            epoch: 3,
            ..State::default()
        };
        let first = state.next_token().unwrap();
        assert_eq!(first, (3 << COUNTER_BITS) | 1);
        assert!(state.next_token().unwrap() > first);
        state.granted_in_epoch = (1 << COUNTER_BITS) - 1;
        assert!(matches!(state.next_token(), Err(Error::TokensExhausted)));
        let later_epoch = State {
            epoch: 4,
            ..State::default()
        }
        .next_token()
        .unwrap();
        assert!(later_epoch > (3 << COUNTER_BITS) | ((1 << COUNTER_BITS) - 2));
    }

    #[test]
    fn lease_ids_round_trip_and_garbage_is_not_found() {
        let id = LeaseId {
            seq: 42,
            secret: 0xdead_beef,
        };
        assert_eq!(id.to_string().parse::<LeaseId>().unwrap(), id);
        assert!(matches!(
            "garbage".parse::<LeaseId>(),
            Err(Error::LeaseNotFound)
        ));
        assert!(matches!(
            "1-zz".parse::<LeaseId>(),
            Err(Error::LeaseNotFound)
        ));
    }

    #[tokio::test]
    async fn only_the_principal_that_took_a_lease_may_release_or_refresh_it_others_find_nothing() {
        let table = LockTable::new(1);
        let held = table
            .acquire(request(&[("account/1", Mode::Write)], 10), LONG, CAPS)
            .await
            .unwrap();
        for stranger in ["spiffe://township/user/mallory", ""] {
            assert!(matches!(
                table.refresh(held.lease, stranger),
                Err(Error::LeaseNotFound)
            ));
            assert!(matches!(
                table.release(held.lease, stranger),
                Err(Error::LeaseNotFound)
            ));
        }
        let views = table.inspect("account/");
        assert_eq!(views[0].holders.len(), 1, "the lease still stands");
        assert_eq!(views[0].holders[0].principal, PRINCIPAL);
        table.refresh(held.lease, PRINCIPAL).unwrap();
        table.release(held.lease, PRINCIPAL).unwrap();
        assert!(
            table
                .inspect("account/")
                .iter()
                .all(|v| v.holders.is_empty())
        );
    }
}
