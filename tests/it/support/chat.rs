//! The chat's test helpers: a chat-server on a data directory, one function per RPC (each bounded
//! by a deadline; Join takes its Welcome and Send presents the member token, as a member's own
//! client would), reading Join streams event by event, waiting for what the server does on its
//! own, and describing events for assertions.

use std::{
    collections::HashMap,
    path::Path,
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat};
use tempfile::TempDir;
use tonic::{
    Code, Status, Streaming,
    transport::{Channel, Endpoint},
};
use township_proto::chat::v1::{
    self as pb, chat_event::Kind, chat_service_client::ChatServiceClient,
};
use township_tests::ServiceProcess;

use crate::support::{
    grpcurl::grpcurl_command,
    process::*,
    storage::{Backend, Storage},
    wait::{wait_until, within},
};

/// A chat client.
pub type Rpc = ChatServiceClient<Channel>;
/// The events of a Join stream.
pub type Events = Streaming<pb::ChatEvent>;

/// The service's fully qualified name (health, reflection, grpcurl).
pub const SERVICE: &str = "township.chat.v1.ChatService";
/// The longest a stream may stay silent while the test expects an event (or its end).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long something the server does on its own (a Left after a stream ends, an idle member let
/// go, a dead connection noticed) may take to become visible.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

// ----- processes -----

/// A chat-server on `dir` (ephemeral port) with `extra` flags.
pub async fn chat_server(dir: &Path, extra: &[&str]) -> ServiceProcess {
    server_on("chat-server", dir, None, extra).await
}

/// A client with its own connection to `server` (no per-call timeout: Join streams live long;
/// every call is bounded by the helpers instead).
pub async fn connect(server: &ServiceProcess) -> Rpc {
    connect_to(Endpoint::from_shared(server.uri()).expect("valid uri")).await
}

/// A client connected through `endpoint` (for tests that tune the connection).
pub async fn connect_to(endpoint: Endpoint) -> Rpc {
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the chat");
    ChatServiceClient::new(channel)
}

/// A chat on a fresh data directory with `extra` flags, and a client of it (keep the `TempDir`
/// alive as long as the server).
pub async fn chat(extra: &[&str]) -> (TempDir, ServiceProcess, Rpc) {
    let dir = tempfile::tempdir().unwrap();
    let server = chat_server(dir.path(), extra).await;
    let rpc = connect(&server).await;
    (dir, server, rpc)
}

/// A chat-server on `storage` (ephemeral port) with `extra` flags.
pub async fn chat_on(storage: &Storage, extra: &[&str]) -> ServiceProcess {
    server_with("chat-server", storage, None, extra).await
}

/// A chat on fresh state on `backend` with `extra` flags, and a client of it (keep the
/// `Storage` alive as long as the server).
pub async fn chat_with(backend: Backend, extra: &[&str]) -> (Storage, ServiceProcess, Rpc) {
    let storage = Storage::new(backend).await;
    let server = chat_on(&storage, extra).await;
    let rpc = connect(&server).await;
    (storage, server, rpc)
}

// ----- calls -----

/// The member tokens of every Join the helpers made, by room and name (lower case), newest
/// last: tests running at once may use one room and name on two servers, so Send presents each
/// in turn, newest first.
static TOKENS: LazyLock<Mutex<HashMap<(String, String), Tokens>>> = LazyLock::new(Default::default);

/// One name's member tokens in one room, oldest first.
type Tokens = Vec<String>;

/// Where [`TOKENS`] keeps the tokens of `name` in `room` (an empty room name is the lobby).
fn token_key(room: &str, name: &str) -> (String, String) {
    let room = if room.is_empty() { "lobby" } else { room };
    (room.to_owned(), name.trim().to_lowercase())
}

/// The tokens of `name`'s Joins of `room`, newest first; for a name that never joined, one that
/// no Join has (what a client that never joined might send).
fn tokens_of(room: &str, name: &str) -> Vec<String> {
    match TOKENS.lock().unwrap().get(&token_key(room, name)) {
        Some(known) => known.iter().rev().cloned().collect(),
        None => vec!["never-joined".to_owned()],
    }
}

/// The member token in a Join stream's first message, which must be its Welcome (seq 0).
pub fn welcome_token(first: Option<pb::ChatEvent>) -> String {
    match first {
        Some(pb::ChatEvent {
            seq: 0,
            kind: Some(Kind::Welcome(welcome)),
            ..
        }) if welcome.member_token.len() == 64 => welcome.member_token,
        other => panic!("a Join stream begins with a Welcome and its token: {other:?}"),
    }
}

/// Join, bounded by [`CALL_TIMEOUT`]: the event stream, after its Welcome (whose member token
/// [`send`] will present), and that token.
pub async fn join_with_token(
    rpc: &Rpc,
    room: &str,
    name: &str,
    after_seq: u64,
) -> Result<(Events, String), Status> {
    let request = pb::JoinRequest {
        room: room.into(),
        name: name.into(),
        after_seq,
    };
    let mut events = within("Join", CALL_TIMEOUT, rpc.clone().join(request))
        .await?
        .into_inner();
    let token = welcome_token(within("the Welcome", EVENT_TIMEOUT, events.message()).await?);
    let mut tokens = TOKENS.lock().unwrap();
    tokens
        .entry(token_key(room, name))
        .or_default()
        .push(token.clone());
    Ok((events, token))
}

/// Join, bounded by [`CALL_TIMEOUT`]: the event stream, after its Welcome.
pub async fn join(rpc: &Rpc, room: &str, name: &str, after_seq: u64) -> Result<Events, Status> {
    join_with_token(rpc, room, name, after_seq)
        .await
        .map(|(events, _)| events)
}

/// A Join that must succeed.
pub async fn joined(rpc: &Rpc, room: &str, name: &str, after_seq: u64) -> Events {
    join(rpc, room, name, after_seq)
        .await
        .unwrap_or_else(|status| panic!("{name} joins {room:?}: {status:?}"))
}

/// Joins as soon as `name` is free in `room` (a previous membership's stream may take a moment to
/// be noticed as ended): ALREADY_EXISTS is retried for [`SETTLE_TIMEOUT`].
pub async fn join_when_free(rpc: &Rpc, room: &str, name: &str, after_seq: u64) -> Events {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match join(rpc, room, name, after_seq).await {
            Ok(events) => return events,
            Err(status) if status.code() == Code::AlreadyExists && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{name} rejoins {room:?}: {status:?}"),
        }
    }
}

/// Joins as soon as the name is free (after its last Join's stream ended): the stream and token.
pub async fn join_when_free_with_token(rpc: &Rpc, room: &str, name: &str) -> (Events, String) {
    let mut token = None;
    wait_until(
        "the name is free",
        SETTLE_TIMEOUT,
        async || match join_with_token(rpc, room, name, 0).await {
            Ok(joined) => {
                token = Some(joined);
                true
            }
            Err(status) if status.code() == Code::AlreadyExists => false,
            Err(status) => panic!("{name} rejoins: {status:?}"),
        },
    )
    .await;
    token.expect("joined")
}

/// Send presenting `member_token`, bounded by [`CALL_TIMEOUT`]: the message's seq.
pub async fn send_with_token(
    rpc: &Rpc,
    room: &str,
    name: &str,
    member_token: &str,
    text: &str,
    id: &str,
) -> Result<u64, Status> {
    let request = pb::SendRequest {
        room: room.into(),
        name: name.into(),
        text: text.into(),
        client_message_id: id.into(),
        member_token: member_token.into(),
    };
    within("Send", CALL_TIMEOUT, rpc.clone().send(request))
        .await
        .map(|r| r.into_inner().seq)
}

/// Send as the member, with the token of their Join (each known for the name, newest first,
/// until one is not PERMISSION_DENIED): the message's seq.
pub async fn send(rpc: &Rpc, room: &str, name: &str, text: &str, id: &str) -> Result<u64, Status> {
    let mut answer = Err(Status::internal("no token tried"));
    for token in tokens_of(room, name) {
        answer = send_with_token(rpc, room, name, &token, text, id).await;
        if !matches!(&answer, Err(status) if status.code() == Code::PermissionDenied) {
            break;
        }
    }
    answer
}

/// A Send that must succeed: its seq.
pub async fn sent(rpc: &Rpc, room: &str, name: &str, text: &str, id: &str) -> u64 {
    send(rpc, room, name, text, id)
        .await
        .unwrap_or_else(|status| panic!("{name} sends {text:?} to {room:?}: {status:?}"))
}

/// One page of GetTranscript, bounded by [`CALL_TIMEOUT`].
pub async fn transcript_page(
    rpc: &Rpc,
    room: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::GetTranscriptResponse, Status> {
    let request = pb::GetTranscriptRequest {
        room: room.into(),
        page_size,
        page_token: page_token.into(),
    };
    within(
        "GetTranscript",
        CALL_TIMEOUT,
        rpc.clone().get_transcript(request),
    )
    .await
    .map(|r| r.into_inner())
}

/// The first page of GetTranscript (pages of 1000).
pub async fn try_transcript(rpc: &Rpc, room: &str) -> Result<pb::GetTranscriptResponse, Status> {
    transcript_page(rpc, room, 1000, "").await
}

/// The whole transcript, every page of 1000 joined into one answer, which must come.
pub async fn transcript(rpc: &Rpc, room: &str) -> pb::GetTranscriptResponse {
    let mut whole = pb::GetTranscriptResponse::default();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = transcript_page(rpc, room, 1000, &token)
            .await
            .unwrap_or_else(|status| panic!("the transcript of {room:?}: {status:?}"));
        whole.events.extend(page.events);
        whole.text.push_str(&page.text);
        if page.next_page_token.is_empty() {
            return whole;
        }
        token = page.next_page_token;
    }
    panic!("the transcript of {room:?} never ends")
}

/// The transcript of `room` as [`what`] strings.
pub async fn story(rpc: &Rpc, room: &str) -> Vec<String> {
    transcript(rpc, room)
        .await
        .events
        .iter()
        .map(what)
        .collect()
}

/// ListRooms, which must succeed.
pub async fn rooms(rpc: &Rpc) -> Vec<pb::Room> {
    within(
        "ListRooms",
        CALL_TIMEOUT,
        rpc.clone().list_rooms(pb::ListRoomsRequest {}),
    )
    .await
    .expect("ListRooms")
    .into_inner()
    .rooms
}

/// ListRooms' entry for `room`, which must be listed.
pub async fn room_entry(rpc: &Rpc, room: &str) -> pb::Room {
    let listed = rooms(rpc).await;
    listed
        .iter()
        .find(|r| r.name == room)
        .cloned()
        .unwrap_or_else(|| panic!("{room} is listed: {listed:?}"))
}

/// Waits until ListRooms shows `members` live members in `room`.
pub async fn wait_for_members(rpc: &Rpc, room: &str, members: u32) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let entry = room_entry(rpc, room).await;
        if entry.members == members {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{room} should have {members} members within {SETTLE_TIMEOUT:?}: {entry:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the transcript of `room` holds an event described (by [`what`]) as `expected`,
/// and returns it.
pub async fn wait_for_event(rpc: &Rpc, room: &str, expected: &str) -> pb::ChatEvent {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let events = transcript(rpc, room).await.events;
        if let Some(event) = events.iter().find(|e| what(e) == expected) {
            return event.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{expected:?} should be in the transcript of {room} within {SETTLE_TIMEOUT:?}: {:?}",
            events.iter().map(what).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- streams -----

/// The next event, or `None` when the stream ended cleanly (status OK). An error status, or
/// nothing within [`EVENT_TIMEOUT`], fails the test.
pub async fn next_event(events: &mut Events) -> Option<pb::ChatEvent> {
    match tokio::time::timeout(EVENT_TIMEOUT, events.message()).await {
        Ok(Ok(event)) => event,
        Ok(Err(status)) => panic!("the Join stream failed instead of ending cleanly: {status:?}"),
        Err(_) => panic!("no event (and no end) within {EVENT_TIMEOUT:?}"),
    }
}

/// Reads events up to and including the one with seq `last`; the stream must not end before.
pub async fn read_through(events: &mut Events, last: u64) -> Vec<pb::ChatEvent> {
    let mut read: Vec<pb::ChatEvent> = Vec::new();
    loop {
        let Some(event) = next_event(events).await else {
            panic!(
                "the stream ended before seq {last}; the last event read: {:?}",
                read.last().map(|e| (e.seq, what(e)))
            );
        };
        let seq = event.seq;
        read.push(event);
        if seq >= last {
            return read;
        }
    }
}

/// Reads events until the stream ends cleanly; returns them.
pub async fn read_to_end(events: &mut Events) -> Vec<pb::ChatEvent> {
    let mut read = Vec::new();
    while let Some(event) = next_event(events).await {
        read.push(event);
    }
    read
}

/// An event in a few words: `ada: hello`, `ada joined`, `ada left (idle)`.
pub fn what(event: &pb::ChatEvent) -> String {
    match event.kind.as_ref().expect("every event has a kind") {
        Kind::Message(m) => format!("{}: {}", m.from, m.text),
        Kind::Joined(j) => format!("{} joined", j.name),
        Kind::Left(l) => format!("{} left ({})", l.name, l.reason),
        Kind::Welcome(_) => "welcome".to_owned(),
    }
}

/// The seq and [`what`] of each event.
pub fn seq_what(events: &[pb::ChatEvent]) -> Vec<(u64, String)> {
    events.iter().map(|e| (e.seq, what(e))).collect()
}

/// Asserts that `events` have the seqs `first`, `first + 1`, ...: no gap, no duplicate.
#[track_caller]
pub fn assert_consecutive(events: &[pb::ChatEvent], first: u64) {
    for (i, event) in events.iter().enumerate() {
        let expected = first + i as u64;
        assert_eq!(
            event.seq,
            expected,
            "event #{i} should have seq {expected} (no gap, no duplicate), it is {:?}; before it: {:?}",
            what(event),
            events[i.saturating_sub(3)..i]
                .iter()
                .map(|e| (e.seq, what(e)))
                .collect::<Vec<_>>()
        );
    }
}

/// The classic transcript line of `event`, as documented: `name time: text`, joins and leaves as
/// `name time: joined` / `left` / `left (reason)`, the time in RFC 3339 UTC to the second.
pub fn classic_line(event: &pb::ChatEvent) -> String {
    let time = event.time.as_ref().expect("every event has a time");
    let at = DateTime::from_timestamp(time.seconds, 0)
        .expect("a valid time")
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    match event.kind.as_ref().expect("every event has a kind") {
        Kind::Message(m) => format!("{} {at}: {}", m.from, m.text),
        Kind::Joined(j) => format!("{} {at}: joined", j.name),
        Kind::Left(l) if l.reason == "left" => format!("{} {at}: left", l.name),
        Kind::Left(l) => format!("{} {at}: left ({})", l.name, l.reason),
        Kind::Welcome(_) => panic!("a Welcome is no transcript event: {event:?}"),
    }
}

// ----- grpcurl -----

/// `grpcurl -plaintext [-d DATA] [FLAGS...] ADDR METHOD` (grpcurl wants its flags before the
/// address).
pub fn grpcurl_chat(
    server: &ServiceProcess,
    data: &str,
    flags: &[&str],
    method: &str,
) -> tokio::process::Command {
    let method = format!("{SERVICE}/{method}");
    grpcurl_command(server.addr, Some(data), flags, &[&method])
}
