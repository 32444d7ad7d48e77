//! Binding listeners and announcing them on stdout, so scripts and tests can find ephemeral ports.

use std::{io::Write, net::SocketAddr};

use anyhow::Context;
use tokio::net::TcpListener;

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Prints `<label>listening on <ip>:<port>` on stdout and flushes it. The gRPC port is announced
/// first with an empty label; any other listener after it, e.g. `daytime listening on ...`.
pub fn announce(label: &str, listener: &TcpListener) -> anyhow::Result<SocketAddr> {
    let addr = listener
        .local_addr()
        .context("cannot read the listener's address")?;
    let mut out = std::io::stdout().lock();
    let prefix = if label.is_empty() {
        String::new()
    } else {
        format!("{label} ")
    };
    writeln!(out, "{prefix}listening on {addr}").context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    Ok(addr)
}
