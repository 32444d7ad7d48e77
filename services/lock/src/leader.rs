//! Who leads. A single lock-server always leads, in one term that lasts as long as it runs. With
//! etcd (`election`), several run and one is elected at a time; the others follow and point
//! callers to it. The gRPC face asks [`Leadership::term`] at every call.

use std::sync::Arc;

use tokio::sync::watch;
use township_kit::Shutdown;

use crate::{Error, table::LockTable};

/// One leadership term: the epoch of its fencing tokens, the table that serves it, and a token
/// cancelled when it ends (so its waits and streams end with it).
#[derive(Clone)]
pub struct Term {
    pub epoch: u64,
    pub table: Arc<LockTable>,
    pub ended: Shutdown,
}

/// What this lock-server is now.
#[derive(Clone)]
pub enum Role {
    /// It leads, in this term.
    Leading(Term),
    /// It does not lead: the leader's advertised address, if known, and the latest epoch seen (0:
    /// none yet).
    Following { leader: Option<String>, epoch: u64 },
}

/// The current role, as the election publishes it; cheap to clone.
#[derive(Clone)]
pub struct Leadership {
    role: watch::Receiver<Role>,
}

impl Leadership {
    /// A single lock-server: leads in `epoch` with `table` until `shutdown`.
    pub fn single(epoch: u64, table: Arc<LockTable>, shutdown: Shutdown) -> Self {
        let (_, role) = watch::channel(Role::Leading(Term {
            epoch,
            table,
            ended: shutdown,
        }));
        Self { role }
    }

    /// The role as published on `role` (by the election).
    pub fn watching(role: watch::Receiver<Role>) -> Self {
        Self { role }
    }

    /// The current term, or [`Error::NotLeader`] naming the leader when known.
    pub fn term(&self) -> Result<Term, Error> {
        match &*self.role.borrow() {
            Role::Leading(term) => Ok(term.clone()),
            Role::Following { leader, .. } => Err(Error::NotLeader(leader.clone())),
        }
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// `err`, with the leader's address added when it is a "not the leader" without one (a term
    /// that ended under a call).
    pub fn hint(&self, err: Error) -> Error {
        match err {
            Error::NotLeader(None) => match &*self.role.borrow() {
                Role::Following { leader, .. } => Error::NotLeader(leader.clone()),
                Role::Leading(_) => Error::NotLeader(None),
            },
            other => other,
        }
    }
}
