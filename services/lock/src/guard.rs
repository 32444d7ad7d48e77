//! Who may lock what, and how much: the resource ACL (`--resource-acl FILE`) and the caps on
//! each principal (live leases, waiting acquires, the longest ttl).
//!
//! The ACL is JSON: `{"rules": [{"principals": [...], "prefixes": [...], "modes": ["MODE_READ",
//! "MODE_WRITE"], "max_leases": N, "max_waiters": N, "max_ttl": "60s"}]}`. With an ACL, a target
//! is allowed only when some rule names the caller (principals match as in the authorization
//! policy: exact, `prefix*`, `*suffix`, `*` for any caller with a certificate; callers without
//! one share the principal `""`), covers the resource by one of its prefixes, and lists the mode:
//! deny by default. Without one, everything is allowed, as before. The caps are the server's
//! flags, lowered for a principal by every rule naming it that sets one. The file is read at start
//! (a broken one stops the start) and again on SIGHUP (a broken one keeps the ACL in force).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context;
use serde_json::{Map, Value};
use township_cell::Mode;
use township_kit::authz::pattern_matches;

use crate::{Error, table};

/// What one principal may hold and ask for at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Live leases.
    pub max_leases: usize,
    /// Acquires waiting for their grant.
    pub max_waiters: usize,
    /// The longest lease lifetime it may ask for.
    pub max_ttl: Duration,
}

/// One rule of the ACL.
#[derive(Clone, Debug)]
struct Rule {
    principals: Vec<String>,
    prefixes: Vec<String>,
    modes: Vec<Mode>,
    max_leases: Option<usize>,
    max_waiters: Option<usize>,
    max_ttl: Option<Duration>,
}

impl Rule {
    fn names(&self, principal: &str) -> bool {
        self.principals
            .iter()
            .any(|p| pattern_matches(p, principal))
    }
}

/// A checked resource ACL.
#[derive(Clone, Debug)]
pub struct Acl {
    rules: Vec<Rule>,
}

impl Acl {
    /// Parses and checks an ACL; the error says where and what, in one line.
    pub fn parse(json: &str) -> Result<Acl, String> {
        let value: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let top = object(&value, "the ACL")?;
        only(top, &["rules"], "the ACL")?;
        let rules = match top.get("rules") {
            Some(Value::Array(rules)) => rules,
            _ => return Err("\"rules\": must be a list".into()),
        };
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| parse_rule(rule).map_err(|e| format!("\"rules\" {i}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Acl { rules })
    }

    /// Reads and parses the ACL at `path`; the error names the file.
    pub fn from_file(path: &Path) -> anyhow::Result<Acl> {
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Acl::parse(&json).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Whether some rule lets `principal` take `mode` on `resource`.
    pub fn allows(&self, principal: &str, resource: &str, mode: Mode) -> bool {
        self.rules.iter().any(|rule| {
            rule.names(principal)
                && rule.modes.contains(&mode)
                && rule
                    .prefixes
                    .iter()
                    .any(|p| resource.starts_with(p.as_str()))
        })
    }

    /// `defaults`, lowered by every rule naming `principal` that sets a cap.
    pub fn caps(&self, principal: &str, defaults: Caps) -> Caps {
        self.rules
            .iter()
            .filter(|rule| rule.names(principal))
            .fold(defaults, |caps, rule| Caps {
                max_leases: rule
                    .max_leases
                    .map_or(caps.max_leases, |n| n.min(caps.max_leases)),
                max_waiters: rule
                    .max_waiters
                    .map_or(caps.max_waiters, |n| n.min(caps.max_waiters)),
                max_ttl: rule.max_ttl.map_or(caps.max_ttl, |d| d.min(caps.max_ttl)),
            })
    }
}

fn parse_rule(value: &Value) -> Result<Rule, String> {
    let rule = object(value, "a rule")?;
    only(
        rule,
        &[
            "principals",
            "prefixes",
            "modes",
            "max_leases",
            "max_waiters",
            "max_ttl",
        ],
        "a rule",
    )?;
    let modes = strings(rule, "modes")?
        .into_iter()
        .map(|mode| match mode.as_str() {
            "MODE_READ" => Ok(Mode::Read),
            "MODE_WRITE" => Ok(Mode::Write),
            other => Err(format!(
                "\"modes\": {other:?} is not MODE_READ or MODE_WRITE"
            )),
        })
        .collect::<Result<_, _>>()?;
    let count = |key: &str| -> Result<Option<usize>, String> {
        match rule.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("\"{key}\": must be a whole number")),
        }
    };
    let max_ttl = match rule.get("max_ttl") {
        None => None,
        Some(Value::String(text)) => Some(
            humantime::parse_duration(text).map_err(|e| format!("\"max_ttl\": {text:?}: {e}"))?,
        ),
        Some(_) => return Err("\"max_ttl\": must be a duration such as \"60s\"".into()),
    };
    Ok(Rule {
        principals: strings(rule, "principals")?,
        prefixes: strings(rule, "prefixes")?,
        modes,
        max_leases: count("max_leases")?,
        max_waiters: count("max_waiters")?,
        max_ttl,
    })
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what} must be a JSON object"))
}

fn only(object: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), String> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(format!("{what} has an unknown field \"{key}\"")),
        None => Ok(()),
    }
}

/// A required, non-empty list of strings.
fn strings(object: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let list = match object.get(key) {
        Some(Value::Array(list)) if !list.is_empty() => list,
        _ => return Err(format!("\"{key}\": must be a non-empty list")),
    };
    list.iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("\"{key}\": every item must be a string"))
        })
        .collect()
}

/// The ACL in force (if any) and the server's caps, checked before every acquire.
#[derive(Debug)]
pub struct Guard {
    acl: Option<(PathBuf, RwLock<Arc<Acl>>)>,
    defaults: Caps,
}

impl Guard {
    /// Reads the ACL at `acl` (if given); `defaults` are the server's caps.
    pub fn new(acl: Option<PathBuf>, defaults: Caps) -> anyhow::Result<Guard> {
        let acl = match acl {
            Some(path) => {
                let loaded = Acl::from_file(&path)?;
                tracing::info!(path = %path.display(), rules = loaded.rules.len(), "resource ACL in force");
                Some((path, RwLock::new(Arc::new(loaded))))
            }
            None => None,
        };
        Ok(Guard { acl, defaults })
    }

    /// Whether there is an ACL file to reload.
    pub fn has_acl(&self) -> bool {
        self.acl.is_some()
    }

    /// Reads the ACL file again; on failure the one in force stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        if let Some((path, current)) = &self.acl {
            let loaded = Acl::from_file(path)?;
            *current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        }
        Ok(())
    }

    /// Checks `request` from its principal against the ACL and the ttl cap; returns the caps
    /// the table applies to the principal's leases and waits. A target the ACL does not allow is
    /// PERMISSION_DENIED naming only the field.
    pub fn check(&self, request: &table::Request) -> Result<Caps, Error> {
        let principal = request.principal.as_str();
        let caps = match &self.acl {
            Some((_, current)) => {
                let acl = current.read().unwrap_or_else(|e| e.into_inner()).clone();
                for (i, target) in request.targets.iter().enumerate() {
                    if !acl.allows(principal, &target.resource, target.mode) {
                        return Err(Error::NotAllowed(format!("targets[{i}]")));
                    }
                }
                acl.caps(principal, self.defaults)
            }
            None => self.defaults,
        };
        if request.ttl > caps.max_ttl {
            return Err(Error::OverCap(format!(
                "ttl: at most {:?} for this caller",
                caps.max_ttl
            )));
        }
        Ok(caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Caps = Caps {
        max_leases: 100,
        max_waiters: 100,
        max_ttl: Duration::from_secs(300),
    };

    const ACL: &str = r#"{"rules": [
        {"principals": ["spiffe://township/bank"], "prefixes": ["account/"], "modes": ["MODE_READ", "MODE_WRITE"]},
        {"principals": ["spiffe://township/user/*"], "prefixes": ["scratch/"], "modes": ["MODE_READ"],
         "max_leases": 2, "max_ttl": "30s"},
        {"principals": [""], "prefixes": ["public/"], "modes": ["MODE_WRITE"], "max_waiters": 1}
    ]}"#;

    #[test]
    fn a_target_is_allowed_only_by_a_rule_naming_the_principal_the_prefix_and_the_mode() {
        let acl = Acl::parse(ACL).unwrap();
        let bank = "spiffe://township/bank";
        let alice = "spiffe://township/user/alice";
        assert!(acl.allows(bank, "account/1", Mode::Write));
        assert!(!acl.allows(alice, "account/1", Mode::Write));
        assert!(!acl.allows(alice, "account/1", Mode::Read));
        assert!(acl.allows(alice, "scratch/x", Mode::Read));
        assert!(
            !acl.allows(alice, "scratch/x", Mode::Write),
            "mode not listed"
        );
        assert!(
            !acl.allows(bank, "scratch/x", Mode::Read),
            "prefix of another rule"
        );
        assert!(
            !acl.allows(bank, "accounts", Mode::Read),
            "a prefix is a prefix"
        );
        assert!(
            acl.allows("", "public/board", Mode::Write),
            "the anonymous principal"
        );
        assert!(
            !acl.allows("", "scratch/x", Mode::Read),
            "\"*\" never names the anonymous principal"
        );
    }

    #[test]
    fn caps_are_the_defaults_lowered_by_every_rule_naming_the_principal() {
        let acl = Acl::parse(ACL).unwrap();
        let alice = acl.caps("spiffe://township/user/alice", DEFAULTS);
        assert_eq!(alice.max_leases, 2);
        assert_eq!(alice.max_waiters, 100);
        assert_eq!(alice.max_ttl, Duration::from_secs(30));
        assert_eq!(acl.caps("spiffe://township/bank", DEFAULTS), DEFAULTS);
        assert_eq!(acl.caps("", DEFAULTS).max_waiters, 1);
        let low = Caps {
            max_leases: 1,
            ..DEFAULTS
        };
        assert_eq!(
            acl.caps("spiffe://township/user/alice", low).max_leases,
            1,
            "a rule never raises a cap"
        );
    }

    #[test]
    fn a_broken_acl_is_refused_saying_where() {
        let cases = [
            ("[]", "must be a JSON object"),
            (r#"{"rulez": []}"#, "unknown field \"rulez\""),
            (
                r#"{"rules": [{"prefixes": ["a/"], "modes": ["MODE_READ"]}]}"#,
                "\"rules\" 0: \"principals\": must be a non-empty list",
            ),
            (
                r#"{"rules": [{"principals": ["x"], "prefixes": ["a/"], "modes": ["MODE_ALL"]}]}"#,
                "MODE_ALL",
            ),
            (
                r#"{"rules": [{"principals": ["x"], "prefixes": ["a/"], "modes": ["MODE_READ"], "max_ttl": "soon"}]}"#,
                "\"max_ttl\"",
            ),
            (
                r#"{"rules": [{"principals": ["x"], "prefixes": ["a/"], "modes": ["MODE_READ"], "max_leases": -1}]}"#,
                "\"max_leases\"",
            ),
            (
                r#"{"rules": [{"principals": ["x"], "prefixes": ["a/"], "modes": ["MODE_READ"], "surprise": 1}]}"#,
                "\"surprise\"",
            ),
        ];
        for (json, says) in cases {
            let err = Acl::parse(json).unwrap_err();
            assert!(err.contains(says), "{json}: {err}");
        }
    }
}
