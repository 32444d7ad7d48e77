//! The phone book's errors and how each reaches a client as a gRPC status.

use std::sync::Arc;

use tonic::{Code, Status};
use township_kit::status::{InvalidField, internal, storage_full, storage_unavailable};

use crate::types::{EntryId, Etag};

/// Everything that can go wrong in a phone book request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// No entry with this id.
    #[error("no entry with id {0}")]
    NotFound(EntryId),
    /// The same name (by its match key) already has this number.
    #[error("this name already has this number (entry {0})")]
    Duplicate(EntryId),
    /// The entry changed since the client read it.
    #[error("the entry changed since you read it (its etag is now {current}): read it again")]
    StaleEtag {
        /// The entry's etag now.
        current: Etag,
    },
    /// The server is shutting down and no longer takes writes.
    #[error("the phone book is shutting down")]
    ShuttingDown,
    /// A broken invariant.
    #[error("internal: {0}")]
    Internal(&'static str),
    /// The disk is full: nothing of the request was stored (see `township_store::full`).
    #[error("storage full")]
    StorageFull,
    /// The database (PostgreSQL) cannot be reached now: whether a write was applied is unknown.
    #[error("the database cannot be reached: {0}")]
    StorageUnavailable(Arc<township_store::sqlx::Error>),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(Arc<township_store::sqlx::Error>),
}

impl From<township_store::sqlx::Error> for Error {
    fn from(err: township_store::sqlx::Error) -> Self {
        Error::stored(Arc::new(err))
    }
}

impl Error {
    /// What a storage failure means for the caller: the disk is full, the database cannot be
    /// reached now, or something else went wrong.
    pub fn stored(err: Arc<township_store::sqlx::Error>) -> Self {
        if township_store::full::is_full(&err) {
            Error::StorageFull
        } else if township_store::postgres::is_unreachable(&err) {
            Error::StorageUnavailable(err)
        } else {
            Error::Storage(err)
        }
    }

    /// An invalid `field`.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Invalid(InvalidField::new(field, problem))
    }

    /// The status code this error is answered with, and its canonical name (as batch results
    /// report it).
    pub fn code(&self) -> (Code, &'static str) {
        match self {
            Error::Invalid(_) => (Code::InvalidArgument, "INVALID_ARGUMENT"),
            Error::NotFound(_) => (Code::NotFound, "NOT_FOUND"),
            Error::Duplicate(_) => (Code::AlreadyExists, "ALREADY_EXISTS"),
            Error::StaleEtag { .. } => (Code::Aborted, "ABORTED"),
            Error::ShuttingDown | Error::StorageUnavailable(_) => {
                (Code::Unavailable, "UNAVAILABLE")
            }
            Error::StorageFull => (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
            Error::Storage(_) | Error::Internal(_) => (Code::Internal, "INTERNAL"),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid(invalid) => invalid.into(),
            Error::Storage(_) | Error::Internal(_) => internal(&err),
            Error::StorageFull => storage_full("phone book"),
            Error::StorageUnavailable(cause) => storage_unavailable("phone book", cause),
            _ => Status::new(err.code().0, err.to_string()),
        }
    }
}
