//! The time service's errors and how each reaches a client as a gRPC status.

use tonic::Status;
use township_kit::status::invalid_argument;

/// Everything that can go wrong in a time request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The zone is not in the IANA database.
    #[error("unknown IANA time zone {0:?} (try e.g. \"UTC\" or \"Europe/Paris\")")]
    UnknownZone(String),
    /// The watch interval is outside the allowed range.
    #[error("must be from 100ms to 1h, got {0}")]
    IntervalOutOfRange(String),
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::UnknownZone(_) => invalid_argument("time_zone", err.to_string()),
            Error::IntervalOutOfRange(_) => invalid_argument("interval", err.to_string()),
        }
    }
}
