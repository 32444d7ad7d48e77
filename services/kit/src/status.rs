//! Helpers for the gRPC statuses every service returns, so that errors look the same everywhere:
//! INVALID_ARGUMENT names the field (also as a `BadRequest` detail), and unexpected failures are
//! logged in full but answered with an opaque INTERNAL.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

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
