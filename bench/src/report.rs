//! Results: each measured figure with the references measured beside it in the same run, each
//! server's memory and start-up time, printed as Markdown and written as JSON.

use std::{path::Path, time::Duration};

use anyhow::Context;

use crate::{
    chart,
    row::{Ratio, Row, unstable},
    targets::Target,
};

/// One server's footprint: resident memory idle and at its peak, and how long it took to serve.
#[derive(Debug, Clone)]
pub struct Footprint {
    /// The server binary, e.g. "lock-server".
    pub server: String,
    /// From spawning the process to its health check answering SERVING.
    pub start_to_serving: Duration,
    /// Resident set once SERVING, before any load (KiB).
    pub idle_rss_kib: u64,
    /// The process's high-water resident set when the scenario ended (KiB).
    pub peak_rss_kib: u64,
    /// CPU time the server used during the measured window, per operation measured (µs), where
    /// the scenario measures it.
    pub cpu_us_per_op: Option<f64>,
}

/// An external reference's name and the version this run measured.
#[derive(Debug, Clone)]
pub struct Reference {
    /// E.g. "etcd".
    pub name: String,
    /// E.g. "3.4.23", or why it was not measured.
    pub version: String,
}

/// Everything one benchmark measured.
#[derive(Debug, Default)]
pub struct Report {
    /// The measured rows, grouped by scenario, Township's first in each group.
    pub rows: Vec<Row>,
    /// The footprint of each server the benchmark started.
    pub footprints: Vec<Footprint>,
    /// The targets this benchmark judges, from its rows.
    pub targets: Vec<Target>,
    /// The external references it ran, with their versions.
    pub references: Vec<Reference>,
}

impl Report {
    /// The Markdown tables: figures with ratios, then footprints.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| scenario | system | durable? | ops/s, median (min–max) | p50 | p99 | ours ÷ this, ops/s |\n",
        );
        out.push_str("|---|---|---|---:|---:|---:|---:|\n");
        let mut first: Option<&Row> = None;
        for row in &self.rows {
            if first.is_none_or(|f| f.scenario != row.scenario) {
                first = Some(row);
            }
            if let Some(why) = &row.missing {
                out.push_str(&format!(
                    "| {} | {} | {} | missing: {why} | | | |\n",
                    row.scenario,
                    row.system,
                    row.durable.label()
                ));
                continue;
            }
            let ratio = match first {
                Some(ours) if !std::ptr::eq(ours, row) => {
                    Ratio::of(ours, row).map(|r| r.label()).unwrap_or_default()
                }
                _ => String::new(),
            };
            let (lo, hi) = row.spread();
            let flag = if unstable(row.per_second, lo, hi) {
                ", unstable"
            } else {
                ""
            };
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} ({:.0}–{:.0}{flag}) | {} | {} | {ratio} |\n",
                row.scenario,
                row.system,
                row.durable.label(),
                row.per_second,
                lo,
                hi,
                millis(row.p50),
                millis(row.p99),
            ));
        }
        if !self.footprints.is_empty() {
            out.push_str(
                "\n| server | start to SERVING | idle RSS | peak RSS under load | CPU per op |\n|---|---:|---:|---:|---:|\n",
            );
            for f in &self.footprints {
                let cpu = f
                    .cpu_us_per_op
                    .map(|us| format!("{us:.0} µs"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "| {} | {} | {:.1} MiB | {:.1} MiB | {cpu} |\n",
                    f.server,
                    millis(f.start_to_serving),
                    f.idle_rss_kib as f64 / 1024.0,
                    f.peak_rss_kib as f64 / 1024.0,
                ));
            }
        }
        if !self.targets.is_empty() {
            out.push('\n');
            out.push_str(&Target::table(&self.targets));
        }
        out
    }

    /// The JSON form, with the run it came from.
    pub fn json(&self, name: &str, run: &Run) -> serde_json::Value {
        serde_json::json!({
            "benchmark": name,
            "run": run.json(),
            "references": self.references.iter()
                .map(|r| serde_json::json!({ "name": r.name, "version": r.version }))
                .collect::<Vec<_>>(),
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "scenario": r.scenario,
                "system": r.system,
                "durable": r.durable.label(),
                "ops_per_second": r.per_second,
                "p50_us": r.p50.as_micros() as u64,
                "p99_us": r.p99.as_micros() as u64,
                "rounds": r.rounds.iter().map(|f| serde_json::json!({
                    "ops_per_second": f.per_second,
                    "p50_us": f.p50.as_micros() as u64,
                    "p99_us": f.p99.as_micros() as u64,
                })).collect::<Vec<_>>(),
                "count": r.count,
                "latency_us_at_quantile": r.quantiles.iter()
                    .map(|(q, us)| serde_json::json!([q, us]))
                    .collect::<Vec<_>>(),
                "missing": r.missing,
            })).collect::<Vec<_>>(),
            "footprints": self.footprints.iter().map(|f| serde_json::json!({
                "server": f.server,
                "start_to_serving_us": f.start_to_serving.as_micros() as u64,
                "idle_rss_kib": f.idle_rss_kib,
                "peak_rss_kib": f.peak_rss_kib,
                "cpu_us_per_op": f.cpu_us_per_op,
            })).collect::<Vec<_>>(),
            "targets": self.targets.iter().map(Target::json).collect::<Vec<_>>(),
        })
    }
}

/// Where and how a run was made: recorded with every result, so a figure can be traced to the
/// code, the machine and the command that produced it.
#[derive(Debug, Clone)]
pub struct Run {
    /// `git rev-parse HEAD` of the working directory, "-dirty" appended when it has changes.
    pub commit: String,
    /// When the run began, UTC (RFC 3339).
    pub date: String,
    /// CPU model, cores, kernel.
    pub machine: serde_json::Value,
    /// The command line, as typed.
    pub command: String,
    /// Rounds per scenario, and each round's warm-up and measured time.
    pub rounds: u32,
    pub warmup: Duration,
    pub round: Duration,
}

impl Run {
    /// This run, as it begins.
    pub fn now(rounds: u32, warmup: Duration, round: Duration) -> Self {
        Self {
            commit: commit(),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            machine: machine(),
            command: std::iter::once("township-bench".to_owned())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" "),
            rounds,
            warmup,
            round,
        }
    }

    /// True when `other` is the same run (the same commit, date and command).
    fn same_as(&self, other: &Run) -> bool {
        (&self.commit, &self.date, &self.command) == (&other.commit, &other.date, &other.command)
    }

    /// "Commit `…`, date. Machine: … Command: `…`. References: … Each scenario runs its systems
    /// in N alternating rounds (… warm-up, … measured each)", for the summary.
    fn describe(&self, references: &[String]) -> String {
        format!(
            "Commit `{}`, {}. Machine: {} ({} cores), Linux {}. Command: `{}`. References: {}. \
             Each scenario runs its systems in {} alternating rounds ({} warm-up, {} measured \
             each)",
            self.commit,
            self.date,
            self.machine["cpu"].as_str().unwrap_or("?"),
            self.machine["cores"],
            self.machine["kernel"].as_str().unwrap_or("?"),
            self.command,
            if references.is_empty() {
                "none".to_owned()
            } else {
                references.join(", ")
            },
            self.rounds,
            humantime::format_duration(self.warmup),
            humantime::format_duration(self.round),
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "commit": self.commit,
            "date": self.date,
            "machine": self.machine,
            "command": self.command,
            "rounds": self.rounds,
            "warmup_ms": self.warmup.as_millis() as u64,
            "round_ms": self.round.as_millis() as u64,
        })
    }
}

/// The commit of the working directory, or "unknown" outside a git checkout.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(head) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
            _ => head,
        },
        None => "unknown".to_owned(),
    }
}

/// Prints the Markdown and writes `<out_dir>/<name>.json` and `<out_dir>/<name>.svg` (the
/// latency chart).
pub fn publish(name: &str, report: &Report, run: &Run, out_dir: &Path) -> anyhow::Result<()> {
    println!("## {name}\n\n{}", report.markdown());
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let json = out_dir.join(format!("{name}.json"));
    write(
        &json,
        &serde_json::to_string_pretty(&report.json(name, run))?,
    )?;
    let svg = out_dir.join(format!("{name}.svg"));
    write(&svg, &chart::latency_svg(name, &report.rows))?;
    eprintln!("wrote {} and {}", json.display(), svg.display());
    Ok(())
}

/// The bound on each server's resident memory when idle: 15 MB (decimal).
const IDLE_RSS_KIB: u64 = 15_000_000 / 1024;

/// Writes `<out_dir>/summary.md` from each benchmark's latest report (`reports`, in order, each
/// with the run it came from): the runs (commit, date, machine, command), every target's verdict,
/// then every benchmark's tables. A benchmark this run did not measure keeps the figures of its
/// record (see [`crate::records`]), and the summary says which run they came from.
pub fn summarize(reports: &[(&str, Report, Run)], out_dir: &Path) -> anyhow::Result<()> {
    let footprints: Vec<Footprint> = reports
        .iter()
        .flat_map(|(_, r, _)| r.footprints.clone())
        .collect();
    let mut targets: Vec<Target> = reports
        .iter()
        .flat_map(|(_, r, _)| r.targets.clone())
        .collect();
    targets.push(Target::idle_rss_at_most(
        "idle RSS ≤ 15 MB per server",
        &footprints,
        IDLE_RSS_KIB,
    ));
    // The runs, in the order of their first benchmark, each with its benchmarks.
    let mut runs: Vec<(&Run, Vec<&str>, Vec<String>)> = Vec::new();
    for (name, report, run) in reports {
        let references = report
            .references
            .iter()
            .map(|r| format!("{} {}", r.name, r.version));
        match runs.iter_mut().find(|(r, _, _)| r.same_as(run)) {
            Some((_, names, refs)) => {
                names.push(name);
                refs.extend(references);
            }
            None => runs.push((run, vec![name], references.collect())),
        }
    }
    let mut out = String::from("# Township benchmarks\n\n");
    match &runs[..] {
        [(run, _, references)] => {
            out.push_str(&format!(
                "{}; each figure is the median of the rounds, with their min–max. Each server \
                 runs with one worker thread, the load generator on one thread.\n\n",
                run.describe(references)
            ));
        }
        runs => {
            out.push_str(&format!(
                "The latest figures of each benchmark, from {} runs:\n\n",
                runs.len()
            ));
            for (run, names, references) in runs {
                out.push_str(&format!(
                    "- **{}**: {}.\n",
                    names.join(", "),
                    run.describe(references)
                ));
            }
            out.push_str(
                "\nEach figure is the median of its run's rounds, with their min–max. Each server \
                 runs with one worker thread, the load generator on one thread.\n\n",
            );
        }
    }
    out.push_str(&format!("## Targets\n\n{}", Target::table(&targets)));
    for (name, report, _) in reports {
        out.push_str(&format!(
            "\n## {name}\n\n{}\n![{name} latency](./{name}.svg)\n",
            report.markdown()
        ));
    }
    let path = out_dir.join("summary.md");
    write(&path, &out)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// Milliseconds with two decimals, from whole microseconds as the JSON records them (so a summary
/// rebuilt from the records prints the same).
fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_micros() as f64 / 1e3)
}

/// The CPU model, core count and kernel the figures were measured on.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({ "cpu": cpu, "cores": cores, "kernel": kernel })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Durable;

    fn run(command: &str, date: &str) -> Run {
        Run {
            date: date.into(),
            command: command.into(),
            ..Run::now(3, Duration::from_secs(1), Duration::from_secs(2))
        }
    }

    fn report(scenario: &str) -> Report {
        Report {
            rows: vec![Row::missing(
                scenario,
                "etcd",
                Durable::NotApplicable,
                "not installed",
            )],
            ..Report::default()
        }
    }

    #[test]
    fn a_summary_of_one_run_describes_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let all = run("township-bench all", "2026-01-01T00:00:00Z");
        let reports = [
            ("time", report("time: a"), all.clone()),
            ("lock", report("lock: b"), all),
        ];
        summarize(&reports, dir.path()).unwrap();
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(summary.contains("Command: `township-bench all`. References: none."));
        assert!(!summary.contains("runs:"), "{summary}");
        assert!(summary.contains("## time\n") && summary.contains("## lock\n"));
    }

    #[test]
    fn a_summary_of_two_runs_says_which_benchmarks_each_measured_and_keeps_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let all = run("township-bench all", "2026-01-01T00:00:00Z");
        let tls = run("township-bench tls", "2026-01-02T00:00:00Z");
        let reports = [
            ("time", report("time: a"), all.clone()),
            ("tls", report("tls: b"), tls),
            ("chat", report("chat: c"), all),
        ];
        summarize(&reports, dir.path()).unwrap();
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(summary.contains("from 2 runs:"), "{summary}");
        assert!(summary.contains("- **time, chat**: Commit"), "{summary}");
        assert!(summary.contains("Command: `township-bench all`"));
        assert!(summary.contains("- **tls**: Commit"), "{summary}");
        assert!(summary.contains("Command: `township-bench tls`"));
        for table in ["| time: a |", "| tls: b |", "| chat: c |"] {
            assert!(summary.contains(table), "{table} missing from {summary}");
        }
    }
}
