//! A DOCTOR script in Weizenbaum's 1966 format: the reader (with errors that carry line and
//! column) and the immutable, shareable [`Script`] the engine runs.
//!
//! The format, as read here:
//!
//! ```text
//! ; comment lines start with a semicolon
//! (HOW DO YOU DO.  PLEASE TELL ME YOUR PROBLEM)      greeting words
//! START
//! (DONT = DON'T)                                     substitute only
//! (MOTHER DLIST(/NOUN FAMILY))                       tags only
//! (MY = YOUR 2 ((0 YOUR 0 (/FAMILY) 0) (TELL ME MORE ABOUT YOUR 4)) ((0) (NEWKEY)))
//! (MAYBE (=PERHAPS))                                 a link
//! (MEMORY MY (0 YOUR 0 = ...) (0 YOUR 0 = ...) (0 YOUR 0 = ...) (0 YOUR 0 = ...))
//! (NONE ((0) (PLEASE GO ON) (I SEE)))
//! ()                                                 optional end marker
//! ```
//!
//! A keyword entry is `(KEYWORD [= SUBSTITUTE] [DLIST(/TAG ...)] [rank] rule... [(=KEYWORD)])`
//! in that order; a rule is `((decomposition) reassembly...)`. Decomposition elements are words,
//! `0` (any number of words), `n` (exactly n words), `(*A B C)` and `(/TAG ...)`. A reassembly is
//! `(words and part numbers)`, `(=KEYWORD)`, `(NEWKEY)` or `(PRE (words and part numbers)
//! (=KEYWORD))`. All atoms are upper-cased when read. `START` and the closing `()` may be
//! omitted; a MEMORY entry is optional (without one no memories are made); NONE is required and
//! must be `(NONE ((0) (reassembly) ...))` with plain reassemblies.

use std::collections::HashMap;

pub use crate::diagnostic::{ScriptError, ScriptProblem};
use crate::{
    diagnostic::Pos,
    sexp::{self, Node},
};

/// The script Township ships: its own DOCTOR-style script (not Weizenbaum's text).
pub const DEFAULT_SCRIPT: &str = include_str!("../scripts/doctor.txt");

/// One element of a decomposition rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `0`: any number of words, as few as possible.
    Any,
    /// `n`: exactly n words.
    Exactly(usize),
    /// A literal word.
    Word(String),
    /// `(*A B C)`: one word, any of these.
    OneOf(Vec<String>),
    /// `(/TAG ...)`: one word carrying any of these DLIST tags.
    Tagged(Vec<String>),
}

/// One element of a reassembly: a word, or a matched part (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Word(String),
    Part(usize),
}

/// What a reassembly rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reassembly {
    /// The reply itself.
    Words(Vec<Piece>),
    /// `(=KEY)`: continue with KEY's rules.
    Link(String),
    /// `(NEWKEY)`: try the next keyword on the keystack.
    NewKey,
    /// `(PRE (words) (=KEY))`: rewrite the input, then continue with KEY.
    Pre(Vec<Piece>, String),
}

/// A decomposition rule with its reassemblies (used in turn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub decomposition: Vec<Pattern>,
    pub reassemblies: Vec<Reassembly>,
}

/// What a keyword entry says about a word.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Entry {
    pub substitute: Option<String>,
    pub tags: Vec<String>,
    pub rank: u32,
    pub rules: Vec<Rule>,
    pub link: Option<String>,
    line: usize,
}

impl Entry {
    /// Whether the word goes on the keystack (it has rules or a link).
    pub fn is_keyword(&self) -> bool {
        !self.rules.is_empty() || self.link.is_some()
    }
}

/// One of MEMORY's four transformations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transformation {
    pub decomposition: Vec<Pattern>,
    pub reassembly: Vec<Piece>,
}

/// The MEMORY entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Memory {
    pub keyword: String,
    pub transformations: Vec<Transformation>,
}

/// A parsed, checked script. Immutable: share it between sessions with `Arc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    greeting: Vec<String>,
    entries: HashMap<String, Entry>,
    memory: Option<Memory>,
    none: Vec<Vec<Piece>>,
}

impl Script {
    /// Reads a script. Every syntax and consistency problem is an error with its line and column;
    /// a script that parses can always answer (NONE exists, every link leads to a keyword with
    /// rules, every part number is within its decomposition).
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let (nodes, end) = sexp::read(text)?;
        let mut reader = Reader::default();
        let mut nodes = nodes.into_iter();
        let greeting = read_greeting(nodes.next(), end)?;
        let mut nodes = nodes.peekable();
        if nodes.peek().and_then(Node::atom) == Some("START") {
            nodes.next();
        }
        read_entries(&mut reader, nodes)?;
        reader.finish(greeting, end)
    }

    /// Township's own DOCTOR script ([`DEFAULT_SCRIPT`]), parsed. Never panics in practice: the
    /// built-in text is checked by the crate's tests.
    pub fn default_doctor() -> Script {
        Script::parse(DEFAULT_SCRIPT).expect("the built-in DOCTOR script is valid")
    }

    /// The greeting words joined by single spaces, e.g. `HOW DO YOU DO. PLEASE TELL ME ...`.
    pub fn greeting(&self) -> String {
        self.greeting.join(" ")
    }

    /// The greeting as the script lists it, word by word.
    pub fn greeting_words(&self) -> &[String] {
        &self.greeting
    }

    /// The keywords (words with rules or a link) in alphabetical order.
    pub fn keywords(&self) -> Vec<&str> {
        let mut words: Vec<&str> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.is_keyword())
            .map(|(word, _)| word.as_str())
            .collect();
        words.sort_unstable();
        words
    }

    /// The MEMORY keyword, if the script has a MEMORY entry.
    pub fn memory_keyword(&self) -> Option<&str> {
        self.memory.as_ref().map(|memory| memory.keyword.as_str())
    }

    /// The rank of a keyword (0 when unranked); `None` when the word is not a keyword.
    pub fn rank(&self, word: &str) -> Option<u32> {
        self.keyword(word).map(|entry| entry.rank)
    }

    pub(crate) fn entry(&self, word: &str) -> Option<&Entry> {
        self.entries.get(word)
    }

    pub(crate) fn keyword(&self, word: &str) -> Option<&Entry> {
        self.entries.get(word).filter(|entry| entry.is_keyword())
    }

    pub(crate) fn has_tag(&self, word: &str, tags: &[String]) -> bool {
        self.entries
            .get(word)
            .is_some_and(|entry| entry.tags.iter().any(|tag| tags.contains(tag)))
    }

    pub(crate) fn memory(&self) -> Option<&Memory> {
        self.memory.as_ref()
    }

    pub(crate) fn none(&self) -> &[Vec<Piece>] {
        &self.none
    }
}

/// The greeting list: the first item of the script.
fn read_greeting(node: Option<Node>, end: Pos) -> Result<Vec<String>, ScriptError> {
    let expected = "the greeting list, e.g. (HOW DO YOU DO)";
    let Some(node) = node else {
        return Err(ScriptError::at(
            end,
            ScriptProblem::UnexpectedEnd(expected.into()),
        ));
    };
    let Node::List { items, .. } = &node else {
        return Err(expected_here(&node, expected));
    };
    if items.is_empty() {
        return Err(expected_here(&node, expected));
    }
    items
        .iter()
        .map(|item| match item {
            Node::Atom { text, .. } => Ok(text.clone()),
            other => Err(expected_here(other, "a greeting word")),
        })
        .collect()
}

/// Reads every entry after the greeting, up to the optional closing `()`.
fn read_entries(
    reader: &mut Reader,
    mut nodes: impl Iterator<Item = Node>,
) -> Result<(), ScriptError> {
    while let Some(node) = nodes.next() {
        let Node::List { items, pos } = node else {
            return Err(expected_here(&node, "an entry (KEYWORD ...)"));
        };
        if items.is_empty() {
            return match nodes.next() {
                Some(extra) => Err(expected_here(&extra, "nothing after the closing ()")),
                None => Ok(()),
            };
        }
        reader.entry(items, pos)?;
    }
    Ok(())
}

/// An error saying what was expected where `node` stands.
fn expected_here(node: &Node, expected: &str) -> ScriptError {
    ScriptError::at(
        node.pos(),
        ScriptProblem::Expected {
            expected: expected.to_string(),
            found: node.describe(),
        },
    )
}

/// Walks the items of one list.
struct Items {
    items: std::iter::Peekable<std::vec::IntoIter<Node>>,
    /// Where a missing item is reported: the list's `(`.
    pos: Pos,
}

impl Items {
    fn new(items: Vec<Node>, pos: Pos) -> Self {
        Items {
            items: items.into_iter().peekable(),
            pos,
        }
    }

    fn peek(&mut self) -> Option<&Node> {
        self.items.peek()
    }

    fn next(&mut self) -> Option<Node> {
        self.items.next()
    }

    /// The next item, which must exist.
    fn require(&mut self, expected: &str) -> Result<Node, ScriptError> {
        self.items.next().ok_or_else(|| {
            ScriptError::at(
                self.pos,
                ScriptProblem::Expected {
                    expected: expected.to_string(),
                    found: "the end of the list".to_string(),
                },
            )
        })
    }

    /// The next item, which must be an atom (not a number).
    fn require_word(&mut self, expected: &str) -> Result<(String, Pos), ScriptError> {
        match self.require(expected)? {
            Node::Atom { text, pos } if !is_number(&text) => Ok((text, pos)),
            other => Err(expected_here(&other, expected)),
        }
    }

    /// Fails if any item is left.
    fn finish(mut self, expected: &str) -> Result<(), ScriptError> {
        match self.items.next() {
            Some(extra) => Err(expected_here(&extra, expected)),
            None => Ok(()),
        }
    }
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

fn parse_number(text: &str, pos: Pos) -> Result<usize, ScriptError> {
    text.parse()
        .map_err(|_| ScriptError::at(pos, ScriptProblem::NumberTooLarge(text.to_string())))
}

/// Collects entries and the references to check once every keyword is known.
#[derive(Default)]
struct Reader {
    entries: HashMap<String, Entry>,
    memory: Option<Memory>,
    none: Option<Vec<Vec<Piece>>>,
    /// Keywords named by links, PRE and MEMORY, with where they are named.
    references: Vec<(String, Pos)>,
    /// Tags used in decompositions, with where they are used.
    tag_uses: Vec<(String, Pos)>,
}

impl Reader {
    /// Reads one non-empty entry list.
    fn entry(&mut self, items: Vec<Node>, pos: Pos) -> Result<(), ScriptError> {
        let mut items = Items::new(items, pos);
        let (keyword, keyword_pos) = items.require_word("a keyword")?;
        match keyword.as_str() {
            "MEMORY" => self.memory_entry(items, keyword_pos),
            "NONE" => self.none_entry(items, keyword_pos),
            _ => self.keyword_entry(keyword, keyword_pos, items),
        }
    }

    fn keyword_entry(
        &mut self,
        keyword: String,
        pos: Pos,
        mut items: Items,
    ) -> Result<(), ScriptError> {
        if let Some(first) = self.entries.get(&keyword) {
            let first_line = first.line;
            return Err(ScriptError::at(
                pos,
                ScriptProblem::DuplicateKeyword {
                    keyword,
                    first_line,
                },
            ));
        }
        let entry = self.entry_body(&mut items, pos)?;
        let list_pos = items.pos;
        items.finish("the end of the entry, a rule ((decomposition) ...) or a link (=KEYWORD)")?;
        if entry.substitute.is_none() && entry.tags.is_empty() && !entry.is_keyword() {
            return Err(ScriptError::at(
                list_pos,
                ScriptProblem::Expected {
                    expected: format!("a substitute, DLIST, rule or link for {keyword}"),
                    found: "nothing".to_string(),
                },
            ));
        }
        self.entries.insert(keyword, entry);
        Ok(())
    }

    /// `[= SUBSTITUTE] [DLIST(/TAG ...)] [rank] rule... [(=KEYWORD)]`.
    fn entry_body(&mut self, items: &mut Items, pos: Pos) -> Result<Entry, ScriptError> {
        let mut entry = Entry {
            line: pos.line,
            ..Entry::default()
        };
        if matches!(items.peek(), Some(Node::Equals { .. })) {
            items.next();
            entry.substitute = Some(items.require_word("a substitute word after =")?.0);
        }
        if items.peek().and_then(Node::atom) == Some("DLIST") {
            items.next();
            entry.tags = read_dlist(items.require("the tag list after DLIST, e.g. (/NOUN)")?)?;
        }
        let rank = match items.peek() {
            Some(Node::Atom { text, pos }) if is_number(text) => Some((text.clone(), *pos)),
            _ => None,
        };
        if let Some((text, pos)) = rank {
            items.next();
            entry.rank = u32::try_from(parse_number(&text, pos)?)
                .map_err(|_| ScriptError::at(pos, ScriptProblem::NumberTooLarge(text)))?;
        }
        while let Some(Node::List { items: inner, .. }) = items.peek() {
            let is_link = matches!(inner.first(), Some(Node::Equals { .. }));
            let Some(Node::List { items: list, pos }) = items.next() else {
                break;
            };
            if is_link {
                entry.link = Some(self.read_link(list, pos)?);
                break;
            }
            entry.rules.push(self.read_rule(list, pos)?);
        }
        Ok(entry)
    }

    /// `(=KEYWORD)`, remembered for checking.
    fn read_link(&mut self, items: Vec<Node>, pos: Pos) -> Result<String, ScriptError> {
        let mut items = Items::new(items, pos);
        match items.require("=")? {
            Node::Equals { .. } => {}
            other => return Err(expected_here(&other, "= in a link (=KEYWORD)")),
        }
        let (keyword, keyword_pos) = items.require_word("a keyword after = in a link")?;
        items.finish("the end of the link (=KEYWORD)")?;
        self.references.push((keyword.clone(), keyword_pos));
        Ok(keyword)
    }

    /// `((decomposition) reassembly...)`.
    fn read_rule(&mut self, items: Vec<Node>, pos: Pos) -> Result<Rule, ScriptError> {
        let mut items = Items::new(items, pos);
        let decomposition = match items.require("a decomposition (...)")? {
            Node::List { items, pos } => self.read_decomposition(items, pos)?,
            other => {
                return Err(expected_here(
                    &other,
                    "a decomposition list, e.g. (0 YOU 0)",
                ));
            }
        };
        let parts = decomposition.len();
        let mut reassemblies = Vec::new();
        while let Some(node) = items.next() {
            match node {
                Node::List { items, pos } => {
                    reassemblies.push(self.read_reassembly(items, pos, parts)?)
                }
                other => return Err(expected_here(&other, "a reassembly list (...)")),
            }
        }
        if reassemblies.is_empty() {
            return Err(ScriptError::at(
                items.pos,
                ScriptProblem::Expected {
                    expected: "at least one reassembly after the decomposition".to_string(),
                    found: "none".to_string(),
                },
            ));
        }
        Ok(Rule {
            decomposition,
            reassemblies,
        })
    }

    fn read_decomposition(
        &mut self,
        items: Vec<Node>,
        pos: Pos,
    ) -> Result<Vec<Pattern>, ScriptError> {
        if items.is_empty() {
            return Err(ScriptError::at(
                pos,
                ScriptProblem::Expected {
                    expected: "a decomposition element".to_string(),
                    found: "()".to_string(),
                },
            ));
        }
        let mut patterns = Vec::with_capacity(items.len());
        for item in items {
            patterns.push(self.read_pattern(item)?);
        }
        Ok(patterns)
    }

    fn read_pattern(&mut self, node: Node) -> Result<Pattern, ScriptError> {
        match node {
            Node::Atom { text, pos } if is_number(&text) => match parse_number(&text, pos)? {
                0 => Ok(Pattern::Any),
                n => Ok(Pattern::Exactly(n)),
            },
            Node::Atom { text, .. } => Ok(Pattern::Word(text)),
            Node::List { items, pos } => self.read_word_class(items, pos),
            other => Err(expected_here(
                &other,
                "a word, a number, (*WORDS) or (/TAGS)",
            )),
        }
    }

    /// `(*A B C)` or `(/TAG ...)`, white space after `*` or `/` allowed.
    fn read_word_class(&mut self, items: Vec<Node>, pos: Pos) -> Result<Pattern, ScriptError> {
        let expected = "(*WORD ...) or (/TAG ...)";
        let Some(first) = items.first() else {
            return Err(ScriptError::at(
                pos,
                ScriptProblem::Expected {
                    expected: expected.into(),
                    found: "()".into(),
                },
            ));
        };
        let marker = match first.atom().and_then(|text| text.chars().next()) {
            Some(c @ ('*' | '/')) => c,
            _ => return Err(expected_here(first, expected)),
        };
        let words = marked_words(items, marker, pos)?;
        if marker == '*' {
            return Ok(Pattern::OneOf(
                words.into_iter().map(|(word, _)| word).collect(),
            ));
        }
        self.tag_uses.extend(words.iter().cloned());
        Ok(Pattern::Tagged(
            words.into_iter().map(|(word, _)| word).collect(),
        ))
    }

    /// A reassembly of a rule whose decomposition has `parts` parts.
    fn read_reassembly(
        &mut self,
        items: Vec<Node>,
        pos: Pos,
        parts: usize,
    ) -> Result<Reassembly, ScriptError> {
        match items.first() {
            Some(Node::Equals { .. }) => Ok(Reassembly::Link(self.read_link(items, pos)?)),
            Some(Node::Atom { text, .. }) if text == "NEWKEY" => match items.get(1) {
                Some(extra) => Err(expected_here(extra, "nothing after NEWKEY: (NEWKEY)")),
                None => Ok(Reassembly::NewKey),
            },
            Some(Node::Atom { text, .. }) if text == "PRE" => self.read_pre(items, pos, parts),
            _ => Ok(Reassembly::Words(read_pieces(items, pos, parts)?)),
        }
    }

    /// `(PRE (reassembly) (=KEYWORD))`.
    fn read_pre(
        &mut self,
        items: Vec<Node>,
        pos: Pos,
        parts: usize,
    ) -> Result<Reassembly, ScriptError> {
        let mut items = Items::new(items, pos);
        items.next();
        let pieces = match items.require("the reassembly of PRE")? {
            Node::List { items, pos } => read_pieces(items, pos, parts)?,
            other => return Err(expected_here(&other, "the reassembly list of PRE")),
        };
        let keyword = match items.require("the link (=KEYWORD) of PRE")? {
            Node::List { items, pos } => self.read_link(items, pos)?,
            other => return Err(expected_here(&other, "the link (=KEYWORD) of PRE")),
        };
        items.finish("the end of PRE")?;
        Ok(Reassembly::Pre(pieces, keyword))
    }

    /// `(MEMORY KEYWORD (decomposition = reassembly) ×4)`.
    fn memory_entry(&mut self, mut items: Items, pos: Pos) -> Result<(), ScriptError> {
        if self.memory.is_some() {
            return Err(ScriptError::at(
                pos,
                ScriptProblem::DuplicateSpecial("MEMORY".into()),
            ));
        }
        let (keyword, keyword_pos) = items.require_word("the MEMORY keyword")?;
        self.references.push((keyword.clone(), keyword_pos));
        let mut transformations = Vec::new();
        while let Some(node) = items.next() {
            match node {
                Node::List { items, pos } => {
                    transformations.push(self.read_transformation(items, pos)?)
                }
                other => return Err(expected_here(&other, "(decomposition = reassembly)")),
            }
        }
        if transformations.len() != 4 {
            return Err(ScriptError::at(
                pos,
                ScriptProblem::MemoryTransformations(transformations.len()),
            ));
        }
        let memory = Memory {
            keyword,
            transformations,
        };
        self.memory = Some(memory);
        Ok(())
    }

    /// `(decomposition = reassembly)` of MEMORY.
    fn read_transformation(
        &mut self,
        items: Vec<Node>,
        pos: Pos,
    ) -> Result<Transformation, ScriptError> {
        let Some(split) = items
            .iter()
            .position(|node| matches!(node, Node::Equals { .. }))
        else {
            return Err(ScriptError::at(
                pos,
                ScriptProblem::Expected {
                    expected: "(decomposition = reassembly)".into(),
                    found: "no =".into(),
                },
            ));
        };
        let mut decomposition_items = items;
        let reassembly_items = decomposition_items.split_off(split + 1);
        decomposition_items.pop();
        let decomposition = self.read_decomposition(decomposition_items, pos)?;
        let reassembly = read_pieces(reassembly_items, pos, decomposition.len())?;
        Ok(Transformation {
            decomposition,
            reassembly,
        })
    }

    /// `(NONE ((0) (reassembly) ...))`.
    fn none_entry(&mut self, mut items: Items, pos: Pos) -> Result<(), ScriptError> {
        if self.none.is_some() {
            return Err(ScriptError::at(
                pos,
                ScriptProblem::DuplicateSpecial("NONE".into()),
            ));
        }
        let shape =
            |at: Pos, what: &str| ScriptError::at(at, ScriptProblem::NoneShape(what.into()));
        let node = items.require("the rule ((0) (reassembly) ...)")?;
        if let Some(extra) = items.next() {
            return Err(shape(extra.pos(), "only one rule is allowed"));
        }
        let Node::List {
            items: rule_items,
            pos: rule_pos,
        } = node
        else {
            return Err(shape(
                node.pos(),
                "expected the rule ((0) (reassembly) ...)",
            ));
        };
        let places: Vec<Pos> = rule_items.iter().map(Node::pos).collect();
        let rule = self.read_rule(rule_items, rule_pos)?;
        if rule.decomposition != [Pattern::Any] {
            let at = places.first().copied().unwrap_or(rule_pos);
            return Err(shape(at, "the decomposition must be (0)"));
        }
        let mut none = Vec::new();
        for (reassembly, place) in rule.reassemblies.into_iter().zip(places.iter().skip(1)) {
            match reassembly {
                Reassembly::Words(pieces) => none.push(pieces),
                _ => return Err(shape(*place, "no links, NEWKEY or PRE in NONE")),
            }
        }
        self.none = Some(none);
        Ok(())
    }

    /// Checks references and requirements, and builds the script.
    fn finish(self, greeting: Vec<String>, end: Pos) -> Result<Script, ScriptError> {
        for (keyword, pos) in &self.references {
            if !self.entries.get(keyword).is_some_and(Entry::is_keyword) {
                return Err(ScriptError::at(
                    *pos,
                    ScriptProblem::UndefinedKeyword(keyword.clone()),
                ));
            }
        }
        for (tag, pos) in &self.tag_uses {
            if !self.entries.values().any(|entry| entry.tags.contains(tag)) {
                return Err(ScriptError::at(
                    *pos,
                    ScriptProblem::UndefinedTag(tag.clone()),
                ));
            }
        }
        let Some(none) = self.none else {
            return Err(ScriptError::at(end, ScriptProblem::MissingNone));
        };
        Ok(Script {
            greeting,
            entries: self.entries,
            memory: self.memory,
            none,
        })
    }
}

/// `DLIST(/TAG ...)`'s list, white space after the slash allowed.
fn read_dlist(node: Node) -> Result<Vec<String>, ScriptError> {
    let Node::List { items, pos } = node else {
        return Err(expected_here(
            &node,
            "the tag list after DLIST, e.g. (/NOUN)",
        ));
    };
    match items.first() {
        Some(first) if first.atom().is_some_and(|text| text.starts_with('/')) => {}
        Some(first) => return Err(expected_here(first, "a tag list starting with /")),
        None => {
            return Err(ScriptError::at(
                pos,
                ScriptProblem::Expected {
                    expected: "a tag list starting with /".into(),
                    found: "()".into(),
                },
            ));
        }
    }
    Ok(marked_words(items, '/', pos)?
        .into_iter()
        .map(|(word, _)| word)
        .collect())
}

/// The words of `(*A B)` / `(/A B)` (or `(* A B)`), without the marker; at least one.
fn marked_words(
    items: Vec<Node>,
    marker: char,
    pos: Pos,
) -> Result<Vec<(String, Pos)>, ScriptError> {
    let mut words = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let Node::Atom { text, pos } = item else {
            return Err(expected_here(&item, "a word"));
        };
        let word = if index == 0 {
            text.strip_prefix(marker).unwrap_or(&text).to_string()
        } else {
            text
        };
        if !word.is_empty() {
            words.push((word, pos));
        }
    }
    if words.is_empty() {
        return Err(ScriptError::at(
            pos,
            ScriptProblem::Expected {
                expected: format!("at least one word after {marker}"),
                found: "none".into(),
            },
        ));
    }
    Ok(words)
}

/// Reassembly words and part numbers (1..=parts).
fn read_pieces(items: Vec<Node>, pos: Pos, parts: usize) -> Result<Vec<Piece>, ScriptError> {
    if items.is_empty() {
        return Err(ScriptError::at(
            pos,
            ScriptProblem::Expected {
                expected: "reassembly words".into(),
                found: "()".into(),
            },
        ));
    }
    items
        .into_iter()
        .map(|item| match item {
            Node::Atom { text, pos } if is_number(&text) => read_part(&text, pos, parts),
            // `5.` would silently be a word: the part and its punctuation go apart, `5 .`.
            Node::Atom { text, pos } if text.starts_with(|c: char| c.is_ascii_digit()) => {
                Err(ScriptError::at(
                    pos,
                    ScriptProblem::Expected {
                        expected: "a part number, then punctuation as its own word (e.g. `5 .`)"
                            .into(),
                        found: text,
                    },
                ))
            }
            Node::Atom { text, .. } => Ok(Piece::Word(text)),
            other => Err(expected_here(&other, "a reassembly word or part number")),
        })
        .collect()
}

fn read_part(text: &str, pos: Pos, parts: usize) -> Result<Piece, ScriptError> {
    match parse_number(text, pos)? {
        0 => Err(ScriptError::at(pos, ScriptProblem::PartZero)),
        part if part > parts => Err(ScriptError::at(
            pos,
            ScriptProblem::PartOutOfRange { part, parts },
        )),
        part => Ok(Piece::Part(part)),
    }
}
