//! The doctor's errors and how each reaches a client as a gRPC status.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use township_kit::status::{InvalidField, internal, storage_full, storage_unavailable};

/// How soon a caller refused for too many sessions is told to retry.
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// The patient has as many sessions open as one patient may.
    #[error("this patient has {0} sessions open already: end one first")]
    PatientFull(usize),
    /// The patient key is missing or wrong for this name, or the name is unknown (GetHistory):
    /// one answer for all, so a stranger learns nothing about the patient.
    #[error(
        "patient_key: missing or wrong for this name (a patient's first session returns their key; the operator reissues a lost one)"
    )]
    Denied,
    /// The disk is full: nothing of the request was stored (see `township_store::full`).
    #[error("storage full")]
    StorageFull,
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(township_store::sqlx::Error),
    /// The database (PostgreSQL) cannot be reached now.
    #[error("the database cannot be reached: {0}")]
    StorageUnavailable(township_store::sqlx::Error),
}

impl From<township_store::sqlx::Error> for Error {
    fn from(err: township_store::sqlx::Error) -> Self {
        if township_store::full::is_full(&err) {
            Error::StorageFull
        } else if township_store::postgres::is_unreachable(&err) {
            Error::StorageUnavailable(err)
        } else {
            Error::Storage(err)
        }
    }
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
            Error::Full(_) | Error::PatientFull(_) => Status::with_error_details(
                Code::ResourceExhausted,
                err.to_string(),
                ErrorDetails::with_retry_info(Some(RETRY)),
            ),
            Error::Denied => Status::new(Code::PermissionDenied, err.to_string()),
            Error::StorageFull => storage_full("doctor"),
            Error::StorageUnavailable(cause) => storage_unavailable("doctor", cause),
            Error::Storage(_) => internal(&err),
        }
    }
}
