//! One measured figure: a system's throughput and latency in one scenario, as the median of
//! alternating rounds with the spread beside it (or marked missing, never made up). The report
//! tabulates rows and takes ratios between them; the chart draws them.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;

/// The quantiles kept from each histogram, for the JSON and the latency chart.
pub const QUANTILES: [f64; 12] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// Whether a system's acknowledged writes survive a power loss, and how: printed beside every
/// figure, because a system that fsyncs is not compared like for like with one that does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durable {
    /// Survives power loss; the text says how (e.g. "fsync per commit").
    Yes(&'static str),
    /// Does not; the text says what it keeps (e.g. "in memory").
    No(&'static str),
    /// Nothing to keep (a read-only or stateless service).
    NotApplicable,
    /// As a JSON record of an earlier run says it (its label).
    Recorded(String),
}

impl Durable {
    /// "yes (…)", "no (…)" or "n/a", for the tables.
    pub fn label(&self) -> String {
        match self {
            Durable::Yes(how) => format!("yes ({how})"),
            Durable::No(what) => format!("no ({what})"),
            Durable::NotApplicable => "n/a".to_owned(),
            Durable::Recorded(label) => label.clone(),
        }
    }
}

/// The figures of one round.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Completed operations per second.
    pub per_second: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

impl Figures {
    /// The figures of `histogram` (microseconds), whose operations ran over `elapsed`.
    pub fn of(histogram: &Histogram<u64>, elapsed: Duration) -> Self {
        Self {
            per_second: histogram.len() as f64 / elapsed.as_secs_f64(),
            p50: Duration::from_micros(histogram.value_at_quantile(0.50)),
            p99: Duration::from_micros(histogram.value_at_quantile(0.99)),
        }
    }
}

/// One system's rounds in one scenario, collected as the systems take turns.
#[derive(Default)]
pub struct Rounds {
    all: Option<Histogram<u64>>,
    rounds: Vec<Figures>,
}

impl Rounds {
    /// Adds a round whose operations (latencies in µs) ran over `elapsed`.
    pub fn add(&mut self, round: Histogram<u64>, elapsed: Duration) -> anyhow::Result<()> {
        self.add_figures(Figures::of(&round, elapsed), round)
    }

    /// Adds a round whose figures were worked out by the caller (e.g. entries/s of a bulk load),
    /// with its latencies for the chart.
    pub fn add_figures(&mut self, figures: Figures, round: Histogram<u64>) -> anyhow::Result<()> {
        self.rounds.push(figures);
        match &mut self.all {
            Some(all) => all.add(round).context("merge rounds")?,
            None => self.all = Some(round),
        }
        Ok(())
    }

    /// The row: each figure the median of the rounds; the chart's latencies from all of them.
    pub fn row(
        &self,
        scenario: impl Into<String>,
        system: impl Into<String>,
        durable: Durable,
    ) -> anyhow::Result<Row> {
        let all = self.all.as_ref().context("no round was run")?;
        let median = |key: fn(&Figures) -> f64| median(self.rounds.iter().map(key).collect());
        Ok(Row {
            scenario: scenario.into(),
            system: system.into(),
            durable,
            per_second: median(|f| f.per_second),
            p50: Duration::from_secs_f64(median(|f| f.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(median(|f| f.p99.as_secs_f64())),
            rounds: self.rounds.clone(),
            count: all.len(),
            quantiles: QUANTILES
                .iter()
                .map(|&q| (q, all.value_at_quantile(q)))
                .collect(),
            missing: None,
        })
    }
}

/// The median of `values` (the mean of the middle two when their number is even); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// One system measured in one scenario. The rows of a scenario share its `scenario` text; the
/// first is Township's, the others are its references, so ratios are taken against the first.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured, the same for Township and its references, e.g. "lock: 1 client".
    pub scenario: String,
    /// Who was measured: "lock-server", "etcd 3.4.23", "bare tonic", ...
    pub system: String,
    /// Whether its writes survive a power loss.
    pub durable: Durable,
    /// Completed operations per second: the median of the rounds.
    pub per_second: f64,
    /// Median latency: the median of the rounds'.
    pub p50: Duration,
    /// 99th-percentile latency: the median of the rounds'.
    pub p99: Duration,
    /// Each round's figures, in the order they ran.
    pub rounds: Vec<Figures>,
    /// Operations measured, in all rounds.
    pub count: u64,
    /// Latency (µs) at each of [`QUANTILES`], over all rounds.
    pub quantiles: Vec<(f64, u64)>,
    /// Set when the system could not be measured: why, and how to install it.
    pub missing: Option<String>,
}

impl Row {
    /// A reference that could not be measured in this run; `why` says how to install it. Never
    /// a made-up figure.
    pub fn missing(
        scenario: impl Into<String>,
        system: impl Into<String>,
        durable: Durable,
        why: impl Into<String>,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            system: system.into(),
            durable,
            per_second: 0.0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            rounds: Vec::new(),
            count: 0,
            quantiles: Vec::new(),
            missing: Some(why.into()),
        }
    }

    /// The slowest and fastest round's ops/s.
    pub fn spread(&self) -> (f64, f64) {
        spread(self.rounds.iter().map(|r| r.per_second))
    }
}

/// The smallest and largest of `values` (0, 0 for none).
pub fn spread(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
        .unwrap_or((0.0, 0.0))
}

/// Rounds whose figures differ from each other by more than this fraction of their median are
/// "unstable": their median cannot be trusted to meet a target.
pub const UNSTABLE: f64 = 0.20;

/// Ours ÷ a reference: the median of the per-round ratios (round `i` of each was run back to
/// back), their spread, and whether they disagree by more than [`UNSTABLE`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// The median of the rounds' ratios.
    pub median: f64,
    /// The smallest round's ratio.
    pub min: f64,
    /// The largest round's ratio.
    pub max: f64,
}

impl Ratio {
    /// `ours` ÷ `theirs`, in ops/s, round by round; `None` when either was not measured.
    pub fn of(ours: &Row, theirs: &Row) -> Option<Ratio> {
        Self::of_rounds(&ours.rounds, &theirs.rounds)
    }

    fn of_rounds(ours: &[Figures], theirs: &[Figures]) -> Option<Ratio> {
        let ratios: Vec<f64> = ours
            .iter()
            .zip(theirs)
            .filter(|(_, t)| t.per_second > 0.0)
            .map(|(o, t)| o.per_second / t.per_second)
            .collect();
        if ratios.is_empty() {
            return None;
        }
        let (min, max) = spread(ratios.iter().copied());
        Some(Ratio {
            median: median(ratios),
            min,
            max,
        })
    }

    /// True when the rounds disagree by more than [`UNSTABLE`] of the median.
    pub fn unstable(&self) -> bool {
        unstable(self.median, self.min, self.max)
    }

    /// "0.97× (0.93–1.01)", and " unstable" when it is.
    pub fn label(&self) -> String {
        let flag = if self.unstable() { ", unstable" } else { "" };
        format!(
            "{:.2}× ({:.2}–{:.2}{flag})",
            self.median, self.min, self.max
        )
    }
}

/// True when `min..max` spans more than [`UNSTABLE`] of `median`.
pub fn unstable(median: f64, min: f64, max: f64) -> bool {
    median > 0.0 && (max - min) / median > UNSTABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(per_second: f64) -> Figures {
        Figures {
            per_second,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
        }
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_one_and_of_an_even_count_the_mean_of_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn a_ratio_is_taken_round_by_round_and_its_median_reported_with_its_spread() {
        let ours = [round(100.0), round(90.0), round(120.0)];
        let theirs = [round(100.0), round(100.0), round(100.0)];
        let ratio = Ratio::of_rounds(&ours, &theirs).expect("measured");
        assert_eq!(ratio.median, 1.0);
        assert_eq!((ratio.min, ratio.max), (0.9, 1.2));
        assert!(ratio.unstable(), "0.9 to 1.2 spans 30% of 1.0");
    }

    #[test]
    fn rounds_within_a_fifth_of_the_median_are_stable() {
        let ours = [round(100.0), round(95.0), round(110.0)];
        let theirs = [round(100.0), round(100.0), round(100.0)];
        let ratio = Ratio::of_rounds(&ours, &theirs).expect("measured");
        assert!(!ratio.unstable());
        assert_eq!(ratio.label(), "1.00× (0.95–1.10)");
    }

    #[test]
    fn a_reference_with_no_rounds_gives_no_ratio() {
        assert_eq!(Ratio::of_rounds(&[round(1.0)], &[]), None);
    }
}
