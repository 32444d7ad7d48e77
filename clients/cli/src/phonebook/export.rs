//! `township phonebook export [FILE]`: the whole book, as one consistent snapshot, as CSV (or
//! JSON lines on stdout). A file is written under a temporary name beside it and renamed into
//! place once complete, so a failed or interrupted export leaves no half file.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, anyhow};
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::StreamExt;
use tonic::Streaming;
use township_proto::phonebook::v1::{Entry, ExportRequest};

use super::{PhoneBook, connect, entries::entry_json};
use crate::{
    error::CliError,
    global::Global,
    output::{count, print_json, unless_broken_pipe},
};

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
        // E.164 and the extension, which an import reads back as the same number.
        if entry.extension.is_empty() {
            entry.number.clone()
        } else {
            format!("{} ext. {}", entry.number, entry.extension)
        },
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

/// Runs `export`. Ctrl-C or SIGTERM stops it at any point, removing the temporary file rather
/// than leaving it behind.
pub(super) async fn export(path: Option<&Path>, global: &Global) -> Result<(), CliError> {
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
    let book = connect(global).await?;
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
    unless_broken_pipe(written)
}
