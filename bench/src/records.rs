//! Reading a benchmark's JSON record (`<out_dir>/<name>.json`, as [`crate::report::publish`]
//! writes it) back into its report and run, so that `summary.md` can keep the latest figures of
//! the benchmarks a run did not measure, each with the run it came from.

use std::{path::Path, time::Duration};

use anyhow::Context;
use serde_json::Value;

use crate::{
    report::{Footprint, Reference, Report, Run},
    row::{Durable, Figures, Row},
    targets::{Target, Verdict},
};

/// The report and run recorded in `<out_dir>/<name>.json`, or `None` when there is no such file.
pub fn read(out_dir: &Path, name: &str) -> anyhow::Result<Option<(Report, Run)>> {
    let path = out_dir.join(format!("{name}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    parse(&json)
        .map(Some)
        .with_context(|| format!("{} is not a township-bench record", path.display()))
}

/// A record's report and run.
pub fn parse(json: &Value) -> anyhow::Result<(Report, Run)> {
    let report = Report {
        rows: list(json, "rows")?
            .iter()
            .map(row)
            .collect::<Result<_, _>>()?,
        footprints: list(json, "footprints")?
            .iter()
            .map(footprint)
            .collect::<Result<_, _>>()?,
        targets: list(json, "targets")?
            .iter()
            .map(target)
            .collect::<Result<_, _>>()?,
        references: list(json, "references")?
            .iter()
            .map(|r| {
                Ok(Reference {
                    name: text(r, "name")?,
                    version: text(r, "version")?,
                })
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let run = &json["run"];
    let run = Run {
        commit: text(run, "commit")?,
        date: text(run, "date")?,
        machine: run["machine"].clone(),
        command: text(run, "command")?,
        rounds: u32::try_from(int(run, "rounds")?).context("rounds")?,
        warmup: Duration::from_millis(int(run, "warmup_ms")?),
        round: Duration::from_millis(int(run, "round_ms")?),
    };
    Ok((report, run))
}

fn row(json: &Value) -> anyhow::Result<Row> {
    let figures = |f: &Value| -> anyhow::Result<Figures> {
        Ok(Figures {
            per_second: float(f, "ops_per_second")?,
            p50: Duration::from_micros(int(f, "p50_us")?),
            p99: Duration::from_micros(int(f, "p99_us")?),
        })
    };
    let Figures {
        per_second,
        p50,
        p99,
    } = figures(json)?;
    Ok(Row {
        scenario: text(json, "scenario")?,
        system: text(json, "system")?,
        durable: Durable::Recorded(text(json, "durable")?),
        per_second,
        p50,
        p99,
        rounds: list(json, "rounds")?
            .iter()
            .map(figures)
            .collect::<Result<_, _>>()?,
        count: int(json, "count")?,
        quantiles: list(json, "latency_us_at_quantile")?
            .iter()
            .map(|pair| match (pair[0].as_f64(), pair[1].as_u64()) {
                (Some(q), Some(us)) => Ok((q, us)),
                _ => anyhow::bail!("a quantile is not [q, µs]: {pair}"),
            })
            .collect::<Result<_, _>>()?,
        missing: json["missing"].as_str().map(str::to_owned),
    })
}

fn footprint(json: &Value) -> anyhow::Result<Footprint> {
    Ok(Footprint {
        server: text(json, "server")?,
        start_to_serving: Duration::from_micros(int(json, "start_to_serving_us")?),
        idle_rss_kib: int(json, "idle_rss_kib")?,
        peak_rss_kib: int(json, "peak_rss_kib")?,
        cpu_us_per_op: json["cpu_us_per_op"].as_f64(),
    })
}

fn target(json: &Value) -> anyhow::Result<Target> {
    let why = json["why"].as_str().unwrap_or_default().to_owned();
    let verdict = match text(json, "verdict")?.as_str() {
        "met" => Verdict::Met,
        "not met" => Verdict::NotMet(why),
        "not measured" => Verdict::NotMeasured(why),
        other => anyhow::bail!("unknown verdict {other:?}"),
    };
    Ok(Target {
        name: text(json, "target")?,
        reference: text(json, "reference")?,
        measured: text(json, "measured")?,
        verdict,
    })
}

fn list<'a>(json: &'a Value, key: &str) -> anyhow::Result<&'a Vec<Value>> {
    json[key]
        .as_array()
        .with_context(|| format!("no list {key:?}"))
}

fn text(json: &Value, key: &str) -> anyhow::Result<String> {
    json[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no text {key:?}"))
}

fn int(json: &Value, key: &str) -> anyhow::Result<u64> {
    json[key]
        .as_u64()
        .with_context(|| format!("no whole number {key:?}"))
}

fn float(json: &Value, key: &str) -> anyhow::Result<f64> {
    json[key]
        .as_f64()
        .with_context(|| format!("no number {key:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Rounds;

    #[test]
    fn a_record_reads_back_into_the_same_tables() {
        let mut rounds = Rounds::default();
        for (n, us) in [(1000, 90), (1100, 80)] {
            let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            for _ in 0..n {
                histogram.record(us).unwrap();
            }
            rounds.add(histogram, Duration::from_secs(1)).unwrap();
        }
        let ours = rounds.row("s", "ours", Durable::No("in memory")).unwrap();
        let missing = Row::missing("s", "etcd", Durable::Yes("fsync"), "not installed");
        let report = Report {
            targets: vec![
                Target::ratio_at_least("t", &ours, &ours, 1.0),
                Target::ratio_at_least("u", &ours, &missing, 4.0),
            ],
            rows: vec![ours, missing],
            footprints: vec![Footprint {
                server: "lock-server".into(),
                start_to_serving: Duration::from_micros(23_249),
                idle_rss_kib: 9600,
                peak_rss_kib: 10_728,
                cpu_us_per_op: Some(12.5),
            }],
            references: vec![Reference {
                name: "etcd".into(),
                version: "3.4.23".into(),
            }],
        };
        let run = Run::now(2, Duration::from_millis(100), Duration::from_millis(300));
        let (read, read_run) = parse(&report.json("lock", &run)).unwrap();
        assert_eq!(read.markdown(), report.markdown());
        assert_eq!(read.json("lock", &read_run), report.json("lock", &run));
    }
}
