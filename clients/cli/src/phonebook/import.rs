//! `township phonebook import FILE`: the rows of a CSV file, found by column name, sent in
//! batches; a progress bar on a terminal, and a report of every rejected row at the end.

use std::{
    fs::File,
    io::{self, IsTerminal, Write},
    path::{Path, PathBuf},
};

use anyhow::anyhow;
use township_proto::phonebook::v1::{
    AddEntryRequest, BatchAddEntriesRequest, Rejection, add_result::Outcome,
};

use super::{PhoneBook, connect};
use crate::{
    connect::unary,
    error::CliError,
    global::Global,
    output::{count, print_json, thousands},
};

/// Rows sent in one BatchAddEntries call.
const IMPORT_CHUNK: usize = 500;

/// The code a row that is not well-formed CSV is rejected with (it never reaches the service).
const MALFORMED: &str = "MALFORMED_ROW";

/// Width of the progress bar, in characters between the brackets.
const BAR_WIDTH: u64 = 30;

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
                CliError::Local(anyhow!(
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

/// Runs `township phonebook import`.
pub(super) async fn import(path: &Path, global: &Global) -> Result<(), CliError> {
    let mut rows = CsvRows::open(path)?;
    let progress = if io::stderr().is_terminal() {
        Some(Progress {
            total: count_rows(path)?,
        })
    } else {
        None
    };
    let total = progress.as_ref().map(|p| p.total);
    let book = connect(global).await?;
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
            return Err(CliError::Unexpected {
                service: book.service(),
                message: format!("{} results for {asked} rows", results.len()),
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn any_row_written_as_csv_reads_back_as_the_same_entry(
            rows in proptest::collection::vec((".{0,30}", ".{0,20}", ".{0,20}"), 1..8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("rows.csv");
            let mut writer = csv::Writer::from_path(&path).unwrap();
            writer.write_record(["name", "number", "label"]).unwrap();
            for (name, number, label) in &rows {
                writer.write_record([name, number, label]).unwrap();
            }
            writer.flush().unwrap();
            drop(writer);
            let mut read = CsvRows::open(&path).unwrap();
            for (name, number, label) in &rows {
                let row = read.next_row().unwrap().expect("a row per record");
                let entry = row.entry.expect("a well-formed row");
                proptest::prop_assert_eq!(
                    (&entry.name, &entry.number, &entry.label),
                    (name, number, label)
                );
            }
            proptest::prop_assert!(read.next_row().unwrap().is_none());
        }

        #[test]
        fn any_bytes_as_a_csv_file_are_rows_or_refusals_never_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("any.csv");
            let mut text = b"name,number\n".to_vec();
            text.extend_from_slice(&bytes);
            std::fs::write(&path, text).unwrap();
            let mut read = CsvRows::open(&path).unwrap();
            for _ in 0..1000 {
                match read.next_row() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
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
