//! The doctor's errors and how each reaches a client as a gRPC status.

use tonic::{Code, Status};
use township_kit::status::{InvalidField, internal};

/// Everything that can go wrong in a doctor request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// No open session with this id (never opened, ended, or idle too long).
    #[error("session_id: no open session {0:?} (it ended or was idle too long): start a new one")]
    NoSession(String),
    /// Too many sessions are open.
    #[error("the doctor is seeing {0} patients already: try again later")]
    Full(usize),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] township_store::sqlx::Error),
}

impl Error {
    /// An invalid `field`.
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Invalid(InvalidField::new(field, problem))
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid(invalid) => invalid.into(),
            Error::NoSession(_) => Status::new(Code::NotFound, err.to_string()),
            Error::Full(_) => Status::new(Code::ResourceExhausted, err.to_string()),
            Error::Storage(_) => internal(&err),
        }
    }
}
