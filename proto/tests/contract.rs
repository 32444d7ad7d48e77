//! The API contract, guarded: the built `.proto` files against the committed snapshot, and the
//! breaking-change check against edits of the built descriptor set.

mod support;

use prost_types::descriptor_proto::ReservedRange;
use prost_types::enum_descriptor_proto::EnumReservedRange;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{EnumValueDescriptorProto, OneofDescriptorProto};
use support::{
    breaking_changes_after, contracts_around, enumeration, field, message, remove_field, service,
};
use township_proto::contract::{Contract, ParseError, breaking_changes};

const SNAPSHOT: &str = include_str!("../contract-snapshot.txt");
const TRANSFER: &str = "township.bank.v1.TransferRequest";
const NOTHING: [&str; 0] = [];

#[test]
fn the_built_contract_keeps_every_promise_of_the_committed_snapshot() {
    let snapshot: Contract = SNAPSHOT.parse().expect("the committed snapshot parses");
    let broken = breaking_changes(
        &snapshot,
        &Contract::built().expect("the built set decodes"),
    );
    assert!(
        broken.is_empty(),
        "breaking changes against proto/contract-snapshot.txt:\n{}\nIf deliberate: `cargo run -p \
         township-proto --example update_contract`, and say why in proto/CHANGELOG.md.",
        broken.join("\n")
    );
}

#[test]
fn the_snapshot_text_reads_back_as_the_contract_it_was_written_from() {
    let built = Contract::built().expect("the built set decodes");
    assert_eq!(built.to_string().parse::<Contract>(), Ok(built));
}

#[test]
fn a_renumbered_field_is_breaking() {
    let broken =
        breaking_changes_after(|set| field(set, TRANSFER, "amount_cents").number = Some(5));
    assert_eq!(
        broken,
        ["township.bank.v1.TransferRequest field 3 `amount_cents`: number changed 3 -> 5"]
    );
}

#[test]
fn a_field_removed_without_reserved_is_breaking() {
    let broken = breaking_changes_after(|set| remove_field(set, TRANSFER, "amount_cents"));
    assert_eq!(
        broken,
        [
            "township.bank.v1.TransferRequest field 3 `amount_cents`: removed without reserving its number or name"
        ]
    );
}

#[test]
fn a_field_removed_with_its_number_reserved_is_not_breaking() {
    let broken = breaking_changes_after(|set| {
        remove_field(set, TRANSFER, "amount_cents");
        message(set, TRANSFER).reserved_range.push(ReservedRange {
            start: Some(3),
            end: Some(4),
        });
    });
    assert_eq!(broken, NOTHING);
}

#[test]
fn a_field_removed_with_its_name_reserved_is_not_breaking() {
    let broken = breaking_changes_after(|set| {
        remove_field(set, TRANSFER, "amount_cents");
        message(set, TRANSFER)
            .reserved_name
            .push("amount_cents".into());
    });
    assert_eq!(broken, NOTHING);
}

#[test]
fn a_reserved_range_does_not_cover_its_exclusive_end() {
    let broken = breaking_changes_after(|set| {
        remove_field(set, TRANSFER, "amount_cents");
        message(set, TRANSFER).reserved_range.push(ReservedRange {
            start: Some(1),
            end: Some(3),
        });
    });
    assert_eq!(
        broken,
        [
            "township.bank.v1.TransferRequest field 3 `amount_cents`: removed without reserving its number or name"
        ]
    );
}

#[test]
fn adding_fields_messages_rpcs_and_enum_values_is_free() {
    let (before, after) = contracts_around(|set| {
        let mut memo = field(set, TRANSFER, "request_id").clone();
        (memo.name, memo.number) = (Some("memo".into()), Some(5));
        message(set, TRANSFER).field.push(memo);
        let mut scheduled = message(set, TRANSFER).clone();
        scheduled.name = Some("ScheduledTransferRequest".into());
        support::file_of(set, "township.bank.v1.X")
            .0
            .message_type
            .push(scheduled);
        let bank = service(set, "township.bank.v1.BankService");
        let mut schedule = bank.method[0].clone();
        schedule.name = Some("ScheduleTransfer".into());
        bank.method.push(schedule);
        let upgrade = EnumValueDescriptorProto {
            name: Some("MODE_UPGRADE".into()),
            number: Some(3),
            options: None,
        };
        enumeration(set, "township.lock.v1.Mode")
            .value
            .push(upgrade);
    });
    assert_ne!(before, after);
    assert_eq!(breaking_changes(&before, &after), NOTHING);
}

#[test]
fn a_removed_rpc_is_breaking() {
    let broken = breaking_changes_after(|set| {
        service(set, "township.bank.v1.BankService")
            .method
            .retain(|rpc| rpc.name() != "Transfer");
    });
    assert_eq!(
        broken,
        ["township.bank.v1.BankService rpc `Transfer`: removed"]
    );
}

#[test]
fn a_field_whose_type_changes_is_breaking() {
    let broken = breaking_changes_after(|set| {
        field(set, TRANSFER, "amount_cents").set_type(Type::String);
        field(set, "township.bank.v1.LoginResponse", "expires_at").type_name =
            Some(".google.protobuf.Duration".into());
    });
    assert_eq!(
        broken,
        [
            "township.bank.v1.LoginResponse field 3 `expires_at`: type changed google.protobuf.Timestamp -> \
             google.protobuf.Duration",
            "township.bank.v1.TransferRequest field 3 `amount_cents`: type changed int64 -> string",
        ]
    );
}

#[test]
fn a_field_whose_label_changes_is_breaking() {
    let broken = breaking_changes_after(|set| {
        field(set, "township.bank.v1.Account", "holders").set_label(Label::Optional);
        field(set, TRANSFER, "amount_cents").proto3_optional = Some(true);
    });
    assert_eq!(
        broken,
        [
            "township.bank.v1.Account field 2 `holders`: label changed repeated -> singular",
            "township.bank.v1.TransferRequest field 3 `amount_cents`: label changed singular -> optional",
        ]
    );
}

#[test]
fn a_map_whose_value_type_changes_is_breaking() {
    let broken = breaking_changes_after(|set| {
        let entry = &mut message(set, "google.rpc.ErrorInfo").nested_type[0];
        entry.field[1].set_type(Type::Int64);
    });
    assert_eq!(
        broken,
        [
            "google.rpc.ErrorInfo field 3 `metadata`: type changed map<string,string> -> map<string,int64>"
        ]
    );
}

#[test]
fn a_renamed_field_is_breaking() {
    let broken = breaking_changes_after(|set| {
        field(set, TRANSFER, "amount_cents").name = Some("amount".into())
    });
    assert_eq!(
        broken,
        [
            "township.bank.v1.TransferRequest field 3 `amount_cents`: name changed amount_cents -> amount"
        ]
    );
}

#[test]
fn a_field_moved_into_a_oneof_is_breaking() {
    let broken = breaking_changes_after(|set| {
        message(set, TRANSFER)
            .oneof_decl
            .push(OneofDescriptorProto {
                name: Some("amount".into()),
                options: None,
            });
        field(set, TRANSFER, "amount_cents").oneof_index = Some(0);
    });
    assert_eq!(
        broken,
        ["township.bank.v1.TransferRequest field 3 `amount_cents`: oneof changed none -> amount"]
    );
}

#[test]
fn an_rpc_whose_streaming_changes_is_breaking() {
    let broken = breaking_changes_after(|set| {
        let watch = service(set, "township.time.v1.TimeService")
            .method
            .iter_mut()
            .find(|rpc| rpc.name() == "WatchTime");
        watch.expect("WatchTime exists").server_streaming = Some(false);
    });
    assert_eq!(
        broken,
        [
            "township.time.v1.TimeService rpc `WatchTime`: output changed stream township.time.v1.TimeReply -> \
          township.time.v1.TimeReply"
        ]
    );
}

#[test]
fn an_enum_value_removed_or_renumbered_is_breaking() {
    let broken = breaking_changes_after(|set| {
        let mode = enumeration(set, "township.lock.v1.Mode");
        mode.value.retain(|value| value.name() != "MODE_READ");
        mode.value
            .iter_mut()
            .filter(|value| value.name() == "MODE_WRITE")
            .for_each(|value| value.number = Some(3));
    });
    assert_eq!(
        broken,
        [
            "township.lock.v1.Mode value 1 `MODE_READ`: removed without reserving its number or name",
            "township.lock.v1.Mode value `MODE_WRITE`: number changed 2 -> 3",
        ]
    );
}

#[test]
fn an_enum_value_removed_with_its_number_reserved_is_not_breaking() {
    let broken = breaking_changes_after(|set| {
        let mode = enumeration(set, "township.lock.v1.Mode");
        mode.value.retain(|value| value.name() != "MODE_READ");
        mode.reserved_range.push(EnumReservedRange {
            start: Some(1),
            end: Some(1),
        });
    });
    assert_eq!(broken, NOTHING);
}

#[test]
fn removing_a_message_an_enum_or_a_service_is_breaking() {
    let broken = breaking_changes_after(|set| {
        support::file_of(set, "township.bank.v1.X")
            .0
            .message_type
            .retain(|message| message.name() != "Receipt");
        support::file_of(set, "township.lock.v1.X")
            .0
            .enum_type
            .clear();
        support::file_of(set, "township.time.v1.X")
            .0
            .service
            .clear();
    });
    assert_eq!(
        broken,
        [
            "township.bank.v1.Receipt: message removed",
            "township.lock.v1.Mode: enum removed",
            "township.time.v1.TimeService: service removed",
        ]
    );
}

#[test]
fn a_malformed_snapshot_line_is_reported_with_its_number() {
    let parsed = "message a.B\n  field three c singular string\n".parse::<Contract>();
    let reason = "not a number: `field three c singular string`".to_owned();
    assert_eq!(parsed, Err(ParseError { line: 2, reason }));
}
