//! The lock service's errors and how each reaches a client as a gRPC status.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use township_kit::status::{InvalidField, internal};

/// The trailer of a "not the leader" answer that names the leader's address (HOST:PORT).
pub const LEADER_TRAILER: &str = "township-lock-leader";

/// When a caller over a cap is told to try again.
const OVER_CAP_RETRY: Duration = Duration::from_secs(1);

/// Everything that can go wrong in a lock request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The targets were not granted within the allowed wait.
    #[error("not granted within {0:?}")]
    WaitTimedOut(Duration),
    /// Release, refresh or keep-alive of a lease that is unknown, released or expired.
    #[error("lease_id: no live lease with that id (unknown, released or expired)")]
    LeaseNotFound,
    /// This epoch has issued 2^40 fencing tokens; a restart starts a new epoch.
    #[error("fencing tokens exhausted for this epoch: restart lock-server")]
    TokensExhausted,
    /// The resource ACL allows the caller none of this (the field named; nothing else said).
    #[error("{0}: not allowed to this caller")]
    NotAllowed(String),
    /// Over one of the caller's caps (what, and the cap).
    #[error("{0}")]
    OverCap(String),
    /// This lock-server does not lead (it follows an elected leader, an election is under way,
    /// or its term ended): the leader's advertised address when known.
    #[error("{}", match .0 {
        Some(leader) => format!("this lock-server is not the leader; the leader is {leader}"),
        None => "this lock-server is not the leader, and no leader is known yet: try again".to_owned(),
    })]
    NotLeader(Option<String>),
    /// The server is shutting down.
    #[error("lock-server is shutting down")]
    ShuttingDown,
    /// A broken invariant; logged in full, answered opaquely.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// An invalid `field`.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Invalid(InvalidField::new(field, problem))
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid(invalid) => invalid.into(),
            Error::WaitTimedOut(_) => Status::deadline_exceeded(err.to_string()),
            Error::LeaseNotFound => Status::not_found(err.to_string()),
            Error::TokensExhausted | Error::ShuttingDown => Status::unavailable(err.to_string()),
            Error::NotAllowed(_) => Status::permission_denied(err.to_string()),
            Error::NotLeader(leader) => {
                let mut status = Status::unavailable(err.to_string());
                if let Some(value) = leader.as_deref().and_then(|l| l.parse().ok()) {
                    status.metadata_mut().insert(LEADER_TRAILER, value);
                }
                status
            }
            Error::OverCap(_) => {
                // Leases end and waits are granted: a retry a little later may well pass.
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(OVER_CAP_RETRY));
                Status::with_error_details(Code::ResourceExhausted, err.to_string(), details)
            }
            Error::Internal(_) => internal(&err),
        }
    }
}
