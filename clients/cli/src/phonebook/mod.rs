//! `township phonebook`: the phone book's command-line client. Add, look up, search, list, change
//! and remove entries (changes carry the entry's etag, so nobody's edit is overwritten unseen);
//! import a CSV file in batches, with a progress bar on a terminal and a report of every rejected
//! row; export the whole book as CSV, written to a temporary file and renamed into place.
//!
//! Here: the arguments and the dispatch; `entries` holds the commands on single entries,
//! `paging` search and list, `import` and `export` the CSV commands.

mod entries;
mod export;
mod import;
mod paging;

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use tonic::transport::Channel;
use township_proto::phonebook::v1::phone_book_service_client::PhoneBookServiceClient;

use crate::{connect::Connection, error::CliError, global::Global, pages::Paging};

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
error); 2 the file cannot be opened or has no `name` or `number` column; 3 the phone book could \
not be reached; 6 the file could not be read part way (the rows before were imported).";

const EXPORT_HELP: &str = "Columns: id, name, number (E.164, and ` ext. 46` for an extension, \
as an import reads it back), display_number, label, etag, \
create_time and update_time (RFC 3339, UTC). FILE is written under a temporary name in its own \
directory and renamed into place once complete, so a failed or interrupted export leaves no half \
file and any earlier FILE as it was.

Exit codes: 0 exported; 1 the phone book answered an error; 2 FILE cannot be created; 3 the phone \
book could not be reached; 6 writing failed or was interrupted part way.";

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

/// A connection to the phone book.
type PhoneBook = Connection<PhoneBookServiceClient<Channel>>;

/// Connects: `--addr`, else env TOWNSHIP_PHONEBOOK_ADDR, else 127.0.0.1:50054.
async fn connect(global: &Global) -> Result<PhoneBook, CliError> {
    Connection::open(
        &township_proto::town::PHONEBOOK,
        global,
        PhoneBookServiceClient::new,
    )
    .await
}

/// Runs `township phonebook`.
pub async fn run(args: PhonebookArgs, global: &Global) -> Result<(), CliError> {
    match args.command {
        PhonebookCommand::Add {
            name,
            number,
            label,
        } => entries::add(name, number, label, global).await,
        PhonebookCommand::Lookup { name } => entries::lookup(name, global).await,
        PhonebookCommand::Search { query, paging } => {
            paging::paged(paging::Listing::Search(query), &paging, global).await
        }
        PhonebookCommand::List { paging } => {
            paging::paged(paging::Listing::List, &paging, global).await
        }
        PhonebookCommand::Get { id } => entries::get(id, global).await,
        PhonebookCommand::Update(args) => entries::update(args, global).await,
        PhonebookCommand::Rm { id, etag } => entries::remove(id, etag, global).await,
        PhonebookCommand::Import { file } => import::import(&file, global).await,
        PhonebookCommand::Export { file } => export::export(file.as_deref(), global).await,
    }
}
