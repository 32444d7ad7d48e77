//! Results: a closed-loop measurement's figures, the Markdown table and the JSON file.

use std::{path::Path, time::Duration};

use anyhow::Context;
use hdrhistogram::Histogram;

/// One measured scenario.
#[derive(Debug)]
pub struct Row {
    /// What was measured, e.g. "lock: 16 clients, one resource".
    pub scenario: String,
    /// Completed operations per second.
    pub per_second: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
    /// Operations measured.
    pub count: u64,
}

impl Row {
    /// Builds a row from a latency histogram (microseconds) over `elapsed`.
    pub fn from_histogram(
        scenario: impl Into<String>,
        histogram: &Histogram<u64>,
        elapsed: Duration,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            per_second: histogram.len() as f64 / elapsed.as_secs_f64(),
            p50: Duration::from_micros(histogram.value_at_quantile(0.50)),
            p99: Duration::from_micros(histogram.value_at_quantile(0.99)),
            count: histogram.len(),
        }
    }
}

/// Prints the Markdown table and writes `<out_dir>/<name>.json` (not in smoke mode).
pub fn publish(name: &str, rows: &[Row], out_dir: &Path, smoke: bool) -> anyhow::Result<()> {
    println!("| scenario | ops/s | p50 | p99 | ops measured |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            row.scenario,
            row.per_second,
            row.p50.as_secs_f64() * 1e3,
            row.p99.as_secs_f64() * 1e3,
            row.count
        );
    }
    if smoke {
        return Ok(());
    }
    let json = serde_json::json!({
        "benchmark": name,
        "machine": machine(),
        "rows": rows.iter().map(|r| serde_json::json!({
            "scenario": r.scenario,
            "ops_per_second": r.per_second,
            "p50_us": r.p50.as_micros() as u64,
            "p99_us": r.p99.as_micros() as u64,
            "count": r.count,
        })).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let path = out_dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn machine() -> serde_json::Value {
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
    serde_json::json!({ "cpu": cpu, "cores": cores })
}
