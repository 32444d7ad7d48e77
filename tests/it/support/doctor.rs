//! The doctor's test helpers: transcripts read from the engine's files, a doctor-server on a data
//! directory (or in a working directory of the test's choosing), one function per RPC (each
//! presenting the patient's key, as a patient's own client would), many exchanges from several
//! sessions at once, an open Converse stream, and the checks on replies and errors.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{LazyLock, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tempfile::TempDir;
use tokio::{sync::mpsc, task::JoinSet};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::{
    Code, Status, Streaming,
    transport::{Channel, Endpoint},
};
use township_proto::doctor::v1::{
    self as pb, doctor_line, doctor_service_client::DoctorServiceClient, patient_line,
};
use township_tests::{Output, ServiceProcess, spawn_service_in};

use crate::support::{
    grpcurl::grpcurl_call,
    process::*,
    status::expect_code,
    storage::{Backend, Storage},
};

/// A doctor client.
pub type Rpc = DoctorServiceClient<Channel>;

/// The service's fully qualified name (health, reflection, grpcurl).
pub const SERVICE: &str = "township.doctor.v1.DoctorService";

/// Township's own DOCTOR script's transcript (the engine's tests replay it in-process).
pub const DOCTOR_TRANSCRIPT: &str =
    include_str!("../../../services/doctor/tests/transcripts/doctor.txt");
/// The classic mode's transcript; its header names the seed it was recorded with.
pub const CLASSIC_TRANSCRIPT: &str =
    include_str!("../../../services/doctor/tests/transcripts/classic.txt");
/// The default script's greeting, as `text`.
pub const GREETING: &str = "GOOD DAY. I AM HERE TO LISTEN. WHAT IS ON YOUR MIND";
/// The same greeting for people.
pub const DISPLAY_GREETING: &str = "Good day. I am here to listen. What is on your mind?";
/// The classic doctor's greeting.
pub const CLASSIC_GREETING: &str = "Good day. What would you like to talk about?";
/// What the doctor-server logs when its reaper has ended idle sessions.
pub const IDLE_ENDED: &str = "idle sessions ended";
/// What every session ends with.
pub const FAREWELL: &str = "Have a nice day!";

// ----- transcripts -----

/// One `> input` and the `< reply` expected to it.
#[derive(Clone, Debug)]
pub struct Line {
    pub input: String,
    pub expected: String,
    /// The 1-based line of the expected reply in the transcript file.
    pub at: usize,
}

/// Reads a transcript: `> input` then `< expected reply`; `#` lines and blank lines are comments.
/// One space after the marker belongs to the syntax; trailing white space is not part of a line.
pub fn transcript(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut pending: Option<String> = None;
    for (index, raw) in text.lines().enumerate() {
        let content = raw.trim_end();
        if content.trim_start().is_empty() || content.starts_with('#') {
            continue;
        }
        let unmark = |rest: &str| rest.strip_prefix(' ').unwrap_or(rest).to_owned();
        if let Some(input) = content.strip_prefix('>') {
            assert!(pending.is_none(), "line {}: two inputs in a row", index + 1);
            pending = Some(unmark(input));
        } else if let Some(expected) = content.strip_prefix('<') {
            let input = pending
                .take()
                .unwrap_or_else(|| panic!("line {}: a reply with no input", index + 1));
            lines.push(Line {
                input,
                expected: unmark(expected),
                at: index + 1,
            });
        } else {
            panic!("line {}: not a transcript line: {raw:?}", index + 1);
        }
    }
    assert!(pending.is_none(), "the transcript ends with an input");
    lines
}

/// The seed a transcript's header comment says it was recorded with (`... seeded with N ...`).
pub fn transcript_seed(text: &str) -> String {
    text.lines()
        .take_while(|line| line.starts_with('#'))
        .find_map(|line| {
            let rest = &line[line.find("seeded with ")? + "seeded with ".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (!digits.is_empty()).then_some(digits)
        })
        .expect("the classic transcript's header names its seed")
}

/// The words of a reply without case or punctuation, to compare `text` with `display_text`.
pub fn bare_words(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts that `display` is sentence case of `text`: the same words, the first letter a
/// capital, nothing shouted but the pronoun I, and a final `.`, `?` or `!`.
#[track_caller]
pub fn assert_sentence_case(text: &str, display: &str) {
    assert_eq!(
        bare_words(text),
        bare_words(display),
        "{text:?} / {display:?}"
    );
    assert!(
        display.chars().next().is_some_and(char::is_uppercase),
        "starts with a capital: {display:?}"
    );
    assert!(
        display.ends_with(['.', '?', '!']),
        "ends a sentence: {display:?}"
    );
    for word in display.split_whitespace() {
        let core = word.trim_end_matches([',', '.', '?', '!']);
        let shouted = core.chars().skip(1).any(char::is_uppercase);
        assert!(!shouted, "{word:?} is not shouted in {display:?}");
    }
}

// ----- processes -----

/// A doctor-server on `dir`, on `listen` (`None`: an ephemeral port), with `extra` flags.
pub async fn doctor_server(dir: &Path, listen: Option<&str>, extra: &[&str]) -> ServiceProcess {
    server_on("doctor-server", dir, listen, extra).await
}

/// A doctor-server on `storage` (its data directory, and on PostgreSQL its database), on
/// `listen` (`None`: an ephemeral port), with `extra` flags.
pub async fn doctor_on(storage: &Storage, listen: Option<&str>, extra: &[&str]) -> ServiceProcess {
    server_with("doctor-server", storage, listen, extra).await
}

/// A doctor (with `extra` flags) on fresh state on `backend`, and a client of it (keep the
/// `Storage` alive as long as the server).
pub async fn doctor_with(backend: Backend, extra: &[&str]) -> (Storage, ServiceProcess, Rpc) {
    let storage = Storage::new(backend).await;
    let server = doctor_on(&storage, None, extra).await;
    let rpc = client(&server).await;
    (storage, server, rpc)
}

/// A client with its own connection to `server`.
pub async fn client(server: &ServiceProcess) -> Rpc {
    DoctorServiceClient::new(connect(server, Some(CALL_TIMEOUT)).await)
}

/// A doctor (with `extra` flags) on a fresh data directory and a client of it (keep the
/// `TempDir` alive as long as the server).
pub async fn doctor(extra: &[&str]) -> (TempDir, ServiceProcess, Rpc) {
    let dir = tempfile::tempdir().unwrap();
    let server = doctor_server(dir.path(), None, extra).await;
    let rpc = client(&server).await;
    (dir, server, rpc)
}

/// Runs doctor-server with `args` to its end (it must not start serving) and returns its output.
pub async fn doctor_server_refusing(args: &[&str]) -> Output {
    let mut full = vec!["--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    run_binary("doctor-server", &full, &[]).await
}

// ----- patient keys -----

/// Every key the doctors under test have given each patient (by the doctor's match key), newest
/// last: tests running at once may give one name to two doctors, so the helpers present each
/// key a name has, newest first, as a patient with two doctors would.
static KEYS: LazyLock<Mutex<HashMap<String, Vec<String>>>> = LazyLock::new(Default::default);

/// The doctor's match key of `name`: NFC, case-folded, white space collapsed.
pub fn match_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded = caseless::default_case_fold_str(&name.nfc().collect::<String>());
    folded
        .nfc()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The keys `name` was given, newest first; one empty key when it has none.
pub fn keys_of(name: &str) -> Vec<String> {
    let keys = KEYS.lock().unwrap();
    match keys.get(&match_key(name)) {
        Some(known) => known.iter().rev().cloned().collect(),
        None => vec![String::new()],
    }
}

/// The newest key `name` was given, or an empty one.
pub fn key_of(name: &str) -> String {
    keys_of(name).swap_remove(0)
}

/// Keeps the key a new patient's first session returned.
pub fn remember(name: &str, session: &pb::Session) {
    remember_key(name, &session.patient_key);
}

/// Keeps `key` (unless empty) as the newest of `name`.
pub fn remember_key(name: &str, key: &str) {
    if !key.is_empty() {
        let mut keys = KEYS.lock().unwrap();
        keys.entry(match_key(name))
            .or_default()
            .push(key.to_owned());
    }
}

// ----- calls -----

/// StartSession presenting `patient_key`, as a stranger (or anyone) may.
pub async fn start_with_key(
    rpc: &Rpc,
    name: &str,
    patient_key: &str,
) -> Result<pb::Session, Status> {
    let request = pb::StartSessionRequest {
        patient_name: name.into(),
        patient_key: patient_key.into(),
    };
    let session = rpc.clone().start_session(request).await?.into_inner();
    remember(name, &session);
    Ok(session)
}

/// StartSession as the patient, with each of their keys in turn, newest first, until one is
/// not PERMISSION_DENIED; again with the keys that came meanwhile, if any did (a patient's
/// first sessions started at once: only the first of them gets the key).
pub async fn start(rpc: &Rpc, name: &str) -> Result<pb::Session, Status> {
    let mut answer = Err(Status::internal("no key tried"));
    let mut tried = Vec::new();
    while tried != keys_of(name) {
        tried = keys_of(name);
        for key in &tried {
            answer = start_with_key(rpc, name, key).await;
            if !matches!(&answer, Err(status) if status.code() == Code::PermissionDenied) {
                return answer;
            }
        }
        if tried == [String::new()] {
            // The first session may still be on its way back with the key.
            for _ in 0..250 {
                if keys_of(name) != tried {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    answer
}

/// StartSession, which must succeed.
pub async fn visit(rpc: &Rpc, name: &str) -> pb::Session {
    start(rpc, name)
        .await
        .unwrap_or_else(|status| panic!("StartSession({name:?}): {status:?}"))
}

/// Reply.
pub async fn reply(rpc: &Rpc, session_id: &str, text: &str) -> Result<pb::ReplyResponse, Status> {
    let request = pb::ReplyRequest {
        session_id: session_id.into(),
        text: text.into(),
    };
    rpc.clone().reply(request).await.map(|r| r.into_inner())
}

/// Reply, which must succeed.
pub async fn say(rpc: &Rpc, session_id: &str, text: &str) -> pb::ReplyResponse {
    reply(rpc, session_id, text)
        .await
        .unwrap_or_else(|status| panic!("Reply({text:?}): {status:?}"))
}

/// EndSession: the farewell.
pub async fn end(rpc: &Rpc, session_id: &str) -> Result<String, Status> {
    let request = pb::EndSessionRequest {
        session_id: session_id.into(),
    };
    rpc.clone()
        .end_session(request)
        .await
        .map(|r| r.into_inner().farewell)
}

/// One page of GetHistory presenting `patient_key`.
pub async fn history_page_with_key(
    rpc: &Rpc,
    name: &str,
    patient_key: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::GetHistoryResponse, Status> {
    let request = pb::GetHistoryRequest {
        patient_name: name.into(),
        page_size,
        page_token: page_token.into(),
        patient_key: patient_key.into(),
    };
    rpc.clone()
        .get_history(request)
        .await
        .map(|r| r.into_inner())
}

/// One page of GetHistory, as the patient (their keys tried as by [`start`]).
pub async fn history_page(
    rpc: &Rpc,
    name: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::GetHistoryResponse, Status> {
    let mut answer = Err(Status::internal("no key tried"));
    for key in keys_of(name) {
        answer = history_page_with_key(rpc, name, &key, page_size, page_token).await;
        if !matches!(&answer, Err(status) if status.code() == Code::PermissionDenied) {
            break;
        }
    }
    answer
}

/// Gives `name` `count` exchanges (`I dream of line N.`), from `sessions` sessions at once.
pub async fn exchanges(rpc: &Rpc, name: &str, count: usize, sessions: usize) {
    let mut talking = JoinSet::new();
    for session in 0..sessions {
        let rpc = rpc.clone();
        let name = name.to_owned();
        let lines = (session..count).step_by(sessions).collect::<Vec<_>>();
        talking.spawn(async move {
            let session_id = visit(&rpc, &name).await.session_id;
            for line in lines {
                say(&rpc, &session_id, &format!("I dream of line {line}.")).await;
            }
        });
    }
    while let Some(done) = talking.join_next().await {
        done.expect("a session talks");
    }
}

/// A patient's whole history, oldest first, read `page_size` at a time.
pub async fn history_in_pages(rpc: &Rpc, name: &str, page_size: i32) -> Vec<pb::Exchange> {
    let mut exchanges = Vec::new();
    let mut token = String::new();
    for _ in 0..100_000 {
        let page = history_page(rpc, name, page_size, &token)
            .await
            .unwrap_or_else(|status| panic!("GetHistory({name:?}): {status:?}"));
        if page_size > 0 {
            assert!(
                page.exchanges.len() <= page_size as usize,
                "at most {page_size} a page: {page:?}"
            );
        }
        exchanges.extend(page.exchanges);
        if page.next_page_token.is_empty() {
            return exchanges;
        }
        token = page.next_page_token;
    }
    panic!("the history of {name:?} never ends")
}

/// A patient's whole history, oldest first (in pages of 1000).
pub async fn history(rpc: &Rpc, name: &str) -> Vec<pb::Exchange> {
    history_in_pages(rpc, name, 1000).await
}

/// (patient text, doctor text) of each exchange.
pub fn said(exchanges: &[pb::Exchange]) -> Vec<(String, String)> {
    exchanges
        .iter()
        .map(|e| (e.patient_text.clone(), e.doctor_text.clone()))
        .collect()
}

/// What a transcript says should be in the history for `lines`.
pub fn expected_said(lines: &[Line]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| (l.input.clone(), l.expected.clone()))
        .collect()
}

/// Says every input of `lines` in session `session_id`, asserting each reply's `text` is exactly
/// the expected one; returns the replies.
pub async fn replay(rpc: &Rpc, session_id: &str, lines: &[Line]) -> Vec<pb::ReplyResponse> {
    let mut replies = Vec::new();
    for line in lines {
        let answer = say(rpc, session_id, &line.input).await;
        assert_eq!(
            answer.text, line.expected,
            "transcript line {}: the reply to {:?}",
            line.at, line.input
        );
        replies.push(answer);
    }
    replies
}

/// A unique patient name for this test run.
pub fn patient(prefix: &str) -> String {
    format!("{prefix} {}", uuid::Uuid::new_v4().simple())
}

/// Now, in seconds since the Unix epoch.
pub fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

// ----- checks -----

/// Asserts that `result` is NOT_FOUND naming the field `session_id` and the id itself.
#[track_caller]
pub fn expect_no_session<T: std::fmt::Debug>(result: Result<T, Status>, session_id: &str) {
    let status = expect_code(result, Code::NotFound);
    assert!(
        status.message().starts_with("session_id"),
        "the message names session_id: {status:?}"
    );
    assert!(
        status.message().contains(session_id),
        "the message names the session {session_id:?}: {status:?}"
    );
}

// ----- replies -----

/// The memory tag in a MEMORY reply about `YOUR CAT <TAG> PURRS`, if this is one.
pub fn cat_tag(text: &str) -> Option<String> {
    let rest = &text[text.find("YOUR CAT ")? + "YOUR CAT ".len()..];
    let tag = rest.strip_suffix(" PURRS")?;
    Some(tag.to_owned())
}

// ----- files -----

/// Every file under `root`, relative to it.
pub fn tree(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

/// A doctor-server started in `cwd` with `--data-dir data_dir` (a relative one is taken from
/// `cwd`), and a client of it.
pub async fn doctor_in(cwd: &Path, data_dir: &str) -> (ServiceProcess, Rpc) {
    let server = spawn_service_in(cwd, "doctor-server", &["--data-dir", data_dir])
        .await
        .expect("the doctor-server starts");
    let rpc = client(&server).await;
    (server, rpc)
}

// ----- Converse -----

/// An open Converse stream: lines go in through `tx`, doctor lines come out of `rx`.
pub struct Conversation {
    pub tx: Option<mpsc::Sender<pb::PatientLine>>,
    pub rx: Streaming<pb::DoctorLine>,
    /// The name the first line gave, whose key the greeting may carry.
    patient: Mutex<Option<String>>,
}

/// The first line of a conversation: the patient's name, with their newest key.
pub fn name_line(name: &str) -> pb::PatientLine {
    pb::PatientLine {
        kind: Some(patient_line::Kind::PatientName(name.into())),
        patient_key: key_of(name),
    }
}

/// The first line of a Converse naming `name` and presenting `key`.
pub fn name_line_with_key(name: &str, key: &str) -> pb::PatientLine {
    pb::PatientLine {
        patient_key: key.into(),
        ..name_line(name)
    }
}

/// A line the patient says.
pub fn text_line(text: &str) -> pb::PatientLine {
    pb::PatientLine {
        kind: Some(patient_line::Kind::Text(text.into())),
        patient_key: String::new(),
    }
}

impl Conversation {
    /// Opens a Converse stream (no call deadline: a conversation may last).
    pub async fn open(server_uri: String) -> Self {
        let channel = Endpoint::from_shared(server_uri)
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to the doctor");
        let (tx, outbound) = mpsc::channel(16);
        let rx = DoctorServiceClient::new(channel)
            .converse(ReceiverStream::new(outbound))
            .await
            .expect("Converse opens")
            .into_inner();
        Self {
            tx: Some(tx),
            rx,
            patient: Mutex::new(None),
        }
    }

    /// Sends `line`.
    pub async fn send(&self, line: pb::PatientLine) {
        if let Some(patient_line::Kind::PatientName(name)) = &line.kind {
            *self.patient.lock().unwrap() = Some(name.clone());
        }
        self.tx
            .as_ref()
            .expect("the client side is open")
            .send(line)
            .await
            .expect("the stream takes the line");
    }

    /// Closes the client side.
    pub fn close(&mut self) {
        self.tx = None;
    }

    /// The next doctor line, an error, or the end (`None`).
    pub async fn next(&mut self) -> Option<Result<doctor_line::Kind, Status>> {
        tokio::time::timeout(CALL_TIMEOUT, self.rx.next())
            .await
            .expect("the doctor answers in time")
            .map(|line| line.map(|l| l.kind.expect("every doctor line has a kind")))
    }

    /// The next doctor line, which must be the greeting.
    pub async fn greeting(&mut self) -> pb::Session {
        match self.next().await {
            Some(Ok(doctor_line::Kind::Greeting(session))) => {
                if let Some(name) = self.patient.lock().unwrap().as_deref() {
                    remember(name, &session);
                }
                session
            }
            other => panic!("expected a greeting, got {other:?}"),
        }
    }

    /// The next doctor line, which must be a reply.
    pub async fn reply(&mut self) -> pb::ReplyResponse {
        match self.next().await {
            Some(Ok(doctor_line::Kind::Reply(reply))) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// The error the stream ends with.
    pub async fn error(&mut self) -> Status {
        match self.next().await {
            Some(Err(status)) => status,
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

// ----- patient keys, offline -----

/// Runs `doctor-server issue-key ARGS`.
pub async fn issue_key(args: &[&str]) -> Output {
    let mut full = vec!["issue-key"];
    full.extend_from_slice(args);
    run_binary("doctor-server", &full, &[]).await
}

/// Takes every patient's key away, as a database from before keys has none.
pub async fn forget_keys(data_dir: &std::path::Path) {
    use sqlx::{Connection, sqlite::SqliteConnectOptions};
    let options = SqliteConnectOptions::new().filename(data_dir.join("doctor.db"));
    let mut db = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("UPDATE patients SET key_hash = NULL")
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
}

// ----- grpcurl -----

/// `grpcurl -plaintext -d DATA ADDR township.doctor.v1.DoctorService/METHOD`.
pub async fn grpcurl_doctor(server: &ServiceProcess, method: &str, data: &str) -> Output {
    grpcurl_call(server.addr, SERVICE, method, data).await
}
