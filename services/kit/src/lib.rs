//! The service kit: everything a Township server shares, so that each service's crate holds only its
//! own domain and gRPC mapping.
//!
//! A server binary uses it in four steps (see `services/time/src/main.rs`):
//! 1. [`config::parse_args`] parses its typed config (bad config: one line on stderr, exit 64);
//! 2. [`telemetry::init`] starts tracing (text or JSON on stderr);
//! 3. [`net::bind`] binds the listener and [`net::announce`] prints `listening on <ip>:<port>`;
//! 4. the service's `run` builds a [`server::ServiceSet`] and awaits [`server::serve`], which adds
//!    health, reflection, per-RPC tracing and limits, and shuts down gracefully when the
//!    [`Shutdown`] token fires (see [`shutdown::on_signals`]).
//!
//! Handlers share three conventions from here: [`status`] (a bad field is an
//! [`status::InvalidField`], INVALID_ARGUMENT naming it; unexpected errors are an opaque INTERNAL
//! with the chain logged), [`fields`] (the text rules more than one service applies) and
//! [`paging`] (page sizes per AIP-158, and signed page tokens bound to their RPC, query and
//! caller).

pub mod access;
pub mod authz;
pub mod config;
pub mod data_dir;
pub mod fields;
pub mod health;
pub mod limits;
pub mod net;
pub mod paging;
mod rpc_trace;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod tls;

pub use access::{Caller, Denial, DenialHook, RpcMethod};
pub use config::{LogFormat, ServerArgs};
pub use data_dir::DataDirLock;
pub use server::{ServeOptions, ServiceSet, serve};
pub use shutdown::Shutdown;
