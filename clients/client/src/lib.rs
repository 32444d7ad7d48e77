//! How a Township client reaches a service, shared by the `township` CLI, the lock client (and so
//! every bank replica) and the benchmarks: one reading of an address, one way to dial with retries,
//! one backoff. Servers never link it, and it links no server crate.
//!
//! - [`endpoint_uri`]: a user's `host:port` (or `http://host:port`) as the URI tonic dials;
//!   [`addr_list`]: several of them, separated by commas.
//! - [`Dialer`]: connect now (retrying with [`Backoff`]) or lazily, with optional HTTP/2
//!   keepalive for long-lived streams.
//! - [`Backoff`]: exponential backoff with jitter, for any loop that retries.
//! - [`ClientTlsFiles`]: the CA a client trusts and the certificate it shows (mutual TLS); a
//!   [`Dialer`] given them dials `https://`.
//!
//! Later concerns of the client side (trace propagation) belong here too.

mod addr;
mod backoff;
mod dial;
mod tls;

pub use addr::{addr_list, endpoint_uri};
pub use backoff::Backoff;
pub use dial::{DialError, Dialer, root_cause};
pub use tls::ClientTlsFiles;
