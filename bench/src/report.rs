//! Results: each measured figure with the references measured beside it in the same run, each
//! server's memory and start-up time, printed as Markdown and written as JSON.

use std::{path::Path, time::Duration};

use anyhow::Context;

use crate::{chart, row::Row};

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

/// Everything one benchmark measured.
#[derive(Debug, Default)]
pub struct Report {
    /// The measured rows, grouped by scenario, Township's first in each group.
    pub rows: Vec<Row>,
    /// The footprint of each server the benchmark started.
    pub footprints: Vec<Footprint>,
}

impl Report {
    /// The Markdown tables: figures with ratios, then footprints.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | system | ops/s | p50 | p99 | ours ÷ this, ops/s |\n");
        out.push_str("|---|---|---:|---:|---:|---:|\n");
        let mut first: Option<&Row> = None;
        for row in &self.rows {
            if first.is_none_or(|f| f.scenario != row.scenario) {
                first = Some(row);
            }
            if let Some(why) = &row.missing {
                out.push_str(&format!(
                    "| {} | {} | missing: {why} | | | |\n",
                    row.scenario, row.system
                ));
                continue;
            }
            let ratio = match first {
                Some(ours) if !std::ptr::eq(ours, row) && row.per_second > 0.0 => {
                    format!("{:.2}×", ours.per_second / row.per_second)
                }
                _ => String::new(),
            };
            out.push_str(&format!(
                "| {} | {} | {:.0} | {} | {} | {ratio} |\n",
                row.scenario,
                row.system,
                row.per_second,
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
        out
    }

    /// The JSON form, with the machine it ran on.
    pub fn json(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "benchmark": name,
            "machine": machine(),
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "scenario": r.scenario,
                "system": r.system,
                "ops_per_second": r.per_second,
                "p50_us": r.p50.as_micros() as u64,
                "p99_us": r.p99.as_micros() as u64,
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
        })
    }
}

/// Prints the Markdown and writes `<out_dir>/<name>.json` and `<out_dir>/<name>.svg` (the
/// latency chart).
pub fn publish(name: &str, report: &Report, out_dir: &Path) -> anyhow::Result<()> {
    println!("## {name}\n\n{}", report.markdown());
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let json = out_dir.join(format!("{name}.json"));
    write(&json, &serde_json::to_string_pretty(&report.json(name))?)?;
    let svg = out_dir.join(format!("{name}.svg"));
    write(&svg, &chart::latency_svg(name, &report.rows))?;
    eprintln!("wrote {} and {}", json.display(), svg.display());
    Ok(())
}

/// Writes `<out_dir>/summary.md`: the machine, the exact command, and every benchmark's tables.
pub fn summarize(reports: &[(&str, Report)], out_dir: &Path) -> anyhow::Result<()> {
    let machine = machine();
    let command: Vec<String> = std::env::args().skip(1).collect();
    let mut out = format!(
        "# Township benchmarks\n\nMachine: {} ({} cores), Linux {}. Command: `cargo run \
         --release -p township-bench -- {}`. Each server runs with one worker thread, the load \
         generator on one thread; every figure stands beside its references from the same run.\n",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["kernel"].as_str().unwrap_or("?"),
        command.join(" "),
    );
    for (name, report) in reports {
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

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
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
