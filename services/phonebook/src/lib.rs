//! The Township phone book: one phone book that every client shares, created at start-up and kept
//! on disk. Numbers are validated and normalised with libphonenumber's rules, names are matched
//! ignoring case, accents and spacing, and concurrent edits are guarded by etags.
//!
//! - [`types`]: validated values (names and their match keys, numbers, labels, ids, etags) and
//!   each request message read into a domain request;
//! - [`book`]: the storage, on SQLite or PostgreSQL (reads in parallel, writes group-committed);
//! - [`token`]: what page tokens carry and are bound to (the kit signs them);
//! - [`service`]: the gRPC API; [`run`] serves it.

pub mod book;
mod error;
pub mod service;
pub mod token;
pub mod types;

use std::path::PathBuf;

use tokio::net::TcpListener;
use township_kit::{ServeOptions, ServiceSet, Shutdown};
use township_proto::phonebook::v1::phone_book_service_server::PhoneBookServiceServer;
use township_store::Database;

pub use book::Book;
pub use error::Error;
pub use service::PhoneBookApi;
pub use types::Region;

/// The phone book's default gRPC port.
pub const DEFAULT_PORT: u16 = township_proto::town::PHONEBOOK.port;

/// Everything the phone book server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shared server settings.
    pub serve: ServeOptions,
    /// The server's own directory (held, so that two servers never share one).
    pub data_dir: PathBuf,
    /// Where the book is kept: by default `phonebook.db` in `data_dir`.
    pub database: Database,
    /// The region of numbers written without a country code.
    pub region: Region,
}

/// Serves the phone book on `listener` until `shutdown` fires. Every write acknowledged before
/// then is on disk.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    // Held until the server stops: a second server on this directory refuses to start (exit 75).
    let _data_dir = township_kit::DataDirLock::exclusive(&config.data_dir).await?;
    // libphonenumber's metadata (about 5 MiB once loaded) is loaded by the first request that
    // reads a number, not here: an idle server stays small and is SERVING sooner; that one
    // request takes about 80 ms longer.
    let book = Book::open(&config.database).await?;
    let api = PhoneBookApi::new(book, config.region);
    let server =
        PhoneBookServiceServer::new(api).max_decoding_message_size(config.serve.max_message_bytes);
    let services = ServiceSet::new().add_service(server);
    township_kit::serve(listener, &config.serve, services, shutdown).await
}
