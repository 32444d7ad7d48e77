//! The policy's JSON, in grpc-go's two steps: decoding (unknown fields and wrong types are
//! `failed to unmarshal policy: …`), then checking, in grpc-go's order and with its messages.

use std::{collections::HashSet, sync::Arc};

use http::HeaderName;
use serde_json::{Map, Value};

use super::{HeaderRule, Pattern, Policy, PolicyError, Rule};

/// The hop-by-hop headers (and `host`) a policy may not name.
const UNSUPPORTED_HEADERS: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(super) fn policy(json: &str) -> Result<Policy, PolicyError> {
    let raw = decode(json)?;
    if raw.name.is_empty() {
        return Err(invalid(r#""name" is not present"#));
    }
    if raw.allow_rules.is_empty() {
        return Err(invalid(r#""allow_rules" is not present"#));
    }
    let deny_rules = rules(raw.deny_rules, "deny_rules")?;
    let allow_rules = rules(raw.allow_rules, "allow_rules")?;
    Ok(Policy {
        name: raw.name,
        deny_rules,
        allow_rules,
    })
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(message.into())
}

fn rules(raw: Vec<RawRule>, list: &str) -> Result<Vec<Rule>, PolicyError> {
    let mut names = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, rule)| {
            let at = |problem: String| invalid(format!(r#""{list}" {i}: {problem}"#));
            if rule.name.is_empty() {
                return Err(at(r#""name" is not present"#.to_owned()));
            }
            if !names.insert(rule.name.clone()) {
                return Err(at(format!(r#"duplicate "name" {}"#, rule.name)));
            }
            let headers = rule
                .headers
                .into_iter()
                .enumerate()
                .map(|(j, header)| {
                    header_rule(header)
                        .map_err(|problem| at(format!(r#""headers" {j}: {problem}"#)))
                })
                .collect::<Result<_, _>>()?;
            Ok(Rule {
                name: Arc::from(rule.name),
                principals: patterns(&rule.principals),
                paths: patterns(&rule.paths),
                headers,
            })
        })
        .collect()
}

fn header_rule(raw: RawHeader) -> Result<HeaderRule, String> {
    if raw.key.is_empty() {
        return Err(r#""key" is not present"#.to_owned());
    }
    let key = raw.key.to_lowercase();
    if key.starts_with(':') || key.starts_with("grpc-") || UNSUPPORTED_HEADERS.contains(&&*key) {
        return Err(format!(r#"unsupported "key" {key}"#));
    }
    let name = HeaderName::from_bytes(key.as_bytes())
        .map_err(|_| format!(r#"invalid "key" {key}: not a header name"#))?;
    if raw.values.is_empty() {
        return Err(r#""values" is not present"#.to_owned());
    }
    Ok(HeaderRule {
        name,
        values: patterns(&raw.values),
    })
}

fn patterns(raw: &[String]) -> Vec<Pattern> {
    raw.iter().map(|p| Pattern::new(p)).collect()
}

/// The policy as decoded, before any check: an absent or `null` field is empty, as in Go.
struct RawPolicy {
    name: String,
    deny_rules: Vec<RawRule>,
    allow_rules: Vec<RawRule>,
}

struct RawRule {
    name: String,
    principals: Vec<String>,
    paths: Vec<String>,
    headers: Vec<RawHeader>,
}

struct RawHeader {
    key: String,
    values: Vec<String>,
}

fn decode(json: &str) -> Result<RawPolicy, PolicyError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| PolicyError::Unmarshal(e.to_string()))?;
    let top = Object::new(&value, String::new())?;
    top.only(&["name", "deny_rules", "allow_rules", "audit_logging_options"])?;
    // `audit_logging_options` is accepted, for grpc-go parity, and ignored: Township logs every
    // denial itself.
    Ok(RawPolicy {
        name: top.string("name")?,
        deny_rules: top.each("deny_rules", raw_rule)?,
        allow_rules: top.each("allow_rules", raw_rule)?,
    })
}

fn raw_rule(rule: Object<'_>) -> Result<RawRule, PolicyError> {
    rule.only(&["name", "source", "request"])?;
    let (mut principals, mut paths, mut headers) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(source) = rule.object("source")? {
        source.only(&["principals"])?;
        principals = source.strings("principals")?;
    }
    if let Some(request) = rule.object("request")? {
        request.only(&["paths", "headers"])?;
        paths = request.strings("paths")?;
        headers = request.each("headers", |header| {
            header.only(&["key", "values"])?;
            Ok(RawHeader {
                key: header.string("key")?,
                values: header.strings("values")?,
            })
        })?;
    }
    Ok(RawRule {
        name: rule.string("name")?,
        principals,
        paths,
        headers,
    })
}

/// A JSON object and where it is in the policy (`"allow_rules" 0: "request"`), for errors.
struct Object<'v> {
    fields: &'v Map<String, Value>,
    at: String,
}

impl<'v> Object<'v> {
    fn new(value: &'v Value, at: String) -> Result<Self, PolicyError> {
        match value {
            Value::Object(fields) => Ok(Object { fields, at }),
            _ => Err(unmarshal(&at, "expected an object")),
        }
    }

    /// Where `key` of this object is.
    fn at(&self, key: &str) -> String {
        if self.at.is_empty() {
            format!(r#""{key}""#)
        } else {
            format!(r#"{}: "{key}""#, self.at)
        }
    }

    /// Fails on a field not in `known` (keys are case-sensitive).
    fn only(&self, known: &[&str]) -> Result<(), PolicyError> {
        match self
            .fields
            .keys()
            .find(|key| !known.contains(&key.as_str()))
        {
            Some(key) => Err(unmarshal(&self.at, &format!(r#"unknown field "{key}""#))),
            None => Ok(()),
        }
    }

    /// The field `key`, unless absent or `null`.
    fn get(&self, key: &str) -> Option<&'v Value> {
        self.fields.get(key).filter(|value| !value.is_null())
    }

    fn string(&self, key: &str) -> Result<String, PolicyError> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(unmarshal(&self.at(key), "expected a string")),
        }
    }

    fn array(&self, key: &str) -> Result<&'v [Value], PolicyError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(unmarshal(&self.at(key), "expected an array")),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, PolicyError> {
        self.array(key)?
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(unmarshal(&self.at(key), "expected an array of strings")),
            })
            .collect()
    }

    fn object(&self, key: &str) -> Result<Option<Object<'v>>, PolicyError> {
        self.get(key)
            .map(|value| Object::new(value, self.at(key)))
            .transpose()
    }

    /// Decodes each object of the array `key` with `decode`.
    fn each<T>(
        &self,
        key: &str,
        decode: impl Fn(Object<'v>) -> Result<T, PolicyError>,
    ) -> Result<Vec<T>, PolicyError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, item)| decode(Object::new(item, format!("{} {i}", self.at(key)))?))
            .collect()
    }
}

fn unmarshal(at: &str, problem: &str) -> PolicyError {
    PolicyError::Unmarshal(if at.is_empty() {
        problem.to_owned()
    } else {
        format!("{at}: {problem}")
    })
}
