//! Wake-ups across chat-servers on one PostgreSQL database. Each server LISTENs on the channel
//! `chat_events` with one connection (not one per member); every stored event notifies it at its
//! commit with the room's name (a trigger does, see the migrations), and the server delivers
//! that room's events it has not delivered yet, read from the store. The table is the truth, a
//! notification only says where to look: a notification can be lost while the listening
//! connection is down, so after every reconnect every room in memory is read again.

use std::{sync::Arc, time::Duration};

use township_kit::Shutdown;
use township_store::{PgPool, sqlx::postgres::PgListener};

use crate::{rooms::Rooms, types::RoomName};

/// The channel every stored event is announced on.
const CHANNEL: &str = "chat_events";

/// How long to wait before listening again after the database could not be reached.
const RETRY: Duration = Duration::from_millis(500);

/// Follows the events other servers store in `pool`'s database, delivering them to this
/// server's live members in `rooms`, until `shutdown`.
pub async fn follow(rooms: Arc<Rooms>, pool: PgPool, shutdown: Shutdown) {
    let mut listening: Option<PgListener> = None;
    let mut warned = false;
    loop {
        let Some(listener) = listening.as_mut() else {
            let listened = tokio::select! {
                () = shutdown.cancelled() => return,
                listened = listen(&pool) => listened,
            };
            match listened {
                Ok(listener) => {
                    if warned {
                        tracing::info!("listening for other servers' events again");
                        warned = false;
                    }
                    listening = Some(listener);
                    rooms.catch_up_all().await;
                }
                Err(err) => {
                    if !warned {
                        tracing::warn!(error = %err, "cannot listen for other servers' events");
                        warned = true;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
            continue;
        };
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = listener.try_recv() => next,
        };
        match next {
            Ok(Some(notification)) => match RoomName::parse(notification.payload()) {
                Ok(room) => rooms.catch_up(&room).await,
                Err(_) => tracing::warn!(payload = notification.payload(), "not a room"),
            },
            // The connection was lost and made again: what was announced meanwhile is lost.
            Ok(None) => rooms.catch_up_all().await,
            Err(err) => {
                tracing::warn!(error = %err, "lost the listening connection");
                warned = true;
                listening = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// A connection listening on [`CHANNEL`].
async fn listen(pool: &PgPool) -> Result<PgListener, township_store::sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
