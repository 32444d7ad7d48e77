//! Running the `township` CLI and reading what it printed: stdin piped in, the single JSON object
//! or the JSON lines of `--json`, the one-line error format (`township: ...`), the subcommands
//! `township --help` lists, and the words of a generated script.

use std::{collections::BTreeSet, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::{io::AsyncWriteExt, process::Command};
use township_tests::{Output, run, township};

/// How long one CLI run may take on a loaded machine.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs `township ARGS` with `env` to its end (stdin empty).
pub async fn township_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = township();
    command.args(args).envs(env.iter().copied());
    run(command, LIMIT).await
}

/// Runs `command` with `input` piped into its stdin (then closed), to its end within [`LIMIT`].
pub async fn piped(mut command: Command, input: &str) -> Output {
    command.stdin(Stdio::piped());
    let mut child = command.spawn().expect("the command starts");
    let mut stdin = child.stdin.take().expect("a stdin pipe");
    // A command may end without reading its input (a usage error does): a closed pipe is fine.
    match stdin.write_all(input.as_bytes()).await {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {err}"),
        _ => drop(stdin),
    }
    let output = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("the command finishes")
        .unwrap();
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The single JSON value a successful command (a `--json` CLI command, a unary grpcurl call)
/// printed.
#[track_caller]
pub fn json(out: &Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("JSON ({e}): {out:?}"))
}

/// Every stdout line of `out` as JSON.
#[track_caller]
pub fn json_lines(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("JSON ({e}): {l:?} in {out:?}")))
        .collect()
}

/// A JSON string field.
#[track_caller]
pub fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {value}"))
}

/// The one stderr line of a failed command, checked to be in the CLI's format.
#[track_caller]
pub fn one_error_line(out: &Output) -> &str {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {out:?}");
    assert!(lines[0].starts_with("township: "), "{out:?}");
    lines[0]
}

/// The top-level subcommands that `township --help` lists (without clap's own `help`), checked to
/// include `time`, `phonebook`, `up`, `completions` and `man`.
pub async fn subcommands() -> Vec<String> {
    let out = township_with(&["--help"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let listed: Vec<String> = out
        .stdout
        .lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    for expected in ["time", "phonebook", "up", "completions", "man"] {
        assert!(
            listed.iter().any(|name| name == expected),
            "`township --help` lists {listed:?}, without {expected}:\n{}",
            out.stdout
        );
    }
    listed
}

/// The words of a generated script (a shell completion): runs of letters, digits, `_` and `-`.
pub fn words(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|word| !word.is_empty())
        .collect()
}
