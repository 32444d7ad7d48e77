//! The CLI's errors and their documented exit codes.

use std::fmt;

/// Exit code: the service answered with an error status.
pub const EXIT_SERVICE_ERROR: u8 = 1;
/// Exit code: bad usage (clap's own errors also exit 2).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the service could not be reached, after the retries.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: `township health` found the service not SERVING.
pub const EXIT_NOT_SERVING: u8 = 4;
/// Exit code: `township up` could not start or keep the town running.
pub const EXIT_UP_FAILED: u8 = 5;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug)]
pub enum CliError {
    /// The command line asks for something impossible.
    Usage(String),
    /// Nothing answered at the address.
    Unreachable {
        service: &'static str,
        addr: String,
        attempts: u32,
        reason: String,
    },
    /// The service answered with an error.
    Status {
        service: &'static str,
        status: tonic::Status,
    },
    /// The service answered, but refused part of the work (e.g. some rows of an import); what
    /// was refused has been reported already.
    Rejected(String),
    /// A health probe found the service not SERVING.
    NotServing { addr: String, status: String },
    /// Anything else (local I/O, `township up`).
    Other(anyhow::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Unreachable { .. } => EXIT_UNREACHABLE,
            CliError::Status { .. } | CliError::Rejected(_) => EXIT_SERVICE_ERROR,
            CliError::NotServing { .. } => EXIT_NOT_SERVING,
            CliError::Other(_) => EXIT_UP_FAILED,
        }
    }

    /// Wraps a failed call to `service`, telling "could not connect" apart from an answer. A
    /// status made locally by the transport carries its cause as `source()`; one the server
    /// answered (even UNAVAILABLE, e.g. the bank saying its lock service is down) has none.
    pub fn from_status(service: &'static str, addr: &str, status: tonic::Status) -> Self {
        let local = std::error::Error::source(&status).is_some();
        if local && status.code() == tonic::Code::Unavailable {
            CliError::Unreachable {
                service,
                addr: addr.to_owned(),
                attempts: 1,
                reason: status.message().to_owned(),
            }
        } else {
            CliError::Status { service, status }
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "{message}"),
            CliError::Unreachable {
                service,
                addr,
                attempts,
                reason,
            } => write!(
                f,
                "cannot reach the {service} service at {addr}: {reason} (tried {attempts} time{})",
                if *attempts == 1 { "" } else { "s" }
            ),
            CliError::Status { service, status } => {
                write!(
                    f,
                    "the {service} service answered {:?}: {}",
                    status.code(),
                    status.message()
                )
            }
            CliError::Rejected(message) => write!(f, "{message}"),
            CliError::NotServing { addr, status } => write!(f, "{addr} is {status}"),
            CliError::Other(err) => write!(f, "{err:#}"),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(err: anyhow::Error) -> Self {
        CliError::Other(err)
    }
}
