//! `doctor-server`: parses its config (including the script, which must parse), starts tracing,
//! binds, announces and serves until a signal. `doctor-server issue-key` gives a patient a new key
//! instead, and prints it.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use township_doctor::{Config, DEFAULT_PORT, Doctor, Script};
use township_kit::{ServerArgs, config, net, shutdown};
use township_store::DatabaseArgs;

/// The Township doctor (gRPC `township.doctor.v1.DoctorService`).
#[derive(Debug, Parser)]
#[command(name = "doctor-server", version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    #[command(subcommand)]
    command: Option<Command>,

    /// Which doctor: `eliza` (the 1966 engine with a script) or `classic` (hedges, qualifiers
    /// and "Earlier you said that ...").
    #[arg(long, env = "TOWNSHIP_DOCTOR_MODE", value_enum, default_value_t = Mode::Eliza)]
    mode: Mode,

    /// A script in the 1966 format for `eliza` mode. Default: Township's own DOCTOR script. A
    /// script with an error is refused at start with its line and column.
    #[arg(long, env = "TOWNSHIP_DOCTOR_SCRIPT", value_name = "FILE", value_parser = load_script)]
    script: Option<Arc<Script>>,

    /// Seed of the classic doctor's random choices (the same seed, the same conversation).
    #[arg(long, env = "TOWNSHIP_DOCTOR_SEED", default_value_t = 1966)]
    seed: u64,

    /// A session nobody has spoken in for this long ends by itself (its exchanges are already
    /// stored).
    #[arg(long, env = "TOWNSHIP_DOCTOR_IDLE_TIMEOUT", default_value = "30m",
          value_parser = parse_idle_timeout)]
    idle_timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Give a known patient a new key and print it, once: for a patient stored before keys
    /// existed, or one who lost theirs (the old key stops working). Works with the server
    /// running or stopped.
    IssueKey {
        /// The doctor's data directory (as the server's --data-dir).
        #[arg(
            long,
            env = "TOWNSHIP_DATA_DIR",
            value_name = "DIR",
            default_value = "township-data/doctor"
        )]
        data_dir: PathBuf,

        /// The patient's name (case and spacing do not matter, as for the doctor).
        #[arg(long, value_name = "NAME")]
        name: String,

        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Eliza,
    Classic,
}

fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if timeout < Duration::from_secs(1) {
        return Err("must be at least 1s".to_owned());
    }
    Ok(timeout)
}

fn load_script(path: &str) -> Result<Arc<Script>, String> {
    let text = std::fs::read_to_string(PathBuf::from(path))
        .map_err(|err| format!("cannot read {path}: {err}"))?;
    Script::parse(&text)
        .map(Arc::new)
        .map_err(|err| format!("{path}: {err}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    config::run_server(|args: &Args| &args.server, serve).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    if let Some(Command::IssueKey {
        data_dir,
        name,
        database,
    }) = &args.command
    {
        let database = database.database(data_dir, "doctor.db")?;
        let key = township_doctor::issue_key(&database, name).await?;
        println!("{key}");
        return Ok(());
    }
    township_store::full::apply_test_flags(&args.server);
    let listener = net::bind(args.server.listen_or(DEFAULT_PORT)).await?;
    let doctor = match args.mode {
        Mode::Eliza => Doctor::Script(
            args.script
                .unwrap_or_else(|| Arc::new(Script::default_doctor())),
        ),
        Mode::Classic => Doctor::Classic { seed: args.seed },
    };
    let data_dir = args.server.data_dir_or("doctor");
    let config = Config {
        serve: (&args.server).into(),
        database: args.database.database(&data_dir, "doctor.db")?,
        data_dir,
        doctor,
        idle_timeout: args.idle_timeout,
    };
    let shutdown = shutdown::on_signals();
    net::announce("", &listener)?;
    township_doctor::run(listener, config, shutdown).await
}
