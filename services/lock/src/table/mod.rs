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
//! - **A term.** Under an elected leader (etcd), the table serves one leadership term: it grants
//!   nothing at or after the instant it was last told its leadership holds until
//!   ([`LockTable::serve_until`]), whatever else runs late, and once [`LockTable::retire`]d it
//!   answers every waiter "not the leader" and holds nothing.

#[cfg(test)]
mod tests;
mod types;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use township_cell::RwQueue;

pub use crate::guard::Caps;
use township_kit::Shutdown;

use crate::Error;
pub use types::{Grant, Granted, HolderView, LeaseId, Request, ResourceView, Target, WaiterView};

/// Bits of a fencing token that count grants within one epoch.
const COUNTER_BITS: u32 = 40;

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
    /// No grant at or after this instant (`None`: no bound, a single lock-server).
    serves_until: Option<Instant>,
    /// The term is over: nothing is granted again.
    retired: bool,
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
            state.serving(Instant::now())?;
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
        state.serving(now)?;
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

    /// Bounds the term: nothing is granted or refreshed at or after `until` (a leader's hold on
    /// its election, renewed as it is renewed). Checked under the table's lock at each grant, so
    /// a leader that wakes from a freeze past its hold grants nothing, even before anything else
    /// notices.
    pub fn serve_until(&self, until: Instant) {
        self.lock().serves_until = Some(until);
    }

    /// Ends the term: every waiter is answered [`Error::NotLeader`], every lease is dropped (its
    /// holder learns it from KeepAlive or Session), and nothing is granted again.
    pub fn retire(&self) {
        let mut state = self.lock();
        state.retired = true;
        for (_, waiter) in std::mem::take(&mut state.waiting) {
            let _ = waiter.reply.send(Err(Error::NotLeader(None)));
        }
        state.leases.clear();
        state.expiries.clear();
        state.resources.clear();
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

    /// Whether the term allows grants at `now` ([`LockTable::serve_until`], [`LockTable::retire`]).
    fn serving(&self, now: Instant) -> Result<(), Error> {
        if self.retired || self.serves_until.is_some_and(|until| now >= until) {
            return Err(Error::NotLeader(None));
        }
        Ok(())
    }

    /// Grants, in arrival order, every waiter that is admissible for all its targets now (none
    /// once the term no longer serves).
    fn grant_ready(&mut self, now: Instant) {
        if self.serving(now).is_err() {
            return;
        }
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
