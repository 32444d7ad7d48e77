//! PostgreSQL's own `pgbench` as the bank's reference: what a user would otherwise pick to move
//! money durably. It runs against a throwaway PostgreSQL (started by `township-references`, fsync
//! and synchronous commit on), with one thread like the bench's load generator, prepared
//! statements (the fastest protocol it has), and a log of every transaction, from which the same
//! window as Township's is measured: transactions begun after the warm-up, for one round.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::process::Command;
use township_references::Postgres;

use crate::load::Window;

/// pgbench's built-in scripts measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// TPC-B-like: one account, teller and branch updated, one select, one history insert.
    TpcB,
    /// `-N`: the account update, the select and the history insert (no teller or branch).
    SimpleUpdate,
}

impl Script {
    fn builtin(self) -> &'static str {
        match self {
            Script::TpcB => "tpcb-like",
            Script::SimpleUpdate => "simple-update",
        }
    }

    /// How the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Script::TpcB => "pgbench TPC-B",
            Script::SimpleUpdate => "pgbench simple update (-N)",
        }
    }
}

/// A pgbench database, initialized, on a running PostgreSQL.
pub struct Pgbench {
    program: PathBuf,
    connection: Vec<String>,
    logs: tempfile::TempDir,
    rounds: u32,
}

impl Pgbench {
    /// Initializes pgbench's tables at `scale` (100,000 accounts and one branch per unit) in
    /// `postgres`'s default database.
    pub async fn init(postgres: &Postgres, scale: u32) -> anyhow::Result<Self> {
        let connection = vec![
            "-h".to_owned(),
            postgres.host().to_owned(),
            "-p".to_owned(),
            postgres.port().to_string(),
            "-U".to_owned(),
            postgres.user().to_owned(),
        ];
        let pgbench = Self {
            program: postgres.program("pgbench"),
            connection,
            logs: tempfile::tempdir().context("cannot create a directory for pgbench's logs")?,
            rounds: 0,
        };
        let scale = scale.to_string();
        pgbench
            .run(&["-i", "-q", "-s", &scale, "postgres"])
            .await
            .context("pgbench -i")?;
        Ok(pgbench)
    }

    /// One round of `script` with `clients` connections: pgbench runs long enough to cover the
    /// window's warm-up and measured time from its first transaction; the latencies of the
    /// transactions begun within the measured part are returned (µs).
    pub async fn round(
        &mut self,
        script: Script,
        clients: usize,
        window: Window,
    ) -> anyhow::Result<Histogram<u64>> {
        let warmup = window
            .measure_from()
            .saturating_duration_since(std::time::Instant::now());
        let measured = window.stop() - window.measure_from();
        // Whole seconds, with one to spare for the start and the last transactions.
        let seconds = (warmup + measured).as_secs_f64().ceil() as u64 + 1;
        self.rounds += 1;
        let prefix = self.logs.path().join(format!("round{}", self.rounds));
        let (clients, seconds) = (clients.to_string(), seconds.to_string());
        let log_prefix = format!("--log-prefix={}", prefix.display());
        self.run(&[
            "-b",
            script.builtin(),
            "-M",
            "prepared",
            "-c",
            &clients,
            "-j",
            "1",
            "-T",
            &seconds,
            "-l",
            &log_prefix,
            "postgres",
        ])
        .await
        .with_context(|| format!("{} with {clients} clients", script.name()))?;
        measured_window(&prefix, warmup, measured)
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = Command::new(&self.program)
            .args(&self.connection)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        if !output.status.success() {
            bail!(
                "{} exited with {}: {}",
                self.program.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The latencies (µs) of the transactions in the logs at `prefix` (`<prefix>.<pid>[.<thread>]`)
/// begun from `warmup` after the first one began, for `measured`. Each log line is
/// `client transaction latency_us script epoch_s epoch_us ...`, the epoch being its end.
fn measured_window(
    prefix: &Path,
    warmup: Duration,
    measured: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let dir = prefix.parent().context("log directory")?;
    let stem = prefix
        .file_name()
        .and_then(|n| n.to_str())
        .context("log prefix")?;
    let mut transactions = Vec::new();
    for entry in std::fs::read_dir(dir).context("read pgbench's logs")? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with(&format!("{stem}.")) {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        for line in text.lines() {
            transactions.push(parse(line).with_context(|| format!("pgbench log line {line:?}"))?);
        }
    }
    let first = transactions
        .iter()
        .map(|t| t.begin_us)
        .min()
        .context("pgbench logged no transaction")?;
    let from = first + warmup.as_micros() as u64;
    let until = from + measured.as_micros() as u64;
    let mut histogram = Histogram::<u64>::new(3).context("histogram")?;
    for t in transactions
        .iter()
        .filter(|t| (from..until).contains(&t.begin_us))
    {
        histogram.record(t.latency_us).context("record")?;
    }
    Ok(histogram)
}

struct Transaction {
    begin_us: u64,
    latency_us: u64,
}

fn parse(line: &str) -> anyhow::Result<Transaction> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        let text = fields.get(i).context("too few fields")?;
        text.parse()
            .with_context(|| format!("field {} is {text:?}, not a number", i + 1))
    };
    let latency_us = field(2)?;
    let end_us = field(4)? * 1_000_000 + field(5)?;
    Ok(Transaction {
        begin_us: end_us.saturating_sub(latency_us),
        latency_us,
    })
}

/// Creates the database `name` on `postgres` and returns its URL.
pub async fn new_database(postgres: &Postgres, name: &str) -> anyhow::Result<String> {
    let mut createdb = tokio::process::Command::new(postgres.program("createdb"));
    createdb
        .args(["-h", postgres.host(), "-p", &postgres.port().to_string()])
        .args(["-U", postgres.user(), name]);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), createdb.output())
        .await
        .context("createdb took more than 30 s")?
        .context("cannot run createdb")?;
    if !output.status.success() {
        bail!(
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(format!(
        "postgres://{}@{}:{}/{name}",
        postgres.user(),
        postgres.host(),
        postgres.port()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_gives_the_transactions_start_and_latency() {
        let t = parse("3 17 2500 0 1733300000 400000").expect("parses");
        assert_eq!(t.latency_us, 2500);
        assert_eq!(t.begin_us, 1_733_300_000_400_000 - 2500);
    }

    #[test]
    fn a_failed_transaction_in_the_log_is_an_error_not_a_figure() {
        assert!(parse("3 17 failed 0 1733300000 400000").is_err());
    }

    #[test]
    fn only_transactions_begun_in_the_measured_window_count() {
        let dir = tempfile::tempdir().expect("dir");
        let prefix = dir.path().join("round1");
        // Begun at 0 s, 1.5 s, 2.5 s and 3.5 s after the first (each 1 ms long).
        let lines: String = [0u64, 1_500_000, 2_500_000, 3_500_000]
            .iter()
            .map(|begin| {
                let end = 1_000_000_000_000 + begin + 1000;
                format!("0 0 1000 0 {} {}\n", end / 1_000_000, end % 1_000_000)
            })
            .collect();
        std::fs::write(dir.path().join("round1.1234"), lines).expect("write");
        std::fs::write(dir.path().join("round10.1234"), "0 0 1000 0 1 0\n").expect("write");
        let h = measured_window(&prefix, Duration::from_secs(1), Duration::from_secs(2))
            .expect("window");
        assert_eq!(h.len(), 2, "the ones begun at 1.5 s and 2.5 s");
    }
}
