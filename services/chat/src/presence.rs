//! A chat-server's presence on a shared PostgreSQL database: its lease, renewed three times per
//! lease length, and the look for servers whose leases lapsed, whose members then get a Left
//! ("server lost") from whichever server looks first. After a kill -9 the dead server's names
//! are held for at most the lease plus a third of it, and its members get their Lefts then.

use std::{sync::Arc, time::Duration};

use township_kit::Shutdown;

use crate::rooms::Rooms;

/// Keeps this server's presence in `rooms`' database with leases of `lease` until `shutdown`.
pub async fn keep(rooms: Arc<Rooms>, lease: Duration, shutdown: Shutdown) {
    let every = lease / 3;
    let mut warned = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match rooms.keep_presence(lease).await {
            Ok(()) if warned => {
                tracing::info!("this server's presence is renewed again");
                warned = false;
            }
            Ok(()) => {}
            Err(err) => {
                if !warned {
                    tracing::warn!(error = %err, "cannot renew this server's presence lease");
                    warned = true;
                }
            }
        }
    }
}
