//! The snapshot's text form of a [`Contract`], written by `Display` and read back by `FromStr`.
//!
//! A `#` header, then one unindented line per message, enum and service, sorted by full name, each
//! followed by its indented facts:
//!
//! ```text
//! message township.bank.v1.TransferRequest
//!   field 3 amount_cents singular int64
//!   field 5 memo optional string oneof note
//!   reserved 6 to 8
//!   reserved name old_memo
//! enum township.lock.v1.Mode
//!   value 0 MODE_UNSPECIFIED
//! service township.time.v1.TimeService
//!   rpc WatchTime township.time.v1.WatchTimeRequest -> stream township.time.v1.TimeReply
//! ```

use std::fmt::{self, Display, Formatter};
use std::str::FromStr;

use super::{Contract, Field, Reserved, Rpc};

const HEADER: &str = "\
# Township's API contract, checked against the built .proto files by `cargo test -p township-proto`.
# Written only by hand-run `cargo run -p township-proto --example update_contract`; each update is
# recorded, with its reason, in proto/CHANGELOG.md. Format: proto/src/contract/text.rs.
";

/// The snapshot's text form: a `#` header, then one line per message, enum and service, each
/// followed by its indented fields, values, reserved numbers and names, or RPCs, all sorted.
impl Display for Contract {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(HEADER)?;
        for (name, message) in &self.messages {
            writeln!(f, "message {name}")?;
            for (number, field) in &message.fields {
                write!(
                    f,
                    "  field {number} {} {} {}",
                    field.name, field.label, field.ty
                )?;
                if let Some(oneof) = &field.oneof {
                    write!(f, " oneof {oneof}")?;
                }
                writeln!(f)?;
            }
            write!(f, "{}", message.reserved)?;
        }
        for (name, enumeration) in &self.enums {
            writeln!(f, "enum {name}")?;
            let mut values: Vec<_> = enumeration.values.iter().collect();
            values.sort_by_key(|&(value, number)| (number, value));
            for (value, number) in values {
                writeln!(f, "  value {number} {value}")?;
            }
            write!(f, "{}", enumeration.reserved)?;
        }
        for (name, rpcs) in &self.services {
            writeln!(f, "service {name}")?;
            for (rpc, Rpc { input, output }) in rpcs {
                writeln!(f, "  rpc {rpc} {input} -> {output}")?;
            }
        }
        Ok(())
    }
}

impl Display for Reserved {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for &(from, to) in &self.ranges {
            if from == to {
                writeln!(f, "  reserved {from}")?;
            } else {
                writeln!(f, "  reserved {from} to {to}")?;
            }
        }
        self.names
            .iter()
            .try_for_each(|name| writeln!(f, "  reserved name {name}"))
    }
}

/// A snapshot line that is not in the text form [`Contract`]'s `Display` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    /// What was wrong, quoting the line.
    pub reason: String,
}

impl Display for ParseError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "contract snapshot, line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// What the indented lines that follow belong to.
enum Scope {
    Top,
    Message(String),
    Enum(String),
    Service(String),
}

/// Reads back the text form [`Contract`]'s `Display` writes.
impl FromStr for Contract {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let mut contract = Self::default();
        let mut scope = Scope::Top;
        for (index, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            contract
                .read_line(&words, &mut scope)
                .map_err(|reason| ParseError {
                    line: index + 1,
                    reason: format!("{reason}: `{}`", line.trim()),
                })?;
        }
        Ok(contract)
    }
}

impl Contract {
    /// Adds one line's fact to the contract, or says why the line is not in the text form.
    fn read_line(&mut self, words: &[&str], scope: &mut Scope) -> Result<(), &'static str> {
        let number = |word: &str| word.parse::<i32>().map_err(|_| "not a number");
        match (words, &*scope) {
            ([], _) => {}
            ([first, ..], _) if first.starts_with('#') => {}
            (["message", name], _) => {
                self.messages.entry((*name).to_owned()).or_default();
                *scope = Scope::Message((*name).to_owned());
            }
            (["enum", name], _) => {
                self.enums.entry((*name).to_owned()).or_default();
                *scope = Scope::Enum((*name).to_owned());
            }
            (["service", name], _) => {
                self.services.entry((*name).to_owned()).or_default();
                *scope = Scope::Service((*name).to_owned());
            }
            (["field", at, name, label, ty, rest @ ..], Scope::Message(message)) => {
                let oneof = match rest {
                    [] => None,
                    ["oneof", oneof] => Some((*oneof).to_owned()),
                    _ => return Err("expected `oneof NAME` or nothing after the field's type"),
                };
                let (name, label, ty) = ((*name).to_owned(), (*label).to_owned(), (*ty).to_owned());
                let fields = &mut self.messages.entry(message.clone()).or_default().fields;
                fields.insert(
                    number(at)?,
                    Field {
                        name,
                        label,
                        ty,
                        oneof,
                    },
                );
            }
            (["value", at, name], Scope::Enum(enumeration)) => {
                let values = &mut self.enums.entry(enumeration.clone()).or_default().values;
                values.insert((*name).to_owned(), number(at)?);
            }
            (["reserved", rest @ ..], Scope::Message(owner) | Scope::Enum(owner)) => {
                let reserved = if matches!(&*scope, Scope::Message(_)) {
                    &mut self.messages.entry(owner.clone()).or_default().reserved
                } else {
                    &mut self.enums.entry(owner.clone()).or_default().reserved
                };
                match rest {
                    ["name", name] => {
                        reserved.names.insert((*name).to_owned());
                    }
                    [at] => reserved.ranges.push((number(at)?, number(at)?)),
                    [from, "to", to] => reserved.ranges.push((number(from)?, number(to)?)),
                    _ => {
                        return Err(
                            "expected `reserved N`, `reserved N to M` or `reserved name X`",
                        );
                    }
                }
            }
            (["rpc", name, rest @ ..], Scope::Service(service)) => {
                let signature = rest.join(" ");
                let (input, output) = signature
                    .split_once(" -> ")
                    .ok_or("expected `INPUT -> OUTPUT`")?;
                let rpc = Rpc {
                    input: input.to_owned(),
                    output: output.to_owned(),
                };
                let rpcs = self.services.entry(service.clone()).or_default();
                rpcs.insert((*name).to_owned(), rpc);
            }
            _ => return Err("not a line of the contract's text form"),
        }
        Ok(())
    }
}
