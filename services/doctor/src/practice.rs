//! The practice: open sessions (one engine state per session), patients' names, idle timeouts,
//! and the bridge between the engines and the records. No gRPC in here.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;

use crate::{
    Classic, ClassicState, Engine, EngineState, Reply, Script,
    error::Error,
    records::{Exchange, Outcome, Records},
    types::PatientName,
};

/// Most sessions open at once.
pub const MAX_SESSIONS: usize = 10_000;
/// Most sessions one patient may have open at once.
pub const MAX_SESSIONS_PER_PATIENT: usize = 8;
/// What every session ends with.
pub const FAREWELL: &str = "Have a nice day!";

/// Which doctor the server runs.
#[derive(Clone, Debug)]
pub enum Doctor {
    /// The 1966 engine with a script.
    Script(Arc<Script>),
    /// The simpler classic doctor, its random choices seeded.
    Classic {
        /// The seed of every new patient's generator.
        seed: u64,
    },
}

/// One session's engine state.
#[derive(Clone, Debug)]
enum Mind {
    Script(EngineState),
    Classic(ClassicState),
}

impl Doctor {
    fn fresh_mind(&self) -> Mind {
        match self {
            Doctor::Script(_) => Mind::Script(EngineState::new()),
            Doctor::Classic { seed } => Mind::Classic(ClassicState::new(*seed)),
        }
    }

    /// The mind saved after the patient's last exchange, or a fresh one if there is none or it
    /// belongs to another mode (the server was restarted with another `--mode`).
    fn restore(&self, saved: Option<&str>) -> Mind {
        let saved: Option<Value> = saved.and_then(|text| serde_json::from_str(text).ok());
        let restored = saved.and_then(|value| match self {
            Doctor::Script(_) => EngineState::from_json(&value).ok().map(Mind::Script),
            Doctor::Classic { .. } => ClassicState::from_json(&value).ok().map(Mind::Classic),
        });
        restored.unwrap_or_else(|| self.fresh_mind())
    }

    fn greeting(&self, returning: Option<&PatientName>) -> Reply {
        match (self, returning) {
            (Doctor::Script(script), None) => Engine::greeting(script),
            (Doctor::Classic { .. }, None) => Classic::greeting(),
            // The name leads, so one ending in `.` reads well; people see it as they wrote it.
            (Doctor::Script(_), Some(name)) => Reply {
                text: format!(
                    "{}, WELCOME BACK. WHAT WOULD YOU LIKE TO TALK ABOUT TODAY",
                    name.as_str().to_uppercase()
                ),
                display_text: welcome_back(name),
            },
            (Doctor::Classic { .. }, Some(name)) => {
                let text = welcome_back(name);
                Reply {
                    display_text: text.clone(),
                    text,
                }
            }
        }
    }

    /// Answers `input` with the patient's shared memory queue `memories`.
    fn think(&self, mind: &mut Mind, memories: Vec<String>, input: &str) -> (Reply, Outcome) {
        match (self, mind) {
            (Doctor::Script(script), Mind::Script(state)) => {
                let before = memories.len();
                state.replace_memories(memories);
                let reply = Engine::reply(script, state, input);
                let after: Vec<String> = state.memories().map(str::to_owned).collect();
                state.replace_memories(Vec::new());
                let outcome = Outcome {
                    reply: reply.text.clone(),
                    mind: state.to_json().to_string(),
                    recalled_oldest: after.len() < before,
                    laid_down: after.get(before..).unwrap_or_default().to_vec(),
                };
                (reply, outcome)
            }
            (_, mind) => {
                let state = match mind {
                    Mind::Classic(state) => state,
                    Mind::Script(_) => {
                        *mind = self.fresh_mind();
                        return self.think(mind, memories, input);
                    }
                };
                let reply = Classic::reply(state, input);
                let outcome = Outcome {
                    reply: reply.text.clone(),
                    mind: state.to_json().to_string(),
                    recalled_oldest: false,
                    laid_down: Vec::new(),
                };
                (reply, outcome)
            }
        }
    }
}

fn welcome_back(name: &PatientName) -> String {
    format!(
        "{}, welcome back. What would you like to talk about today?",
        name.as_str()
    )
}

/// A new session, as StartSession answers it.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The session's id (random; the only way to reach the session).
    pub session_id: String,
    /// The greeting.
    pub greeting: Reply,
    /// Sessions the patient had before this one.
    pub previous_visits: i64,
    /// A new patient's key, shown to them this once.
    pub patient_key: Option<String>,
}

/// An open session: its patient (by match key, to count their sessions without waiting for a
/// session's lock) and its visit.
struct Open {
    patient_key: String,
    visit: Arc<AsyncMutex<Visit>>,
}

struct Visit {
    patient: PatientName,
    mind: Mind,
    last_seen: Instant,
}

/// Every open session, the doctor and the records.
pub struct Practice {
    doctor: Doctor,
    records: Records,
    idle_timeout: Duration,
    sessions: Mutex<HashMap<String, Open>>,
    /// Held while a session opens, so that a patient's open sessions are counted and added to
    /// in one step (starts are one write transaction each anyway, on the records' one writer).
    opening: AsyncMutex<()>,
}

impl Practice {
    /// A practice with no open sessions.
    pub fn new(doctor: Doctor, records: Records, idle_timeout: Duration) -> Self {
        Self {
            doctor,
            records,
            idle_timeout,
            sessions: Mutex::new(HashMap::new()),
            opening: AsyncMutex::new(()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a session for `patient`, who presents `patient_key` (ignored for a new patient, who
    /// gets one): recorded as a visit, greeted as new or returning, and continuing from the
    /// patient's last exchange (any earlier session's). A known patient without their key is
    /// [`Error::Denied`], before anything about them is read.
    pub async fn start(&self, patient: PatientName, patient_key: &str) -> Result<Opened, Error> {
        let _opening = self.opening.lock().await;
        let open = self.sessions().len();
        if open >= MAX_SESSIONS {
            return Err(Error::Full(open));
        }
        let session_id = uuid::Uuid::new_v4().simple().to_string();
        let admit = || {
            let theirs = self
                .sessions()
                .values()
                .filter(|open| open.patient_key == patient.key())
                .count();
            if theirs >= MAX_SESSIONS_PER_PATIENT {
                return Err(Error::PatientFull(theirs));
            }
            Ok(())
        };
        let chart = self
            .records
            .start_visit(
                patient.key(),
                patient.as_str(),
                &session_id,
                patient_key,
                admit,
            )
            .await?;
        let returning = chart.previous_visits > 0;
        let greeting = self.doctor.greeting(returning.then_some(&patient));
        let visit = Visit {
            mind: self.doctor.restore(chart.last_mind.as_deref()),
            patient,
            last_seen: Instant::now(),
        };
        let open = Open {
            patient_key: visit.patient.key().to_owned(),
            visit: Arc::new(AsyncMutex::new(visit)),
        };
        self.sessions().insert(session_id.clone(), open);
        Ok(Opened {
            session_id,
            greeting,
            previous_visits: chart.previous_visits,
            patient_key: chart.new_key,
        })
    }

    /// The doctor's answer to `text` in session `session_id`; committed before it is returned.
    /// Calls on one session are answered one at a time, in order.
    pub async fn reply(&self, session_id: &str, text: &str) -> Result<Reply, Error> {
        let visit = self
            .sessions()
            .get(session_id)
            .map(|open| open.visit.clone())
            .ok_or_else(|| Error::NoSession(session_id.to_owned()))?;
        let mut visit = visit.lock().await;
        let visit = &mut *visit;
        let mut mind = visit.mind.clone();
        let mut reply = None;
        self.records
            .exchange(visit.patient.key(), session_id, text, |memories| {
                let (answer, outcome) = self.doctor.think(&mut mind, memories, text);
                reply = Some(answer);
                outcome
            })
            .await?;
        // Only a committed exchange moves the session on.
        visit.mind = mind;
        visit.last_seen = Instant::now();
        Ok(reply.unwrap_or_else(|| Reply::new(String::new())))
    }

    /// Ends a session.
    pub fn end(&self, session_id: &str) -> Result<&'static str, Error> {
        self.sessions()
            .remove(session_id)
            .map(|_| FAREWELL)
            .ok_or_else(|| Error::NoSession(session_id.to_owned()))
    }

    /// Ends every session idle for longer than the idle timeout (everything they said is
    /// already in the records); returns how many ended.
    pub fn end_idle(&self) -> usize {
        let now = Instant::now();
        let mut sessions = self.sessions();
        let before = sessions.len();
        sessions.retain(|_, open| match open.visit.try_lock() {
            Ok(visit) => now.duration_since(visit.last_seen) < self.idle_timeout,
            Err(_) => true,
        });
        before - sessions.len()
    }

    /// How often [`Practice::end_idle`] should run.
    pub fn idle_check_interval(&self) -> Duration {
        (self.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// Up to `limit` exchanges of `patient`, who presents `patient_key`, after the exchange
    /// `after` (`None`: from the first), oldest first. [`Error::Denied`] for a wrong key and for
    /// a name the records do not know alike.
    pub async fn history(
        &self,
        patient: &PatientName,
        patient_key: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Exchange>, Error> {
        self.records.check_key(patient.key(), patient_key).await?;
        self.records.history(patient.key(), after, limit).await
    }
}
