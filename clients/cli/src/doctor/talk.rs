//! `township doctor [talk]`: one session over the `Converse` stream, line by line, until the
//! input ends, the patient quits (on a terminal) or Ctrl-C; the doctor's farewell ends it.

use std::{io::IsTerminal, time::Duration};

use anyhow::Context;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::{Status, Streaming};
use township_proto::doctor::v1::{
    DoctorLine, PatientLine, ReplyResponse, Session, doctor_line, patient_line,
};
use township_proto::town;

use super::{Doctor, TalkArgs, connect, keys::KeyStore, show::Output};
use crate::{error::CliError, global::Global, input::StdinLines, output::unless_broken_pipe};

/// The longest line the doctor accepts, in characters (longer: INVALID_ARGUMENT).
const MAX_TEXT_CHARS: usize = 2000;

/// The prompt for the patient's name on a terminal, when `--name` is not given.
const NAME_PROMPT: &str = "Your name: ";

/// Words that end an interactive session when typed alone on a line (any case, with or without
/// a full stop or exclamation mark).
const QUIT_WORDS: [&str; 4] = ["quit", "exit", "bye", "goodbye"];

/// Runs `township doctor [talk]`: one session over `Converse`, until the input ends, the patient
/// quits (on a terminal) or Ctrl-C. A reader of the output that goes away early ends it too, and
/// is not a failure.
pub(super) async fn talk(args: TalkArgs, global: &Global) -> Result<(), CliError> {
    unless_broken_pipe(converse(args, global).await)
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
    let doctor = connect(global).await?;
    // Only now: until here Ctrl-C simply stops the command.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    // The patient's lines, each trimmed: surrounding spaces are never sent.
    let mut input = StdinLines::start()?;
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

    let keys = KeyStore::new()?;
    let patient_key = keys.get(&name)?.unwrap_or_default();
    let mut conversation =
        Conversation::open(&doctor, name.clone(), patient_key, global.timeout).await?;
    let session = conversation.greeting().await?;
    if !session.patient_key.is_empty() {
        // Kept before anything is shown: the doctor gives it this once. Never printed.
        if let Err(err) = keys.put(&name, &session.patient_key) {
            eprintln!(
                "township: {err}: the doctor will not know {name:?} again unless the operator \
                 issues a new key (doctor-server issue-key)"
            );
        }
    }
    out.greeting(&session)?;
    let mut unanswered = None;
    loop {
        out.prompt();
        let line = tokio::select! {
            line = input.next_trimmed() => line,
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
                    service: doctor.service(),
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
async fn ask_name(input: &mut StdinLines, interrupt: &mut Signal, out: Output) -> Option<String> {
    loop {
        out.ask(NAME_PROMPT);
        let line = tokio::select! {
            line = input.next_trimmed() => line,
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
    /// Opens the stream; its first message names the patient, with their key (empty: none).
    async fn open(
        doctor: &'d Doctor,
        name: String,
        patient_key: String,
        timeout: Duration,
    ) -> Result<Self, CliError> {
        let (outgoing, lines) = mpsc::channel(1);
        let first = PatientLine {
            kind: Some(patient_line::Kind::PatientName(name)),
            patient_key,
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
            patient_key: String::new(),
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
        service: town::DOCTOR.name,
        status: Status::deadline_exceeded(format!(
            "no answer within {} (--timeout)",
            humantime::format_duration(timeout)
        )),
    }
}

/// The error for a doctor that broke the Converse protocol by sending `what`.
fn unexpected(what: &str) -> CliError {
    CliError::Unexpected {
        service: town::DOCTOR.name,
        message: format!("the conversation went wrong: it sent {what}"),
    }
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
}
