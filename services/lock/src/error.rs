//! The lock service's errors and how each reaches a client as a gRPC status.

use std::time::Duration;

use tonic::Status;
use township_kit::status::{InvalidField, internal};

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
            Error::Internal(_) => internal(&err),
        }
    }
}
