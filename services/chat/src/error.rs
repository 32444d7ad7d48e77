//! The chat's errors and how each reaches a client as a gRPC status.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use township_kit::status::{InvalidField, internal, storage_full, storage_unavailable};

/// Everything that can go wrong in a chat request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// A live member of the room already has this name.
    #[error("name: {0:?} is already in this room: pick another name, or wait until they leave")]
    NameTaken(String),
    /// Only live members may send.
    #[error("{name:?} has not joined room {room:?}: join it first")]
    NotJoined {
        /// The sender's name.
        name: String,
        /// The room.
        room: String,
    },
    /// The member token is not that of the name's live Join of the room.
    #[error(
        "member_token: not the token of this name's live Join of this room (it is in the Join stream's Welcome)"
    )]
    NotYourJoin,
    /// The caller created as many new rooms as it may this minute.
    #[error(
        "room: you have created too many new rooms this minute: join an existing one, or retry later"
    )]
    TooManyRooms(std::time::Duration),
    /// The server is shutting down.
    #[error("the chat is shutting down: join again in a moment, or another chat server")]
    Draining,
    /// The client message id was used by another member in this room.
    #[error("client_message_id: already used by another member in this room: use a fresh id")]
    IdTaken,
    /// A message with this client message id was stored by another server after this one
    /// looked for it (the sender's retry raced the original): nothing was stored; the room
    /// answers with the stored one.
    #[error("client_message_id: stored meanwhile by another server")]
    SentMeanwhile,
    /// A broken invariant.
    #[error("internal: {0}")]
    Internal(&'static str),
    /// A task serving the request failed (it panicked or was cancelled).
    #[error("a request task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The disk is full: nothing of the request was stored (see `township_store::full`).
    #[error("storage full")]
    StorageFull,
    /// The database (PostgreSQL) cannot be reached now: whether a write was applied is unknown.
    #[error("the database cannot be reached: {0}")]
    StorageUnavailable(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(township_store::sqlx::Error),
}

impl Error {
    /// An invalid `field`.
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Invalid(InvalidField::new(field, problem))
    }
}

impl From<township_store::sqlx::Error> for Error {
    fn from(err: township_store::sqlx::Error) -> Self {
        if township_store::full::is_full(&err) {
            Error::StorageFull
        } else if township_store::postgres::is_unreachable(&err) {
            Error::StorageUnavailable(err.to_string())
        } else {
            Error::Storage(err)
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::Invalid(invalid) => invalid.into(),
            Error::NameTaken(_) => Status::new(Code::AlreadyExists, err.to_string()),
            Error::NotJoined { .. } => Status::new(Code::FailedPrecondition, err.to_string()),
            Error::NotYourJoin => Status::new(Code::PermissionDenied, err.to_string()),
            Error::Draining => Status::new(Code::Unavailable, err.to_string()),
            Error::TooManyRooms(wait) => Status::with_error_details(
                Code::ResourceExhausted,
                err.to_string(),
                ErrorDetails::with_retry_info(Some(*wait)),
            ),
            Error::IdTaken => Status::new(Code::AlreadyExists, err.to_string()),
            Error::SentMeanwhile => Status::new(Code::Aborted, err.to_string()),
            Error::StorageFull => storage_full("chat"),
            Error::StorageUnavailable(cause) => storage_unavailable("chat", cause),
            Error::Internal(_) | Error::Task(_) | Error::Storage(_) => internal(&err),
        }
    }
}
