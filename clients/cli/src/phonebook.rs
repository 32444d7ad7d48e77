//! `township phonebook`: the phone book's command-line client. Add, look up, search, list, change
//! and remove entries (changes carry the entry's etag, so nobody's edit is overwritten unseen);
//! import a CSV file in batches, with a progress bar on a terminal and a report of every rejected
//! row; export the whole book as CSV, written to a temporary file and renamed into place.

use std::{
    fs::File,
    io::{self, BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, anyhow};
use clap::{ArgGroup, Args, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::StreamExt;
use tonic::{Code, Status, Streaming, transport::Channel};
use township_proto::phonebook::v1::{
    AddEntryRequest, BatchAddEntriesRequest, DeleteEntryRequest, Entry, ExportRequest,
    GetEntryRequest, ListEntriesRequest, LookupRequest, Rejection, SearchRequest,
    UpdateEntryRequest, add_result::Outcome, phone_book_service_client::PhoneBookServiceClient,
};

use crate::{
    Global,
    connect::{addr_of, connect, unary},
    error::CliError,
    print_json,
};
use township_proto::town;

const SERVICE: &str = "phonebook";

/// The largest page the phone book serves; `--all` asks for pages this big unless told otherwise.
const MAX_PAGE: i32 = 1000;

/// Rows sent in one BatchAddEntries call by `import`.
const IMPORT_CHUNK: usize = 500;

/// The columns of an exported file, in order.
const CSV_HEADER: [&str; 8] = [
    "id",
    "name",
    "number",
    "display_number",
    "label",
    "etag",
    "create_time",
    "update_time",
];

/// The code a row that is not well-formed CSV is rejected with (it never reaches the service).
const MALFORMED: &str = "MALFORMED_ROW";

/// Width of the import progress bar, in characters between the brackets.
const BAR_WIDTH: u64 = 30;

const PHONEBOOK_HELP: &str = "The phone book's address: --addr, else env TOWNSHIP_PHONEBOOK_ADDR, \
else 127.0.0.1:50054. With --json every entry is one JSON object on its own line, with the fields \
id, name, number, display_number, label, etag, create_time and update_time.";

const IMPORT_HELP: &str = "The file needs a header row. Columns are found by name: `name` and \
`number` are required, `label` is optional, any other column (such as the id, display_number, \
etag, create_time and update_time of an export) is ignored, so an exported file imports back. \
Rows go to the phone book in batches of 500; each row is added or rejected on its own. A row that \
is not well-formed CSV (a wrong number of fields, text that is not UTF-8) is rejected without \
being sent. At the end every rejected row is listed by its row number (the Nth data row, not \
counting the header) and the line of the file it starts on, with the reason, then a summary; with \
--json, one object per rejected row and a summary object last.

Exit codes: 0 every row was added; 1 one or more rows were rejected (or the phone book answered an \
error); 2 the file cannot be read or has no `name` or `number` column; 3 the phone book could not \
be reached.";

const EXPORT_HELP: &str = "Columns: id, name, number (E.164), display_number, label, etag, \
create_time and update_time (RFC 3339, UTC). FILE is written under a temporary name in its own \
directory and renamed into place once complete, so a failed or interrupted export leaves no half \
file and any earlier FILE as it was.

Exit codes: 0 exported; 1 the phone book answered an error; 2 FILE cannot be created; 3 the phone \
book could not be reached; 5 writing failed or was interrupted part way.";

/// `township phonebook ...`.
#[derive(Debug, Args)]
#[command(after_help = PHONEBOOK_HELP)]
pub struct PhonebookArgs {
    #[command(subcommand)]
    command: PhonebookCommand,
}

#[derive(Debug, Subcommand)]
enum PhonebookCommand {
    /// Add an entry and print it with its id and etag.
    Add {
        /// The name, in any script (1 to 200 characters).
        name: String,
        /// The number: international (+44 20 7946 0958) or national in the server's region
        /// ((201) 555-0123).
        number: String,
        /// A label such as home or work (up to 64 characters).
        #[arg(long, value_name = "LABEL", default_value = "")]
        label: String,
    },
    /// Print every entry for a name, oldest first; case, accents and extra spaces do not matter.
    Lookup {
        /// The name to look up.
        name: String,
    },
    /// Print the entries whose name or number contains QUERY: prefix matches first.
    Search {
        /// Text to find in names (ignoring case and accents) or digits to find in numbers.
        query: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Print the whole book in name order, a page at a time.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Print one entry by id.
    Get {
        /// The entry's id.
        id: String,
    },
    /// Change an entry's name, number or label; only the fields given change.
    Update(UpdateArgs),
    /// Remove an entry.
    Rm {
        /// The entry's id.
        id: String,
        /// Remove it only if its etag is still this one (from when you last read it).
        #[arg(long, value_name = "ETAG")]
        etag: Option<String>,
    },
    /// Add every row of a CSV file; exit 1 if any row is rejected.
    #[command(after_help = IMPORT_HELP)]
    Import {
        /// The CSV file to read.
        file: PathBuf,
    },
    /// Write the whole book, as one consistent snapshot, as CSV to FILE or stdout.
    #[command(after_help = EXPORT_HELP)]
    Export {
        /// The file to write; it is replaced only once the export is complete. Default: stdout
        /// (CSV, or one JSON object per entry with --json).
        file: Option<PathBuf>,
    },
}

/// Flags of `township phonebook search` and `list`.
#[derive(Debug, Args)]
struct Paging {
    /// Entries per page, 1 to 1000 (default: the server's, 50; 1000 with --all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=1000))]
    page_size: Option<i32>,

    /// Start from this page token, which the previous page printed.
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,

    /// Print every page, not just the first; without it a page that has more after it ends with
    /// `next page: --page-token TOKEN` (with --json, a `{"next_page_token": ...}` object).
    #[arg(long)]
    all: bool,
}

/// Flags of `township phonebook update`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["name", "number", "label"])))]
struct UpdateArgs {
    /// The entry's id.
    id: String,

    /// The new name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// The new number: international, or national in the server's region.
    #[arg(long, value_name = "NUMBER")]
    number: Option<String>,

    /// The new label; --label "" removes it.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,

    /// The entry's etag as you last read it: the change is refused if someone changed the entry
    /// since. Default: read the entry now and use its current etag.
    #[arg(long, value_name = "ETAG")]
    etag: Option<String>,
}

/// Runs `township phonebook`.
pub async fn run(args: PhonebookArgs, global: &Global) -> Result<(), CliError> {
    match args.command {
        PhonebookCommand::Add {
            name,
            number,
            label,
        } => {
            let book = PhoneBook::connect(global).await?;
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
        PhonebookCommand::Lookup { name } => {
            let book = PhoneBook::connect(global).await?;
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
        PhonebookCommand::Search { query, paging } => {
            paged(Listing::Search(query), &paging, global).await
        }
        PhonebookCommand::List { paging } => paged(Listing::List, &paging, global).await,
        PhonebookCommand::Get { id } => {
            let book = PhoneBook::connect(global).await?;
            let entry = book.get(&id, global).await?;
            print_entry(global, "", &entry);
            Ok(())
        }
        PhonebookCommand::Update(args) => update(args, global).await,
        PhonebookCommand::Rm { id, etag } => {
            let book = PhoneBook::connect(global).await?;
            let request = DeleteEntryRequest {
                id: id.clone(),
                etag: etag.clone().unwrap_or_default(),
            };
            match book.client().delete_entry(unary(request, global)).await {
                Ok(_) => {}
                Err(status) if status.code() == Code::Aborted => {
                    return Err(changed_meanwhile(&id, etag.as_deref(), "removed"));
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
        PhonebookCommand::Import { file } => import(&file, global).await,
        PhonebookCommand::Export { file } => export(file.as_deref(), global).await,
    }
}

/// A connection to the phone book.
struct PhoneBook {
    client: PhoneBookServiceClient<Channel>,
    addr: String,
}

impl PhoneBook {
    /// Connects: `--addr`, else env TOWNSHIP_PHONEBOOK_ADDR, else 127.0.0.1:50054.
    async fn connect(global: &Global) -> Result<Self, CliError> {
        let addr = addr_of(&town::PHONEBOOK, global);
        let channel = connect(SERVICE, &addr, global).await?;
        Ok(Self {
            client: PhoneBookServiceClient::new(channel),
            addr,
        })
    }

    /// A client on the shared channel.
    fn client(&self) -> PhoneBookServiceClient<Channel> {
        self.client.clone()
    }

    /// The command's error for a failed call (see [`CliError::from_status`]).
    fn error(&self, status: Status) -> CliError {
        CliError::from_status(SERVICE, &self.addr, status)
    }

    /// One entry by id.
    async fn get(&self, id: &str, global: &Global) -> Result<Entry, CliError> {
        let request = GetEntryRequest { id: id.to_owned() };
        self.client()
            .get_entry(unary(request, global))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.error(s))
    }
}

/// The error for an ABORTED update or removal: the entry changed since its etag was read.
fn changed_meanwhile(id: &str, etag: Option<&str>, verb: &str) -> CliError {
    let etag = etag
        .map(|e| format!(" (etag {e} is no longer current)"))
        .unwrap_or_default();
    CliError::Status {
        service: SERVICE,
        status: Status::aborted(format!(
            "entry {id} was changed by someone else since you read it{etag}, so nothing was \
             {verb}: read it again with `township phonebook get {id}` and redo the change"
        )),
    }
}

async fn update(args: UpdateArgs, global: &Global) -> Result<(), CliError> {
    let book = PhoneBook::connect(global).await?;
    let etag = match args.etag {
        Some(etag) => etag,
        None => book.get(&args.id, global).await?.etag,
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
            Err(changed_meanwhile(&args.id, Some(&etag), "updated"))
        }
        Err(status) => Err(book.error(status)),
    }
}

/// What `search` and `list` page through.
enum Listing {
    Search(String),
    List,
}

/// Prints one page of `listing` (with a hint to the next one), or every page with `--all`.
async fn paged(listing: Listing, paging: &Paging, global: &Global) -> Result<(), CliError> {
    let book = PhoneBook::connect(global).await?;
    let page_size = paging
        .page_size
        .unwrap_or(if paging.all { MAX_PAGE } else { 0 });
    let mut page_token = paging.page_token.clone().unwrap_or_default();
    let continued = !page_token.is_empty();
    let mut shown = 0usize;
    loop {
        let mut client = book.client();
        let (entries, next) = match &listing {
            Listing::Search(query) => {
                let request = SearchRequest {
                    query: query.clone(),
                    page_size,
                    page_token,
                };
                client
                    .search(unary(request, global))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| (r.entries, r.next_page_token))
            }
            Listing::List => {
                let request = ListEntriesRequest {
                    page_size,
                    page_token,
                };
                client
                    .list_entries(unary(request, global))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| (r.entries, r.next_page_token))
            }
        }
        .map_err(|s| book.error(s))?;
        for entry in &entries {
            print_entry(global, "", entry);
        }
        shown += entries.len();
        if next.is_empty() {
            break;
        }
        if !paging.all {
            if global.json {
                print_json(&serde_json::json!({ "next_page_token": next }));
            } else {
                println!("next page: --page-token {next}");
            }
            break;
        }
        page_token = next;
    }
    if shown == 0 && !global.json {
        match (&listing, continued) {
            (_, true) => println!("no more entries"),
            (Listing::Search(query), false) => println!("no entries match {query:?}"),
            (Listing::List, false) => println!("the phone book is empty"),
        }
    }
    Ok(())
}

/// An entry as JSON, with the proto's JSON field names; times in RFC 3339, UTC.
fn entry_json(entry: &Entry) -> serde_json::Value {
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
fn print_entry(global: &Global, prefix: &str, entry: &Entry) {
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

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        short => short,
    };
    let mut out = digits[..head].to_owned();
    let mut rest = &digits[head..];
    while !rest.is_empty() {
        out.push(',');
        out.push_str(&rest[..3]);
        rest = &rest[3..];
    }
    out
}

/// `1 entry`, `2 entries`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

// ---------------------------------------------------------------------------------------------
// import

/// Where `name`, `number` and `label` are in each row.
#[derive(Debug, Clone, Copy)]
struct Columns {
    name: usize,
    number: usize,
    label: Option<usize>,
}

/// A CSV file being read, row by row.
struct CsvRows {
    path: PathBuf,
    reader: csv::Reader<File>,
    headers: Vec<String>,
    columns: Columns,
    /// Data rows read so far.
    rows: u64,
    record: csv::ByteRecord,
}

/// One data row: where it is in the file, and the entry it asks for or why it is malformed.
struct Row {
    /// 1-based, not counting the header.
    row: u64,
    /// The line of the file the row starts on (1-based; the header is line 1).
    line: u64,
    entry: Result<AddEntryRequest, Rejection>,
}

/// Opens `path` for CSV reading (every row may have any number of fields: they are checked here).
fn csv_reader(path: &Path) -> Result<csv::Reader<File>, CliError> {
    let file = File::open(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(file))
}

impl CsvRows {
    /// Opens `path` and finds its columns: a file without a header row, or without a `name` or
    /// `number` column, is a usage error.
    fn open(path: &Path) -> Result<Self, CliError> {
        let mut reader = csv_reader(path)?;
        let header = reader
            .byte_headers()
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        let headers: Vec<String> = header
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        let find = |name: &str| headers.iter().position(|h| h == name);
        let (name, number) = match (find("name"), find("number")) {
            (Some(name), Some(number)) => (name, number),
            (name, _) => {
                let missing = if name.is_none() { "name" } else { "number" };
                let found = if headers.iter().any(|h| !h.is_empty()) {
                    format!("it has {}", headers.join(", "))
                } else {
                    "it is empty".to_owned()
                };
                return Err(CliError::Usage(format!(
                    "{}: the header row has no `{missing}` column (a header row with `name` and \
                     `number`, and optionally `label`, is required; {found})",
                    path.display()
                )));
            }
        };
        let columns = Columns {
            name,
            number,
            label: find("label"),
        };
        Ok(Self {
            path: path.to_owned(),
            reader,
            headers,
            columns,
            rows: 0,
            record: csv::ByteRecord::new(),
        })
    }

    /// The next data row, or `None` at the end of the file.
    fn next_row(&mut self) -> Result<Option<Row>, CliError> {
        let more = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| {
                CliError::Other(anyhow!(
                    "cannot read {} after data row {}: {e}",
                    self.path.display(),
                    self.rows
                ))
            })?;
        if !more {
            return Ok(None);
        }
        self.rows += 1;
        let line = self.record.position().map_or(0, csv::Position::line);
        Ok(Some(Row {
            row: self.rows,
            line,
            entry: self.entry(),
        }))
    }

    /// The entry the current record asks for, or why it is malformed.
    fn entry(&self) -> Result<AddEntryRequest, Rejection> {
        let malformed = |field: &str, message: String| Rejection {
            code: MALFORMED.to_owned(),
            field: field.to_owned(),
            message,
            existing_id: String::new(),
        };
        let record = &self.record;
        if record.len() != self.headers.len() {
            return Err(malformed(
                "",
                format!(
                    "the row has {} fields but the header has {}",
                    record.len(),
                    self.headers.len()
                ),
            ));
        }
        let mut fields = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => fields.push(text),
                Err(_) => {
                    let column = &self.headers[i];
                    return Err(malformed(
                        column,
                        format!("field {} is not valid UTF-8", i + 1),
                    ));
                }
            }
        }
        let Columns {
            name,
            number,
            label,
        } = self.columns;
        Ok(AddEntryRequest {
            name: fields[name].to_owned(),
            number: fields[number].to_owned(),
            label: label.map(|l| fields[l].to_owned()).unwrap_or_default(),
        })
    }
}

/// How many data rows `path` holds (for the progress bar's total).
fn count_rows(path: &Path) -> Result<u64, CliError> {
    let mut reader = csv_reader(path)?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    while let Ok(true) = reader.read_byte_record(&mut record) {
        rows += 1;
    }
    Ok(rows)
}

/// A rejected row of an import.
struct Rejected {
    row: u64,
    line: u64,
    rejection: Rejection,
}

/// What an import did.
struct ImportReport {
    rows: u64,
    added: u64,
    rejected: Vec<Rejected>,
}

impl ImportReport {
    /// Prints every rejected row and then the summary (`complete` is false when the import
    /// stopped early).
    fn print(&self, global: &Global, path: &Path, total: Option<u64>, complete: bool) {
        for r in &self.rejected {
            let Rejection {
                code,
                field,
                message,
                existing_id,
            } = &r.rejection;
            if global.json {
                print_json(&serde_json::json!({
                    "row": r.row, "line": r.line, "code": code, "field": field, "message": message,
                    "existing_id": existing_id,
                }));
            } else {
                let field = match field.as_str() {
                    "" => String::new(),
                    field => format!("{field}: "),
                };
                println!("row {} (line {}): {code}: {field}{message}", r.row, r.line);
            }
        }
        let rejected = self.rejected.len() as u64;
        if global.json {
            print_json(&serde_json::json!({
                "file": path.display().to_string(),
                "rows": self.rows,
                "added": self.added,
                "rejected": rejected,
                "complete": complete,
            }));
            return;
        }
        let counts = format!(
            "{} added, {} rejected",
            thousands(self.added),
            thousands(rejected)
        );
        if complete {
            println!(
                "imported {}: {} read, {counts}",
                path.display(),
                count(self.rows, "row", "rows")
            );
        } else {
            let of = total.map_or(String::new(), |t| format!(" of {}", thousands(t)));
            println!(
                "import of {} stopped after {}{of}: {counts}",
                path.display(),
                count(self.rows, "row", "rows")
            );
        }
    }
}

/// A progress bar on stderr, redrawn in place: `[#####.....]  45% 4,500/10,000 rows`.
struct Progress {
    total: u64,
}

impl Progress {
    fn draw(&self, done: u64) {
        let (filled, percent) = match self.total {
            0 => (BAR_WIDTH, 100),
            total => (done * BAR_WIDTH / total, done * 100 / total),
        };
        let filled = filled.min(BAR_WIDTH) as usize;
        let mut stderr = io::stderr().lock();
        let _ = write!(
            stderr,
            "\r[{}{}] {percent:>3}% {}/{} rows",
            "#".repeat(filled),
            ".".repeat(BAR_WIDTH as usize - filled),
            thousands(done),
            thousands(self.total)
        );
        let _ = stderr.flush();
    }

    fn finish(&self) {
        eprintln!();
    }
}

async fn import(path: &Path, global: &Global) -> Result<(), CliError> {
    let mut rows = CsvRows::open(path)?;
    let progress = if io::stderr().is_terminal() {
        Some(Progress {
            total: count_rows(path)?,
        })
    } else {
        None
    };
    let total = progress.as_ref().map(|p| p.total);
    let book = PhoneBook::connect(global).await?;
    let mut report = ImportReport {
        rows: 0,
        added: 0,
        rejected: Vec::new(),
    };
    if let Some(progress) = &progress {
        progress.draw(0);
    }
    let mut failure = None;
    loop {
        let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
        while chunk.len() < IMPORT_CHUNK {
            match rows.next_row() {
                Ok(Some(row)) => chunk.push(row),
                Ok(None) => break,
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        if chunk.is_empty() {
            break;
        }
        if let Err(err) = import_chunk(&book, chunk, &mut report, global).await {
            failure = Some(err);
            break;
        }
        if let Some(progress) = &progress {
            progress.draw(report.rows);
        }
        if failure.is_some() {
            break;
        }
    }
    if let Some(progress) = &progress {
        progress.finish();
    }
    report.print(global, path, total, failure.is_none());
    if let Some(err) = failure {
        return Err(err);
    }
    match report.rejected.len() as u64 {
        0 => Ok(()),
        rejected => Err(CliError::Rejected(format!(
            "{} of {} rejected (listed above)",
            thousands(rejected),
            count(report.rows, "row was", "rows were"),
        ))),
    }
}

/// Sends the well-formed rows of `chunk` in one BatchAddEntries call and records every row's
/// outcome in `report` (the rows of a chunk are counted only once the phone book answered).
async fn import_chunk(
    book: &PhoneBook,
    chunk: Vec<Row>,
    report: &mut ImportReport,
    global: &Global,
) -> Result<(), CliError> {
    let mut sent = Vec::new();
    let mut requests = Vec::new();
    let mut outcomes: Vec<Rejected> = Vec::new();
    let rows = chunk.len() as u64;
    for row in chunk {
        match row.entry {
            Ok(request) => {
                sent.push((row.row, row.line));
                requests.push(request);
            }
            Err(rejection) => outcomes.push(Rejected {
                row: row.row,
                line: row.line,
                rejection,
            }),
        }
    }
    let mut added = 0;
    if !requests.is_empty() {
        let asked = requests.len();
        let results = book
            .client()
            .batch_add_entries(unary(BatchAddEntriesRequest { requests }, global))
            .await
            .map_err(|s| book.error(s))?
            .into_inner()
            .results;
        if results.len() != asked {
            return Err(CliError::Other(anyhow!(
                "the phone book answered {} results for {asked} rows",
                results.len()
            )));
        }
        for ((row, line), result) in sent.into_iter().zip(results) {
            match result.outcome {
                Some(Outcome::Entry(_)) => added += 1,
                Some(Outcome::Rejected(rejection)) => outcomes.push(Rejected {
                    row,
                    line,
                    rejection,
                }),
                None => outcomes.push(Rejected {
                    row,
                    line,
                    rejection: Rejection {
                        code: "UNKNOWN".to_owned(),
                        field: String::new(),
                        message: "the phone book gave no outcome for this row".to_owned(),
                        existing_id: String::new(),
                    },
                }),
            }
        }
    }
    outcomes.sort_by_key(|r| r.row);
    report.rows += rows;
    report.added += added;
    report.rejected.extend(outcomes);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// export

/// A file being written under a temporary name beside its final path; removed when dropped
/// unless [`PartialFile::persist`] renamed it into place.
struct PartialFile {
    temp: PathBuf,
    path: PathBuf,
    done: bool,
}

impl PartialFile {
    /// Creates the temporary file beside `path`.
    fn create(path: &Path) -> Result<(Self, File), CliError> {
        if path.is_dir() {
            return Err(CliError::Usage(format!(
                "{} is a directory: give the file to write",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .ok_or_else(|| CliError::Usage(format!("{} is not a file name", path.display())))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = dir.join(temp_name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
        let partial = Self {
            temp,
            path: path.to_owned(),
            done: false,
        };
        Ok((partial, file))
    }

    /// Flushes `file` to disk and renames it to the final path.
    fn persist(mut self, file: File) -> anyhow::Result<()> {
        file.sync_all()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        drop(file);
        std::fs::rename(&self.temp, &self.path)
            .with_context(|| format!("cannot rename the export into {}", self.path.display()))?;
        self.done = true;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Makes the rename itself durable; an export that is complete anyway if this fails.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// An entry as a CSV record, in [`CSV_HEADER`]'s order.
fn csv_record(entry: &Entry) -> [String; 8] {
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(ToString::to_string);
    [
        entry.id.clone(),
        entry.name.clone(),
        entry.number.clone(),
        entry.display_number.clone(),
        entry.label.clone(),
        entry.etag.clone(),
        time(&entry.create_time).unwrap_or_default(),
        time(&entry.update_time).unwrap_or_default(),
    ]
}

/// Where exported entries go.
enum Sink<'a, W: Write> {
    Csv(&'a mut csv::Writer<W>),
    Json,
}

impl<W: Write> Sink<'_, W> {
    fn write(&mut self, entry: &Entry) -> anyhow::Result<()> {
        match self {
            Sink::Csv(writer) => writer.write_record(csv_record(entry))?,
            // Not `print_json`: a reader that went away must end the export, not panic.
            Sink::Json => writeln!(io::stdout(), "{}", entry_json(entry))?,
        }
        Ok(())
    }
}

/// Writes every entry of `stream` to `sink` (`target` names it in errors), and returns how many
/// there were.
async fn drain<W: Write>(
    book: &PhoneBook,
    stream: &mut Streaming<Entry>,
    mut sink: Sink<'_, W>,
    target: &str,
) -> Result<u64, CliError> {
    let mut written = 0;
    loop {
        match stream.next().await {
            Some(Ok(entry)) => {
                sink.write(&entry)
                    .with_context(|| format!("cannot write {target}"))?;
                written += 1;
            }
            Some(Err(status)) => return Err(book.error(status)),
            None => return Ok(written),
        }
    }
}

/// Whether `err` is a write to a pipe whose reader has gone.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let io = cause.downcast_ref::<io::Error>().or_else(|| {
            match cause.downcast_ref::<csv::Error>().map(csv::Error::kind) {
                Some(csv::ErrorKind::Io(io)) => Some(io),
                _ => None,
            }
        });
        io.is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Runs `export`. Ctrl-C or SIGTERM stops it at any point, removing the temporary file rather
/// than leaving it behind.
async fn export(path: Option<&Path>, global: &Global) -> Result<(), CliError> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    // The file first: a path that cannot be written is a usage error, found before dialling.
    let partial = path.map(PartialFile::create).transpose()?;
    let stopped = |how: &str| {
        let untouched = path.map_or(String::new(), |p| {
            format!(": {} was not written", p.display())
        });
        Err(anyhow!("export {how}{untouched}").into())
    };
    tokio::select! {
        result = export_to(partial, global) => result,
        _ = interrupt.recv() => stopped("interrupted"),
        _ = terminate.recv() => stopped("terminated"),
    }
}

/// Exports to the file being written (dropped, and so removed, if this fails or is cancelled),
/// or to stdout.
async fn export_to(partial: Option<(PartialFile, File)>, global: &Global) -> Result<(), CliError> {
    let book = PhoneBook::connect(global).await?;
    // A stream has no deadline: it runs for as long as the book takes to send.
    let mut stream = book
        .client()
        .export(ExportRequest {})
        .await
        .map_err(|s| book.error(s))?
        .into_inner();
    let Some((partial, file)) = partial else {
        return export_to_stdout(&book, &mut stream, global).await;
    };

    let path = partial.path.clone();
    let target = path.display().to_string();
    let mut writer = csv::Writer::from_writer(BufWriter::new(file));
    writer
        .write_record(CSV_HEADER)
        .with_context(|| format!("cannot write {target}"))?;
    let exported = drain(&book, &mut stream, Sink::Csv(&mut writer), &target).await?;
    let file = writer
        .into_inner()
        .map_err(|e| anyhow!("cannot write {target}: {}", e.error()))?
        .into_inner()
        .map_err(|e| anyhow!("cannot write {target}: {}", e.error()))?;
    partial.persist(file)?;
    eprintln!(
        "exported {} to {target}",
        count(exported, "entry", "entries")
    );
    if global.json {
        print_json(&serde_json::json!({ "exported": exported, "file": target }));
    }
    Ok(())
}

/// Writes the export to stdout: CSV, or one JSON object per entry with `--json`. A reader that
/// goes away early (`township phonebook export | head`) is not a failure.
async fn export_to_stdout(
    book: &PhoneBook,
    stream: &mut Streaming<Entry>,
    global: &Global,
) -> Result<(), CliError> {
    let written = if global.json {
        drain::<io::Stdout>(book, stream, Sink::Json, "stdout")
            .await
            .map(drop)
    } else {
        let mut writer = csv::Writer::from_writer(io::stdout().lock());
        match writer.write_record(CSV_HEADER) {
            Err(err) => Err(anyhow::Error::from(err)
                .context("cannot write stdout")
                .into()),
            Ok(()) => drain(book, stream, Sink::Csv(&mut writer), "stdout")
                .await
                .and_then(|_| Ok(writer.flush().context("cannot write stdout")?)),
        }
    };
    match written {
        Err(CliError::Other(err)) if is_broken_pipe(&err) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(count(1, "entry", "entries"), "1 entry");
        assert_eq!(count(2, "entry", "entries"), "2 entries");
    }

    #[test]
    fn rows_are_found_by_column_name_and_malformed_rows_are_rejected() {
        let dir = std::env::temp_dir().join(format!("township-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("people.csv");
        let mut text = b"ID,Number,extra,name\n1,+12015550100,x,Ada\n2,+12015550101\n".to_vec();
        text.extend_from_slice(b"3,\"+1 201\n555 0102\",y,Bob\n4,+12015550103,z,\xff\xfe\n");
        std::fs::write(&path, text).unwrap();
        let mut rows = CsvRows::open(&path).unwrap();
        let first = rows.next_row().unwrap().unwrap();
        let entry = first.entry.unwrap();
        assert_eq!((first.row, first.line), (1, 2));
        assert_eq!((entry.name.as_str(), entry.label.as_str()), ("Ada", ""));
        let short = rows.next_row().unwrap().unwrap();
        assert_eq!(short.entry.unwrap_err().code, MALFORMED);
        let multi_line = rows.next_row().unwrap().unwrap();
        assert_eq!((multi_line.row, multi_line.line), (3, 4));
        assert_eq!(multi_line.entry.unwrap().number, "+1 201\n555 0102");
        let bad_utf8 = rows.next_row().unwrap().unwrap();
        assert_eq!((bad_utf8.row, bad_utf8.line), (4, 6));
        assert_eq!(bad_utf8.entry.unwrap_err().field, "name");
        assert!(rows.next_row().unwrap().is_none());
        assert_eq!(count_rows(&path).unwrap(), 4);

        std::fs::write(&path, "name,phone\nAda,1\n").unwrap();
        let err = CsvRows::open(&path).err().unwrap();
        assert!(err.to_string().contains("`number`"), "{err}");
        std::fs::write(&path, "").unwrap();
        assert!(matches!(CsvRows::open(&path), Err(CliError::Usage(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
