//! One measured figure: a system's throughput and latency in one scenario, taken from its latency
//! histogram (or marked missing, never made up). The report tabulates rows; the chart draws them.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The quantiles kept from each histogram, for the JSON and the latency chart.
pub const QUANTILES: [f64; 12] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// One system measured in one scenario. The rows of a scenario share its `scenario` text; the
/// first is Township's, the others are its references, so ratios are taken against the first.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured, the same for Township and its references, e.g. "lock: 1 client".
    pub scenario: String,
    /// Who was measured: "lock-server", "etcd 3.4.23", "bare tonic", ...
    pub system: String,
    /// Completed operations per second.
    pub per_second: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
    /// Operations measured.
    pub count: u64,
    /// Latency (µs) at each of [`QUANTILES`].
    pub quantiles: Vec<(f64, u64)>,
    /// Set when the system could not be measured: why, and how to install it.
    pub missing: Option<String>,
}

impl Row {
    /// A row from a latency histogram (microseconds) whose operations ran over `elapsed`.
    pub fn from_histogram(
        scenario: impl Into<String>,
        system: impl Into<String>,
        histogram: &Histogram<u64>,
        elapsed: Duration,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            system: system.into(),
            per_second: histogram.len() as f64 / elapsed.as_secs_f64(),
            p50: Duration::from_micros(histogram.value_at_quantile(0.50)),
            p99: Duration::from_micros(histogram.value_at_quantile(0.99)),
            count: histogram.len(),
            quantiles: QUANTILES
                .iter()
                .map(|&q| (q, histogram.value_at_quantile(q)))
                .collect(),
            missing: None,
        }
    }

    /// A reference that could not be measured in this run; `why` says how to install it. Never
    /// a made-up figure.
    pub fn missing(
        scenario: impl Into<String>,
        system: impl Into<String>,
        why: impl Into<String>,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            system: system.into(),
            per_second: 0.0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            count: 0,
            quantiles: Vec::new(),
            missing: Some(why.into()),
        }
    }
}
