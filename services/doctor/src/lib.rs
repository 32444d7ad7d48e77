//! The Township doctor: a non-directive psychotherapist bot faithful to Weizenbaum's 1966 ELIZA
//! DOCTOR design, driven by scripts in the 1966 format, that remembers every patient by name
//! across visits and restarts.
//!
//! The engine has no gRPC and no storage in it:
//!
//! - [`script`]: the 1966 script format — [`Script::parse`] with errors carrying line and column,
//!   and Township's own script [`DEFAULT_SCRIPT`] / [`Script::default_doctor`].
//! - [`engine`]: the processing of one input ([`Engine::reply`]), a [`Session`] helper and
//!   [`display_text`].
//! - [`state`]: the per-patient [`EngineState`] (LIMIT, memories, reassembly cycles) and its JSON.
//! - [`hash`]: SLIP's `HASH`, which picks MEMORY's transformation.
//! - [`classic`]: the simpler classic doctor, seeded.
//! - [`transcript`]: replaying transcripts of inputs and expected replies.
//!
//! The service around it:
//!
//! - [`types`]: patients' names, what they say, and each request message read once;
//! - [`records`]: patients, visits, exchanges and memories, append-only in SQLite or PostgreSQL;
//! - [`practice`]: open sessions, names, idle timeouts, the engines meeting the records;
//! - [`service`]: the gRPC API; [`run`] serves it.
//!
//! ```
//! use township_doctor::{Engine, EngineState, Script};
//!
//! let script = Script::default_doctor();
//! let mut state = EngineState::new();
//! let reply = Engine::reply(&script, &mut state, "I am unhappy");
//! assert!(!reply.text.is_empty());
//! ```

pub mod classic;
mod diagnostic;
pub mod engine;
mod error;
pub mod hash;
mod matching;
pub mod practice;
pub mod records;
pub mod script;
pub mod service;
mod sexp;
pub mod state;
pub mod transcript;
pub mod types;

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use township_kit::{ServeOptions, ServiceSet, Shutdown};
use township_proto::doctor::v1::doctor_service_server::DoctorServiceServer;
use township_store::Database;

pub use classic::{Classic, ClassicState};
pub use engine::{Engine, Reply, Session, display_text};
pub use error::Error;
pub use practice::Doctor;
pub use script::{DEFAULT_SCRIPT, Script, ScriptError, ScriptProblem};
pub use service::DoctorApi;
pub use state::{EngineState, StateError};
pub use transcript::{Transcript, TranscriptError, replay_classic, replay_script};

/// The doctor's default gRPC port.
pub const DEFAULT_PORT: u16 = township_proto::town::DOCTOR.port;

/// Everything the doctor server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shared server settings.
    pub serve: ServeOptions,
    /// The server's own directory (held, so that two servers never share one).
    pub data_dir: PathBuf,
    /// Where the records are kept: by default `doctor.db` in `data_dir`.
    pub database: Database,
    /// Which doctor (script or classic).
    pub doctor: Doctor,
    /// How long a session may go unspoken before it ends.
    pub idle_timeout: Duration,
}

/// Serves the doctor on `listener` until `shutdown` fires: open Converse streams end with a
/// farewell, idle sessions end on their own meanwhile.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    // Held until the server stops: a second server on this directory refuses to start (exit 75).
    let _data_dir = township_kit::DataDirLock::exclusive(&config.data_dir).await?;
    let records = records::Records::open(&config.database).await?;
    let tokens = records.page_tokens().await?;
    let practice = Arc::new(practice::Practice::new(
        config.doctor,
        records,
        config.idle_timeout,
    ));
    let reaper = tokio::spawn(end_idle_sessions(practice.clone(), shutdown.clone()));
    let api = DoctorApi::new(practice, tokens, shutdown.clone());
    let server =
        DoctorServiceServer::new(api).max_decoding_message_size(config.serve.max_message_bytes);
    let services = ServiceSet::new().add_service(server);
    let served = township_kit::serve(listener, &config.serve, services, shutdown.clone()).await;
    shutdown.cancel();
    let _ = reaper.await;
    served
}

/// Gives the patient named `name` in the records in `database` a new key, which replaces any
/// they had, and returns it (see `doctor-server issue-key`). Safe beside running servers: it
/// takes the patient as an exchange does, and every session start reads the key anew. Never
/// creates a SQLite file: a directory without one, or a name the records do not know, is an
/// error.
pub async fn issue_key(database: &Database, name: &str) -> anyhow::Result<String> {
    let place = match database {
        Database::Sqlite { dir, file } => {
            let path = dir.join(file);
            anyhow::ensure!(
                path.exists(),
                "no doctor records at {} (is --data-dir the doctor's?)",
                path.display()
            );
            path.display().to_string()
        }
        Database::Postgres(postgres) => postgres.to_string(),
    };
    let patient = types::PatientName::parse("name", name)?;
    let records = records::Records::open(database).await?;
    records
        .issue_key(patient.key())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no patient named {name:?} in {place}"))
}

async fn end_idle_sessions(practice: Arc<practice::Practice>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(practice.idle_check_interval());
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let ended = practice.end_idle();
                if ended > 0 {
                    tracing::info!(ended, "idle sessions ended");
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}
