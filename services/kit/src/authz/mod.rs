//! The gRPC SDK authorization policy (gRFC A43): the JSON format of grpc-go's and grpc-java's
//! `authz` packages, parsed and checked here, and the decision it makes for one call.
//!
//! This module is pure: it reads nothing but the policy file in [`Policy::from_file`], and knows
//! nothing of tonic or TLS. The layer that applies it (`access`) builds a [`Subject`] from the
//! request and its connection and asks [`Policy::decide`].
//!
//! The semantics follow grpc-go exactly (`authz/rbac_translator.go` and
//! `internal/xds/rbac`):
//! - deny rules are checked first, and a match denies; then the allow rules, and no match denies;
//! - a rule matches when its `source` and its `request` both match; an absent or empty part
//!   matches every call, a plaintext caller included;
//! - `principals` and `paths` are OR'ed; `headers` entries are AND'ed, each entry's `values`
//!   OR'ed;
//! - a principal is matched against any URI SAN if the caller has one, else against any DNS
//!   SAN if it has one, else against its subject (`""` for TLS without a client certificate); a
//!   plaintext caller matches no principal, not even `"*"`;
//! - a pattern is `"*"` (any non-empty string), `"prefix*"`, `"*suffix"`, or else exact (a `*`
//!   anywhere else is literal).
//!
//! Township is stricter than grpc-go in three ways, each making a silent surprise an error:
//! JSON keys are case-sensitive, two rules in the same list may not share a name, and a header
//! `key` must be a valid header name.

use std::{
    borrow::Cow,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use http::{HeaderMap, HeaderName};

mod parse;
#[cfg(test)]
mod tests;

/// A checked authorization policy: its name, its deny rules and its (at least one) allow rules.
#[derive(Clone, Debug)]
pub struct Policy {
    name: String,
    deny_rules: Vec<Rule>,
    allow_rules: Vec<Rule>,
}

impl Policy {
    /// Parses and fully checks a policy in the SDK's JSON format. An error reads like grpc-go's,
    /// e.g. `"allow_rules" 0: "headers" 1: unsupported "key" :path`.
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        parse::policy(json)
    }

    /// Reads and parses the policy in the file at `path`; the error names the file.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let json = std::fs::read_to_string(path).map_err(|error| PolicyError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&json).map_err(|error| PolicyError::File {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// The policy's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deny rules first (a match: denied), then allow rules (no match: denied).
    pub fn decide(&self, request: &Subject<'_>) -> Decision {
        if let Some(rule) = self.deny_rules.iter().find(|rule| rule.matches(request)) {
            return Decision::Deny {
                reason: DenyReason::DenyRule(rule.name.clone()),
            };
        }
        if self.allow_rules.iter().any(|rule| rule.matches(request)) {
            Decision::Allow
        } else {
            Decision::Deny {
                reason: DenyReason::NoAllowRule,
            }
        }
    }
}

/// One call, as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The caller's identities from its verified client certificate: URI SANs, DNS SANs and
    /// subject, or None for a plaintext caller (no TLS).
    pub peer: Option<&'a Peer>,
    /// The full method, as in the HTTP/2 `:path`: `"/township.bank.v1.BankService/Transfer"`.
    pub path: &'a str,
    /// The request's headers (gRPC metadata), as received: a `-bin` header's value is in its
    /// base64 form.
    pub headers: &'a HeaderMap,
}

/// A caller over TLS, by the names in its verified leaf certificate. All empty (the default)
/// is a caller over TLS without a client certificate: it matches the principal `""` only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// The URI SANs, e.g. `spiffe://township/user/alice`.
    pub uris: Vec<String>,
    /// The DNS SANs; consulted only when there is no URI SAN.
    pub dns: Vec<String>,
    /// The subject's distinguished name as a string (grpc-go matches `pkix.Name.String()`, e.g.
    /// `CN=alice,O=Township`); consulted only when there is no SAN of either kind.
    pub subject: String,
}

/// What the policy says about a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No deny rule matched and an allow rule did.
    Allow,
    /// Refused; the reason is for logs only, never for the caller.
    Deny {
        /// Which list decided.
        reason: DenyReason,
    },
}

/// Why a call was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The deny rule with this name matched.
    DenyRule(Arc<str>),
    /// No allow rule matched.
    NoAllowRule,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::DenyRule(name) => write!(f, "deny rule {name} matched"),
            DenyReason::NoAllowRule => f.write_str("no allow rule matched"),
        }
    }
}

/// A policy that can't be used. Each message is complete on one line (a file error includes its
/// cause) and has no `source()`, so `{:#}` does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON, or JSON of the wrong shape: an unknown field, or a value of the wrong type.
    #[error("failed to unmarshal policy: {0}")]
    Unmarshal(String),
    /// Well-formed but invalid, e.g. `"allow_rules" is not present`.
    #[error("{0}")]
    Invalid(String),
    /// The policy file could not be read.
    #[error("{}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The policy file was read but is not a valid policy.
    #[error("{}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        error: Box<PolicyError>,
    },
}

/// One deny or allow rule: it matches a call when its source and its request both do.
#[derive(Clone, Debug)]
struct Rule {
    name: Arc<str>,
    /// OR'ed; empty matches every caller, plaintext included.
    principals: Vec<Pattern>,
    /// OR'ed; empty matches every method.
    paths: Vec<Pattern>,
    /// AND'ed; empty matches every call.
    headers: Vec<HeaderRule>,
}

impl Rule {
    fn matches(&self, request: &Subject<'_>) -> bool {
        self.source_matches(request.peer)
            && (self.paths.is_empty()
                || self
                    .paths
                    .iter()
                    .any(|p| p.matches(request.path.as_bytes())))
            && self.headers.iter().all(|h| h.matches(request.headers))
    }

    fn source_matches(&self, peer: Option<&Peer>) -> bool {
        if self.principals.is_empty() {
            return true;
        }
        // A plaintext caller is not authenticated: no listed principal matches it.
        let Some(peer) = peer else {
            return false;
        };
        // The first kind of name the certificate has is the only one consulted.
        let names: &[String] = if !peer.uris.is_empty() {
            &peer.uris
        } else if !peer.dns.is_empty() {
            &peer.dns
        } else {
            std::slice::from_ref(&peer.subject)
        };
        self.principals
            .iter()
            .any(|p| names.iter().any(|name| p.matches(name.as_bytes())))
    }
}

/// A header that must be present with a value one of the patterns matches.
#[derive(Clone, Debug)]
struct HeaderRule {
    name: HeaderName,
    /// OR'ed; never empty.
    values: Vec<Pattern>,
}

impl HeaderRule {
    fn matches(&self, headers: &HeaderMap) -> bool {
        // All of the header's values, joined by "," with no space; a missing header never
        // matches, not even "*".
        let mut all = headers.get_all(&self.name).iter();
        let Some(first) = all.next() else {
            return false;
        };
        let mut value = Cow::Borrowed(first.as_bytes());
        for more in all {
            let joined = value.to_mut();
            joined.push(b',');
            joined.extend_from_slice(more.as_bytes());
        }
        self.values.iter().any(|p| p.matches(&value))
    }
}

/// Whether `text` matches `pattern` as a policy's principals and paths match: `"*"` (any
/// non-empty text), `"prefix*"`, `"*suffix"`, else exactly. For other lists that name
/// principals the same way (the lock service's resource ACL).
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    Pattern::new(pattern).matches(text.as_bytes())
}

/// A string pattern of the policy, matched against the whole string.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `"*"`: any non-empty string.
    NonEmpty,
    /// `"abc*"` (so `"*abc*"` is the prefix `"*abc"`).
    Prefix(String),
    /// `"*abc"`.
    Suffix(String),
    /// Anything else, a `*` in the middle included.
    Exact(String),
}

impl Pattern {
    fn new(pattern: &str) -> Pattern {
        if pattern == "*" {
            Pattern::NonEmpty
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            Pattern::Prefix(prefix.to_owned())
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            Pattern::Suffix(suffix.to_owned())
        } else {
            Pattern::Exact(pattern.to_owned())
        }
    }

    fn matches(&self, text: &[u8]) -> bool {
        match self {
            Pattern::NonEmpty => !text.is_empty(),
            Pattern::Prefix(prefix) => text.starts_with(prefix.as_bytes()),
            Pattern::Suffix(suffix) => text.ends_with(suffix.as_bytes()),
            Pattern::Exact(exact) => text == exact.as_bytes(),
        }
    }
}
