//! The harness of the `township phonebook` CLI tests: a phonebook-server, the CLI run against it
//! (in text or `--json`), and reading the CSV files it exports.

use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;
use tokio::process::Command;
use township_tests::{Output, ServiceProcess, run, township};

use crate::support::{
    cli::{LIMIT, json_lines},
    phonebook::phonebook_server,
};

/// A phonebook-server on a fresh data directory.
pub struct Book {
    pub server: ServiceProcess,
    _dir: TempDir,
}

/// A phonebook-server on a fresh data directory.
pub async fn start_book() -> Book {
    let dir = tempfile::tempdir().unwrap();
    let server = phonebook_server(dir.path(), None, &[]).await;
    Book { server, _dir: dir }
}

impl Book {
    /// `township --addr <phonebook> phonebook ARGS`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = township();
        command
            .env_remove("TOWNSHIP_PHONEBOOK_ADDR")
            .arg("--addr")
            .arg(self.server.addr.to_string())
            .arg("phonebook")
            .args(args);
        command
    }

    /// Runs `township --addr <phonebook> phonebook ARGS`.
    pub async fn run(&self, args: &[&str]) -> Output {
        run(self.command(args), LIMIT).await
    }

    /// Runs `township phonebook ARGS --json`, which must succeed, and returns its JSON lines.
    pub async fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut full = args.to_vec();
        full.push("--json");
        let out = self.run(&full).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        json_lines(&out)
    }

    /// Adds an entry through the CLI and returns it as JSON.
    pub async fn add(&self, name: &str, number: &str, label: &str) -> Value {
        let entries = self.json(&["add", name, number, "--label", label]).await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries[0].clone()
    }
}

// ----- CSV files -----

/// The fields of one CSV line (quoted fields may hold commas and doubled quotes, not newlines).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// The (name, number, label) of every row of an exported CSV file, after checking its header.
pub fn exported_rows(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,name,number,display_number,label,etag,create_time,update_time")
    );
    lines
        .map(|line| {
            let fields = csv_fields(line);
            assert_eq!(fields.len(), 8, "{line:?}");
            let created = &fields[6];
            assert!(
                chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
                "RFC 3339 in UTC: {line:?}"
            );
            (fields[1].clone(), fields[2].clone(), fields[4].clone())
        })
        .collect()
}
