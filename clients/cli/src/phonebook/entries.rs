//! `township phonebook add`, `lookup`, `get`, `update` and `rm`: one entry at a time. Changes
//! carry the entry's etag, so nobody's edit is overwritten unseen; and how an entry prints.

use tonic::{Code, Status};
use township_proto::phonebook::v1::{
    AddEntryRequest, DeleteEntryRequest, Entry, GetEntryRequest, LookupRequest, UpdateEntryRequest,
};

use super::{PhoneBook, UpdateArgs, connect};
use crate::{connect::unary, error::CliError, global::Global, output::print_json};

/// Runs `township phonebook add`.
pub(super) async fn add(
    name: String,
    number: String,
    label: String,
    global: &Global,
) -> Result<(), CliError> {
    let book = connect(global).await?;
    let request = AddEntryRequest {
        name,
        number,
        label,
    };
    let entry = book
        .client()
        .add_entry(unary(request, global))
        .await
        .map_err(|s| book.error(s))?
        .into_inner();
    print_entry(global, "added ", &entry);
    Ok(())
}

/// Runs `township phonebook lookup`.
pub(super) async fn lookup(name: String, global: &Global) -> Result<(), CliError> {
    let book = connect(global).await?;
    let request = LookupRequest { name: name.clone() };
    let entries = book
        .client()
        .lookup(unary(request, global))
        .await
        .map_err(|s| book.error(s))?
        .into_inner()
        .entries;
    for entry in &entries {
        print_entry(global, "", entry);
    }
    if entries.is_empty() && !global.json {
        println!("no entries for {name:?}");
    }
    Ok(())
}

/// Runs `township phonebook get`.
pub(super) async fn get(id: String, global: &Global) -> Result<(), CliError> {
    let book = connect(global).await?;
    let entry = get_entry(&book, &id, global).await?;
    print_entry(global, "", &entry);
    Ok(())
}

/// Runs `township phonebook rm`.
pub(super) async fn remove(
    id: String,
    etag: Option<String>,
    global: &Global,
) -> Result<(), CliError> {
    let book = connect(global).await?;
    let request = DeleteEntryRequest {
        id: id.clone(),
        etag: etag.clone().unwrap_or_default(),
    };
    match book.client().delete_entry(unary(request, global)).await {
        Ok(_) => {}
        Err(status) if status.code() == Code::Aborted => {
            return Err(changed_meanwhile(&book, &id, etag.as_deref(), "removed"));
        }
        Err(status) => return Err(book.error(status)),
    }
    if global.json {
        print_json(&serde_json::json!({ "id": id, "removed": true }));
    } else {
        println!("removed entry {id}");
    }
    Ok(())
}

/// One entry by id.
async fn get_entry(book: &PhoneBook, id: &str, global: &Global) -> Result<Entry, CliError> {
    let request = GetEntryRequest { id: id.to_owned() };
    book.client()
        .get_entry(unary(request, global))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| book.error(s))
}

/// The error for an ABORTED update or removal: the entry changed since its etag was read.
fn changed_meanwhile(book: &PhoneBook, id: &str, etag: Option<&str>, verb: &str) -> CliError {
    let etag = etag
        .map(|e| format!(" (etag {e} is no longer current)"))
        .unwrap_or_default();
    CliError::Status {
        service: book.service(),
        status: Status::aborted(format!(
            "entry {id} was changed by someone else since you read it{etag}, so nothing was \
             {verb}: read it again with `township phonebook get {id}` and redo the change"
        )),
    }
}

/// Runs `township phonebook update`.
pub(super) async fn update(args: UpdateArgs, global: &Global) -> Result<(), CliError> {
    let book = connect(global).await?;
    let etag = match args.etag {
        Some(etag) => etag,
        None => get_entry(&book, &args.id, global).await?.etag,
    };
    let mut entry = Entry {
        id: args.id.clone(),
        ..Entry::default()
    };
    let mut paths = Vec::new();
    if let Some(name) = args.name {
        entry.name = name;
        paths.push("name".to_owned());
    }
    if let Some(number) = args.number {
        entry.number = number;
        paths.push("number".to_owned());
    }
    if let Some(label) = args.label {
        entry.label = label;
        paths.push("label".to_owned());
    }
    if paths.is_empty() {
        // clap's group already insists on one field; an empty mask would change all three.
        return Err(CliError::Usage(
            "update: give at least one of --name, --number, --label".into(),
        ));
    }
    let request = UpdateEntryRequest {
        entry: Some(entry),
        etag: etag.clone(),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    match book.client().update_entry(unary(request, global)).await {
        Ok(reply) => {
            print_entry(global, "updated ", &reply.into_inner());
            Ok(())
        }
        Err(status) if status.code() == Code::Aborted => {
            Err(changed_meanwhile(&book, &args.id, Some(&etag), "updated"))
        }
        Err(status) => Err(book.error(status)),
    }
}

/// An entry as JSON, with the proto's JSON field names; times in RFC 3339, UTC.
pub(super) fn entry_json(entry: &Entry) -> serde_json::Value {
    serde_json::json!({
        "id": entry.id,
        "name": entry.name,
        "number": entry.number,
        "display_number": entry.display_number,
        "label": entry.label,
        "etag": entry.etag,
        "create_time": entry.create_time.as_ref().map(ToString::to_string),
        "update_time": entry.update_time.as_ref().map(ToString::to_string),
    })
}

/// Prints an entry: `12  Zoë Ångström  +1 201-555-0123  [home]  etag v1` after `prefix` (or one
/// JSON object, without the prefix).
pub(super) fn print_entry(global: &Global, prefix: &str, entry: &Entry) {
    if global.json {
        print_json(&entry_json(entry));
        return;
    }
    let label = match entry.label.as_str() {
        "" => String::new(),
        label => format!("  [{label}]"),
    };
    println!(
        "{prefix}{}  {}  {}{label}  etag {}",
        entry.id, entry.name, entry.display_number, entry.etag
    );
}
