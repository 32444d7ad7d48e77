//! The harness of the `township chat` CLI tests: a chat-server that can be restarted in place,
//! members typing on a pipe whose output is collected as it comes, the lines the CLI prints for
//! a transcript, and a TCP proxy whose connections can be cut on the client's side only.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, ChildStdin, Command},
    sync::watch,
    task::JoinHandle,
};
use township_proto::chat::v1::{
    ChatEvent, ListRoomsRequest, chat_event::Kind, chat_service_client::ChatServiceClient,
};
use township_tests::{Output, ServiceProcess, free_port, run, spawn_service_at, township};

use crate::support::{cli::LIMIT, wait::wait_until};

/// A chat-server on a fixed address and its own data directory, so it can be restarted in place.
pub struct Chat {
    pub server: ServiceProcess,
    pub listen: String,
    pub args: Vec<String>,
    _dir: TempDir,
}

impl Chat {
    /// Starts a chat-server with `extra` flags.
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().expect("a UTF-8 temp path").to_owned();
        let mut args = vec!["--data-dir".to_owned(), data];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let listen = format!("127.0.0.1:{}", free_port());
        let server = Self::spawn(&listen, &args).await;
        Self {
            server,
            listen,
            args,
            _dir: dir,
        }
    }

    /// A chat-server on `listen` with `args`.
    pub async fn spawn(listen: &str, args: &[String]) -> ServiceProcess {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn_service_at("chat-server", listen, &args)
            .await
            .unwrap()
    }

    /// Stops the server with `signal` (SIGTERM: gracefully; SIGKILL: dead at once), waits for it
    /// to exit, and starts it again on the same address and data.
    pub async fn restart(&mut self, signal: libc::c_int) {
        self.server.signal(signal);
        self.server
            .wait_exit(LIMIT)
            .await
            .expect("the chat-server stops");
        self.server = Self::spawn(&self.listen, &self.args).await;
    }

    /// `township --addr <chat> chat ARGS`, with times shown in UTC.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = township();
        command
            .env_remove("TOWNSHIP_CHAT_ADDR")
            .env("TZ", "UTC")
            .args(["--addr", &self.listen, "chat"])
            .args(args);
        command
    }

    /// Runs `township chat ARGS` to the end (stdin empty).
    pub async fn run(&self, args: &[&str]) -> Output {
        run(self.command(args), LIMIT).await
    }

    /// Starts `township chat ARGS` as a member typing on a pipe.
    pub fn member(&self, args: &[&str]) -> Member {
        Member::spawn(self.command(args))
    }

    /// The room's transcript, asked over gRPC.
    /// The transcript once the room has no live member left: a client may exit before the server
    /// has seen its stream end and recorded its Left.
    pub async fn transcript_after_all_left(&self, room: &str) -> Vec<ChatEvent> {
        let mut client = ChatServiceClient::new(self.server.channel().await);
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let rooms = client
                .list_rooms(ListRoomsRequest {})
                .await
                .unwrap()
                .into_inner()
                .rooms;
            let live = rooms
                .iter()
                .find(|r| r.name == room)
                .map_or(0, |r| r.members);
            if live == 0 {
                return self.transcript(room).await;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{live} members of {room} still live {LIMIT:?} after their clients ended"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The room's whole transcript, asked over gRPC.
    pub async fn transcript(&self, room: &str) -> Vec<ChatEvent> {
        let client = ChatServiceClient::new(self.server.channel().await);
        crate::support::chat::transcript(&client, room).await.events
    }
}

// ----- members -----

/// A running `township chat` session: its stdin to type on, its output collected as it comes.
pub struct Member {
    pub child: Child,
    stdin: Option<ChildStdin>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a member's session ended.
#[derive(Debug)]
pub struct Ended {
    pub code: Option<i32>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Member {
    /// Starts `command` with its stdin piped and its output collected.
    pub fn spawn(mut command: Command) -> Self {
        command.stdin(Stdio::piped());
        let mut child = command.spawn().expect("township starts");
        let stdin = child.stdin.take();
        let (stdout, out_reader) = collect(child.stdout.take().expect("a stdout pipe"));
        let (stderr, err_reader) = collect(child.stderr.take().expect("a stderr pipe"));
        Self {
            child,
            stdin,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Types one line.
    pub async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Everything printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits for a stdout line matching `matches` and returns it.
    pub async fn wait_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| matches(l)) {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no line {what} within {LIMIT:?}; stdout {:?}, stderr {:?}",
                self.lines(),
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The stderr lines so far that contain `text`.
    pub fn error_lines(&self, text: &str) -> usize {
        let stderr = self.stderr.lock().unwrap();
        stderr.iter().filter(|l| l.contains(text)).count()
    }

    /// Waits until stderr holds more than `seen` lines that contain `text`.
    pub async fn wait_error_line(&self, text: &str, seen: usize) {
        let what = format!("more than {seen} stderr lines with {text:?}");
        wait_until(&what, LIMIT, async || self.error_lines(text) > seen).await;
    }

    /// Waits for the message line `name HH:MM:SS: text`.
    pub async fn wait_said(&self, name: &str, text: &str) -> String {
        let (prefix, suffix) = (format!("{name} "), format!(": {text}"));
        self.wait_line(&format!("{name}: {text}"), |l| {
            l.starts_with(&prefix) && l.ends_with(&suffix)
        })
        .await
    }

    /// Waits for the `--json` event whose fields include every field of `want`.
    pub async fn wait_json(&self, want: Value) -> Value {
        let fits = |line: &str| {
            let event: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            want.as_object()
                .unwrap()
                .iter()
                .all(|(key, value)| event.get(key) == Some(value))
        };
        let line = self.wait_line(&want.to_string(), fits).await;
        serde_json::from_str(&line).unwrap()
    }

    /// Types `/quit` (or, with `None`, closes stdin: Ctrl-D) and waits for the session to end.
    pub async fn leave(mut self, quit: Option<&str>) -> Ended {
        if let Some(quit) = quit {
            self.say(quit).await;
        }
        drop(self.stdin.take());
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("the session ends")
            .unwrap();
        for reader in self.readers.drain(..) {
            reader.await.unwrap();
        }
        Ended {
            code: status.code(),
            stdout: self.lines(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

// ----- output -----

/// Collects the lines of `pipe` as they come.
pub fn collect(
    pipe: impl AsyncRead + Unpin + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = tokio::spawn(async move {
        let mut pipe = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = pipe.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

/// The line `township chat` prints for `event` (with TZ=UTC).
pub fn line_of(event: &ChatEvent) -> String {
    let time = event.time.as_ref().expect("a time");
    let time = chrono::DateTime::from_timestamp(time.seconds, time.nanos as u32)
        .expect("a valid time")
        .format("%H:%M:%S");
    match event.kind.as_ref().expect("a kind") {
        Kind::Message(m) => format!("{} {time}: {}", m.from, m.text),
        Kind::Joined(j) => format!("{} {time}: joined", j.name),
        Kind::Left(l) if l.reason == "left" => format!("{} {time}: left", l.name),
        Kind::Left(l) => format!("{} {time}: left ({})", l.name, l.reason),
        Kind::Welcome(_) => panic!("a Welcome is no transcript event: {event:?}"),
    }
}

/// The texts `name` said in `transcript`, in order.
pub fn said_by<'t>(transcript: &'t [ChatEvent], name: &str) -> Vec<&'t str> {
    transcript
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Message(m)) if m.from == name => Some(m.text.as_str()),
            _ => None,
        })
        .collect()
}

/// Asserts that `printed` is the room's transcript from its first event, line for line: nothing
/// twice, nothing missing, nothing out of order.
pub fn assert_is_transcript(printed: &[String], transcript: &[ChatEvent]) {
    let expected: Vec<String> = transcript.iter().map(line_of).collect();
    assert!(
        printed.len() <= expected.len(),
        "more lines than events: {printed:#?}\ntranscript: {expected:#?}"
    );
    assert_eq!(
        printed,
        &expected[..printed.len()],
        "the transcript, in order"
    );
}

/// The events `--json` printed, checked to be the transcript's seqs 1, 2, 3, ... with none twice.
pub fn assert_json_is_transcript(printed: &[String], transcript: &[ChatEvent]) {
    let seqs: Vec<u64> = printed
        .iter()
        .map(|l| {
            let event: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            event["seq"].as_u64().expect("a seq")
        })
        .collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "every seq once, in order");
    assert!(seqs.len() <= transcript.len());
}

// ----- a proxy that cuts connections -----

/// A TCP proxy in front of the chat whose connections can be cut on the client's side only: the
/// server keeps its end, as if the client's machine had vanished, until its keepalive notices.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on an ephemeral loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = watch::channel(0u64);
        let held = Arc::new(Mutex::new(Vec::new()));
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pipe(client, target, cuts.clone(), held.clone()));
            }
        });
        Self {
            addr,
            cut,
            accepting,
        }
    }

    /// Cuts every open connection on the client's side.
    pub fn cut(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Forwards one connection until either side closes it or it is cut; a cut connection's server
/// side is kept open in `held`, never read again.
pub async fn pipe(
    mut client: TcpStream,
    target: SocketAddr,
    mut cuts: watch::Receiver<u64>,
    held: Arc<Mutex<Vec<TcpStream>>>,
) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let generation = *cuts.borrow_and_update();
    let cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = cuts.wait_for(|g| *g > generation) => true,
    };
    if cut {
        held.lock().unwrap().push(server);
    }
}
