//! The DOCTOR script reader (`Script::parse`) on any text, and every script it accepts answering
//! patients: a script that parses must never make the engine panic, and must always answer
//! (`Script::parse`'s promise), and the state it saves after each reply reads back as it was. The input is the script, then optionally a NUL byte and the
//! patient's lines, one per line.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use township_doctor::{EngineState, Script, Session};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (script, lines) = text
        .split_once('\0')
        .unwrap_or((text, "I AM SAD\nMY MOTHER HATES ME"));
    let Ok(script) = Script::parse(script) else {
        return;
    };
    let mut session = Session::new(Arc::new(script));
    session.greeting();
    for line in lines.lines().take(20) {
        session.reply(line);
        // The state the practice saves after each reply must read back as it was.
        let saved = session.state().to_json();
        let restored = EngineState::from_json(&saved).expect("a saved state reads back");
        assert_eq!(&restored, session.state());
    }
});
