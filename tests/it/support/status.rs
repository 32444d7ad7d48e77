//! Checks of gRPC answers: the status code, and the field an INVALID_ARGUMENT names in its
//! message and in its BadRequest detail (the contract every Township service keeps).

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Asserts that `result` is the error `code` and returns its status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Err(status) if status.code() == code => status,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// Asserts that `result` is INVALID_ARGUMENT naming `field`, in the message and as a BadRequest.
#[track_caller]
pub fn expect_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    expect_invalid_input(result, field, "")
}

/// [`expect_invalid`] for the bad `input` named in any failure message (for tables of inputs).
#[track_caller]
pub fn expect_invalid_input<T: std::fmt::Debug>(
    result: Result<T, Status>,
    field: &str,
    input: &str,
) -> Status {
    let status = match result {
        Err(status) if status.code() == Code::InvalidArgument => status,
        other => panic!("{input}: expected INVALID_ARGUMENT naming {field}, got {other:?}"),
    };
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{input}: the message names {field}: {status:?}"
    );
    let violations = status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.clone())
        .unwrap_or_default();
    assert!(
        violations.iter().any(|v| v.field == field),
        "{input}: a BadRequest names {field}: {status:?}"
    );
    status
}

/// The `ErrorInfo` reason of `status`, if it carries one.
pub fn reason(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

/// The `ErrorInfo` metadata `key` of `status`, if it carries one.
pub fn error_metadata(status: &Status, key: &str) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

/// The RetryInfo delay of a refusal, which it must carry.
pub fn retry_delay(status: &Status) -> std::time::Duration {
    status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or_else(|| panic!("RetryInfo with a delay: {status:?}"))
}
