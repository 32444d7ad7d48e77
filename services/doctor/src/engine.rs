//! The 1966 processing of one input, rule by rule as Weizenbaum's DOCTOR did it:
//!
//! 1. Upper-case the input and split it into words; `.` and `,` are separate delimiter tokens
//!    (`?`, `!` and `;` act like `.`), and the word BUT is a delimiter too.
//! 2. Advance LIMIT (1 → 2 → 3 → 4 → 1) first thing, so the first input runs with LIMIT 2.
//! 3. Scan left to right. At a delimiter: with no keyword yet, drop everything up to and
//!    including it; otherwise drop it and everything after. Substitute each word as it is scanned.
//!    A keyword ranked above every keyword so far goes on top of the keystack, any other at the
//!    bottom.
//! 4. No keyword, LIMIT 4 and a memory queued: the reply is the oldest memory (removed).
//! 5. Keywords are taken from the top. For the MEMORY keyword a memory is laid down first (the
//!    transformation at `HASH(last word, 2)`, if its decomposition matches). The first matching
//!    decomposition rule replies with its next reassembly (each rule cycles through its own);
//!    `(=KEY)` continues with KEY, `(NEWKEY)` with the next keyword on the stack, and
//!    `(PRE (...) (=KEY))` rewrites the input and continues with KEY. When no decomposition
//!    matches, the entry's own `(=KEY)` link is followed if it has one; otherwise, as in the
//!    1966 code, the keystack is abandoned.
//! 6. Whatever gives no reply ends with NONE's reassemblies, in turn.
//!
//! Links and PRE are bounded: after [`MAX_REDIRECTS`] of them in one input, or when PRE would
//! make the input longer than [`MAX_WORDS`] words, the engine stops and uses NONE, so a looping
//! script always answers.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::hash::hash;
use crate::matching::{Parts, decompose, reassemble};
use crate::script::{Reassembly, Script};
use crate::state::EngineState;

/// How many links and PRE rewrites one input may follow before the engine gives up and uses NONE.
pub const MAX_REDIRECTS: usize = 16;

/// The longest input (in words) a PRE rewrite may produce before the engine uses NONE.
pub const MAX_WORDS: usize = 1000;

/// One reply of the doctor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The reassembled words joined by single spaces, exactly as the engine produced them.
    pub text: String,
    /// The same in sentence case, for people (see [`display_text`]).
    pub display_text: String,
}

impl Reply {
    /// A reply whose display text is derived from `text` by [`display_text`].
    pub fn new(text: String) -> Self {
        Reply {
            display_text: display_text(&text),
            text,
        }
    }
}

/// The 1966 engine. It holds nothing: the script is shared and immutable, the state belongs to
/// one patient.
#[derive(Clone, Copy, Debug, Default)]
pub struct Engine;

impl Engine {
    /// The reply to one input, updating the patient's state (LIMIT, memories, reassembly
    /// cycles). Always answers: any input, including an empty one, gets a reply.
    pub fn reply(script: &Script, state: &mut EngineState, input: &str) -> Reply {
        Reply::new(respond(script, state, input))
    }

    /// The script's greeting as a reply.
    pub fn greeting(script: &Script) -> Reply {
        Reply::new(script.greeting())
    }
}

/// One patient's conversation: a shared script and that patient's state.
#[derive(Clone, Debug)]
pub struct Session {
    script: Arc<Script>,
    state: EngineState,
}

impl Session {
    /// A new conversation (fresh state).
    pub fn new(script: Arc<Script>) -> Self {
        Session::with_state(script, EngineState::new())
    }

    /// A conversation continuing from a saved state.
    pub fn with_state(script: Arc<Script>, state: EngineState) -> Self {
        Session { script, state }
    }

    /// The script's greeting.
    pub fn greeting(&self) -> Reply {
        Engine::greeting(&self.script)
    }

    /// The reply to one input; see [`Engine::reply`].
    pub fn reply(&mut self, input: &str) -> Reply {
        Engine::reply(&self.script, &mut self.state, input)
    }

    /// The state, e.g. to persist it.
    pub fn state(&self) -> &EngineState {
        &self.state
    }
}

/// The reply text for one input.
fn respond(script: &Script, state: &mut EngineState, input: &str) -> String {
    let limit = state.advance_limit();
    let (words, keystack) = scan(script, split_input(input));
    if keystack.is_empty()
        && limit == 4
        && let Some(memory) = state.pop_memory()
    {
        return memory;
    }
    match follow_keystack(script, state, words, keystack) {
        Outcome::Reply(reply) => reply,
        Outcome::Unanswered(words) => none_reply(script, state, &words),
    }
}

/// Rule 1: upper-cased words, with `.` and `,` as their own tokens (`?`, `!`, `;` become `.`).
fn split_input(input: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for ch in input.chars().flat_map(char::to_uppercase) {
        let delimiter = match ch {
            '.' | '?' | '!' | ';' => Some("."),
            ',' => Some(","),
            c if c.is_whitespace() => None,
            c => {
                word.push(c);
                continue;
            }
        };
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        words.extend(delimiter.map(str::to_string));
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn is_delimiter(word: &str) -> bool {
    matches!(word, "." | "," | "BUT")
}

/// Rule 3: the words kept (substituted) and the keystack, top first.
fn scan(script: &Script, words: Vec<String>) -> (Vec<String>, VecDeque<String>) {
    let mut kept = Vec::new();
    let mut keystack = VecDeque::new();
    let mut top_rank = 0;
    for word in words {
        if is_delimiter(&word) {
            if keystack.is_empty() {
                kept.clear();
                continue;
            }
            break;
        }
        if let Some(entry) = script.keyword(&word) {
            if entry.rank > top_rank {
                top_rank = entry.rank;
                keystack.push_front(word.clone());
            } else {
                keystack.push_back(word.clone());
            }
        }
        let substitute = script
            .entry(&word)
            .and_then(|entry| entry.substitute.clone());
        kept.push(substitute.unwrap_or(word));
    }
    (kept, keystack)
}

/// What trying one keyword led to.
enum Step {
    Reply(Vec<String>),
    NoMatch,
    NewKey,
    Link(String),
    Pre(Vec<String>, String),
}

/// How following the keystack ended.
enum Outcome {
    /// A keyword gave this reply.
    Reply(String),
    /// None did: NONE answers, from these (possibly PRE-rewritten) words.
    Unanswered(Vec<String>),
}

/// Rule 5: the keywords from the top, until one gives a reply.
fn follow_keystack(
    script: &Script,
    state: &mut EngineState,
    mut words: Vec<String>,
    mut keystack: VecDeque<String>,
) -> Outcome {
    let mut redirects = 0;
    while let Some(keyword) = keystack.pop_front() {
        if script.memory_keyword() == Some(keyword.as_str()) {
            lay_down_memory(script, state, &words);
        }
        let next = match try_keyword(script, state, &keyword, &words) {
            Step::Reply(reply) => return Outcome::Reply(reply.join(" ")),
            Step::NoMatch => break,
            Step::NewKey => continue,
            Step::Link(next) => next,
            Step::Pre(rewritten, next) => {
                if rewritten.len() > MAX_WORDS {
                    break;
                }
                words = rewritten;
                next
            }
        };
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            break;
        }
        keystack.push_front(next);
    }
    Outcome::Unanswered(words)
}

/// Applies one keyword's decomposition rules (or its entry link) to the words.
fn try_keyword(script: &Script, state: &mut EngineState, keyword: &str, words: &[String]) -> Step {
    let Some(entry) = script.keyword(keyword) else {
        return Step::NoMatch;
    };
    for (index, rule) in entry.rules.iter().enumerate() {
        if let Some(parts) = decompose(script, &rule.decomposition, words) {
            let chosen = state.take_reassembly(keyword, index, rule.reassemblies.len());
            return match rule.reassemblies.get(chosen) {
                Some(reassembly) => step_for(reassembly, words, &parts),
                None => Step::NoMatch,
            };
        }
    }
    match &entry.link {
        Some(link) => Step::Link(link.clone()),
        None => Step::NoMatch,
    }
}

/// What a chosen reassembly does with the decomposed words.
fn step_for(reassembly: &Reassembly, words: &[String], parts: &Parts) -> Step {
    match reassembly {
        Reassembly::Words(pieces) => Step::Reply(reassemble(pieces, words, parts)),
        Reassembly::Link(keyword) => Step::Link(keyword.clone()),
        Reassembly::NewKey => Step::NewKey,
        Reassembly::Pre(pieces, keyword) => {
            Step::Pre(reassemble(pieces, words, parts), keyword.clone())
        }
    }
}

/// Rule 5's memory: queue the reassembly of MEMORY's transformation number HASH(last word, 2)
/// when its decomposition matches the words.
fn lay_down_memory(script: &Script, state: &mut EngineState, words: &[String]) {
    let (Some(memory), Some(last)) = (script.memory(), words.last()) else {
        return;
    };
    let index = usize::try_from(hash(last, 2)).unwrap_or(0);
    let Some(transformation) = memory.transformations.get(index) else {
        return;
    };
    if let Some(parts) = decompose(script, &transformation.decomposition, words) {
        state.push_memory(reassemble(&transformation.reassembly, words, &parts).join(" "));
    }
}

/// Rule 6: NONE's next reassembly (its one part is the whole input).
fn none_reply(script: &Script, state: &mut EngineState, words: &[String]) -> String {
    let none = script.none();
    let index = state.take_none(none.len());
    let parts: Parts = std::iter::once(0..words.len()).collect();
    none.get(index)
        .map(|pieces| reassemble(pieces, words, &parts).join(" "))
        .unwrap_or_default()
}

/// Words that make the last sentence of a reply a question (see [`display_text`]).
const QUESTION_WORDS: &[&str] = &[
    "am", "are", "aren't", "can", "can't", "could", "couldn't", "did", "didn't", "do", "does",
    "doesn't", "don't", "had", "has", "have", "how", "is", "isn't", "may", "might", "shall",
    "should", "was", "wasn't", "were", "what", "when", "where", "which", "who", "whom", "whose",
    "why", "will", "won't", "would", "wouldn't",
];

/// Sentence case for people. Guarantees: every word is lower-cased except the first letter of
/// each sentence and the pronoun I (also in I'M, I'VE, I'D, I'LL); a punctuation token standing
/// alone (`,` `.` `?` `!` `;` `:`) is attached to the word before it; a final `.`, `?` or `!` is
/// kept as it is, and when there is none one is added: `?` if the last sentence, or a clause of it
/// after a comma, starts with a question word (WHY, WHAT, HOW, DO, ARE, CAN, ...), `.` otherwise.
/// An empty text stays empty.
///
/// `WHY DO YOU SAY YOUR MOTHER HATES YOU` → `Why do you say your mother hates you?`;
/// `I SEE. PLEASE GO ON` → `I see. Please go on.`
pub fn display_text(text: &str) -> String {
    let mut words = glue_punctuation(text);
    let mut sentence_start = true;
    let mut last_sentence = 0;
    for (index, word) in words.iter_mut().enumerate() {
        if sentence_start {
            last_sentence = index;
        }
        if sentence_start || is_pronoun_i(word) {
            capitalize(word);
        }
        sentence_start = ends_sentence(word);
    }
    let question = is_question(words.get(last_sentence..).unwrap_or_default());
    if let Some(last) = words.last_mut()
        && !ends_sentence(last)
    {
        last.push(if question { '?' } else { '.' });
    }
    words.join(" ")
}

/// Whether a sentence asks: its first word, or the first word after a
/// comma, is a question word.
fn is_question(sentence: &[String]) -> bool {
    let mut clause_start = true;
    for word in sentence {
        if clause_start && QUESTION_WORDS.contains(&core(word).to_lowercase().as_str()) {
            return true;
        }
        clause_start = word.ends_with(',');
    }
    false
}

/// Lower-cased words, each lone punctuation token attached to the word before it.
fn glue_punctuation(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for token in text.split_whitespace() {
        let lower = token.to_lowercase();
        let punctuation = lower.chars().all(|c| ",.?!;:".contains(c));
        match words.last_mut() {
            Some(previous) if punctuation => previous.push_str(&lower),
            _ => words.push(lower),
        }
    }
    words
}

/// The word without trailing punctuation.
fn core(word: &str) -> &str {
    word.trim_end_matches(|c: char| ",.?!;:".contains(c))
}

fn is_pronoun_i(word: &str) -> bool {
    let core = core(word);
    core == "i" || core.starts_with("i'")
}

fn ends_sentence(word: &str) -> bool {
    word.ends_with(['.', '?', '!'])
}

fn capitalize(word: &mut String) {
    if let Some(first) = word.chars().next() {
        let upper: String = first.to_uppercase().collect();
        word.replace_range(..first.len_utf8(), &upper);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_upper_cased_and_punctuation_becomes_delimiter_tokens() {
        assert_eq!(
            split_input("Well, my dad; he's here!  Why?"),
            [
                "WELL", ",", "MY", "DAD", ".", "HE'S", "HERE", ".", "WHY", "."
            ]
        );
        assert!(split_input("   ").is_empty());
    }

    #[test]
    fn display_text_is_sentence_case_with_final_punctuation() {
        assert_eq!(
            display_text("WHY DO YOU SAY YOUR MOTHER HATES YOU"),
            "Why do you say your mother hates you?"
        );
        assert_eq!(display_text("I SEE. PLEASE GO ON"), "I see. Please go on.");
        assert_eq!(
            display_text("GOOD DAY. WHAT IS ON YOUR MIND"),
            "Good day. What is on your mind?"
        );
        assert_eq!(
            display_text("REALLY , I'M NOT SURE I KNOW ?"),
            "Really, I'm not sure I know?"
        );
        assert_eq!(display_text("HOW DO YOU DO."), "How do you do.");
        assert_eq!(
            display_text("BEFORE YOU GO, IS THERE ANYTHING ELSE"),
            "Before you go, is there anything else?"
        );
        assert_eq!(
            display_text("GO ON, I AM LISTENING"),
            "Go on, I am listening."
        );
        assert_eq!(display_text(""), "");
    }
}
