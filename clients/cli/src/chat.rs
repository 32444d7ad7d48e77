//! `township chat`: the classic chat-room client on the chat service's streams.
//!
//! `township chat --room ROOM --name NAME` joins the room, prints its transcript so far and then
//! every event as it happens — one line each, `name HH:MM:SS: text`, `name HH:MM:SS: joined`,
//! `name HH:MM:SS: left` — while it sends every line read from stdin. `/quit`, Ctrl-D (the end of
//! stdin) or Ctrl-C leaves. When the connection is lost (a server restart, a broken network) it
//! rejoins by itself, resuming after the last event it printed, so no line is printed twice and
//! none is missed; a line typed meanwhile is sent once it is back, under the same client message
//! id, so it is never appended twice. `township chat rooms` lists the rooms and `township chat
//! transcript --room ROOM` prints one room's transcript.

use std::{
    future::Future,
    io::{self, BufRead, Write},
    pin::Pin,
    time::Duration,
};

use anyhow::Context;
use chrono::{DateTime, Local, Utc};
use clap::{Args, Subcommand};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_stream::StreamExt;
use tonic::{Code, Status, Streaming, transport::Channel};
use township_proto::chat::v1::{
    ChatEvent, GetTranscriptRequest, JoinRequest, ListRoomsRequest, SendRequest, chat_event::Kind,
    chat_service_client::ChatServiceClient,
};

use crate::{
    Global,
    connect::{addr_of, connect, connect_streaming, unary},
    error::CliError,
    print_json,
};
use township_client::{Backoff, root_cause};
use township_proto::town;

const SERVICE: &str = "chat";

/// The room joined when no `--room` is given (the server's default too).
const DEFAULT_ROOM: &str = "lobby";

/// How long a lost connection is retried when `--reconnect-for` is not given.
const DEFAULT_RECONNECT_FOR: Duration = Duration::from_secs(60);

/// The line that leaves the room (surrounding spaces do not matter).
const QUIT: &str = "/quit";

/// Input lines read ahead of the session.
const READ_AHEAD: usize = 64;

const CHAT_HELP: &str = "`township chat --room ROOM --name NAME` is short for `township chat join \
--room ROOM --name NAME`. The chat's address: --addr, else env TOWNSHIP_CHAT_ADDR, else \
127.0.0.1:50053.

Joining prints the room's transcript so far, then every event as it happens, one line each: \
`name HH:MM:SS: text` for a message, `name HH:MM:SS: joined`, and `name HH:MM:SS: left` (with the \
reason in brackets when it is not an ordinary leave, e.g. `left (server shutdown)`). Times are \
local (set TZ=UTC for UTC); control characters in a message are shown as spaces. With --json each \
event is one JSON object instead: {\"seq\", \"time\" (RFC 3339, UTC), \"kind\": \"message\", \
\"from\", \"text\"}, {\"seq\", \"time\", \"kind\": \"joined\", \"name\"} or {\"seq\", \"time\", \
\"kind\": \"left\", \"name\", \"reason\"}. Your own messages are printed when the room delivers \
them, in the room's order.

Meanwhile every line read from stdin is sent as a message (empty lines are skipped). A line the \
chat refuses (e.g. more than 4096 bytes) is reported on stderr and the session goes on. `/quit` \
alone on a line, or the end of stdin (Ctrl-D), leaves once every line before it is sent and \
shown, together with everything the room said up to that moment; Ctrl-C leaves at once.

When the connection is lost or the server ends the stream (a restart, a dropped network, or the \
server's idle timeout: the room then sees you leave and join again), the client says so on stderr \
and rejoins by itself, retrying with backoff (about 200 ms doubling to 2 s, with jitter) for \
up to --reconnect-for, and resumes after the last event it printed: no line is printed twice and \
none is missed. Lines typed meanwhile are sent once it is back, each under the client message id \
it was first sent with, so none is appended twice. While the server has not yet noticed the old \
connection is dead the name is still taken (ALREADY_EXISTS): that is retried too.

Exit codes: 0 left the room; 1 the chat answered an error (e.g. the name is taken in the room, \
an invalid room or name); 2 bad usage (no --name); 3 the chat could not be reached, or could not \
be reached again within --reconnect-for.";

const TRANSCRIPT_HELP: &str = "Prints the room's classic transcript as the chat service forms it: \
one line per event, `name TIME: text`, joins and leaves as `name TIME: joined` / `left`, TIME in \
RFC 3339 UTC. With --json, one object per event as `township chat` prints them.";

/// `township chat ...`.
#[derive(Debug, Args)]
#[command(after_help = CHAT_HELP)]
pub struct ChatArgs {
    #[command(subcommand)]
    command: Option<ChatCommand>,

    #[command(flatten)]
    join: JoinArgs,
}

#[derive(Debug, Subcommand)]
enum ChatCommand {
    /// Join a room: its transcript, then live events, while sending the lines of stdin (what
    /// `township chat` does without a subcommand).
    #[command(after_help = CHAT_HELP)]
    Join(JoinArgs),
    /// List every room with its number of live members and latest seq.
    Rooms,
    /// Print a room's whole transcript.
    #[command(after_help = TRANSCRIPT_HELP)]
    Transcript(TranscriptArgs),
}

/// Flags of `township chat [join]`.
#[derive(Debug, Args)]
struct JoinArgs {
    /// The room: 1 to 64 characters from a-z, 0-9, '.', '_' and '-'; created on first join.
    /// [default: lobby]
    #[arg(long, value_name = "ROOM")]
    room: Option<String>,

    /// Your name in the room: 1 to 64 characters, unique (ignoring case) among its members.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// How long to keep trying to rejoin after the connection is lost; 0s gives up at once.
    /// [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    reconnect_for: Option<Duration>,
}

/// Flags of `township chat transcript`.
#[derive(Debug, Args)]
struct TranscriptArgs {
    /// The room. [default: lobby]
    #[arg(long, value_name = "ROOM")]
    room: Option<String>,
}

/// Runs `township chat`.
pub async fn run(args: ChatArgs, global: &Global) -> Result<(), CliError> {
    let join_flags =
        args.join.room.is_some() || args.join.name.is_some() || args.join.reconnect_for.is_some();
    match args.command {
        // Not clap's `args_conflicts_with_subcommands`: that would refuse the global flags too.
        Some(_) if join_flags => Err(CliError::Usage(
            "chat: give --room, --name and --reconnect-for after the subcommand, e.g. \
             `township chat transcript --room ROOM`"
                .into(),
        )),
        None => join(args.join, global).await,
        Some(ChatCommand::Join(join_args)) => join(join_args, global).await,
        Some(ChatCommand::Rooms) => rooms(global).await,
        Some(ChatCommand::Transcript(transcript_args)) => transcript(transcript_args, global).await,
    }
}

/// The room named by `--room`: trimmed, `lobby` when not given or empty.
fn room_name(room: Option<String>) -> String {
    room.map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_ROOM.to_owned())
}

/// A connection to the chat.
struct Chat {
    client: ChatServiceClient<Channel>,
    addr: String,
}

impl Chat {
    /// Connects: `--addr`, else env TOWNSHIP_CHAT_ADDR, else 127.0.0.1:50053. A `streaming`
    /// connection sends HTTP/2 keepalive pings, so a dead server is noticed even while nothing
    /// is said.
    async fn connect(global: &Global, streaming: bool) -> Result<Self, CliError> {
        let addr = addr_of(&town::CHAT, global);
        let channel = if streaming {
            connect_streaming(SERVICE, &addr, global).await?
        } else {
            connect(SERVICE, &addr, global).await?
        };
        Ok(Self {
            client: ChatServiceClient::new(channel),
            addr,
        })
    }

    /// A client on the shared channel.
    fn client(&self) -> ChatServiceClient<Channel> {
        self.client.clone()
    }

    /// The command's error for a failed call (see [`CliError::from_status`]).
    fn error(&self, status: Status) -> CliError {
        CliError::from_status(SERVICE, &self.addr, status)
    }
}

/// Calls Join and waits up to `timeout` for the stream to open (the stream itself then has no
/// deadline: it lasts as long as the membership).
async fn open_join(
    mut client: ChatServiceClient<Channel>,
    request: JoinRequest,
    timeout: Duration,
) -> Result<Streaming<ChatEvent>, Status> {
    match tokio::time::timeout(timeout, client.join(request)).await {
        Ok(joined) => joined.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer to Join within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

/// Whether `status` was made by the transport on this side (the server never answered).
fn is_local(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// What went wrong with a call, in a few words.
fn describe(status: &Status) -> String {
    if is_local(status) {
        root_cause(status)
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

// ---------------------------------------------------------------------------------------------
// join

/// Runs `township chat [join]`: one session in a room until the user leaves, or the chat cannot
/// be reached again within `--reconnect-for`.
async fn join(args: JoinArgs, global: &Global) -> Result<(), CliError> {
    let name = args
        .name
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| {
            CliError::Usage("chat: --name NAME is required: your name in the room".into())
        })?;
    let room = room_name(args.room);
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let chat = Chat::connect(global, true).await?;
    let request = JoinRequest {
        room: room.clone(),
        name: name.clone(),
        after_seq: 0,
    };
    let stream = tokio::select! {
        joined = open_join(chat.client(), request, global.timeout) => match joined {
            Ok(stream) => stream,
            Err(status) if status.code() == Code::AlreadyExists => {
                return Err(CliError::Rejected(format!(
                    "cannot join room {room} as {name:?}: a member of that name is in the room \
                     now; pick another --name, or wait until they leave"
                )));
            }
            Err(status) => return Err(chat.error(status)),
        },
        _ = interrupt.recv() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    };
    let session = Session {
        chat: &chat,
        room,
        name,
        timeout: global.timeout,
        reconnect_for: args.reconnect_for.unwrap_or(DEFAULT_RECONNECT_FOR),
        json: global.json,
        last_seq: 0,
    };
    session.run(stream, &mut interrupt, &mut terminate).await
}

/// A line to send, with the client message id it keeps through every retry.
struct Outgoing {
    id: String,
    text: String,
}

/// Rejoining after a lost connection: resolves to the new stream, or to the error to exit with.
type Rejoining = Pin<Box<dyn Future<Output = Result<Streaming<ChatEvent>, CliError>> + Send>>;

/// The session's hold on the room.
enum Link {
    /// Joined: events arrive on the stream.
    Up(Box<Streaming<ChatEvent>>),
    /// The connection was lost; rejoining.
    Down(Rejoining),
}

/// What happened to the [`Link`].
enum Happening {
    /// The room delivered an event.
    Event(ChatEvent),
    /// The stream failed or ended; why.
    Lost(String),
    /// Joined again.
    Rejoined(Streaming<ChatEvent>),
    /// Rejoining failed for good.
    GaveUp(CliError),
}

impl Link {
    /// The next thing that happens. Cancel-safe: a rejoin in progress carries on at the next call.
    async fn next(&mut self) -> Happening {
        match self {
            Link::Up(stream) => match stream.next().await {
                Some(Ok(event)) => Happening::Event(event),
                Some(Err(status)) => Happening::Lost(describe(&status)),
                None => Happening::Lost("the server ended the stream".to_owned()),
            },
            Link::Down(rejoining) => match rejoining.await {
                Ok(stream) => Happening::Rejoined(stream),
                Err(err) => Happening::GaveUp(err),
            },
        }
    }
}

/// One member's session in a room.
struct Session<'c> {
    chat: &'c Chat,
    room: String,
    name: String,
    /// Deadline of each unary call, and of opening each Join.
    timeout: Duration,
    reconnect_for: Duration,
    json: bool,
    /// The seq of the last event printed: a rejoin resumes after it.
    last_seq: u64,
}

impl Session<'_> {
    /// Prints events and sends lines until the user leaves.
    async fn run(
        mut self,
        stream: Streaming<ChatEvent>,
        interrupt: &mut Signal,
        terminate: &mut Signal,
    ) -> Result<(), CliError> {
        let (lines, outgoing) = mpsc::unbounded_channel();
        let (rejoined, generation) = watch::channel(0u64);
        let (acked, acknowledged) = watch::channel(0u64);
        let sender = LineSender {
            client: self.chat.client(),
            addr: self.chat.addr.clone(),
            room: self.room.clone(),
            name: self.name.clone(),
            timeout: self.timeout,
            give_up_after: self.reconnect_for + self.timeout,
        };
        let mut sending = tokio::spawn(sender.run(outgoing, generation, acked));
        let mut lines = Some(lines);
        let mut input = Input::stdin()?;
        let mut link = Link::Up(Box::new(stream));
        // Once leaving: when to stop waiting for the last lines, and (once they are all sent)
        // the seq to print through first.
        let mut leaving: Option<Instant> = None;
        let mut all_sent = false;
        let mut print_through: Option<u64> = None;
        loop {
            tokio::select! {
                happening = link.next() => match happening {
                    Happening::Event(event) => {
                        if event.seq > self.last_seq {
                            if self.print(&event).is_err() {
                                // Nobody reads stdout any more (`township chat ... | head`).
                                return Ok(());
                            }
                            self.last_seq = event.seq;
                        }
                    }
                    Happening::Lost(reason) => {
                        if self.reconnect_for.is_zero() {
                            return Err(self.lost(reason));
                        }
                        eprintln!(
                            "township: lost room {} ({reason}); rejoining for up to {}",
                            self.room,
                            humantime::format_duration(self.reconnect_for)
                        );
                        link = Link::Down(self.rejoin(reason));
                    }
                    Happening::Rejoined(stream) => {
                        eprintln!(
                            "township: rejoined room {} as {}, after event {}",
                            self.room, self.name, self.last_seq
                        );
                        link = Link::Up(Box::new(stream));
                        rejoined.send_modify(|generation| *generation += 1);
                    }
                    Happening::GaveUp(err) => return Err(err),
                },
                line = input.next(), if lines.is_some() => match line {
                    Some(text) if text.trim() != QUIT => {
                        if let (false, Some(lines)) = (text.trim().is_empty(), &lines) {
                            let id = uuid::Uuid::new_v4().to_string();
                            // The sender task runs until `lines` closes: this cannot fail.
                            let _ = lines.send(Outgoing { id, text });
                        }
                    }
                    // `/quit` or the end of stdin: stop reading, let the sender finish.
                    _ => {
                        lines = None;
                        leaving = Some(Instant::now() + self.reconnect_for + self.timeout);
                    }
                },
                _ = &mut sending, if leaving.is_some() && !all_sent => {
                    all_sent = true;
                    let last_sent = *acknowledged.borrow();
                    print_through = Some(self.leave_target(last_sent).await);
                }
                () = sleep_until(leaving) => {
                    if all_sent {
                        return Ok(());
                    }
                    return Err(CliError::Rejected(format!(
                        "left room {} with lines not sent: the chat did not take them within {}",
                        self.room,
                        humantime::format_duration(self.reconnect_for + self.timeout)
                    )));
                }
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
            }
            if print_through.is_some_and(|target| self.last_seq >= target) {
                return Ok(());
            }
        }
    }

    /// Prints one event: a transcript line, or a JSON object with `--json`.
    fn print(&self, event: &ChatEvent) -> io::Result<()> {
        let mut out = io::stdout().lock();
        if self.json {
            writeln!(out, "{}", event_json(event))
        } else if let Some(line) = event_line(event) {
            writeln!(out, "{line}")
        } else {
            Ok(())
        }
    }

    /// The error for a lost connection that is not to be retried (`--reconnect-for 0s`).
    fn lost(&self, reason: String) -> CliError {
        CliError::Unreachable {
            service: SERVICE,
            addr: self.chat.addr.clone(),
            attempts: 1,
            reason: format!("lost room {}: {reason}", self.room),
        }
    }

    /// Rejoins after the last event printed, retrying with backoff for up to `--reconnect-for`
    /// (ALREADY_EXISTS too: the server may not have noticed yet that the old connection died).
    fn rejoin(&self, lost: String) -> Rejoining {
        let client = self.chat.client();
        let addr = self.chat.addr.clone();
        let request = JoinRequest {
            room: self.room.clone(),
            name: self.name.clone(),
            after_seq: self.last_seq,
        };
        let (timeout, reconnect_for) = (self.timeout, self.reconnect_for);
        Box::pin(async move {
            let deadline = Instant::now() + reconnect_for;
            let mut backoff = Backoff::new();
            let mut attempts = 0;
            loop {
                attempts += 1;
                let status = match open_join(client.clone(), request.clone(), timeout).await {
                    Ok(stream) => return Ok(stream),
                    Err(status) if !worth_rejoining(&status) => {
                        return Err(CliError::from_status(SERVICE, &addr, status));
                    }
                    Err(status) => status,
                };
                let wait = backoff.next_delay();
                if Instant::now() + wait > deadline {
                    return Err(if is_local(&status) || status.code() == Code::Unavailable {
                        CliError::Unreachable {
                            service: SERVICE,
                            addr,
                            attempts,
                            reason: format!(
                                "{} (lost the room: {lost}; gave up rejoining after {})",
                                describe(&status),
                                humantime::format_duration(reconnect_for)
                            ),
                        }
                    } else {
                        CliError::from_status(SERVICE, &addr, status)
                    });
                }
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// The seq to print through before leaving: the last of the lines sent, and everything the
    /// room said up to now (its latest seq, when the chat says it in time).
    async fn leave_target(&self, acknowledged: u64) -> u64 {
        let mut request = tonic::Request::new(ListRoomsRequest {});
        request.set_timeout(self.timeout);
        let latest = match self.chat.client().list_rooms(request).await {
            Ok(reply) => reply
                .into_inner()
                .rooms
                .into_iter()
                .find(|room| room.name == self.room)
                .map_or(0, |room| room.last_seq),
            Err(_) => 0,
        };
        acknowledged.max(latest)
    }
}

/// Waits until `deadline`; forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Whether a failed Join is worth trying again: anything but a request the chat will never take.
fn worth_rejoining(status: &Status) -> bool {
    is_local(status)
        || !matches!(
            status.code(),
            Code::InvalidArgument
                | Code::PermissionDenied
                | Code::Unauthenticated
                | Code::Unimplemented
        )
}

/// Whether a failed Send is worth trying again (with the same client message id): the chat was
/// not reached, the answer was lost, or the member is not joined yet after a restart.
fn worth_resending(status: &Status) -> bool {
    is_local(status)
        || matches!(
            status.code(),
            Code::Unavailable
                | Code::Unknown
                | Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::FailedPrecondition
        )
}

/// Sends the typed lines one at a time, in order, each until the chat acknowledges it.
struct LineSender {
    client: ChatServiceClient<Channel>,
    addr: String,
    room: String,
    name: String,
    timeout: Duration,
    /// A line still not sent this long after its first failure is given up.
    give_up_after: Duration,
}

impl LineSender {
    /// Sends every line of `outgoing` until it closes; publishes the highest seq acknowledged on
    /// `acked`. A line that fails because the chat was not reached, or before the session
    /// rejoined, is sent again — at once when the session has rejoined (`generation` moved on),
    /// else after a backoff — with the same client message id. A line the chat refuses is
    /// reported on stderr and dropped.
    async fn run(
        mut self,
        mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
        mut generation: watch::Receiver<u64>,
        acked: watch::Sender<u64>,
    ) {
        while let Some(line) = outgoing.recv().await {
            let request = SendRequest {
                room: self.room.clone(),
                name: self.name.clone(),
                text: line.text,
                client_message_id: line.id,
            };
            let mut backoff = Backoff::new();
            let mut failing_since = None;
            loop {
                let joined = *generation.borrow_and_update();
                let mut call = tonic::Request::new(request.clone());
                call.set_timeout(self.timeout);
                let status = match self.client.send(call).await {
                    Ok(reply) => {
                        let seq = reply.into_inner().seq;
                        acked.send_modify(|highest| *highest = (*highest).max(seq));
                        break;
                    }
                    Err(status) => status,
                };
                let since = *failing_since.get_or_insert_with(Instant::now);
                if !worth_resending(&status) || since.elapsed() > self.give_up_after {
                    let err = CliError::from_status(SERVICE, &self.addr, status);
                    eprintln!("township: not sent: {err}");
                    break;
                }
                tokio::select! {
                    changed = generation.wait_for(|g| *g > joined) => {
                        if changed.is_err() {
                            return; // The session is over.
                        }
                    }
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// Stdin's lines (without their line ending), read on a thread of their own: waiting for the
/// user never holds up the events. Text that is not UTF-8 is read lossily; an unreadable stdin
/// counts as its end.
struct Input {
    lines: mpsc::Receiver<String>,
}

impl Input {
    /// Starts reading this process's stdin. The reader thread is not waited for: it ends with
    /// the input, or with the process.
    fn stdin() -> Result<Self, CliError> {
        let (sender, lines) = mpsc::channel(READ_AHEAD);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = io::stdin().lock();
                let mut buffer = Vec::new();
                loop {
                    buffer.clear();
                    match stdin.read_until(b'\n', &mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buffer);
                            let line = line.trim_end_matches(['\n', '\r']).to_owned();
                            if sender.blocking_send(line).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .context("cannot start reading stdin")?;
        Ok(Self { lines })
    }

    /// The next line; `None` at the end of the input.
    async fn next(&mut self) -> Option<String> {
        self.lines.recv().await
    }
}

// ---------------------------------------------------------------------------------------------
// printing events

/// An event's time as `HH:MM:SS` in the local time zone.
fn clock(time: Option<&prost_types::Timestamp>) -> String {
    time.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map(|t| t.with_timezone(&Local).format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "--:--:--".to_owned())
}

/// `text` on one line: control characters (line breaks, escapes) become spaces, so no message
/// can break the one-line-per-event form or drive the terminal.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The event as a transcript line (`None` for a kind this client does not know).
fn event_line(event: &ChatEvent) -> Option<String> {
    let time = clock(event.time.as_ref());
    let line = match event.kind.as_ref()? {
        Kind::Message(message) => {
            format!("{} {time}: {}", message.from, one_line(&message.text))
        }
        Kind::Joined(joined) => format!("{} {time}: joined", joined.name),
        Kind::Left(left) if left.reason.is_empty() || left.reason == "left" => {
            format!("{} {time}: left", left.name)
        }
        Kind::Left(left) => format!("{} {time}: left ({})", left.name, one_line(&left.reason)),
    };
    Some(line)
}

/// The event as one JSON object, in the proto's field names.
fn event_json(event: &ChatEvent) -> serde_json::Value {
    let time = event.time.as_ref().map(ToString::to_string);
    match &event.kind {
        Some(Kind::Message(message)) => serde_json::json!({
            "seq": event.seq, "time": time, "kind": "message",
            "from": message.from, "text": message.text,
        }),
        Some(Kind::Joined(joined)) => serde_json::json!({
            "seq": event.seq, "time": time, "kind": "joined", "name": joined.name,
        }),
        Some(Kind::Left(left)) => serde_json::json!({
            "seq": event.seq, "time": time, "kind": "left",
            "name": left.name, "reason": left.reason,
        }),
        None => serde_json::json!({ "seq": event.seq, "time": time, "kind": "unknown" }),
    }
}

// ---------------------------------------------------------------------------------------------
// rooms and transcript

/// Runs `township chat rooms`.
async fn rooms(global: &Global) -> Result<(), CliError> {
    let chat = Chat::connect(global, false).await?;
    let rooms = chat
        .client()
        .list_rooms(unary(ListRoomsRequest {}, global))
        .await
        .map_err(|s| chat.error(s))?
        .into_inner()
        .rooms;
    for room in &rooms {
        if global.json {
            print_json(&serde_json::json!({
                "name": room.name, "members": room.members, "last_seq": room.last_seq,
            }));
        } else {
            let plural = if room.members == 1 { "" } else { "s" };
            println!(
                "{}  {} member{plural}  last seq {}",
                room.name, room.members, room.last_seq
            );
        }
    }
    if rooms.is_empty() && !global.json {
        println!("no rooms yet");
    }
    Ok(())
}

/// Runs `township chat transcript`.
async fn transcript(args: TranscriptArgs, global: &Global) -> Result<(), CliError> {
    let room = room_name(args.room);
    let chat = Chat::connect(global, false).await?;
    let request = GetTranscriptRequest { room: room.clone() };
    let reply = chat
        .client()
        .get_transcript(unary(request, global))
        .await
        .map_err(|s| chat.error(s))?
        .into_inner();
    let mut out = io::stdout().lock();
    let written = if global.json {
        reply
            .events
            .iter()
            .try_for_each(|event| writeln!(out, "{}", event_json(event)))
    } else if reply.events.is_empty() {
        writeln!(out, "no events in room {room}")
    } else {
        out.write_all(reply.text.as_bytes())
    };
    match written.and_then(|()| out.flush()) {
        // A reader that went away early (`township chat transcript | head`) is not a failure.
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(anyhow::Error::from(err)
            .context("cannot write stdout")
            .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use township_proto::chat::v1::{Joined, Left, Message};

    fn event(kind: Kind) -> ChatEvent {
        ChatEvent {
            seq: 7,
            time: Some(prost_types::Timestamp {
                seconds: 1_498_308_872, // 2017-06-24T12:54:32Z
                nanos: 250_000_000,
            }),
            kind: Some(kind),
        }
    }

    #[test]
    fn events_print_as_transcript_lines_on_one_line_each() {
        let time = clock(event(Kind::Joined(Joined::default())).time.as_ref());
        assert_eq!(time.len(), 8, "{time}");
        let message = event(Kind::Message(Message {
            from: "ada".into(),
            text: "hello\nworld\x1b[2J".into(),
        }));
        assert_eq!(
            event_line(&message).unwrap(),
            format!("ada {time}: hello world [2J")
        );
        let left = |reason: &str| {
            event_line(&event(Kind::Left(Left {
                name: "bob".into(),
                reason: reason.into(),
            })))
            .unwrap()
        };
        assert_eq!(left("left"), format!("bob {time}: left"));
        assert_eq!(left("idle"), format!("bob {time}: left (idle)"));
        let joined = event(Kind::Joined(Joined { name: "cy".into() }));
        assert_eq!(event_line(&joined).unwrap(), format!("cy {time}: joined"));
        let unknown = ChatEvent {
            kind: None,
            ..joined
        };
        assert_eq!(event_line(&unknown), None);
    }

    #[test]
    fn events_print_as_json_in_the_protos_field_names() {
        let message = event(Kind::Message(Message {
            from: "ada".into(),
            text: "hi\n".into(),
        }));
        assert_eq!(
            event_json(&message),
            serde_json::json!({
                "seq": 7, "time": "2017-06-24T12:54:32.250Z", "kind": "message",
                "from": "ada", "text": "hi\n",
            })
        );
        let left = event(Kind::Left(Left {
            name: "bob".into(),
            reason: "idle".into(),
        }));
        assert_eq!(event_json(&left)["reason"], "idle");
        assert_eq!(event_json(&left)["kind"], "left");
    }

    #[test]
    fn rooms_default_to_the_lobby() {
        assert_eq!(room_name(None), "lobby");
        assert_eq!(room_name(Some("  ".into())), "lobby");
        assert_eq!(room_name(Some(" dev ".into())), "dev");
    }
}
