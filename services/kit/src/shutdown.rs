//! The one shutdown path. A [`Shutdown`] token is cancelled once, by a signal or by the caller;
//! the gRPC server, streaming handlers and background tasks all watch the same token.

use std::io::{BufRead, IsTerminal};

use tokio::signal::unix::{SignalKind, signal};
pub use tokio_util::sync::CancellationToken as Shutdown;

/// A token cancelled on SIGINT, SIGTERM, or Enter when stdin is an interactive terminal (the
/// classic "press Enter to stop the server"). Returns at once; the watching runs in the background.
pub fn on_signals() -> Shutdown {
    let shutdown = Shutdown::new();
    watch_signals(shutdown.clone());
    shutdown
}

fn watch_signals(shutdown: Shutdown) {
    if std::io::stdin().is_terminal() {
        let token = shutdown.clone();
        // A plain thread: a tokio stdin read cannot be cancelled and would hold up shutdown. The
        // thread is left blocked in read_line when shutdown comes from elsewhere; it dies with
        // the process.
        let spawned = std::thread::Builder::new()
            .name("stdin-enter".into())
            .spawn(move || {
                eprintln!("Press Enter to stop the server.");
                let mut line = String::new();
                if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
                    tracing::info!("Enter pressed: shutting down");
                    token.cancel();
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "cannot watch stdin for Enter");
        }
    }
    tokio::spawn(async move {
        let (mut int, mut term) = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => (int, term),
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!(%err, "cannot install signal handlers");
                return;
            }
        };
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            () = shutdown.cancelled() => return,
        };
        tracing::info!(signal = name, "shutting down");
        shutdown.cancel();
    });
}
