//! The wire contract of Township's APIs, and the check that guards it, the way `buf breaking` does.
//!
//! A [`Contract`] is what callers depend on: every message's fields by number (name, label, type,
//! oneof) and reserved numbers and names, every enum's values, every service's RPCs with their
//! types and streaming. [`breaking_changes`] lists what a new contract takes away from an old one:
//! a field, value, RPC, message, enum or service removed (a field or value only counts as removed
//! if neither its number nor its name is now `reserved`), or anything about one changed, names
//! included (JSON and grpcurl callers see them). Adding is free.
//!
//! The committed snapshot, `proto/contract-snapshot.txt`, is a contract in the text form of
//! `contract/text.rs`, one fact a line, sorted, rather than a binary `FileDescriptorSet` image: a
//! change to the contract is then a one-line diff a reviewer can read, and edits to `.proto`
//! comments (which the built set carries as source info) leave it alone. No build step writes it:
//! `cargo run -p township-proto --example update_contract`, run by hand, does, and
//! `proto/CHANGELOG.md` records why.

mod text;

pub use text::ParseError;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto,
};

/// The promises Township's `.proto` files make to callers; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contract {
    messages: BTreeMap<String, Message>,
    enums: BTreeMap<String, Enum>,
    /// Service full name to RPC name to signature.
    services: BTreeMap<String, BTreeMap<String, Rpc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Message {
    fields: BTreeMap<i32, Field>,
    reserved: Reserved,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: String,
    /// `singular` (proto3, no presence), `optional`, `repeated` or `required`.
    label: String,
    /// A scalar (`int64`), a message or enum's full name, or `map<K,V>`.
    ty: String,
    oneof: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Enum {
    /// Value name to number (names, not numbers, are unique: numbers may alias).
    values: BTreeMap<String, i32>,
    reserved: Reserved,
}

/// An RPC's request and response: a type's full name, after `stream ` when it streams.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rpc {
    input: String,
    output: String,
}

/// Reserved numbers as inclusive ranges, and reserved names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reserved {
    ranges: Vec<(i32, i32)>,
    names: BTreeSet<String>,
}

impl Reserved {
    fn covers(&self, number: i32, name: &str) -> bool {
        let in_range = |&(from, to): &(i32, i32)| (from..=to).contains(&number);
        self.names.contains(name) || self.ranges.iter().any(in_range)
    }
}

/// Well-known types come with protox, not from `proto/`, so they are not Township's contract.
const NOT_OURS: &str = "google/protobuf/";

impl Contract {
    /// The contract of the `.proto` files this crate was built from
    /// ([`crate::FILE_DESCRIPTOR_SET`]).
    pub fn built() -> Result<Self, prost::DecodeError> {
        let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)?;
        Ok(Self::from_descriptor_set(&set))
    }

    /// The contract of a compiled descriptor set, leaving out the well-known `google.protobuf`
    /// types.
    pub fn from_descriptor_set(set: &FileDescriptorSet) -> Self {
        let mut contract = Self::default();
        for file in &set.file {
            if file.name().starts_with(NOT_OURS) {
                continue;
            }
            let proto3 = file.syntax() == "proto3";
            for message in &file.message_type {
                contract.add_message(file.package(), message, proto3);
            }
            for enumeration in &file.enum_type {
                contract.add_enum(file.package(), enumeration);
            }
            for service in &file.service {
                let rpcs = service
                    .method
                    .iter()
                    .map(|rpc| (rpc.name().to_owned(), Rpc::of(rpc)));
                let name = full_name(file.package(), service.name());
                contract.services.insert(name, rpcs.collect());
            }
        }
        contract
    }

    fn add_message(&mut self, scope: &str, message: &DescriptorProto, proto3: bool) {
        let name = full_name(scope, message.name());
        // A map's entry message is synthetic: its field shows as `map<K,V>`, it is not listed.
        let mut maps = BTreeMap::new();
        for nested in &message.nested_type {
            if nested
                .options
                .as_ref()
                .is_some_and(|options| options.map_entry())
            {
                let types: Vec<String> = nested.field.iter().map(|f| type_of(f, &maps)).collect();
                let map = format!("map<{}>", types.join(","));
                maps.insert(full_name(&name, nested.name()), map);
            } else {
                self.add_message(&name, nested, proto3);
            }
        }
        for enumeration in &message.enum_type {
            self.add_enum(&name, enumeration);
        }
        let fields = message.field.iter().map(|field| {
            let oneof = field.oneof_index.filter(|_| !field.proto3_optional());
            let oneof =
                oneof.and_then(|index| message.oneof_decl.get(usize::try_from(index).ok()?));
            let described = Field {
                name: field.name().to_owned(),
                label: label_of(field, proto3).to_owned(),
                ty: type_of(field, &maps),
                oneof: oneof.map(|oneof| oneof.name().to_owned()),
            };
            (field.number(), described)
        });
        // A message's reserved ranges end exclusive; an enum's end inclusive.
        let ranges = message
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end().saturating_sub(1)));
        let reserved = Reserved {
            ranges: ranges.collect(),
            names: message.reserved_name.iter().cloned().collect(),
        };
        let fields = fields.collect();
        self.messages.insert(name, Message { fields, reserved });
    }

    fn add_enum(&mut self, scope: &str, enumeration: &EnumDescriptorProto) {
        let values = enumeration
            .value
            .iter()
            .map(|v| (v.name().to_owned(), v.number()));
        let reserved = Reserved {
            ranges: enumeration
                .reserved_range
                .iter()
                .map(|r| (r.start(), r.end()))
                .collect(),
            names: enumeration.reserved_name.iter().cloned().collect(),
        };
        let values = values.collect();
        let name = full_name(scope, enumeration.name());
        self.enums.insert(name, Enum { values, reserved });
    }
}

fn full_name(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

fn label_of(field: &FieldDescriptorProto, proto3: bool) -> &'static str {
    match field.label() {
        Label::Repeated => "repeated",
        Label::Required => "required",
        Label::Optional if proto3 && !field.proto3_optional() => "singular",
        Label::Optional => "optional",
    }
}

fn type_of(field: &FieldDescriptorProto, maps: &BTreeMap<String, String>) -> String {
    let type_name = field.type_name().trim_start_matches('.');
    match field.r#type() {
        Type::Message if maps.contains_key(type_name) => maps[type_name].clone(),
        Type::Message | Type::Enum => type_name.to_owned(),
        Type::Group => format!("group:{type_name}"),
        scalar => scalar
            .as_str_name()
            .trim_start_matches("TYPE_")
            .to_lowercase(),
    }
}

impl Rpc {
    fn of(method: &MethodDescriptorProto) -> Self {
        let side = |streaming: bool, ty: &str| {
            let ty = ty.trim_start_matches('.');
            if streaming {
                format!("stream {ty}")
            } else {
                ty.to_owned()
            }
        };
        Self {
            input: side(method.client_streaming(), method.input_type()),
            output: side(method.server_streaming(), method.output_type()),
        }
    }
}

/// Every promise of `old` that `new` breaks, one line each, e.g.
/// ``township.bank.v1.TransferRequest field 3 `amount_cents`: type changed int64 -> string``;
/// empty when `new` only adds to `old`.
pub fn breaking_changes(old: &Contract, new: &Contract) -> Vec<String> {
    let mut found = Found::default();
    for (name, was) in &old.messages {
        let Some(now) = new.messages.get(name) else {
            found.0.push(format!("{name}: message removed"));
            continue;
        };
        for (number, field) in &was.fields {
            let subject = format!("{name} field {number} `{}`", field.name);
            if let Some(current) = now.fields.get(number) {
                found.changed(&subject, "name", &field.name, &current.name);
                found.changed(&subject, "label", &field.label, &current.label);
                found.changed(&subject, "type", &field.ty, &current.ty);
                let oneof = |field: &Field| field.oneof.clone().unwrap_or_else(|| "none".into());
                found.changed(&subject, "oneof", oneof(field), oneof(current));
            } else if let Some((moved, _)) = now.fields.iter().find(|(_, f)| f.name == field.name) {
                found.changed(&subject, "number", number, moved);
            } else if !now.reserved.covers(*number, &field.name) {
                found.unreserved(&subject);
            }
        }
    }
    for (name, was) in &old.enums {
        let Some(now) = new.enums.get(name) else {
            found.0.push(format!("{name}: enum removed"));
            continue;
        };
        for (value, number) in &was.values {
            match now.values.get(value) {
                Some(current) => found.changed(
                    &format!("{name} value `{value}`"),
                    "number",
                    number,
                    current,
                ),
                None if now.reserved.covers(*number, value) => {}
                None => found.unreserved(&format!("{name} value {number} `{value}`")),
            }
        }
    }
    for (name, was) in &old.services {
        let Some(now) = new.services.get(name) else {
            found.0.push(format!("{name}: service removed"));
            continue;
        };
        for (rpc, signature) in was {
            let subject = format!("{name} rpc `{rpc}`");
            let Some(current) = now.get(rpc) else {
                found.0.push(format!("{subject}: removed"));
                continue;
            };
            found.changed(&subject, "input", &signature.input, &current.input);
            found.changed(&subject, "output", &signature.output, &current.output);
        }
    }
    found.0
}

/// The breaking changes found so far, in the order found.
#[derive(Default)]
struct Found(Vec<String>);

impl Found {
    fn changed<T: PartialEq + Display>(&mut self, subject: &str, what: &str, was: T, now: T) {
        if was != now {
            self.0
                .push(format!("{subject}: {what} changed {was} -> {now}"));
        }
    }

    fn unreserved(&mut self, subject: &str) {
        self.0.push(format!(
            "{subject}: removed without reserving its number or name"
        ));
    }
}
