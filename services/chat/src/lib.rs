//! The Township chat: multi-user rooms on gRPC streaming. Join a room to get its transcript so
//! far, then live messages, joins and leaves; every member sees the same events in the same order,
//! every event is on disk before anyone sees it, and a reconnecting client resumes after the last
//! seq it saw with no gap and no duplicate.
//!
//! - [`types`]: validated room names, member names and text;
//! - [`event`]: a room's events and their classic transcript lines;
//! - [`store`]: the transcripts, in SQLite or PostgreSQL;
//! - [`rooms`]: membership and each room's one order;
//! - [`feed`]: one member's Join stream, transcript then live events;
//! - [`fanout`]: on PostgreSQL, the wake-ups that bring other servers' events;
//! - [`presence`]: on PostgreSQL, each server's lease, and the Lefts of a lost server's members;
//! - [`quota`]: how many new rooms a caller may create per minute;
//! - [`service`]: the gRPC API; [`run`] serves it.

mod error;
pub mod event;
pub mod fanout;
pub mod feed;
pub mod presence;
pub mod quota;
pub mod rooms;
pub mod service;
pub mod store;
pub mod types;

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use township_kit::{ServeOptions, ServiceSet, Shutdown};
use township_proto::chat::v1::chat_service_server::ChatServiceServer;
use township_store::Database;

pub use error::Error;
pub use service::ChatApi;

/// The chat's default gRPC port.
pub const DEFAULT_PORT: u16 = township_proto::town::CHAT.port;

/// Everything the chat server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shared server settings.
    pub serve: ServeOptions,
    /// The server's own directory (locked while it runs).
    pub data_dir: PathBuf,
    /// Where the transcripts live: `chat.db` in the data directory, or PostgreSQL.
    pub database: Database,
    /// A member who sends nothing for this long is let go (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// New rooms one caller may create per minute.
    pub new_rooms_per_minute: u32,
    /// On PostgreSQL, how long this server's presence lasts unless renewed (see [`presence`]).
    pub presence_lease: Duration,
}

/// Serves the chat on `listener` until `shutdown` fires; every Join stream then ends cleanly
/// (after a Left event for its member), and every member still live when the server stops (its
/// stream cut after the grace period) gets a Left too.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    // Held until the server stops: a second server on this directory refuses to start (exit 75).
    let _data_dir = township_kit::DataDirLock::exclusive(&config.data_dir).await?;
    let store = store::Store::open(&config.database).await?;
    let tokens = store.page_tokens().await?;
    let mut tasks = Vec::new();
    let rooms = match &store {
        store::Store::Sqlite { .. } => Arc::new(rooms::Rooms::new(store.clone())),
        store::Store::Postgres(pool) => {
            let lease = config.presence_lease;
            let members = store::SharedMembers::register(pool.clone(), lease).await?;
            let rooms = Arc::new(rooms::Rooms::shared(store.clone(), members));
            let follow = fanout::follow(rooms.clone(), pool.clone(), shutdown.clone());
            tasks.push(tokio::spawn(follow));
            let keep = presence::keep(rooms.clone(), lease, shutdown.clone());
            tasks.push(tokio::spawn(keep));
            rooms
        }
    };
    let quota = quota::RoomQuota::new(config.new_rooms_per_minute);
    let api = ChatApi::new(
        rooms.clone(),
        tokens,
        quota,
        shutdown.clone(),
        config.idle_timeout,
    );
    let server =
        ChatServiceServer::new(api).max_decoding_message_size(config.serve.max_message_bytes);
    let services = ServiceSet::new().add_service(server);
    let served = township_kit::serve(listener, &config.serve, services, shutdown.clone()).await;
    // Members whose streams could not end by themselves (a client that stopped reading) still
    // get their Left.
    rooms.leave_everyone("server shutdown").await;
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    served
}
