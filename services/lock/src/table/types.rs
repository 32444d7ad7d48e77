//! The lock table's vocabulary: what a request asks for, what a grant gives, the lease id a
//! holder acts with, and what inspection shows (never a lease id).

use std::{
    fmt,
    str::FromStr,
    time::{Duration, SystemTime},
};

use township_cell::Mode;

use crate::Error;

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
    pub(super) seq: u64,
    pub(super) secret: u64,
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
