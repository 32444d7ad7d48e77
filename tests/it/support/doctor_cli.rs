//! The harness of the `township doctor` CLI tests: a doctor-server, the CLI run against it (piped
//! or on a pseudo-terminal whose output is collected as it comes), and the doctor's own files the
//! CLI's output is compared with.

use std::{
    collections::BTreeSet,
    ffi::CStr,
    fs::{File, OpenOptions},
    io::Write,
    os::{fd::FromRawFd, unix::fs::OpenOptionsExt},
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio::{
    io::AsyncReadExt,
    process::{Child, Command},
};
use township_tests::{Output, ServiceProcess, run, township};

use crate::support::{
    cli::{LIMIT, json_lines, piped},
    doctor::{self, DOCTOR_TRANSCRIPT, doctor_server},
};

/// A doctor-server (Township's own script) on a fresh data directory, and the CLI's own
/// configuration directory (where it keeps patient keys) for the person at this terminal.
pub struct Practice {
    pub server: ServiceProcess,
    _dir: TempDir,
    pub config: TempDir,
}

/// A doctor-server on a fresh data directory.
pub async fn start_doctor() -> Practice {
    let dir = tempfile::tempdir().unwrap();
    let server = doctor_server(dir.path(), None, &[]).await;
    Practice {
        server,
        _dir: dir,
        config: tempfile::tempdir().unwrap(),
    }
}

impl Practice {
    /// `township --addr <doctor> doctor ARGS`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = township();
        command
            .env_remove("TOWNSHIP_DOCTOR_ADDR")
            .env("TOWNSHIP_CONFIG_DIR", self.config.path())
            .arg("--addr")
            .arg(self.server.addr.to_string())
            .arg("doctor")
            .args(args);
        command
    }

    /// Runs `township doctor ARGS` with `input` piped into its stdin.
    pub async fn piped(&self, args: &[&str], input: &str) -> Output {
        piped(self.command(args), input).await
    }

    /// Runs `township doctor ARGS` (stdin empty).
    pub async fn run(&self, args: &[&str]) -> Output {
        run(self.command(args), LIMIT).await
    }

    /// Runs `township doctor history --name NAME --all --json` and returns the exchanges.
    pub async fn history(&self, name: &str) -> Vec<Value> {
        let out = self
            .run(&["history", "--name", name, "--all", "--json"])
            .await;
        assert_eq!(out.code, Some(0), "{out:?}");
        json_lines(&out)
    }
}

/// A file of the doctor service (its script).
pub fn doctor_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../services/doctor")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first `n` exchanges of the engine's transcript (input, expected text).
pub fn transcript(n: usize) -> Vec<(String, String)> {
    let exchanges = doctor::transcript(DOCTOR_TRANSCRIPT);
    assert!(
        exchanges.len() >= n,
        "the transcript has {}",
        exchanges.len()
    );
    exchanges
        .into_iter()
        .take(n)
        .map(|line| (line.input, line.expected))
        .collect()
}

/// The script's greeting as the engine gives it: the words of its first list, one space apart.
pub fn greeting() -> String {
    let script = doctor_file("scripts/doctor.txt");
    let first = script
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('('))
        .expect("the greeting list");
    let words = first.trim_start_matches('(').trim_end_matches(')');
    words.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The keys of a JSON object.
pub fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

// ----- on a terminal -----

/// A pseudo-terminal: the CLI reads its slave side as stdin; the test types on the master side.
pub struct Terminal {
    master: File,
    slave: File,
}

impl Terminal {
    /// Opens a pseudo-terminal pair.
    pub fn open() -> Self {
        // SAFETY: plain libc calls on a descriptor this function owns; `name` is a buffer of the
        // length passed, which ptsname_r NUL-terminates.
        let (master, path) = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = File::from_raw_fd(fd);
            assert_eq!(libc::grantpt(fd), 0, "grantpt");
            assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
            let path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_owned();
            (master, path)
        };
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap();
        Self { master, slave }
    }

    /// Types `text` (a line ends with `\n`; `\x04` is Ctrl-D).
    pub fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }
}

/// `township` running with a terminal as stdin, its stdout collected as it comes.
pub struct Session {
    pub child: Child,
    pub stdout: Arc<Mutex<String>>,
    /// The task copying stdout into `stdout`; it ends when the pipe does.
    reader: JoinHandle<()>,
    pub terminal: Terminal,
}

impl Session {
    /// Starts `township doctor ARGS` against `doctor` on a new terminal.
    pub fn start(doctor: &Practice, args: &[&str]) -> Self {
        let terminal = Terminal::open();
        let mut command = doctor.command(args);
        command.stdin(Stdio::from(terminal.slave.try_clone().unwrap()));
        let mut child = command.spawn().expect("township starts");
        let mut pipe = child.stdout.take().unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let sink = stdout.clone();
        let reader = tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buffer).await {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Self {
            child,
            stdout,
            reader,
            terminal,
        }
    }

    /// Waits until stdout ends with `tail` (a prompt, usually), and returns all of it.
    pub async fn wait_for(&self, tail: &str) -> String {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let seen = self.stdout.lock().unwrap().clone();
            if seen.ends_with(tail) {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {tail:?} at the end of {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the CLI to exit; returns its exit code and everything it printed.
    pub async fn finish(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("township finishes")
            .unwrap();
        tokio::time::timeout(LIMIT, self.reader)
            .await
            .expect("stdout ends with the exit")
            .expect("the reader did not panic");
        let stdout = self.stdout.lock().unwrap().clone();
        (status.code(), stdout)
    }
}
