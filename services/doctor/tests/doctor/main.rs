//! The doctor engine's tests against its public API: each processing rule on small scripts of our
//! own, the script reader and its errors, saved state, classic mode and the transcripts.

mod classic;
mod parser;
mod rules;
mod state;
mod transcripts;

use township_doctor::{Engine, EngineState, Script};

/// Parses a test script, failing the test with the error's line and column.
pub fn script(text: &str) -> Script {
    Script::parse(text).unwrap_or_else(|err| panic!("test script does not parse: {err}"))
}

/// The replies (`text`) to `inputs`, in order, from a fresh state.
pub fn replies(script: &Script, inputs: &[&str]) -> Vec<String> {
    let mut state = EngineState::new();
    inputs
        .iter()
        .map(|input| Engine::reply(script, &mut state, input).text)
        .collect()
}

/// The reply to one input from a fresh state.
pub fn reply(script: &Script, input: &str) -> String {
    Engine::reply(script, &mut EngineState::new(), input).text
}
