//! The doctor's errors and how each reaches a client as a gRPC status.

use tonic::{Code, Status};
use township_kit::{
    paging::InvalidField,
    status::{internal, invalid_argument},
};

/// Everything that can go wrong in a doctor request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, e.g. `text`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
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

/// A page size or page token the kit's paging refused.
impl From<InvalidField> for Error {
    fn from(err: InvalidField) -> Self {
        Error::invalid(err.field, err.problem)
    }
}

impl Error {
    /// An invalid `field`.
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            problem: problem.into(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid { field, problem } => invalid_argument(field, problem.clone()),
            Error::NoSession(_) => Status::new(Code::NotFound, err.to_string()),
            Error::Full(_) => Status::new(Code::ResourceExhausted, err.to_string()),
            Error::Storage(_) => internal(&err),
        }
    }
}
