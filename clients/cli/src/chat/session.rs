//! `township chat [join]`: one member's session in a room. Events print as they come while
//! typed lines go out; a lost connection is rejoined after the last event printed.

use std::{future::Future, io, io::Write, pin::Pin, time::Duration};

use anyhow::Context;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_stream::StreamExt;
use tonic::{Code, Status, Streaming, transport::Channel};
use township_client::{Backoff, DialError};
use township_proto::chat::v1::{
    ChatEvent, JoinRequest, ListRoomsRequest, chat_event::Kind,
    chat_service_client::ChatServiceClient,
};

use super::{
    JoinArgs, Redial, SERVICE, connect, describe,
    events::{event_json, event_line},
    is_local, open_join, room_name,
    sender::{Joined, LineSender, Outgoing},
};
use crate::{connect::dial_error, error::CliError, global::Global, input::StdinLines};

/// How long a lost connection is retried when `--reconnect-for` is not given.
const DEFAULT_RECONNECT_FOR: Duration = Duration::from_secs(60);

/// The line that leaves the room (surrounding spaces do not matter).
const QUIT: &str = "/quit";

/// Runs `township chat [join]`: one session in a room until the user leaves, or the chat cannot
/// be reached again within `--reconnect-for`.
pub(super) async fn join(args: JoinArgs, global: &Global) -> Result<(), CliError> {
    let name = args
        .name
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| {
            CliError::Usage("chat: --name NAME is required: your name in the room".into())
        })?;
    let room = room_name(args.room);
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let chat = connect(global, true).await?;
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
        client: chat.client(),
        serving: 0,
        redial: Redial::new(global, chat.addr())?,
        room,
        name,
        timeout: global.timeout,
        reconnect_for: args.reconnect_for.unwrap_or(DEFAULT_RECONNECT_FOR),
        json: global.json,
        last_seq: 0,
    };
    session.run(stream, &mut interrupt, &mut terminate).await
}

/// Rejoining after a lost connection: resolves to the new stream, or to the error to exit with.
type Rejoining = Pin<Box<dyn Future<Output = Result<Rejoined, CliError>> + Send>>;

/// A Join that succeeded after the connection was lost, and where.
struct Rejoined {
    stream: Streaming<ChatEvent>,
    /// A client on the server that took the Join.
    client: ChatServiceClient<Channel>,
    /// That server's index in the `--addr` list.
    serving: usize,
}

/// Why the latest try to rejoin failed.
enum Failed {
    /// No server of the list answered the Join; why, in a few words.
    Unreachable(String),
    /// A server answered it with this refusal (worth trying again, e.g. ALREADY_EXISTS).
    Refused(Status),
}

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
    Rejoined(Box<Rejoined>),
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
                Ok(rejoined) => Happening::Rejoined(Box::new(rejoined)),
                Err(err) => Happening::GaveUp(err),
            },
        }
    }
}

/// One member's session in a room.
struct Session {
    /// A client on the server of the current Join.
    client: ChatServiceClient<Channel>,
    /// That server's index in the `--addr` list.
    serving: usize,
    /// Dials the `--addr` list again after the server is lost.
    redial: Redial,
    room: String,
    name: String,
    /// Deadline of each unary call, and of opening each Join.
    timeout: Duration,
    reconnect_for: Duration,
    json: bool,
    /// The seq of the last event printed: a rejoin resumes after it.
    last_seq: u64,
}

impl Session {
    /// Prints events and sends lines until the user leaves.
    async fn run(
        mut self,
        stream: Streaming<ChatEvent>,
        interrupt: &mut Signal,
        terminate: &mut Signal,
    ) -> Result<(), CliError> {
        let (lines, outgoing) = mpsc::unbounded_channel();
        // How many Welcomes came, the latest member token (each Join has its own) and the
        // server that sent it.
        let (welcomed, joins) = watch::channel(Joined {
            welcomes: 0,
            token: String::new(),
            client: self.client.clone(),
        });
        let (acked, acknowledged) = watch::channel(0u64);
        let sender = LineSender {
            addr: self.redial.addr.clone(),
            room: self.room.clone(),
            name: self.name.clone(),
            timeout: self.timeout,
            give_up_after: self.reconnect_for + self.timeout,
        };
        let mut sending = tokio::spawn(sender.run(outgoing, joins, acked));
        let mut lines = Some(lines);
        // The user's lines as typed: a message keeps its spaces.
        let mut input = StdinLines::start()?;
        let mut link = Link::Up(Box::new(stream));
        // Once leaving: when to stop waiting for the last lines, and (once they are all sent)
        // the seq to print through first.
        let mut leaving: Option<Instant> = None;
        let mut all_sent = false;
        let mut print_through: Option<u64> = None;
        loop {
            tokio::select! {
                happening = link.next() => match happening {
                    Happening::Event(ChatEvent { kind: Some(Kind::Welcome(welcome)), .. }) => {
                        let client = self.client.clone();
                        welcomed.send_modify(|joined| {
                            joined.welcomes += 1;
                            joined.token = welcome.member_token;
                            joined.client = client;
                        });
                    }
                    Happening::Event(event) => {
                        if let Some(Kind::Left(left)) = &event.kind
                            && left.reason == "idle"
                            && left.name.to_lowercase() == self.name.trim().to_lowercase()
                        {
                            // This member was let go for saying nothing: not a lost connection
                            // to rejoin after.
                            let _ = self.print(&event);
                            return Err(CliError::Rejected(format!(
                                "the chat let {} go from room {} for being idle",
                                self.name, self.room
                            )));
                        }
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
                    Happening::Rejoined(rejoined) => {
                        let Rejoined { stream, client, serving } = *rejoined;
                        eprintln!(
                            "township: rejoined room {} as {}, after event {}",
                            self.room, self.name, self.last_seq
                        );
                        (self.client, self.serving) = (client, serving);
                        link = Link::Up(Box::new(stream));
                    }
                    Happening::GaveUp(err) => return Err(err),
                },
                line = input.next_as_typed(), if lines.is_some() => match line {
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
            addr: self.redial.addr.clone(),
            attempts: 1,
            reason: format!("lost room {}: {reason}", self.room),
        }
    }

    /// Rejoins after the last event printed, retrying with backoff for up to `--reconnect-for`
    /// (ALREADY_EXISTS too: the server may not have noticed yet that the old connection died).
    /// Each try dials the `--addr` list once round, from the server that was serving: a server
    /// that refuses connections is passed over at once, and one that takes the connection but
    /// does not answer the Join (frozen, or shutting down) is passed over at the next try.
    fn rejoin(&self, lost: String) -> Rejoining {
        let redial = self.redial.clone();
        let request = JoinRequest {
            room: self.room.clone(),
            name: self.name.clone(),
            after_seq: self.last_seq,
        };
        let (timeout, reconnect_for, mut first) = (self.timeout, self.reconnect_for, self.serving);
        Box::pin(async move {
            let deadline = Instant::now() + reconnect_for;
            let mut backoff = Backoff::new();
            let mut attempts = 0;
            loop {
                attempts += 1;
                let failed = match redial.from(first).await {
                    Ok((client, serving)) => {
                        match open_join(client.clone(), request.clone(), timeout).await {
                            Ok(stream) => {
                                return Ok(Rejoined {
                                    stream,
                                    client,
                                    serving,
                                });
                            }
                            Err(status) if !worth_rejoining(&status) => {
                                return Err(CliError::from_status(SERVICE, &redial.addr, status));
                            }
                            Err(status) if is_local(&status) || unanswered(&status) => {
                                first = serving + 1;
                                Failed::Unreachable(describe(&status))
                            }
                            Err(status) => Failed::Refused(status),
                        }
                    }
                    Err(DialError::Unreachable { reason, .. }) => Failed::Unreachable(reason),
                    Err(bad @ DialError::BadAddress { .. }) => {
                        return Err(dial_error(SERVICE, bad));
                    }
                };
                let wait = backoff.next_delay();
                if Instant::now() + wait > deadline {
                    return Err(match failed {
                        Failed::Unreachable(reason) => CliError::Unreachable {
                            service: SERVICE,
                            addr: redial.addr,
                            attempts,
                            reason: format!(
                                "{reason} (lost the room: {lost}; gave up rejoining after {})",
                                humantime::format_duration(reconnect_for)
                            ),
                        },
                        Failed::Refused(status) => {
                            CliError::from_status(SERVICE, &redial.addr, status)
                        }
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
        let latest = match self.client.clone().list_rooms(request).await {
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

/// Whether a Join failed because the server did not serve it (it is shutting down, or did not
/// answer in time): another server of the list is worth a try.
fn unanswered(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
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
