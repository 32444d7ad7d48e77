//! The simpler classic doctor (the textbook exercise): for each input, by a seeded roll of 1–5,
//!
//! - 1 or 2: a hedge ("Please tell me more.", ...);
//! - 3, once there are at least [`HISTORY_BEFORE_RECALL`] earlier inputs: "Earlier you said that
//!   ..." with a randomly chosen earlier input, person-changed;
//! - otherwise: a qualifier ("Why do you say that", ...) and the input, person-changed.
//!
//! The person change swaps I/me/we/us → you, my → your, mine → yours, myself → yourself, am → are,
//! I'm → you're and back you → I, your → my, yours → mine, yourself → myself, you're → I'm.
//! Randomness comes from a SplitMix64 generator whose state is part of [`ClassicState`], so a
//! seed makes a conversation reproducible and a saved state continues it identically.

use serde_json::{Value, json};

use crate::engine::Reply;
use crate::state::{StateError, field, strings};

/// The JSON layout version written by [`ClassicState::to_json`].
const VERSION: u64 = 1;

/// How many earlier inputs there must be before "Earlier you said that ..." can be chosen.
pub const HISTORY_BEFORE_RECALL: usize = 3;

/// How many earlier inputs are kept (the oldest are forgotten first).
pub const HISTORY_KEPT: usize = 50;

const HEDGES: &[&str] = &[
    "Please tell me more.",
    "Many of my patients tell me the same thing.",
    "Please continue.",
];

/// Qualifiers and the punctuation that ends a reply built on them.
const QUALIFIERS: &[(&str, char)] = &[
    ("Why do you say that", '?'),
    ("You seem to think that", '.'),
    ("Can you explain why", '?'),
];

/// Lower-case word → its person-changed form.
const PERSON_CHANGE: &[(&str, &str)] = &[
    ("i", "you"),
    ("me", "you"),
    ("my", "your"),
    ("we", "you"),
    ("us", "you"),
    ("mine", "yours"),
    ("myself", "yourself"),
    ("am", "are"),
    ("i'm", "you're"),
    ("you", "I"),
    ("your", "my"),
    ("yours", "mine"),
    ("yourself", "myself"),
    ("you're", "I'm"),
];

/// One patient's classic-mode state: the random generator and the earlier inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicState {
    rng: u64,
    history: Vec<String>,
}

impl ClassicState {
    /// A fresh state whose random choices are fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        ClassicState {
            rng: seed,
            history: Vec::new(),
        }
    }

    /// The earlier inputs, oldest first (at most [`HISTORY_KEPT`]).
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// The generator's current state (equal states make equal choices).
    pub fn rng_state(&self) -> u64 {
        self.rng
    }

    /// `{"version":1,"rng":123,"history":["..."]}`; [`ClassicState::from_json`] restores it.
    pub fn to_json(&self) -> Value {
        json!({"version": VERSION, "rng": self.rng, "history": self.history})
    }

    /// Restores a state written by [`ClassicState::to_json`]; refuses anything else.
    pub fn from_json(value: &Value) -> Result<Self, StateError> {
        if field(value, "version")?.as_u64() != Some(VERSION) {
            return Err(StateError(format!("version must be {VERSION}")));
        }
        let rng = field(value, "rng")?
            .as_u64()
            .ok_or_else(|| StateError("rng must be an unsigned 64-bit integer".into()))?;
        let history = strings(field(value, "history")?, "history")?;
        if history.len() > HISTORY_KEPT {
            return Err(StateError(format!(
                "history holds more than {HISTORY_KEPT} inputs"
            )));
        }
        Ok(ClassicState { rng, history })
    }

    /// SplitMix64: the next pseudo-random number.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A pseudo-random index below `count` (0 when `count` is 0).
    fn below(&mut self, count: usize) -> usize {
        let count = u64::try_from(count.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % count).unwrap_or(0)
    }

    fn remember(&mut self, input: String) {
        self.history.push(input);
        if self.history.len() > HISTORY_KEPT {
            self.history.remove(0);
        }
    }
}

/// The classic doctor. Like [`crate::Engine`], it holds nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Classic;

impl Classic {
    /// The greeting of classic mode.
    pub fn greeting() -> Reply {
        let text = "Good day. What would you like to talk about?".to_string();
        Reply {
            display_text: text.clone(),
            text,
        }
    }

    /// The reply to one input. `text` and `display_text` are the same sentence. An input with no
    /// words gets a hedge and is not remembered.
    pub fn reply(state: &mut ClassicState, input: &str) -> Reply {
        let text = respond(state, input);
        Reply {
            display_text: text.clone(),
            text,
        }
    }
}

fn respond(state: &mut ClassicState, input: &str) -> String {
    let sentence = input
        .trim()
        .trim_end_matches(['.', '!', '?', ';', ','])
        .trim();
    if sentence.is_empty() {
        return hedge(state);
    }
    let roll = state.below(5) + 1;
    let reply = if roll <= 2 {
        hedge(state)
    } else if roll == 3 && state.history.len() >= HISTORY_BEFORE_RECALL {
        let earlier = state.below(state.history.len());
        let said = state.history.get(earlier).cloned().unwrap_or_default();
        format!("Earlier you said that {}.", change_person(&said))
    } else {
        let (qualifier, end) = QUALIFIERS[state.below(QUALIFIERS.len())];
        format!("{qualifier} {}{end}", change_person(sentence))
    };
    state.remember(sentence.to_string());
    reply
}

fn hedge(state: &mut ClassicState) -> String {
    HEDGES[state.below(HEDGES.len())].to_string()
}

/// The sentence seen from the other side: each word is swapped as the module notes list
/// (case-insensitively, keeping punctuation around it); other words stay as typed, except that a
/// capitalised first word is lower-cased because it no longer starts the sentence.
pub fn change_person(sentence: &str) -> String {
    sentence
        .split_whitespace()
        .enumerate()
        .map(|(index, word)| change_word(word, index == 0))
        .collect::<Vec<_>>()
        .join(" ")
}

fn change_word(word: &str, first: bool) -> String {
    let Some(start) = word.find(char::is_alphanumeric) else {
        return word.to_string();
    };
    let end = word
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_alphanumeric())
        .map_or(word.len(), |(i, c)| i + c.len_utf8());
    let (before, core, after) = (&word[..start], &word[start..end], &word[end..]);
    let lower = core.to_lowercase().replace('\u{2019}', "'");
    let changed = match PERSON_CHANGE.iter().find(|(from, _)| *from == lower) {
        Some((_, to)) => (*to).to_string(),
        None if first && !is_acronym(core) => lower_first(core),
        None => core.to_string(),
    };
    format!("{before}{changed}{after}")
}

fn is_acronym(word: &str) -> bool {
    word.chars().count() > 1 && !word.chars().any(char::is_lowercase)
}

fn lower_first(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_person_changes_both_ways() {
        assert_eq!(
            change_person("My mother says I am lazy and you agree with me"),
            "your mother says you are lazy and I agree with you"
        );
        assert_eq!(
            change_person("We told us, it is mine!"),
            "you told you, it is yours!"
        );
        assert_eq!(change_person("Your dog likes yours"), "my dog likes mine");
        assert_eq!(change_person("NASA hates me"), "NASA hates you");
        assert_eq!(change_person("I'm tired"), "you're tired");
    }

    #[test]
    fn splitmix_is_deterministic_for_a_seed() {
        let mut a = ClassicState::new(7);
        let mut b = ClassicState::new(7);
        let first: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn splitmix_matches_its_reference_value() {
        let mut state = ClassicState::new(0);
        assert_eq!(state.next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn history_keeps_only_the_latest_inputs() {
        let mut state = ClassicState::new(1);
        for n in 0..(HISTORY_KEPT + 5) {
            Classic::reply(&mut state, &format!("input {n}"));
        }
        assert_eq!(state.history().len(), HISTORY_KEPT);
        assert_eq!(state.history()[0], "input 5");
    }
}
