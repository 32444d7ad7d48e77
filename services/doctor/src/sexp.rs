//! Reading the 1966 script notation into a tree of atoms and lists, each node knowing where it
//! stands in the text, so the script reader can point at the line and column of any problem.
//!
//! Lexical rules: `(` and `)` delimit lists; `=` is always a token of its own; an atom is any
//! other run of characters up to white space, a parenthesis or `=`, and is upper-cased. A line
//! whose first non-blank character is `;` is a comment. Columns count characters, from 1.

use crate::diagnostic::{Pos, ScriptError, ScriptProblem};

/// One node of the script tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    /// A word or number, upper-cased.
    Atom { text: String, pos: Pos },
    /// The `=` sign (substitutes, links, MEMORY transformations).
    Equals { pos: Pos },
    /// A parenthesised list; `pos` is its `(`.
    List { items: Vec<Node>, pos: Pos },
}

impl Node {
    /// Where the node starts.
    pub fn pos(&self) -> Pos {
        match self {
            Node::Atom { pos, .. } | Node::Equals { pos } | Node::List { pos, .. } => *pos,
        }
    }

    /// How the node reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Node::Atom { text, .. } => text.clone(),
            Node::Equals { .. } => "=".to_string(),
            Node::List { items, .. } if items.is_empty() => "()".to_string(),
            Node::List { .. } => "a list".to_string(),
        }
    }

    /// The atom's text, if the node is an atom.
    pub fn atom(&self) -> Option<&str> {
        match self {
            Node::Atom { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A token with its place.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Open(Pos),
    Close(Pos),
    Equals(Pos),
    Atom(String, Pos),
}

/// The whole script as top-level nodes, plus the place just after its last character (where a
/// missing entry is reported).
pub(crate) fn read(text: &str) -> Result<(Vec<Node>, Pos), ScriptError> {
    let (tokens, end) = tokenize(text);
    let nodes = build_tree(tokens)?;
    Ok((nodes, end))
}

/// Splits the text into tokens, skipping white space and comment lines.
fn tokenize(text: &str) -> (Vec<Token>, Pos) {
    let mut tokens = Vec::new();
    let mut end = Pos { line: 1, column: 1 };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        end = Pos {
            line: number,
            column: line.chars().count() + 1,
        };
        if line.trim_start().starts_with(';') {
            continue;
        }
        tokenize_line(line, number, &mut tokens);
    }
    (tokens, end)
}

/// Appends the tokens of one (non-comment) line.
fn tokenize_line(line: &str, number: usize, tokens: &mut Vec<Token>) {
    let mut atom = String::new();
    let mut atom_pos = Pos {
        line: number,
        column: 1,
    };
    for (index, ch) in line.chars().enumerate() {
        let pos = Pos {
            line: number,
            column: index + 1,
        };
        let token = match ch {
            '(' => Some(Token::Open(pos)),
            ')' => Some(Token::Close(pos)),
            '=' => Some(Token::Equals(pos)),
            c if c.is_whitespace() => None,
            c => {
                if atom.is_empty() {
                    atom_pos = pos;
                }
                atom.extend(c.to_uppercase());
                continue;
            }
        };
        if !atom.is_empty() {
            tokens.push(Token::Atom(std::mem::take(&mut atom), atom_pos));
        }
        tokens.extend(token);
    }
    if !atom.is_empty() {
        tokens.push(Token::Atom(atom, atom_pos));
    }
}

/// Nests the tokens into lists, refusing unbalanced parentheses.
fn build_tree(tokens: Vec<Token>) -> Result<Vec<Node>, ScriptError> {
    let mut open: Vec<(Pos, Vec<Node>)> = Vec::new();
    let mut top = Vec::new();
    for token in tokens {
        let node = match token {
            Token::Open(pos) => {
                open.push((pos, Vec::new()));
                continue;
            }
            Token::Close(pos) => match open.pop() {
                Some((start, items)) => Node::List { items, pos: start },
                None => return Err(ScriptError::at(pos, ScriptProblem::UnbalancedClose)),
            },
            Token::Equals(pos) => Node::Equals { pos },
            Token::Atom(text, pos) => Node::Atom { text, pos },
        };
        match open.last_mut() {
            Some((_, items)) => items.push(node),
            None => top.push(node),
        }
    }
    match open.first() {
        Some((pos, _)) => Err(ScriptError::at(*pos, ScriptProblem::UnbalancedOpen)),
        None => Ok(top),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(text: &str, line: usize, column: usize) -> Node {
        Node::Atom {
            text: text.to_string(),
            pos: Pos { line, column },
        }
    }

    #[test]
    fn atoms_are_upper_cased_and_lists_nest_with_their_places() {
        let (nodes, _) = read("(hi (=there))").expect("reads");
        let expected = Node::List {
            pos: Pos { line: 1, column: 1 },
            items: vec![
                atom("HI", 1, 2),
                Node::List {
                    pos: Pos { line: 1, column: 5 },
                    items: vec![
                        Node::Equals {
                            pos: Pos { line: 1, column: 6 },
                        },
                        atom("THERE", 1, 7),
                    ],
                },
            ],
        };
        assert_eq!(nodes, vec![expected]);
    }

    #[test]
    fn dlist_is_an_atom_followed_by_a_list() {
        let (nodes, _) = read("DLIST(/ FAMILY)").expect("reads");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].atom(), Some("DLIST"));
    }

    #[test]
    fn comment_lines_are_skipped_but_counted() {
        let (nodes, _) = read("; a comment (\n   ; another )\n(A)").expect("reads");
        assert_eq!(nodes[0].pos(), Pos { line: 3, column: 1 });
    }

    #[test]
    fn an_unclosed_parenthesis_is_reported_where_it_opens() {
        let err = read("(A)\n  (B (C)\n(D)").expect_err("unbalanced");
        assert_eq!((err.line, err.column), (2, 3));
        assert_eq!(err.problem, ScriptProblem::UnbalancedOpen);
    }

    #[test]
    fn a_stray_closing_parenthesis_is_reported_where_it_stands() {
        let err = read("(A))").expect_err("unbalanced");
        assert_eq!((err.line, err.column), (1, 4));
        assert_eq!(err.problem, ScriptProblem::UnbalancedClose);
    }
}
