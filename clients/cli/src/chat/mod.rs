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
//!
//! Here: the arguments, the dispatch and the connection; `session` holds a member's session,
//! `sender` the lines it sends, `events` how events print, `rooms` the two listings.

mod events;
mod rooms;
mod sender;
mod session;

use std::time::Duration;

use clap::{Args, Subcommand};
use tonic::{Status, Streaming, transport::Channel};
use township_client::{DialError, Dialer, root_cause};
use township_proto::chat::v1::{ChatEvent, JoinRequest, chat_service_client::ChatServiceClient};
use township_proto::town;

use crate::{
    connect::{Connection, streaming_dialer},
    error::CliError,
    global::Global,
};

/// The service's name in errors.
const SERVICE: &str = town::CHAT.name;

/// The room joined when no `--room` is given (the server's default too).
const DEFAULT_ROOM: &str = "lobby";

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

Each Join's Welcome carries the member token that every line is sent with; it is never shown. \
When the server lets you go for being idle (your own `left (idle)`), the command prints it and \
exits 1. When the connection is lost or the server ends the stream (a restart or a dropped \
network: the room then sees you leave and join again), the client says so on stderr \
and rejoins by itself, retrying with backoff (about 200 ms doubling to 2 s, with jitter) for \
up to --reconnect-for, and resumes after the last event it printed: no line is printed twice and \
none is missed. Given several servers of one chat (`--addr A,B`: chat-servers sharing one \
PostgreSQL database), each try goes round the list from the server that was lost: one that \
refuses the connection is passed over at once, one that does not answer the Join within --timeout \
at the next try. Lines typed meanwhile are sent once it is back, each under the client message id \
it was first sent with, so none is appended twice. While the server has not yet noticed the old \
connection is dead the name is still taken (ALREADY_EXISTS): that is retried too.

Exit codes: 0 left the room; 1 the chat answered an error (e.g. the name is taken in the room, \
an invalid room or name) or let you go for being idle; 2 bad usage (no --name); 3 the chat could not be reached, or could not \
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
        None => session::join(args.join, global).await,
        Some(ChatCommand::Join(join_args)) => session::join(join_args, global).await,
        Some(ChatCommand::Rooms) => rooms::rooms(global).await,
        Some(ChatCommand::Transcript(transcript_args)) => {
            rooms::transcript(transcript_args, global).await
        }
    }
}

/// The room named by `--room`: trimmed, `lobby` when not given or empty.
fn room_name(room: Option<String>) -> String {
    room.map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_ROOM.to_owned())
}

/// A connection to the chat.
type Chat = Connection<ChatServiceClient<Channel>>;

/// Connects: `--addr`, else env TOWNSHIP_CHAT_ADDR, else 127.0.0.1:50053. A `streaming`
/// connection sends HTTP/2 keepalive pings, so a dead server is noticed even while nothing
/// is said.
async fn connect(global: &Global, streaming: bool) -> Result<Chat, CliError> {
    if streaming {
        Connection::open_streaming(&town::CHAT, global, ChatServiceClient::new).await
    } else {
        Connection::open(&town::CHAT, global, ChatServiceClient::new).await
    }
}
/// Dials the chat again after its server is lost: the `--addr` list once round, so that a member
/// of one of several chat-servers resumes on another.
#[derive(Clone)]
struct Redial {
    dialer: Dialer,
    /// The `--addr` list, as given.
    addr: String,
}

impl Redial {
    /// Dials with the settings of [`connect`]'s streaming connections (keepalive, TLS, the
    /// connect timeout); each try of a rejoin is one dial, so no retries of its own.
    fn new(global: &Global, addr: &str) -> Result<Self, CliError> {
        Ok(Self {
            dialer: streaming_dialer(global)?.retries(0),
            addr: addr.to_owned(),
        })
    }

    /// A client on the first server of the list that takes a connection, from the one at
    /// `first` (wrapping round), and that server's index.
    async fn from(&self, first: usize) -> Result<(ChatServiceClient<Channel>, usize), DialError> {
        let (channel, index) = self.dialer.connect_from(&self.addr, first).await?;
        Ok((ChatServiceClient::new(channel), index))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_default_to_the_lobby() {
        assert_eq!(room_name(None), "lobby");
        assert_eq!(room_name(Some("  ".into())), "lobby");
        assert_eq!(room_name(Some(" dev ".into())), "dev");
    }
}
