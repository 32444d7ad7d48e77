//! Decomposition (matching a rule's pattern against the input words, cutting them into parts) and
//! reassembly (building words from a reassembly and those parts).
//!
//! Matching follows SLIP's YMATCH as ELIZA used it: left to right, each `0` taking as few words
//! as it can (so `(0 YOUR 0)` isolates the first YOUR). Failed (element, word) positions are
//! remembered, so a pattern costs at most elements × words² steps however it backtracks.

use std::ops::Range;

use crate::script::{Pattern, Piece, Script};

/// The parts of a successful match: one word range per decomposition element.
pub(crate) type Parts = Vec<Range<usize>>;

/// Matches `pattern` against all of `words`; `None` when it does not match.
pub(crate) fn decompose(script: &Script, pattern: &[Pattern], words: &[String]) -> Option<Parts> {
    let mut matcher = Matcher {
        script,
        pattern,
        words,
        ends: vec![0; pattern.len()],
        failed: vec![false; (pattern.len() + 1) * (words.len() + 1)],
    };
    if !matcher.matches_from(0, 0) {
        return None;
    }
    let mut start = 0;
    let parts = matcher
        .ends
        .iter()
        .map(|&end| {
            let part = start..end;
            start = end;
            part
        })
        .collect();
    Some(parts)
}

/// Builds the words of a reassembly: its words as they are, each part number replaced by the
/// words of that part (a part beyond `parts` gives nothing; the script reader refuses those).
pub(crate) fn reassemble(pieces: &[Piece], words: &[String], parts: &Parts) -> Vec<String> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Word(word) => out.push(word.clone()),
            Piece::Part(number) => {
                let index = number.checked_sub(1);
                let range = index
                    .and_then(|i| parts.get(i))
                    .cloned()
                    .unwrap_or_default();
                out.extend(words.get(range).unwrap_or_default().iter().cloned());
            }
        }
    }
    out
}

/// One matching attempt.
struct Matcher<'a> {
    script: &'a Script,
    pattern: &'a [Pattern],
    words: &'a [String],
    /// Where each element's part ends, along the path being tried.
    ends: Vec<usize>,
    /// `failed[p * (words + 1) + w]`: pattern[p..] cannot match words[w..].
    failed: Vec<bool>,
}

impl Matcher<'_> {
    /// Whether `pattern[p..]` matches `words[w..]`, recording the part ends on success.
    fn matches_from(&mut self, p: usize, w: usize) -> bool {
        let Some(element) = self.pattern.get(p) else {
            return w == self.words.len();
        };
        let slot = p * (self.words.len() + 1) + w;
        if self.failed[slot] {
            return false;
        }
        let matched = match element {
            Pattern::Any => (w..=self.words.len()).any(|end| self.take(p, end)),
            Pattern::Exactly(n) => w
                .checked_add(*n)
                .is_some_and(|end| end <= self.words.len() && self.take(p, end)),
            single => self.fits(single, w) && self.take(p, w + 1),
        };
        if !matched {
            self.failed[slot] = true;
        }
        matched
    }

    /// Lets element `p` end at `end` and tries the rest.
    fn take(&mut self, p: usize, end: usize) -> bool {
        self.ends[p] = end;
        self.matches_from(p + 1, end)
    }

    /// Whether the single-word element fits the word at `w`.
    fn fits(&self, element: &Pattern, w: usize) -> bool {
        let Some(word) = self.words.get(w) else {
            return false;
        };
        match element {
            Pattern::Word(literal) => literal == word,
            Pattern::OneOf(choices) => choices.contains(word),
            Pattern::Tagged(tags) => self.script.has_tag(word, tags),
            Pattern::Any | Pattern::Exactly(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> Script {
        Script::parse(
            "(HI) START (MOTHER DLIST(/FAMILY)) (FATHER DLIST(/ FAMILY NOUN)) \
             (NONE ((0) (GO ON)))",
        )
        .expect("parses")
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    fn parts_of(pattern: &[Pattern], text: &str) -> Option<Vec<String>> {
        let script = script();
        let words = words(text);
        decompose(&script, pattern, &words).map(|parts| {
            parts
                .into_iter()
                .map(|range| words[range].join(" "))
                .collect()
        })
    }

    fn w(word: &str) -> Pattern {
        Pattern::Word(word.to_string())
    }

    #[test]
    fn zero_takes_as_few_words_as_possible() {
        let pattern = [Pattern::Any, w("YOUR"), Pattern::Any];
        assert_eq!(
            parts_of(&pattern, "YOUR MOTHER HATES YOUR DOG"),
            Some(vec![
                "".into(),
                "YOUR".into(),
                "MOTHER HATES YOUR DOG".into()
            ])
        );
    }

    #[test]
    fn a_number_takes_exactly_that_many_words() {
        let pattern = [Pattern::Exactly(2), Pattern::Any, Pattern::Exactly(1)];
        assert_eq!(
            parts_of(&pattern, "WHEN WILL WE THREE MEET"),
            Some(vec!["WHEN WILL".into(), "WE THREE".into(), "MEET".into()])
        );
        assert_eq!(
            parts_of(&[Pattern::Exactly(6)], "WHEN WILL WE THREE MEET"),
            None
        );
        assert_eq!(parts_of(&[Pattern::Exactly(usize::MAX)], "A"), None);
    }

    #[test]
    fn zero_matches_no_words_at_all() {
        assert_eq!(parts_of(&[Pattern::Any], ""), Some(vec!["".into()]));
    }

    #[test]
    fn alternatives_and_tags_match_one_word() {
        let one_of = Pattern::OneOf(vec!["SAD".into(), "UNHAPPY".into()]);
        let pattern = [Pattern::Any, one_of, Pattern::Any];
        assert_eq!(
            parts_of(&pattern, "I AM UNHAPPY TODAY"),
            Some(vec!["I AM".into(), "UNHAPPY".into(), "TODAY".into()])
        );
        let tagged = [
            Pattern::Any,
            Pattern::Tagged(vec!["NOUN".into()]),
            Pattern::Any,
        ];
        assert_eq!(
            parts_of(&tagged, "MY MOTHER AND FATHER"),
            Some(vec!["MY MOTHER AND".into(), "FATHER".into(), "".into()])
        );
        assert_eq!(parts_of(&tagged, "MY MOTHER"), None);
    }

    #[test]
    fn backtracking_finds_a_later_literal() {
        let pattern = [
            Pattern::Any,
            w("ITS"),
            Pattern::Any,
            w("MARY"),
            Pattern::Exactly(1),
        ];
        assert_eq!(
            parts_of(&pattern, "ITS MARY ITS NOT MARY IT IS MARY TOO"),
            Some(vec![
                "".into(),
                "ITS".into(),
                "MARY ITS NOT MARY IT IS".into(),
                "MARY".into(),
                "TOO".into()
            ])
        );
    }

    #[test]
    fn reassembly_replaces_part_numbers_with_their_words() {
        let script = script();
        let words = words("A HILL OF BEANS");
        let pattern = [w("A"), Pattern::Exactly(1), Pattern::Any];
        let parts = decompose(&script, &pattern, &words).expect("matches");
        let pieces = [
            Piece::Word("FIRST".into()),
            Piece::Part(1),
            Piece::Word("THEN".into()),
            Piece::Part(3),
        ];
        assert_eq!(
            reassemble(&pieces, &words, &parts).join(" "),
            "FIRST A THEN OF BEANS"
        );
    }
}
