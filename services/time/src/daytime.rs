//! The classic day/time listener (RFC 867): a plain TCP client receives the ctime line and the
//! greeting, then the server closes the connection — so `nc HOST PORT` works like the classic client.

use std::time::Duration;

use tokio::{io::AsyncWriteExt, net::TcpListener};
use township_kit::Shutdown;

use crate::clock::{GREETING, TimeOfDay, Zone};

/// How long one client may take to accept the two lines before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers every connection on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, zone: Zone, shutdown: Shutdown) {
    loop {
        let (mut socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "daytime accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        tokio::spawn(async move {
            let time = TimeOfDay::now(zone);
            let text = format!("{}\r\n{GREETING}\r\n", time.ctime());
            let written = tokio::time::timeout(WRITE_TIMEOUT, async {
                socket.write_all(text.as_bytes()).await?;
                socket.shutdown().await
            })
            .await;
            match written {
                Ok(Ok(())) => tracing::info!(%peer, "daytime answered"),
                Ok(Err(err)) => tracing::info!(%peer, %err, "daytime client went away"),
                Err(_) => tracing::info!(%peer, "daytime client too slow; dropped"),
            }
        });
    }
    tracing::debug!("daytime listener stopped");
}
