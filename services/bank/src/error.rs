//! The bank's errors and how each reaches a client as a gRPC status (with the richer error model
//! where a client needs a machine-readable reason).

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use township_kit::status::{
    InvalidField, internal, invalid_argument, storage_full, storage_unavailable,
};

/// The `domain` of every `ErrorInfo` the bank attaches.
pub const ERROR_DOMAIN: &str = "bank.township";

/// Everything that can go wrong in a bank request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// No account with this id.
    #[error("{field}: no such account")]
    AccountNotFound {
        /// The field that named it.
        field: &'static str,
    },
    /// The caller's session does not reach this account.
    #[error("{field}: not one of your accounts")]
    NotYourAccount {
        /// The field that named it.
        field: &'static str,
    },
    /// No valid session (missing, unknown, expired or revoked token).
    #[error("log in first: {0}")]
    Unauthenticated(&'static str),
    /// The admin token is missing or wrong.
    #[error("this is a staff operation: give the admin token")]
    NotStaff,
    /// Unknown name or wrong PIN (the same answer for both).
    #[error("holder_name or pin is wrong")]
    BadCredentials,
    /// Too many failed logins for this name.
    #[error("too many failed attempts for this name: try again in {}s", .0.as_secs().max(1))]
    LockedOut(Duration),
    /// Too many PIN checks in flight, for this name or in all: nothing was checked or counted.
    #[error("too many logins in progress: try again in {}s", crate::logins::BUSY_RETRY.as_secs())]
    LoginsBusy,
    /// ChangePin's old PIN is not the holder's.
    #[error("old_pin: not your PIN")]
    WrongOldPin,
    /// An existing holder was named with a PIN that is not theirs.
    #[error("pin: not the PIN of the existing holder")]
    PinMismatch,
    /// A holder this request was to create was created by another request after it looked:
    /// nothing was written. The staff operations then look again, and check the PIN; were it
    /// ever to reach a client, it is ABORTED (safe to retry).
    #[error("holder_name: created by another request meanwhile; retry")]
    HolderCreatedMeanwhile,
    /// The debit is larger than the balance.
    #[error("insufficient funds: the balance is {balance_cents} cents")]
    InsufficientFunds {
        /// The balance the debit would exceed.
        balance_cents: i64,
    },
    /// The credit would take the balance past the maximum.
    #[error("the balance would exceed the maximum")]
    BalanceLimit,
    /// The request id was used before for a different request.
    #[error("request_id: already used for a different request")]
    RequestIdReused,
    /// Source and destination of a transfer are the same account.
    #[error("to_account_id: must differ from from_account_id")]
    SameAccount,
    /// The lock service could not be reached or did not grant in time.
    #[error("the lock service is unavailable: {0}")]
    LockUnavailable(String),
    /// The lock lease expired mid-operation and a newer holder touched the account: nothing was
    /// changed; a retry with the same request id is safe.
    #[error("the account lock was lost mid-operation (fencing token {token} < {recorded}); retry")]
    StaleLease {
        /// This operation's token.
        token: u64,
        /// The highest token recorded on the account.
        recorded: u64,
    },
    /// [`Error::StaleLease`] as the client gets it: with the smallest fencing epoch whose tokens
    /// every account's stored fence accepts, which a lock service that lost its state must be
    /// restarted at (`lock-server --initial-epoch`).
    #[error("the account lock was lost mid-operation (fencing token {token} < {recorded}); retry")]
    LockLost {
        /// This operation's token.
        token: u64,
        /// The highest token recorded on the account.
        recorded: u64,
        /// The smallest epoch every stored fence accepts.
        required_epoch: u64,
    },
    /// The disk is full: nothing of the request was stored (see `township_store::full`).
    #[error("storage full")]
    StorageFull,
    /// The database (PostgreSQL) cannot be reached now: whether a write was applied is unknown.
    /// (The cause as text: a batch of transfers gives it to each of them.)
    #[error("the database cannot be reached: {0}")]
    StorageUnavailable(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(township_store::sqlx::Error),
    /// Storage failed, on the ledger writer's own connection.
    #[error("storage: {0}")]
    Sqlite(township_store::rusqlite::Error),
    /// A broken invariant.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// An invalid `field`.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Invalid(InvalidField::new(field, problem))
    }

    /// The `ErrorInfo` reason for errors clients act on.
    fn reason(&self) -> Option<&'static str> {
        match self {
            Error::InsufficientFunds { .. } => Some("INSUFFICIENT_FUNDS"),
            Error::BalanceLimit => Some("BALANCE_LIMIT"),
            Error::RequestIdReused => Some("REQUEST_ID_REUSED"),
            Error::LockedOut(_) => Some("TOO_MANY_ATTEMPTS"),
            Error::LoginsBusy => Some("LOGINS_BUSY"),
            Error::StaleLease { .. } | Error::LockLost { .. } => Some("LOCK_LOST"),
            _ => None,
        }
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

impl From<township_store::rusqlite::Error> for Error {
    fn from(err: township_store::rusqlite::Error) -> Self {
        if township_store::full::is_full_blocking(&err) {
            Error::StorageFull
        } else {
            Error::Sqlite(err)
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::Invalid(invalid) => return invalid.into(),
            Error::Storage(_) | Error::Sqlite(_) | Error::Internal(_) => return internal(&err),
            Error::StorageFull => return storage_full("bank"),
            Error::StorageUnavailable(cause) => return storage_unavailable("bank", cause),
            Error::AccountNotFound { .. } => Code::NotFound,
            Error::NotYourAccount { .. }
            | Error::NotStaff
            | Error::PinMismatch
            | Error::WrongOldPin => Code::PermissionDenied,
            Error::Unauthenticated(_) | Error::BadCredentials => Code::Unauthenticated,
            Error::LockedOut(_) | Error::LoginsBusy => Code::ResourceExhausted,
            Error::InsufficientFunds { .. } | Error::BalanceLimit => Code::FailedPrecondition,
            Error::RequestIdReused => Code::AlreadyExists,
            Error::SameAccount => {
                return invalid_argument("to_account_id", "must differ from from_account_id");
            }
            Error::LockUnavailable(_) => Code::Unavailable,
            Error::StaleLease { .. } | Error::LockLost { .. } | Error::HolderCreatedMeanwhile => {
                Code::Aborted
            }
        };
        let mut details = ErrorDetails::new();
        if let Error::LockLost { required_epoch, .. } = &err {
            let metadata = [("required_epoch".to_owned(), required_epoch.to_string())];
            details.set_error_info("LOCK_LOST", ERROR_DOMAIN, metadata);
        } else if let Some(reason) = err.reason() {
            details.set_error_info(reason, ERROR_DOMAIN, []);
        }
        match &err {
            Error::LockedOut(wait) => details.set_retry_info(Some(*wait)),
            Error::LoginsBusy => details.set_retry_info(Some(crate::logins::BUSY_RETRY)),
            _ => &mut details,
        };
        Status::with_error_details(code, err.to_string(), details)
    }
}
