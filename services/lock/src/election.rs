//! The election on etcd (`--etcd-endpoints`): several lock-servers run, one leads.
//!
//! - **Campaign.** A server takes an etcd lease and tries one transaction: if the leader key does
//!   not exist and the epoch key is as it read it, put the leader key (its `--advertise-addr`,
//!   under its lease) and the epoch key (`max(epoch + 1, --initial-epoch)`). So the epoch is
//!   bumped in the very transaction that elects, and every token of a new leader is above every
//!   token of any earlier one. Not etcd's revision: tokens keep the epoch in 23 bits.
//! - **Leading.** The leader serves from memory ([`LockTable`]) and renews its etcd lease every
//!   third of its time to live (a tenth after a renewal failed). It holds its leadership until
//!   `sent + 9/10 ttl` of the last renewal that etcd answered, where `sent` is when the renewal
//!   was sent: etcd's side of the lease lasts at least a full ttl after it received it, so the
//!   leader stops before any other server can be elected. The table checks that hold at every
//!   grant, so a leader that wakes from a freeze past it grants nothing, before its renewals have
//!   even failed.
//! - **Following.** A server that lost the transaction watches the leader key and campaigns
//!   again once it is deleted (the leader's lease expired or was revoked); meanwhile it answers
//!   every call but Leader with UNAVAILABLE naming the leader.
//! - **Stepping down.** A renewal that etcd answers "expired", or no renewal answered before the
//!   hold runs out, ends the term: waiters are answered "not the leader", leases are lost (their
//!   holders learn it from KeepAlive and Session) and the server campaigns again. A graceful stop
//!   revokes the lease, so another server is elected at once.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use township_client::Backoff;
use township_etcd::{
    Etcd, Lease,
    pb::{
        etcdserverpb::{TxnRequest, response_op::Response},
        mvccpb::{KeyValue, event::EventType},
    },
    txn,
};
use township_kit::Shutdown;

use crate::{
    leader::{Leadership, Role, Term},
    store::MAX_EPOCH,
    table::LockTable,
};

/// The key that names the leader (its advertised address), under the leader's etcd lease.
const LEADER_KEY: &[u8] = b"township/lock/leader";
/// The key that holds the latest epoch (decimal), bumped by each election.
const EPOCH_KEY: &[u8] = b"township/lock/epoch";

/// How a follower that hears nothing rechecks the leader key: this many lease lengths.
const RECHECK_LEASES: u32 = 5;

/// What the election needs.
pub struct Election {
    pub etcd: Etcd,
    /// This server's address as callers reach it (HOST:PORT), written in the leader key.
    pub advertise: String,
    /// The etcd lease's time to live: how long a dead leader keeps the others waiting.
    pub lease: Duration,
    /// The lowest epoch a new leader may take.
    pub initial_epoch: u64,
}

impl Election {
    /// Campaigns in the background until `shutdown`; the returned [`Leadership`] follows it.
    pub fn start(self, shutdown: Shutdown) -> (Leadership, JoinHandle<()>) {
        let (role, watching) = watch::channel(Role::Following {
            leader: None,
            epoch: 0,
        });
        let task = tokio::spawn(self.run(role, shutdown));
        (Leadership::watching(watching), task)
    }

    async fn run(self, role: watch::Sender<Role>, shutdown: Shutdown) {
        let mut backoff = Backoff::new();
        while !shutdown.is_cancelled() {
            match self.campaign(&role, &shutdown).await {
                Ok(()) => backoff = Backoff::new(),
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "election: trying again");
                    role.send_modify(|now| {
                        if let Role::Following { leader, .. } = now {
                            *leader = None;
                        }
                    });
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// One round: a lease and one try to lead; then leads until the term ends, or follows until
    /// the leader's key goes.
    async fn campaign(
        &self,
        role: &watch::Sender<Role>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let sent = Instant::now();
        let lease = self.etcd.grant(self.lease).await.context("lease grant")?;
        let hold = sent + held_for(lease.ttl);
        let (stored, epoch_revision) = self.read_epoch().await?;
        let next = (stored + 1).max(self.initial_epoch);
        if next > MAX_EPOCH as u64 {
            bail!("the fencing epoch in etcd ({stored}) is at its largest ({MAX_EPOCH})");
        }
        let reply = self
            .etcd
            .txn(TxnRequest {
                compare: vec![
                    txn::absent(LEADER_KEY),
                    txn::unchanged_since(EPOCH_KEY, epoch_revision),
                ],
                success: vec![
                    txn::put(LEADER_KEY, self.advertise.as_bytes(), lease.id),
                    txn::put(EPOCH_KEY, next.to_string().as_bytes(), 0),
                ],
                failure: vec![txn::get(LEADER_KEY), txn::get(EPOCH_KEY)],
            })
            .await
            .context("campaign")?;
        if reply.succeeded {
            self.lead(next, lease, hold, role, shutdown).await;
            return Ok(());
        }
        // Best effort: an unused lease lapses by itself anyway.
        let _ = self.etcd.revoke(lease.id).await;
        let mut found = reply.responses.into_iter().map(|r| match r.response {
            Some(Response::ResponseRange(range)) => range.kvs.into_iter().next(),
            _ => None,
        });
        let (leader, epoch) = (found.next().flatten(), found.next().flatten());
        let epoch = epoch.map_or(Ok(0), |kv| parse_epoch(&kv))?;
        let Some(leader) = leader else {
            return Ok(()); // The epoch moved under the campaign: try again at once.
        };
        let revision = reply.header.map_or(0, |h| h.revision);
        let address = String::from_utf8_lossy(&leader.value).into_owned();
        tracing::info!(leader = %address, epoch, "following");
        role.send_replace(Role::Following {
            leader: Some(address),
            epoch,
        });
        self.wait_for_deletion(revision, shutdown).await
    }

    /// The stored epoch (0 before the first election) and the revision it was last written at.
    async fn read_epoch(&self) -> anyhow::Result<(u64, i64)> {
        let (kv, _) = self
            .etcd
            .get(EPOCH_KEY)
            .await
            .context("reading the epoch")?;
        match kv {
            Some(kv) => Ok((parse_epoch(&kv)?, kv.mod_revision)),
            None => Ok((0, 0)),
        }
    }

    /// Waits until the leader key is deleted after `revision`, or a while passes (then the
    /// campaign rechecks), or shutdown.
    async fn wait_for_deletion(&self, revision: i64, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut watch = self
            .etcd
            .watch(LEADER_KEY, revision + 1)
            .await
            .context("watching the leader")?;
        let recheck = tokio::time::sleep(self.lease * RECHECK_LEASES);
        tokio::pin!(recheck);
        loop {
            tokio::select! {
                reply = watch.next() => match reply.context("watching the leader")? {
                    Some(reply) if reply.canceled => return Ok(()),
                    Some(reply) => {
                        if reply.events.iter().any(|e| e.r#type() == EventType::Delete) {
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                },
                () = &mut recheck => return Ok(()),
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Leads in `epoch` until the lease is lost or shutdown; then ends the term.
    async fn lead(
        &self,
        epoch: u64,
        lease: Lease,
        mut hold: Instant,
        role: &watch::Sender<Role>,
        shutdown: &Shutdown,
    ) {
        let table = Arc::new(LockTable::new(epoch));
        table.serve_until(hold);
        let ended = shutdown.child_token();
        let reaper = tokio::spawn(table.clone().expire_leases(ended.clone()));
        role.send_replace(Role::Leading(Term {
            epoch,
            table: table.clone(),
            ended: ended.clone(),
        }));
        tracing::info!(epoch, advertise = %self.advertise, "elected: leading");
        let renew_every = lease.ttl / 3;
        // After a failed renewal, try again soon rather than a third of the lease later: the
        // failed call may itself have taken a third (etcd waiting for a raft leader of its own),
        // so the next regular renewal would come after the hold, and the term would end although
        // etcd elects a new raft leader within a second or two and keeps every lease.
        let retry_after = lease.ttl / 10;
        let mut wait = renew_every;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => {
                    table.retire();
                    // So that another server is elected now rather than after the lease.
                    if let Err(err) = self.etcd.revoke(lease.id).await {
                        tracing::warn!(error = %err, "stopping: the election's lease not revoked");
                    }
                    break;
                }
            }
            let sent = Instant::now();
            match self.etcd.keep_alive(lease.id).await {
                Ok(Some(ttl)) => {
                    hold = sent + held_for(ttl);
                    table.serve_until(hold);
                    wait = renew_every;
                }
                Ok(None) => {
                    tracing::warn!(epoch, "the election's lease expired: stepping down");
                    break;
                }
                Err(err) if Instant::now() >= hold => {
                    tracing::warn!(epoch, error = %err, "no renewal in time: stepping down");
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "lease renewal failed; retrying");
                    wait = retry_after;
                }
            }
        }
        table.retire();
        ended.cancel();
        let _ = reaper.await;
        role.send_replace(Role::Following {
            leader: None,
            epoch,
        });
    }
}

/// How long after sending a renewal the leader may rely on it: nine tenths of the lease's time to
/// live, a margin for clocks that run at slightly different rates.
fn held_for(ttl: Duration) -> Duration {
    ttl * 9 / 10
}

/// The epoch stored at the epoch key: a decimal number in 1..=MAX_EPOCH, or an error (a damaged
/// key must not lower the epoch).
fn parse_epoch(kv: &KeyValue) -> anyhow::Result<u64> {
    std::str::from_utf8(&kv.value)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|epoch| (1..=MAX_EPOCH as u64).contains(epoch))
        .with_context(|| {
            format!(
                "the epoch key in etcd holds {:?}, not an epoch",
                String::from_utf8_lossy(&kv.value)
            )
        })
}
