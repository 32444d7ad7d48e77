//! Saving and restoring a patient's engine state.

use township_doctor::{Engine, EngineState, Script};

const FIRST_VISIT: &[&str] = &[
    "My father drinks too much.",
    "I am unhappy.",
    "It is nothing.",
    "I am unhappy.",
    "Hello.",
    "My sister never calls me.",
];

const SECOND_VISIT: &[&str] = &[
    "I am unhappy.",
    "Nothing much.",
    "Still nothing.",
    "Nothing at all.",
    "The weather.",
    "Hello.",
    "I am unhappy.",
];

#[test]
fn a_restored_state_continues_identically() {
    let script = Script::default_doctor();
    let mut original = EngineState::new();
    for input in FIRST_VISIT {
        Engine::reply(&script, &mut original, input);
    }
    let saved = serde_json::to_string(&original.to_json()).expect("serialises");
    let value: serde_json::Value = serde_json::from_str(&saved).expect("parses");
    let mut restored = EngineState::from_json(&value).expect("restores");
    assert_eq!(restored, original);

    for input in SECOND_VISIT {
        let expected = Engine::reply(&script, &mut original, input);
        let actual = Engine::reply(&script, &mut restored, input);
        assert_eq!(actual, expected, "after restoring, to {input:?}");
    }
}

#[test]
fn the_saved_state_exposes_limit_memories_and_cycles() {
    let script = Script::default_doctor();
    let mut state = EngineState::new();
    for input in FIRST_VISIT {
        Engine::reply(&script, &mut state, input);
    }
    assert_eq!(state.limit(), 3);
    assert_eq!(
        state.memories().collect::<Vec<_>>(),
        ["I KEEP THINKING ABOUT HOW YOUR SISTER NEVER CALLS YOU"],
        "the first memory was recalled by the third input (LIMIT 4, no keyword)"
    );
    assert!(
        state
            .cursors()
            .any(|(keyword, _, next)| keyword == "I" && next == 2)
    );
    assert_eq!(state.none_cursor(), 0);
    let json = state.to_json();
    assert_eq!(json["limit"], 3);
    assert_eq!(json["version"], 1);
}

#[test]
fn a_saved_state_from_an_edited_script_still_answers() {
    let script =
        township_doctor::Script::parse("(HI) START (X ((0) (ONE) (TWO))) (NONE ((0) (GO ON)))")
            .expect("parses");
    let json = serde_json::json!({
        "version": 1,
        "limit": 4,
        "memories": [],
        "cursors": [
            {"keyword": "X", "rule": 0, "next": 7},
            {"keyword": "GONE", "rule": 3, "next": 1}
        ],
        "none_cursor": 12
    });
    let mut state = EngineState::from_json(&json).expect("restores");
    assert_eq!(Engine::reply(&script, &mut state, "x").text, "TWO");
    assert_eq!(Engine::reply(&script, &mut state, "y").text, "GO ON");
}
