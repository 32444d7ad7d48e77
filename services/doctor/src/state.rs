//! The per-patient state of the 1966 engine: plain data (LIMIT, the memory queue, where each
//! decomposition rule and NONE are in their reassembly cycles) that a service can persist as
//! JSON and restore, so a conversation continues exactly where it stopped.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

/// The JSON layout version written by [`EngineState::to_json`].
const VERSION: u64 = 1;

/// A state document that cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid saved state: {0}")]
pub struct StateError(pub String);

/// One patient's engine state. A fresh state has LIMIT 1, no memories and every cycle at its
/// first reassembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineState {
    limit: u8,
    memories: VecDeque<String>,
    /// (keyword, rule index within the keyword's entry) → index of the next reassembly.
    cursors: BTreeMap<(String, usize), usize>,
    none_cursor: usize,
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState::new()
    }
}

impl EngineState {
    /// A fresh state for a new conversation.
    pub fn new() -> Self {
        EngineState {
            limit: 1,
            memories: VecDeque::new(),
            cursors: BTreeMap::new(),
            none_cursor: 0,
        }
    }

    /// The LIMIT counter, always 1..=4; it advances at the start of every input.
    pub fn limit(&self) -> u8 {
        self.limit
    }

    /// The memory queue, oldest first.
    pub fn memories(&self) -> impl ExactSizeIterator<Item = &str> {
        self.memories.iter().map(String::as_str)
    }

    /// Replaces the memory queue (oldest first): a service that keeps one queue per patient in
    /// its storage hands it in before a reply and takes it back after.
    pub fn replace_memories(&mut self, memories: impl IntoIterator<Item = String>) {
        self.memories = memories.into_iter().collect();
    }

    /// The index of the reassembly the `rule`-th decomposition rule (0-based, in script order) of
    /// `keyword` uses next; 0 for a rule never used.
    pub fn cursor(&self, keyword: &str, rule: usize) -> usize {
        self.cursors
            .get(&(keyword.to_string(), rule))
            .copied()
            .unwrap_or(0)
    }

    /// Every rule not at the start of its cycle, as (keyword, rule index, next reassembly index).
    pub fn cursors(&self) -> impl Iterator<Item = (&str, usize, usize)> {
        self.cursors
            .iter()
            .map(|((keyword, rule), next)| (keyword.as_str(), *rule, *next))
    }

    /// The index of the NONE reassembly used next.
    pub fn none_cursor(&self) -> usize {
        self.none_cursor
    }

    /// The state as a JSON document:
    /// `{"version":1,"limit":2,"memories":["..."],"cursors":[{"keyword":"MY","rule":0,"next":1}],
    /// "none_cursor":0}`. [`EngineState::from_json`] restores it exactly.
    pub fn to_json(&self) -> Value {
        let cursors: Vec<Value> = self
            .cursors()
            .map(|(keyword, rule, next)| json!({"keyword": keyword, "rule": rule, "next": next}))
            .collect();
        json!({
            "version": VERSION,
            "limit": self.limit,
            "memories": self.memories.iter().collect::<Vec<_>>(),
            "cursors": cursors,
            "none_cursor": self.none_cursor,
        })
    }

    /// Restores a state written by [`EngineState::to_json`]; refuses anything else (wrong version,
    /// LIMIT outside 1..=4, missing or mistyped fields).
    pub fn from_json(value: &Value) -> Result<Self, StateError> {
        if field(value, "version")?.as_u64() != Some(VERSION) {
            return Err(StateError(format!("version must be {VERSION}")));
        }
        let limit = u8::try_from(number(value, "limit")?)
            .ok()
            .filter(|limit| (1..=4).contains(limit))
            .ok_or_else(|| StateError("limit must be 1..=4".into()))?;
        let memories = strings(field(value, "memories")?, "memories")?.into();
        let mut cursors = BTreeMap::new();
        for cursor in array(field(value, "cursors")?, "cursors")? {
            let keyword = text(field(cursor, "keyword")?, "keyword")?;
            let key = (keyword, number(cursor, "rule")?);
            cursors.insert(key, number(cursor, "next")?);
        }
        Ok(EngineState {
            limit,
            memories,
            cursors,
            none_cursor: number(value, "none_cursor")?,
        })
    }

    /// Advances LIMIT (1 → 2 → 3 → 4 → 1) and returns the new value.
    pub(crate) fn advance_limit(&mut self) -> u8 {
        self.limit = self.limit % 4 + 1;
        self.limit
    }

    /// Queues a memory (newest last).
    pub(crate) fn push_memory(&mut self, memory: String) {
        self.memories.push_back(memory);
    }

    /// Takes the oldest memory.
    pub(crate) fn pop_memory(&mut self) -> Option<String> {
        self.memories.pop_front()
    }

    /// The reassembly index to use now for a rule with `count` reassemblies, moving its cycle on.
    pub(crate) fn take_reassembly(&mut self, keyword: &str, rule: usize, count: usize) -> usize {
        let key = (keyword.to_string(), rule);
        let now = self.cursors.get(&key).copied().unwrap_or(0) % count.max(1);
        let next = (now + 1) % count.max(1);
        if next == 0 {
            self.cursors.remove(&key);
        } else {
            self.cursors.insert(key, next);
        }
        now
    }

    /// The NONE reassembly index to use now, moving NONE's cycle on.
    pub(crate) fn take_none(&mut self, count: usize) -> usize {
        let now = self.none_cursor % count.max(1);
        self.none_cursor = (now + 1) % count.max(1);
        now
    }
}

/// A required field of a JSON object.
pub(crate) fn field<'a>(value: &'a Value, name: &str) -> Result<&'a Value, StateError> {
    value
        .get(name)
        .ok_or_else(|| StateError(format!("missing field {name}")))
}

/// A required non-negative integer field.
pub(crate) fn number(value: &Value, name: &str) -> Result<usize, StateError> {
    field(value, name)?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| StateError(format!("{name} must be a non-negative integer")))
}

/// A JSON string.
pub(crate) fn text(value: &Value, name: &str) -> Result<String, StateError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| StateError(format!("{name} must be a string")))
}

/// A JSON array.
pub(crate) fn array<'a>(value: &'a Value, name: &str) -> Result<&'a Vec<Value>, StateError> {
    value
        .as_array()
        .ok_or_else(|| StateError(format!("{name} must be an array")))
}

/// A JSON array of strings.
pub(crate) fn strings(value: &Value, name: &str) -> Result<Vec<String>, StateError> {
    array(value, name)?
        .iter()
        .map(|item| text(item, name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_cycles_from_one_through_four() {
        let mut state = EngineState::new();
        let limits: Vec<u8> = (0..6).map(|_| state.advance_limit()).collect();
        assert_eq!(limits, [2, 3, 4, 1, 2, 3]);
    }

    #[test]
    fn a_reassembly_cycle_wraps_and_forgets_rules_back_at_the_start() {
        let mut state = EngineState::new();
        let taken: Vec<usize> = (0..4).map(|_| state.take_reassembly("MY", 1, 3)).collect();
        assert_eq!(taken, [0, 1, 2, 0]);
        assert_eq!(state.cursor("MY", 1), 1);
        state.take_reassembly("MY", 1, 3);
        state.take_reassembly("MY", 1, 3);
        assert_eq!(state.cursors().count(), 0);
    }

    #[test]
    fn the_json_form_round_trips() {
        let mut state = EngineState::new();
        state.advance_limit();
        state.push_memory("EARLIER YOU SAID YOUR DOG BITES".into());
        state.take_reassembly("I", 2, 5);
        state.take_none(4);
        let json = state.to_json();
        assert_eq!(EngineState::from_json(&json), Ok(state));
    }

    #[test]
    fn a_bad_document_is_refused() {
        let mut json = EngineState::new().to_json();
        json["limit"] = json!(7);
        assert!(EngineState::from_json(&json).is_err());
        assert!(EngineState::from_json(&json!({"version": 1})).is_err());
        assert!(EngineState::from_json(&json!([])).is_err());
    }
}
