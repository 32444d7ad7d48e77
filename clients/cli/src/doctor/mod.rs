//! `township doctor`: a conversation with the doctor over its `Converse` stream, and a patient's
//! history. On a terminal it is the classic interactive session: the greeting, a `> ` prompt, the
//! doctor's answer to each line, and `quit`, Ctrl-D or Ctrl-C to leave with the farewell. From a
//! pipe it prints the greeting, then exactly one reply (the engine's `text`) per non-empty input
//! line and nothing else, so conversations can be piped in and compared with transcripts.
//!
//! Here: the arguments and the dispatch; `talk` holds the conversation, `show` how it is shown,
//! `history` the patient's history.

mod history;
mod keys;
mod show;
mod talk;

use clap::{Args, Subcommand};
use tonic::transport::Channel;
use township_proto::doctor::v1::doctor_service_client::DoctorServiceClient;
use township_proto::town;

use crate::{connect::Connection, error::CliError, global::Global, pages::Paging};

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
is welcomed back and the conversation continues from the last one. A patient's first session \
returns their key, which this command keeps in $TOWNSHIP_CONFIG_DIR/doctor/<name>.key (default \
~/.config/township; mode 0600) and sends at every later session and history: without it, the \
doctor refuses the name (exit 1) and tells nothing about the patient. A lost key, or one for a \
patient from before keys, comes from the operator: `doctor-server issue-key --name NAME` prints \
it; put it in that file.

Exit codes: 0 the session ended (also by Ctrl-C); 1 the doctor answered an error (e.g. a line of \
more than 2000 characters from a pipe, a name longer than 100 characters, or a session that ended \
after the server's idle timeout); 2 bad usage (no --name from a pipe); 3 the doctor could not be \
reached.";

const HISTORY_HELP: &str = "Each exchange is two lines: `> ` and what the patient said, `< ` and \
what the doctor answered (the engine's text), as in the doctor's transcripts; a line `# TIME  \
session started STARTED` comes before the first exchange of each session shown. With --json, one \
object per exchange with the fields session_started, time (RFC 3339, UTC), patient_text and \
doctor_text. The patient's key is read as for a conversation.";

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

    #[command(flatten)]
    paging: Paging,
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
        None => talk::talk(args.talk, global).await,
        Some(DoctorCommand::Talk(talk_args)) => talk::talk(talk_args, global).await,
        Some(DoctorCommand::History(history_args)) => history::history(history_args, global).await,
    }
}

/// A connection to the doctor.
type Doctor = Connection<DoctorServiceClient<Channel>>;

/// Connects: `--addr`, else env TOWNSHIP_DOCTOR_ADDR, else 127.0.0.1:50052.
async fn connect(global: &Global) -> Result<Doctor, CliError> {
    Connection::open(&town::DOCTOR, global, DoctorServiceClient::new).await
}
