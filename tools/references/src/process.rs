//! What every reference shares: a free loopback port, a server process spawned as our child with
//! its output in a log file, a bounded wait until it answers, and a stop by PID (a signal, a
//! bounded wait, then SIGKILL) that reaps it; plus short-lived programs run to completion within a
//! deadline, and the last lines of a log to explain a failure.
//!
//! Signalling by PID is safe here because the server is our own child and is reaped only after it
//! has been signalled: until `waitpid` collects it, its PID cannot be reused by another process.

use std::{
    fs::OpenOptions,
    io::{self, Read},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// How often a wait polls the process and its probe.
const POLL: Duration = Duration::from_millis(25);

/// How many lines of a log an error quotes.
const TAIL_LINES: usize = 12;

/// A loopback port that was free a moment ago: binds 127.0.0.1:0, reads the port, lets it go.
///
/// Between this and the reference binding it, another process may take the port; the reference
/// then fails to start and the error quotes its log ("address already in use"). The kernel hands
/// out ephemeral ports in a spread-out order, so this is rare.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct loopback ports that were free a moment ago (all held at once while choosing, so
/// they differ); the same race as [`free_port`].
pub(crate) fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let ports = free_port_list(N)?;
    Ok(std::array::from_fn(|i| ports[i]))
}

/// `count` distinct loopback ports that were free a moment ago (all held at once while choosing,
/// so they differ); the same race as [`free_port`].
pub(crate) fn free_port_list(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("cannot bind a free loopback port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("cannot read a bound port")?.port()))
        .collect()
}

/// How to end a server: a first signal, how long to wait for it to exit, then SIGKILL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shutdown {
    /// The first signal, e.g. `libc::SIGTERM`; `libc::SIGKILL` skips the wait.
    pub signal: libc::c_int,
    /// How long the server may take to exit after `signal` before it is killed.
    pub grace: Duration,
}

impl Shutdown {
    /// SIGKILL at once: what a drop does to a reference that keeps no state worth a clean exit.
    pub const KILL: Shutdown = Shutdown {
        signal: libc::SIGKILL,
        grace: Duration::ZERO,
    };
}

/// A reference server running as our child. It is stopped by PID exactly once: by
/// [`Process::stop`], or else when dropped (with the `on_drop` shutdown), and it is always reaped.
pub(crate) struct Process {
    /// The server, our direct child (no shell in between), so its PID is the server's.
    child: Child,
    /// The reference's name for errors, e.g. "etcd".
    name: &'static str,
    /// The file its stdout and stderr go to.
    log: PathBuf,
    /// How a drop ends it if `stop` was not called.
    on_drop: Shutdown,
    /// Set once it has been reaped, so the drop does nothing more.
    reaped: bool,
}

impl Process {
    /// Spawns `command` with stdin closed and stdout and stderr appended to `log` (created here).
    pub(crate) fn spawn(
        name: &'static str,
        command: &mut Command,
        log: PathBuf,
        on_drop: Shutdown,
    ) -> anyhow::Result<Process> {
        // Append mode, so a server that also opens the file itself (Redis's --logfile) and its
        // inherited stdout never overwrite each other.
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot create {name}'s log {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("cannot share {name}'s log"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", command.get_program()))?;
        Ok(Process {
            child,
            name,
            log,
            on_drop,
            reaped: false,
        })
    }

    /// The server's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `probe` until it answers true, at most `timeout`. Fails, quoting the log, if the
    /// server exits first or the time runs out; the caller's drop then stops it.
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let began = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                bail!(
                    "{} exited with {status} while starting; {}",
                    self.name,
                    self.log_tail()
                );
            }
            if probe() {
                return Ok(());
            }
            if began.elapsed() > timeout {
                bail!(
                    "{} did not answer within {timeout:?}; {}",
                    self.name,
                    self.log_tail()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Sends `how.signal` to the PID, waits at most `how.grace` for it to exit, then SIGKILLs it,
    /// and reaps it. Fails, quoting the log, if the server had already exited on its own (it is
    /// reaped all the same).
    pub(crate) fn stop(mut self, how: Shutdown) -> anyhow::Result<()> {
        self.shutdown(how)
    }

    /// [`Process::stop`] for a caller that starts the server again in its place: the same stop,
    /// after which the `Process` is spent (its drop does nothing).
    pub(crate) fn end(&mut self, how: Shutdown) -> anyhow::Result<()> {
        self.shutdown(how)
    }

    /// The last lines of the log, introduced by its path, to explain a failure.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// `try_wait` that marks the child reaped once it has exited.
    fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("cannot poll {} (PID {})", self.name, self.pid()))?;
        if status.is_some() {
            self.reaped = true;
        }
        Ok(status)
    }

    /// The stop shared by [`Process::stop`] and the drop.
    fn shutdown(&mut self, how: Shutdown) -> anyhow::Result<()> {
        if self.reaped {
            return Ok(());
        }
        if let Some(status) = self.try_wait()? {
            bail!(
                "{} (PID {}) had already exited with {status}; {}",
                self.name,
                self.pid(),
                self.log_tail()
            );
        }
        self.signal(how.signal)?;
        let deadline = Instant::now() + how.grace;
        while how.signal != libc::SIGKILL && Instant::now() < deadline {
            if self.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        if how.signal != libc::SIGKILL {
            self.signal(libc::SIGKILL)?;
        }
        self.child
            .wait()
            .with_context(|| format!("cannot reap {} (PID {})", self.name, self.pid()))?;
        self.reaped = true;
        Ok(())
    }

    /// `kill(pid, signal)`; the PID is still ours because the child is not reaped yet.
    fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("PID out of range")?;
        // SAFETY: kill has no memory-safety preconditions; the PID names our unreaped child.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("cannot signal {} (PID {pid})", self.name));
        }
        Ok(())
    }
}

impl Drop for Process {
    /// Ends a server that was not stopped, with its `on_drop` shutdown, and reaps it; errors are
    /// dropped because a drop cannot report them (the process is gone either way).
    fn drop(&mut self) {
        let _ = self.shutdown(self.on_drop);
    }
}

/// Runs a short-lived program to completion, capturing its output, and kills it if it takes
/// longer than `timeout` (an `io::ErrorKind::TimedOut` error). A program that is not installed
/// gives `io::ErrorKind::NotFound`, which callers turn into "not installed".
pub(crate) fn run_within(command: &mut Command, timeout: Duration) -> io::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Readers on their own threads, so a chatty program cannot fill a pipe and stall.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{:?} did not finish within {timeout:?}",
                    command.get_program()
                ),
            ));
        }
        thread::sleep(POLL);
    };
    let collect = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
        reader
            .map(|handle| handle.join().unwrap_or_default())
            .unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// Reads a pipe to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error only shortens what an error message can quote.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The stdout of `program --version` within 10 s, or `None` when `program` is not installed.
pub(crate) fn version_output(program: &Path) -> anyhow::Result<Option<String>> {
    match run_within(
        Command::new(program).arg("--version"),
        Duration::from_secs(10),
    ) {
        Ok(output) => Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => {
            Err(err).with_context(|| format!("cannot run `{} --version`", program.display()))
        }
    }
}

/// The last lines of `text`, indented under a heading, for an error message.
pub(crate) fn tail_of(heading: &str, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    if tail.is_empty() {
        return format!("{heading}: (empty)");
    }
    format!("{heading}:\n    {}", tail.join("\n    "))
}

/// The last lines of the log at `path`, or why it cannot be read.
pub(crate) fn log_tail(path: &Path) -> String {
    let heading = format!("last lines of {}", path.display());
    match std::fs::read(path) {
        Ok(bytes) => tail_of(&heading, &String::from_utf8_lossy(&bytes)),
        Err(err) => format!("{heading}: cannot read it: {err}"),
    }
}
