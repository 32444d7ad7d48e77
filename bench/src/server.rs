//! Starting a Township server binary (from the same target directory as this benchmark) on an
//! ephemeral loopback port, with one worker thread and quiet logs. Callers own the data directory
//! (a `tempfile::TempDir`), so replicas can share one.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A server process, killed when dropped.
pub struct Server {
    _child: Child,
    /// Its gRPC address.
    pub addr: SocketAddr,
}

/// Starts `binary` with `--data-dir data_dir` and `args`.
pub async fn start(binary: &str, data_dir: &Path, args: &[&str]) -> anyhow::Result<Server> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let path: PathBuf = exe.with_file_name(binary);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release --workspace`",
            path.display()
        );
    }
    let mut child = Command::new(&path)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("TOKIO_WORKER_THREADS", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", path.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await
        .context("cannot read the server's stdout")?
        .context("the server exited before listening")?;
    let addr = line
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .parse()
        .context("bad announced address")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server {
        _child: child,
        addr,
    })
}
