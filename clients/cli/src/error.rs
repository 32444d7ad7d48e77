//! The CLI's errors and their documented exit codes: each kind of failure has one code, and
//! the help text ([`EXIT_CODES`]), `main.rs`'s header and the README say the same.

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
/// Exit code: something on this machine failed part way: a file, stdin or stdout could not be
/// read or written, or the command was interrupted before it finished (e.g. an export).
pub const EXIT_LOCAL: u8 = 6;

/// The exit codes, as `township --help` lists them.
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 the service answered with an error; 2 bad \
usage (including a file named on the command line that cannot be opened); 3 the service could not \
be reached (after --retries); 4 health: not SERVING; 5 up failed; 6 a local failure part way (a \
file, stdin or stdout could not be read or written, or the command was interrupted, e.g. an \
export).";

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
    /// The service answered something this client cannot make sense of (it broke the protocol).
    Unexpected {
        service: &'static str,
        message: String,
    },
    /// `township up` failed.
    Up(anyhow::Error),
    /// Something on this machine failed part way (a file, stdin, stdout, a signal handler), or
    /// the command was interrupted.
    Local(anyhow::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Unreachable { .. } => EXIT_UNREACHABLE,
            CliError::Status { .. } | CliError::Rejected(_) | CliError::Unexpected { .. } => {
                EXIT_SERVICE_ERROR
            }
            CliError::NotServing { .. } => EXIT_NOT_SERVING,
            CliError::Up(_) => EXIT_UP_FAILED,
            CliError::Local(_) => EXIT_LOCAL,
        }
    }

    /// Wraps a failed call to `service`, telling "could not connect" apart from an answer. A
    /// status made locally by the transport carries its cause as `source()`; one the server
    /// answered (even UNAVAILABLE, e.g. the bank saying its lock service is down) has none.
    ///
    /// A connection the transport could not keep up (UNKNOWN, INTERNAL or CANCELLED made
    /// locally: a TLS handshake the server refused, plaintext sent to a TLS server, which closes
    /// the connection) is unreachable too, with its innermost cause (e.g. rustls' "received
    /// fatal alert: CertificateRequired").
    pub fn from_status(service: &'static str, addr: &str, status: tonic::Status) -> Self {
        use tonic::Code;
        // hyper's "operation was canceled": the connection closed under the call, as a TLS 1.3
        // server does when it refuses the client's certificate after the client's handshake is
        // done; tonic makes it a CANCELLED with no source, so it is known by its message.
        let closed_under_call =
            status.code() == Code::Cancelled && status.message() == "operation was canceled";
        let local = std::error::Error::source(&status).is_some() || closed_under_call;
        let transport = matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
        );
        if local && transport {
            let reason = match status.code() {
                Code::Unavailable => status.message().to_owned(),
                _ if closed_under_call => "the connection was closed under the call (a TLS server \
                    closes it when it refuses the client's certificate, or its lack of one)"
                    .to_owned(),
                _ => township_client::root_cause(&status),
            };
            CliError::Unreachable {
                service,
                addr: addr.to_owned(),
                attempts: 1,
                reason,
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
            CliError::Unexpected { service, message } => {
                write!(f, "the {service} service answered unexpectedly: {message}")
            }
            CliError::Up(err) | CliError::Local(err) => write!(f, "{err:#}"),
        }
    }
}

/// A local failure (see [`CliError::Local`]); `township up` maps its own failures to
/// [`CliError::Up`] instead.
impl From<anyhow::Error> for CliError {
    fn from(err: anyhow::Error) -> Self {
        CliError::Local(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_closed_under_the_call_is_unreachable_but_a_cancel_the_server_sent_is_its_answer()
     {
        let closed = tonic::Status::cancelled("operation was canceled");
        let err = CliError::from_status("time", "127.0.0.1:1", closed);
        assert_eq!(err.exit_code(), EXIT_UNREACHABLE, "{err}");
        assert!(err.to_string().contains("closed under the call"), "{err}");
        let answered = tonic::Status::cancelled("the server is stopping");
        let err = CliError::from_status("time", "127.0.0.1:1", answered);
        assert_eq!(err.exit_code(), EXIT_SERVICE_ERROR, "{err}");
    }

    #[test]
    fn each_kind_of_failure_exits_with_the_code_the_help_gives_it() {
        let local = CliError::Local(anyhow::anyhow!("cannot write out.csv"));
        let up = CliError::Up(anyhow::anyhow!("port in use"));
        let unexpected = CliError::Unexpected {
            service: "doctor",
            message: "a second greeting".into(),
        };
        let cases = [
            (
                unexpected,
                EXIT_SERVICE_ERROR,
                "1 the service answered with an error",
            ),
            (
                CliError::Usage("no --name".into()),
                EXIT_USAGE,
                "2 bad usage",
            ),
            (up, EXIT_UP_FAILED, "5 up failed"),
            (local, EXIT_LOCAL, "6 a local failure part way"),
        ];
        for (err, code, help) in cases {
            assert_eq!(err.exit_code(), code, "{err}");
            assert!(EXIT_CODES.contains(help), "{help:?} not in {EXIT_CODES:?}");
        }
        assert_eq!(
            CliError::from(anyhow::anyhow!("stdin")).exit_code(),
            EXIT_LOCAL
        );
    }
}
