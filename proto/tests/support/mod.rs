//! Helpers for the contract tests: the built descriptor set, and finders that edit it the way a
//! future `.proto` change would.

use prost::Message as _;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet, ServiceDescriptorProto,
};
use township_proto::FILE_DESCRIPTOR_SET;
use township_proto::contract::{Contract, breaking_changes};

/// The contract before and after `edit` changes the built descriptor set.
pub fn contracts_around(edit: impl FnOnce(&mut FileDescriptorSet)) -> (Contract, Contract) {
    let mut set =
        FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("the built descriptor set decodes");
    let before = Contract::from_descriptor_set(&set);
    edit(&mut set);
    (before, Contract::from_descriptor_set(&set))
}

/// What `edit` breaks, as the check reports it.
pub fn breaking_changes_after(edit: impl FnOnce(&mut FileDescriptorSet)) -> Vec<String> {
    let (before, after) = contracts_around(edit);
    breaking_changes(&before, &after)
}

/// The file of a full name's package, and the name's last part
/// (`township.bank.v1.X`: the bank's file and `X`).
pub fn file_of<'a, 'n>(
    set: &'a mut FileDescriptorSet,
    full_name: &'n str,
) -> (&'a mut FileDescriptorProto, &'n str) {
    let (package, name) = full_name
        .rsplit_once('.')
        .expect("a full name has a package");
    let file = set.file.iter_mut().find(|file| file.package() == package);
    (
        file.unwrap_or_else(|| panic!("no file of package {package}")),
        name,
    )
}

/// A top-level message, by full name.
pub fn message<'a>(set: &'a mut FileDescriptorSet, full_name: &str) -> &'a mut DescriptorProto {
    let (file, name) = file_of(set, full_name);
    let found = file
        .message_type
        .iter_mut()
        .find(|message| message.name() == name);
    found.unwrap_or_else(|| panic!("no message {full_name}"))
}

/// A field of a top-level message, by name.
pub fn field<'a>(
    set: &'a mut FileDescriptorSet,
    message_name: &str,
    name: &str,
) -> &'a mut FieldDescriptorProto {
    let found = message(set, message_name)
        .field
        .iter_mut()
        .find(|field| field.name() == name);
    found.unwrap_or_else(|| panic!("no field {name} in {message_name}"))
}

/// Deletes a field's line from its message, reserving nothing.
pub fn remove_field(set: &mut FileDescriptorSet, message_name: &str, name: &str) {
    let fields = &mut message(set, message_name).field;
    let before = fields.len();
    fields.retain(|field| field.name() != name);
    assert_eq!(
        fields.len(),
        before - 1,
        "no field {name} in {message_name}"
    );
}

/// A top-level enum, by full name.
pub fn enumeration<'a>(
    set: &'a mut FileDescriptorSet,
    full_name: &str,
) -> &'a mut EnumDescriptorProto {
    let (file, name) = file_of(set, full_name);
    let found = file
        .enum_type
        .iter_mut()
        .find(|enumeration| enumeration.name() == name);
    found.unwrap_or_else(|| panic!("no enum {full_name}"))
}

/// A service, by full name.
pub fn service<'a>(
    set: &'a mut FileDescriptorSet,
    full_name: &str,
) -> &'a mut ServiceDescriptorProto {
    let (file, name) = file_of(set, full_name);
    let found = file
        .service
        .iter_mut()
        .find(|service| service.name() == name);
    found.unwrap_or_else(|| panic!("no service {full_name}"))
}
