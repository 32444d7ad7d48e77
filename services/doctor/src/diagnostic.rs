//! What is wrong with a script, and where: the errors that both the notation's reader (`sexp`)
//! and the script reader (`script`) report, kept apart from both so that neither imports the
//! other back.

/// A place in the script text: 1-based line and 1-based column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A script that could not be read: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {problem}")]
pub struct ScriptError {
    /// 1-based line of the offending item.
    pub line: usize,
    /// 1-based column (in characters) of the offending item.
    pub column: usize,
    /// What is wrong there.
    pub problem: ScriptProblem,
}

impl ScriptError {
    pub(crate) fn at(pos: Pos, problem: ScriptProblem) -> Self {
        ScriptError {
            line: pos.line,
            column: pos.column,
            problem,
        }
    }
}

/// Every way a script can be wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptProblem {
    /// A `(` that is never closed.
    #[error("unbalanced parenthesis: this '(' is never closed")]
    UnbalancedOpen,
    /// A `)` with no `(` to close.
    #[error("unbalanced parenthesis: ')' without a matching '('")]
    UnbalancedClose,
    /// Something other than what the format allows here.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What the format allows here.
        expected: String,
        /// What the script has instead.
        found: String,
    },
    /// The script ends where more is required.
    #[error("the script ends too early: expected {0}")]
    UnexpectedEnd(String),
    /// Two entries for one keyword.
    #[error("keyword {keyword} is already defined on line {first_line}")]
    DuplicateKeyword {
        /// The keyword.
        keyword: String,
        /// Where its first entry is.
        first_line: usize,
    },
    /// A second MEMORY or NONE entry.
    #[error("a second {0} entry (only one is allowed)")]
    DuplicateSpecial(String),
    /// A number too large to be a rank or a count.
    #[error("number {0} is too large")]
    NumberTooLarge(String),
    /// A link, PRE or MEMORY naming a keyword that has no rules.
    #[error("{0} is not a keyword with rules in this script")]
    UndefinedKeyword(String),
    /// A decomposition tag that no DLIST gives to any word.
    #[error("no word has the tag {0} (tags are given with DLIST)")]
    UndefinedTag(String),
    /// MEMORY without exactly four transformations.
    #[error("MEMORY needs exactly 4 transformations, found {0}")]
    MemoryTransformations(usize),
    /// No NONE entry.
    #[error("the script has no NONE entry")]
    MissingNone,
    /// A NONE entry not of the form `(NONE ((0) (reassembly) ...))`.
    #[error("NONE must be (NONE ((0) (reassembly) ...)) with plain reassemblies: {0}")]
    NoneShape(String),
    /// A reassembly number beyond the decomposition's parts.
    #[error("reassembly uses part {part}, but the decomposition has only {parts} parts")]
    PartOutOfRange {
        /// The number used.
        part: usize,
        /// How many parts the decomposition has.
        parts: usize,
    },
    /// Reassembly part 0 (parts count from 1).
    #[error("reassembly parts are numbered from 1, not 0")]
    PartZero,
}
