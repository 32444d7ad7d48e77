//! Classic mode: hedges, qualifiers with the person changed, history, all seeded.

use township_doctor::{Classic, ClassicState};

const INPUTS: &[&str] = &[
    "I am tired of my job.",
    "My boss never listens to me.",
    "We argue all the time.",
    "You would not understand.",
    "I think I need a holiday.",
    "Mine is a hard life.",
    "Nobody helps us.",
    "I miss my old friends.",
];

fn conversation(seed: u64) -> Vec<String> {
    let mut state = ClassicState::new(seed);
    INPUTS
        .iter()
        .map(|input| Classic::reply(&mut state, input).text)
        .collect()
}

#[test]
fn classic_mode_is_deterministic_for_a_seed() {
    assert_eq!(conversation(42), conversation(42));
    assert_ne!(conversation(42), conversation(43));
}

#[test]
fn every_classic_reply_is_a_hedge_a_qualifier_or_a_recollection() {
    for seed in 0..20 {
        for reply in conversation(seed) {
            let hedge = [
                "Please tell me more.",
                "Many of my patients tell me the same thing.",
                "Please continue.",
            ]
            .contains(&reply.as_str());
            let qualified = [
                "Why do you say that ",
                "You seem to think that ",
                "Can you explain why ",
            ]
            .iter()
            .any(|q| reply.starts_with(q));
            let recalled = reply.starts_with("Earlier you said that ");
            assert!(hedge || qualified || recalled, "unexpected reply {reply:?}");
        }
    }
}

#[test]
fn earlier_inputs_are_recalled_only_after_a_few_and_person_changed() {
    let mut recalled_any = false;
    for seed in 0..50 {
        let replies = conversation(seed);
        for (index, reply) in replies.iter().enumerate() {
            if let Some(said) = reply.strip_prefix("Earlier you said that ") {
                assert!(index >= 3, "recalled with only {index} earlier inputs");
                let earlier: Vec<String> = INPUTS[..index]
                    .iter()
                    .map(|input| {
                        let sentence = input.trim_end_matches('.');
                        format!("{}.", township_doctor::classic::change_person(sentence))
                    })
                    .collect();
                assert!(earlier.iter().any(|e| e == said), "{said:?} was never said");
                recalled_any = true;
            }
        }
    }
    assert!(recalled_any, "no seed recalled anything");
}

#[test]
fn qualifiers_change_the_person() {
    let replies: Vec<String> = (0..30).flat_map(conversation).collect();
    assert!(replies.contains(&"Why do you say that you are tired of your job?".to_string()));
}

#[test]
fn a_restored_classic_state_continues_identically() {
    let mut original = ClassicState::new(7);
    for input in &INPUTS[..4] {
        Classic::reply(&mut original, input);
    }
    let mut restored = ClassicState::from_json(&original.to_json()).expect("restores");
    assert_eq!(restored, original);
    for input in &INPUTS[4..] {
        assert_eq!(
            Classic::reply(&mut restored, input),
            Classic::reply(&mut original, input)
        );
    }
}

#[test]
fn a_bad_classic_state_is_refused() {
    assert!(
        ClassicState::from_json(&serde_json::json!({"version": 1, "rng": -1, "history": []}))
            .is_err()
    );
    assert!(
        ClassicState::from_json(&serde_json::json!({"version": 2, "rng": 1, "history": []}))
            .is_err()
    );
}
