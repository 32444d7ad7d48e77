//! Helpers for the gRPC statuses every service returns, so that errors look the same everywhere:
//! INVALID_ARGUMENT names the field (also as a `BadRequest` detail), and unexpected failures are
//! logged in full but answered with an opaque INTERNAL.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A request field that is invalid: its name and what is wrong with it. Every service's error enum
/// carries it as its `Invalid` variant (`#[from]`), and it becomes INVALID_ARGUMENT naming the
/// field ([`invalid_argument`]), so a bad field reads the same in every service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    /// The request field, e.g. `page_size` or `targets[1].resource`.
    pub field: String,
    /// What is wrong with it, for people.
    pub problem: String,
}

impl InvalidField {
    /// `field` is invalid because of `problem`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<&InvalidField> for Status {
    fn from(invalid: &InvalidField) -> Self {
        invalid_argument(&invalid.field, invalid.problem.clone())
    }
}

/// INVALID_ARGUMENT for `field`: the message starts with the field name, and a `BadRequest` detail
/// carries it for clients that read rich errors.
pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// INTERNAL with an opaque message; the whole error chain goes to the log.
pub fn internal(err: &(dyn std::error::Error + 'static)) -> Status {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "internal error");
    Status::internal("internal error (see the server log)")
}

/// How long [`storage_full`] asks a client to wait before retrying.
pub const STORAGE_FULL_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// RESOURCE_EXHAUSTED for a write the server could not store because its disk is full, with a
/// RetryInfo of [`STORAGE_FULL_RETRY`]: nothing of the request was stored (a retry, with the
/// same request or message id where the call takes one, is safe), and the server takes writes
/// again as soon as its operator makes room. The operator learns it from the log, as a warning.
pub fn storage_full(service: &str) -> Status {
    tracing::warn!(
        service,
        "a write was refused: the disk (or the database's page limit) is full"
    );
    Status::with_error_details(
        Code::ResourceExhausted,
        storage_full_message(service),
        ErrorDetails::with_retry_info(Some(STORAGE_FULL_RETRY)),
    )
}

/// The message of [`storage_full`], for a refusal that is not a status (an entry of a batch);
/// logs nothing, so that a batch can log once for all its entries.
pub fn storage_full_message(service: &str) -> String {
    format!("the {service}'s storage is full: nothing of this request was stored; retry later")
}

/// How long a client is told to wait before retrying a call its server could not complete
/// because the database could not be reached ([`storage_unavailable`]).
pub const STORAGE_UNAVAILABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// UNAVAILABLE for a call the server could not complete because its database (PostgreSQL)
/// cannot be reached now (restarting, failing over, or the network to it down), with a RetryInfo
/// of [`STORAGE_UNAVAILABLE_RETRY`]. A write may or may not have been applied: a retry with the
/// same request or message id, where the call takes one, is safe. The operator learns it from
/// the log, as a warning with the cause.
pub fn storage_unavailable(service: &str, cause: &dyn std::fmt::Display) -> Status {
    tracing::warn!(service, %cause, "the database cannot be reached");
    Status::with_error_details(
        Code::Unavailable,
        format!("the {service}'s database cannot be reached now; retry"),
        ErrorDetails::with_retry_info(Some(STORAGE_UNAVAILABLE_RETRY)),
    )
}

/// The deadline a client set on this call (the `grpc-timeout` header), if any.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (amount, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::metadata::MetadataMap;

    use super::*;

    #[test]
    fn grpc_timeout_headers_are_read_in_every_unit() {
        let mut metadata = MetadataMap::new();
        assert_eq!(grpc_timeout(&metadata), None);
        for (text, expected) in [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("5S", Duration::from_secs(5)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
        ] {
            metadata.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&metadata), Some(expected), "{text}");
        }
        metadata.insert("grpc-timeout", "12x".parse().unwrap());
        assert_eq!(grpc_timeout(&metadata), None);
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status = invalid_argument("ttl", "too long");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "ttl: too long");
    }
}
