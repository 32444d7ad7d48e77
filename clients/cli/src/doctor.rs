//! `township doctor`: a conversation with the doctor over its `Converse` stream, and a patient's
//! history. On a terminal it is the classic interactive session: the greeting, a `> ` prompt, the
//! doctor's answer to each line, and `quit`, Ctrl-D or Ctrl-C to leave with the farewell. From a
//! pipe it prints the greeting, then exactly one reply (the engine's `text`) per non-empty input
//! line and nothing else, so conversations can be piped in and compared with transcripts.

use std::{
    io::{BufRead, IsTerminal, Write},
    time::Duration,
};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::{Status, Streaming, transport::Channel};
use township_proto::doctor::v1::{
    DoctorLine, Exchange, GetHistoryRequest, PatientLine, ReplyResponse, Session, doctor_line,
    doctor_service_client::DoctorServiceClient, patient_line,
};

use crate::{
    Global,
    connect::{addr_of, connect, unary},
    error::CliError,
    print_json,
};
use township_proto::town;

const SERVICE: &str = "doctor";

/// The largest page of history the doctor serves; `--all` asks for pages this big unless told
/// otherwise.
const MAX_PAGE: i32 = 1000;

/// The longest line the doctor accepts, in characters (longer: INVALID_ARGUMENT).
const MAX_TEXT_CHARS: usize = 2000;

/// The prompt before each line on a terminal.
const PROMPT: &str = "> ";

/// The prompt for the patient's name on a terminal, when `--name` is not given.
const NAME_PROMPT: &str = "Your name: ";

/// Words that end an interactive session when typed alone on a line (any case, with or without
/// a full stop or exclamation mark).
const QUIT_WORDS: [&str; 4] = ["quit", "exit", "bye", "goodbye"];

/// Input lines read ahead of the conversation.
const READ_AHEAD: usize = 64;

const DOCTOR_HELP: &str =
    "`township doctor --name NAME` is short for `township doctor talk --name \
NAME`. The doctor's address: --addr, else env TOWNSHIP_DOCTOR_ADDR, else 127.0.0.1:50052.

On a terminal (stdin is a terminal): the greeting, then a `> ` prompt; every line you type is \
answered in sentence case (the reply's display_text). Blank lines are skipped. `quit`, `exit`, \
`bye` or `goodbye` alone on a line (any case), Ctrl-D or Ctrl-C ends the session with the doctor's \
farewell, \"Have a nice day!\". Without --name the name is asked for first.

From a pipe (stdin is not a terminal) --name is required. The output is the greeting line (the \
engine's text), then exactly one line per non-empty input line: the doctor's reply as the engine \
assembled it (its `text`: words joined by single spaces, upper case for 1966-style scripts) and \
nothing else: no prompts, no farewell. Each line is trimmed; a blank line is not sent and prints \
nothing; `quit` and the other words are sent like any other line. So a conversation can be piped \
in and its output compared with a transcript.

With --json (either way) one object per line and no prompts: the greeting {\"session_id\", \
\"greeting\", \"display_greeting\", \"returning_patient\", \"previous_visits\"}, one {\"input\", \
\"text\", \"display_text\"} per line sent, and {\"farewell\"} last.

The doctor remembers patients by name (ignoring case and surrounding spaces): a returning patient \
is welcomed back and the conversation continues from the last one.

Exit codes: 0 the session ended (also by Ctrl-C); 1 the doctor answered an error (e.g. a line of \
more than 2000 characters from a pipe, a name longer than 100 characters, or a session that ended \
after the server's idle timeout); 2 bad usage (no --name from a pipe); 3 the doctor could not be \
reached.";

const HISTORY_HELP: &str = "Each exchange is two lines: `> ` and what the patient said, `< ` and \
what the doctor answered (the engine's text), as in the doctor's transcripts; a line `# TIME  \
session ID` comes before the first exchange of each session shown. With --json, one object per \
exchange with the fields session_id, time (RFC 3339, UTC), patient_text and doctor_text.";

/// `township doctor ...`.
#[derive(Debug, Args)]
#[command(after_help = DOCTOR_HELP)]
pub struct DoctorArgs {
    #[command(subcommand)]
    command: Option<DoctorCommand>,

    #[command(flatten)]
    talk: TalkArgs,
}

#[derive(Debug, Subcommand)]
enum DoctorCommand {
    /// Talk to the doctor (what `township doctor` does without a subcommand).
    #[command(after_help = DOCTOR_HELP)]
    Talk(TalkArgs),
    /// Print what a patient said and was told, oldest first, across all their sessions.
    #[command(after_help = HISTORY_HELP)]
    History(HistoryArgs),
}

/// Flags of `township doctor [talk]`.
#[derive(Debug, Args)]
struct TalkArgs {
    /// The patient's name (1 to 100 characters, any script): the doctor remembers patients by
    /// it. Asked for on a terminal when not given; required when stdin is not a terminal.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// Flags of `township doctor history`.
#[derive(Debug, Args)]
struct HistoryArgs {
    /// The patient's name (case and surrounding spaces do not matter).
    #[arg(long, value_name = "NAME")]
    name: String,

    /// Exchanges per page, 1 to 1000 (default: the server's, 50; 1000 with --all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=1000))]
    page_size: Option<i32>,

    /// Start from this page token, which the previous page printed.
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,

    /// Print every page, not just the first; without it a page that has more after it ends with
    /// `next page: --page-token TOKEN` (with --json, a `{"next_page_token": ...}` object).
    #[arg(long)]
    all: bool,
}

/// Runs `township doctor`.
pub async fn run(args: DoctorArgs, global: &Global) -> Result<(), CliError> {
    if args.command.is_some() && args.talk.name.is_some() {
        // Not clap's `args_conflicts_with_subcommands`: that would refuse the global flags too.
        return Err(CliError::Usage(
            "doctor: give --name after the subcommand, e.g. `township doctor history --name NAME`"
                .into(),
        ));
    }
    match args.command {
        None => talk(args.talk, global).await,
        Some(DoctorCommand::Talk(talk_args)) => talk(talk_args, global).await,
        Some(DoctorCommand::History(history_args)) => history(history_args, global).await,
    }
}

/// A connection to the doctor.
struct Doctor {
    client: DoctorServiceClient<Channel>,
    addr: String,
}

impl Doctor {
    /// Connects: `--addr`, else env TOWNSHIP_DOCTOR_ADDR, else 127.0.0.1:50052.
    async fn connect(global: &Global) -> Result<Self, CliError> {
        let addr = addr_of(&town::DOCTOR, global);
        let channel = connect(SERVICE, &addr, global).await?;
        Ok(Self {
            client: DoctorServiceClient::new(channel),
            addr,
        })
    }

    /// A client on the shared channel.
    fn client(&self) -> DoctorServiceClient<Channel> {
        self.client.clone()
    }

    /// The command's error for a failed call (see [`CliError::from_status`]).
    fn error(&self, status: Status) -> CliError {
        CliError::from_status(SERVICE, &self.addr, status)
    }
}

// ---------------------------------------------------------------------------------------------
// talk

/// Runs `township doctor [talk]`: one session over `Converse`, until the input ends, the patient
/// quits (on a terminal) or Ctrl-C. A reader of the output that goes away early ends it too, and
/// is not a failure.
async fn talk(args: TalkArgs, global: &Global) -> Result<(), CliError> {
    match converse(args, global).await {
        Err(CliError::Other(err)) if is_broken_pipe(&err) => Ok(()),
        other => other,
    }
}

/// The session itself, for [`talk`].
async fn converse(args: TalkArgs, global: &Global) -> Result<(), CliError> {
    let terminal = std::io::stdin().is_terminal();
    let given = args.name.filter(|name| !name.trim().is_empty());
    if given.is_none() && !terminal {
        return Err(CliError::Usage(
            "doctor: --name NAME is required when stdin is not a terminal (its lines are what \
             the patient says)"
                .into(),
        ));
    }
    let out = Output {
        json: global.json,
        terminal,
    };
    let doctor = Doctor::connect(global).await?;
    // Only now: until here Ctrl-C simply stops the command.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut input = Input::stdin()?;
    let name = match given {
        Some(name) => name,
        None => match ask_name(&mut input, &mut interrupt, out).await {
            Some(name) => name,
            None => {
                out.left_prompt();
                return Ok(());
            }
        },
    };

    let mut conversation = Conversation::open(&doctor, name, global.timeout).await?;
    let session = conversation.greeting().await?;
    out.greeting(&session)?;
    let mut unanswered = None;
    loop {
        out.prompt();
        let line = tokio::select! {
            line = input.next() => line,
            _ = interrupt.recv() => {
                out.left_prompt();
                break;
            }
            message = conversation.incoming.next() => {
                // The doctor spoke unasked: the server is shutting down, or failed.
                out.left_prompt();
                return conversation.unasked(message, out);
            }
        };
        let Some(line) = line else {
            // Ctrl-D on a terminal, the end of a pipe.
            out.left_prompt();
            break;
        };
        if line.is_empty() {
            continue;
        }
        if terminal && is_quit(&line) {
            break;
        }
        let chars = line.chars().count();
        if terminal && chars > MAX_TEXT_CHARS {
            eprintln!(
                "That is too long for the doctor: at most {MAX_TEXT_CHARS} characters, please \
                 (that was {chars})."
            );
            continue;
        }
        conversation.say(&line)?;
        let answer = tokio::select! {
            answer = conversation.answer() => answer?,
            _ = interrupt.recv() => {
                unanswered = Some(line);
                break;
            }
        };
        match answer {
            Answer::Reply(reply) => out.reply(&line, &reply)?,
            Answer::Farewell(farewell) => {
                out.farewell(&farewell)?;
                return Err(CliError::Status {
                    service: SERVICE,
                    status: Status::unavailable(
                        "the doctor ended the session before answering (is the server shutting \
                         down?)",
                    ),
                });
            }
        }
    }
    conversation.finish(unanswered, out, &mut interrupt).await
}

/// Asks for the patient's name until one is given; `None` at the end of input or on Ctrl-C.
async fn ask_name(input: &mut Input, interrupt: &mut Signal, out: Output) -> Option<String> {
    loop {
        out.ask(NAME_PROMPT);
        let line = tokio::select! {
            line = input.next() => line,
            _ = interrupt.recv() => None,
        };
        match line {
            None => return None,
            Some(name) if !name.is_empty() => return Some(name),
            Some(_) => {}
        }
    }
}

/// Whether `line` asks to end an interactive session: `quit`, `exit`, `bye` or `goodbye`, in
/// any case, perhaps with a full stop or exclamation mark.
fn is_quit(line: &str) -> bool {
    let word = line.trim().trim_end_matches(['.', '!']).to_lowercase();
    QUIT_WORDS.contains(&word.as_str())
}

/// What the doctor says to a line.
enum Answer {
    Reply(ReplyResponse),
    /// The session ended instead (the server is shutting down).
    Farewell(String),
}

/// An open `Converse` stream.
struct Conversation<'d> {
    doctor: &'d Doctor,
    /// The patient's side; dropped to close it, which asks for the farewell.
    outgoing: Option<mpsc::Sender<PatientLine>>,
    incoming: Streaming<DoctorLine>,
    /// How long the doctor may take to answer a line.
    timeout: Duration,
}

impl<'d> Conversation<'d> {
    /// Opens the stream; its first message names the patient.
    async fn open(doctor: &'d Doctor, name: String, timeout: Duration) -> Result<Self, CliError> {
        let (outgoing, lines) = mpsc::channel(1);
        let first = PatientLine {
            kind: Some(patient_line::Kind::PatientName(name)),
        };
        // The channel is empty: this cannot wait.
        let _ = outgoing.try_send(first);
        let opened = tokio::time::timeout(
            timeout,
            doctor.client().converse(ReceiverStream::new(lines)),
        )
        .await
        .map_err(|_| no_answer(timeout))?
        .map_err(|s| doctor.error(s))?;
        Ok(Self {
            doctor,
            outgoing: Some(outgoing),
            incoming: opened.into_inner(),
            timeout,
        })
    }

    /// The next message from the doctor (within the timeout); `None` when the stream ended.
    async fn next(&mut self) -> Result<Option<doctor_line::Kind>, CliError> {
        match tokio::time::timeout(self.timeout, self.incoming.next()).await {
            Err(_) => Err(no_answer(self.timeout)),
            Ok(None) => Ok(None),
            Ok(Some(Err(status))) => Err(self.doctor.error(status)),
            Ok(Some(Ok(DoctorLine { kind: None }))) => Err(unexpected("an empty message")),
            Ok(Some(Ok(DoctorLine { kind }))) => Ok(kind),
        }
    }

    /// The greeting, the doctor's first message.
    async fn greeting(&mut self) -> Result<Session, CliError> {
        match self.next().await? {
            Some(doctor_line::Kind::Greeting(session)) => Ok(session),
            Some(_) => Err(unexpected("something else before the greeting")),
            None => Err(unexpected("no greeting")),
        }
    }

    /// Sends one line. The doctor answers lines in turn, so there is always room for it.
    fn say(&self, text: &str) -> Result<(), CliError> {
        let line = PatientLine {
            kind: Some(patient_line::Kind::Text(text.to_owned())),
        };
        let sent = self.outgoing.as_ref().map(|out| out.try_send(line));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(unexpected("no room for the next line")),
        }
    }

    /// The doctor's answer to the line just sent.
    async fn answer(&mut self) -> Result<Answer, CliError> {
        match self.next().await? {
            Some(doctor_line::Kind::Reply(reply)) => Ok(Answer::Reply(reply)),
            Some(doctor_line::Kind::Farewell(farewell)) => Ok(Answer::Farewell(farewell.farewell)),
            Some(doctor_line::Kind::Greeting(_)) => Err(unexpected("a second greeting")),
            None => Err(unexpected("no reply")),
        }
    }

    /// A message the doctor sent while the patient was silent: a farewell ends the session
    /// cleanly (the server is shutting down), anything else is an error.
    fn unasked(
        &self,
        message: Option<Result<DoctorLine, Status>>,
        out: Output,
    ) -> Result<(), CliError> {
        match message {
            Some(Ok(DoctorLine {
                kind: Some(doctor_line::Kind::Farewell(farewell)),
            })) => out.farewell(&farewell.farewell),
            Some(Err(status)) => Err(self.doctor.error(status)),
            Some(Ok(_)) => Err(unexpected("a message nobody asked for")),
            None => Err(unexpected("the end of the conversation without a farewell")),
        }
    }

    /// Closes the patient's side and prints what is still to come: the reply to `unanswered`
    /// (a line sent just before Ctrl-C), then the farewell. A second Ctrl-C stops waiting.
    async fn finish(
        mut self,
        mut unanswered: Option<String>,
        out: Output,
        interrupt: &mut Signal,
    ) -> Result<(), CliError> {
        drop(self.outgoing.take());
        loop {
            let message = tokio::select! {
                message = self.next() => message?,
                _ = interrupt.recv() => return Ok(()),
            };
            match message {
                Some(doctor_line::Kind::Reply(reply)) => {
                    if let Some(line) = unanswered.take() {
                        out.left_prompt();
                        out.reply(&line, &reply)?;
                    }
                }
                Some(doctor_line::Kind::Farewell(farewell)) => out.farewell(&farewell.farewell)?,
                Some(doctor_line::Kind::Greeting(_)) => {
                    return Err(unexpected("a second greeting"));
                }
                None => return Ok(()),
            }
        }
    }
}

/// The error for a doctor that did not answer within `--timeout`.
fn no_answer(timeout: Duration) -> CliError {
    CliError::Status {
        service: SERVICE,
        status: Status::deadline_exceeded(format!(
            "no answer within {} (--timeout)",
            humantime::format_duration(timeout)
        )),
    }
}

/// The error for a doctor that broke the Converse protocol by sending `what`.
fn unexpected(what: &str) -> CliError {
    CliError::Other(anyhow!(
        "the doctor's conversation went wrong: it sent {what}"
    ))
}

/// How the session is shown: interactive on a terminal, the engine's text from a pipe, or JSON.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
    /// Whether stdin is a terminal.
    terminal: bool,
}

impl Output {
    /// A person is watching: prompts and sentence case.
    fn interactive(self) -> bool {
        self.terminal && !self.json
    }

    fn greeting(self, session: &Session) -> Result<(), CliError> {
        if self.json {
            line(serde_json::json!({
                "session_id": session.session_id,
                "greeting": session.greeting,
                "display_greeting": session.display_greeting,
                "returning_patient": session.returning_patient,
                "previous_visits": session.previous_visits,
            }))
        } else if self.interactive() {
            line(or_text(&session.display_greeting, &session.greeting))
        } else {
            line(&session.greeting)
        }
    }

    fn reply(self, input: &str, reply: &ReplyResponse) -> Result<(), CliError> {
        if self.json {
            line(serde_json::json!({
                "input": input,
                "text": reply.text,
                "display_text": reply.display_text,
            }))
        } else if self.interactive() {
            line(or_text(&reply.display_text, &reply.text))
        } else {
            line(&reply.text)
        }
    }

    /// The farewell, except from a pipe without `--json` (one line per input line, no more).
    fn farewell(self, farewell: &str) -> Result<(), CliError> {
        if self.json {
            line(serde_json::json!({ "farewell": farewell }))
        } else if self.interactive() {
            line(farewell)
        } else {
            Ok(())
        }
    }

    /// The prompt before a line, on a terminal.
    fn prompt(self) {
        if self.interactive() {
            print!("{PROMPT}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Asks a question on a terminal: on stdout, or stderr when stdout is for JSON.
    fn ask(self, question: &str) {
        if self.json {
            eprint!("{question}");
            let _ = std::io::stderr().flush();
        } else {
            print!("{question}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Ends the line a prompt left open (after Ctrl-D or Ctrl-C on a terminal).
    fn left_prompt(self) {
        if self.interactive() {
            println!();
        }
    }
}

/// Prints one line on stdout. Not `println!`: a reader that went away must end the session, not
/// panic.
fn line(text: impl std::fmt::Display) -> Result<(), CliError> {
    writeln!(std::io::stdout(), "{text}")
        .context("cannot write stdout")
        .map_err(CliError::Other)
}

/// Whether `err` is a write to a pipe whose reader has gone (`township doctor ... | head`).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `display` unless it is empty, else `text`.
fn or_text<'a>(display: &'a str, text: &'a str) -> &'a str {
    if display.is_empty() { text } else { display }
}

/// Stdin's lines, trimmed, read on a thread of their own: waiting for the patient never holds up
/// the runtime, and Ctrl-C is seen at once. Text that is not UTF-8 is read lossily; an unreadable
/// stdin counts as its end.
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
                let mut stdin = std::io::stdin().lock();
                let mut buffer = Vec::new();
                loop {
                    buffer.clear();
                    match stdin.read_until(b'\n', &mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buffer).trim().to_owned();
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
// history

/// Prints one page of the patient's history (with a hint to the next one), or every page with
/// `--all`.
async fn history(args: HistoryArgs, global: &Global) -> Result<(), CliError> {
    let doctor = Doctor::connect(global).await?;
    let page_size = args
        .page_size
        .unwrap_or(if args.all { MAX_PAGE } else { 0 });
    let mut page_token = args.page_token.clone().unwrap_or_default();
    let continued = !page_token.is_empty();
    let mut shown = 0usize;
    let mut session = String::new();
    loop {
        let request = GetHistoryRequest {
            patient_name: args.name.clone(),
            page_size,
            page_token,
        };
        let page = doctor
            .client()
            .get_history(unary(request, global))
            .await
            .map_err(|s| doctor.error(s))?
            .into_inner();
        for exchange in &page.exchanges {
            print_exchange(global, exchange, &mut session);
        }
        shown += page.exchanges.len();
        let next = page.next_page_token;
        if next.is_empty() {
            break;
        }
        if !args.all {
            if global.json {
                print_json(&serde_json::json!({ "next_page_token": next }));
            } else {
                println!("next page: --page-token {next}");
            }
            break;
        }
        page_token = next;
    }
    if shown == 0 && !global.json {
        if continued {
            println!("no more exchanges");
        } else {
            println!("no history for {:?}", args.name);
        }
    }
    Ok(())
}

/// Prints one exchange: `> said` and `< answered`, after a `# TIME  session ID` line when its
/// session differs from the one printed before (`session`); or one JSON object.
fn print_exchange(global: &Global, exchange: &Exchange, session: &mut String) {
    let time = exchange.time.as_ref().map(ToString::to_string);
    if global.json {
        print_json(&serde_json::json!({
            "session_id": exchange.session_id,
            "time": time,
            "patient_text": exchange.patient_text,
            "doctor_text": exchange.doctor_text,
        }));
        return;
    }
    if *session != exchange.session_id {
        session.clone_from(&exchange.session_id);
        println!(
            "# {}  session {}",
            time.as_deref().unwrap_or("(no time)"),
            exchange.session_id
        );
    }
    println!("> {}", one_line(&exchange.patient_text));
    println!("< {}", one_line(&exchange.doctor_text));
}

/// `text` with any line breaks made spaces, so each exchange stays two lines.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quit_words_end_a_session_in_any_case() {
        for line in [
            "quit", "QUIT", " Quit ", "bye", "Goodbye.", "exit!", "goodbye!",
        ] {
            assert!(is_quit(line), "{line:?}");
        }
        for line in ["", "quit now", "I want to quit", "byebye", "hello"] {
            assert!(!is_quit(line), "{line:?}");
        }
    }

    #[test]
    fn history_lines_never_break() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn the_display_form_falls_back_to_the_text() {
        assert_eq!(or_text("", "HELLO"), "HELLO");
        assert_eq!(or_text("Hello.", "HELLO"), "Hello.");
    }
}
