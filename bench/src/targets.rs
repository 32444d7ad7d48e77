//! The targets Township holds itself to, judged from one run's rows: a ratio to a reference, a
//! latency bound or a memory bound. A target is met only when its median meets it and its rounds
//! agree (a ratio whose rounds disagree by more than a fifth is "unstable", never met); a target
//! whose reference was not measured is "not measured", never met.

use std::time::Duration;

use crate::{
    report::Footprint,
    row::{Ratio, Row},
};

/// How a target came out.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Met,
    /// Not met, and why ("below", "unstable", a precondition not yet true).
    NotMet(String),
    /// A system it needs was not measured in this run, and why.
    NotMeasured(String),
}

impl Verdict {
    /// "met", "**not met**: why", "not measured: why".
    pub fn label(&self) -> String {
        match self {
            Verdict::Met => "met".to_owned(),
            Verdict::NotMet(why) => format!("**not met**: {why}"),
            Verdict::NotMeasured(why) => format!("not measured: {why}"),
        }
    }

    /// "met", "not met" or "not measured", for the JSON.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet(_) => "not met",
            Verdict::NotMeasured(_) => "not measured",
        }
    }
}

/// One target and how this run measured it.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is promised, e.g. "lock ≥ 4× etcd, 1 client".
    pub name: String,
    /// What it is measured against, e.g. "etcd 3.4.23, v3 Lock API (durable: yes)".
    pub reference: String,
    /// The median with its spread, e.g. "10.50× (9.8–11.2)".
    pub measured: String,
    pub verdict: Verdict,
}

impl Target {
    /// Ours ÷ `reference` in ops/s must be at least `at_least`, in the median of the rounds and
    /// with the rounds agreeing.
    pub fn ratio_at_least(
        name: impl Into<String>,
        ours: &Row,
        reference: &Row,
        at_least: f64,
    ) -> Self {
        let name = name.into();
        let against = format!(
            "{} (durable: {})",
            reference.system,
            reference.durable.label()
        );
        if let Some(why) = ours.missing.as_ref().or(reference.missing.as_ref()) {
            return Self::not_measured(name, against, why);
        }
        let Some(ratio) = Ratio::of(ours, reference) else {
            return Self::not_measured(name, against, "no round measured");
        };
        let verdict = if ratio.unstable() {
            Verdict::NotMet("unstable: the rounds disagree by more than 20%".into())
        } else if ratio.median < at_least {
            Verdict::NotMet(format!("median below {at_least}×"))
        } else {
            Verdict::Met
        };
        Self {
            name,
            reference: against,
            measured: ratio.label(),
            verdict,
        }
    }

    /// Every round's p99 of `row` at most `limit` (so the median is too).
    pub fn p99_at_most(name: impl Into<String>, row: &Row, limit: Duration) -> Self {
        let name = name.into();
        if let Some(why) = &row.missing {
            return Self::not_measured(name, "—", why);
        }
        let p99s: Vec<Duration> = row.rounds.iter().map(|r| r.p99).collect();
        let worst = p99s.iter().max().copied().unwrap_or_default();
        let best = p99s.iter().min().copied().unwrap_or_default();
        let verdict = if p99s.is_empty() {
            Verdict::NotMeasured("no round measured".into())
        } else if worst > limit {
            Verdict::NotMet(format!("a round's p99 above {} ms", limit.as_millis()))
        } else {
            Verdict::Met
        };
        Self {
            name,
            reference: "—".into(),
            measured: format!(
                "p99 {:.1} ms ({:.1}–{:.1})",
                ms(row.p99),
                ms(best),
                ms(worst)
            ),
            verdict,
        }
    }

    /// Every server's idle resident memory at most `limit_kib`.
    pub fn idle_rss_at_most(
        name: impl Into<String>,
        footprints: &[Footprint],
        limit_kib: u64,
    ) -> Self {
        let name = name.into();
        let (lo, hi) = footprints.iter().fold((u64::MAX, 0), |(lo, hi), f| {
            (lo.min(f.idle_rss_kib), hi.max(f.idle_rss_kib))
        });
        if footprints.is_empty() {
            return Self::not_measured(name, "—", "no server measured");
        }
        let largest = footprints
            .iter()
            .max_by_key(|f| f.idle_rss_kib)
            .map(|f| f.server.clone())
            .unwrap_or_default();
        Self {
            name,
            reference: "—".into(),
            measured: format!(
                "{:.1} to {:.1} MiB (largest: {largest})",
                lo as f64 / 1024.0,
                hi as f64 / 1024.0
            ),
            verdict: if hi <= limit_kib {
                Verdict::Met
            } else {
                Verdict::NotMet(format!("{largest} above the bound"))
            },
        }
    }

    /// `samples` (one per failover) with their median at most `median_limit` and none above
    /// `max_limit`.
    pub fn durations_at_most(
        name: impl Into<String>,
        samples: &[Duration],
        median_limit: Duration,
        max_limit: Duration,
    ) -> Self {
        let name = name.into();
        let Some(max) = samples.iter().max().copied() else {
            return Self::not_measured(name, "—", "no failover measured");
        };
        let mut sorted = samples.to_vec();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        let verdict = if median > median_limit {
            Verdict::NotMet(format!("median above {:.1} s", median_limit.as_secs_f64()))
        } else if max > max_limit {
            Verdict::NotMet(format!("one above {:.1} s", max_limit.as_secs_f64()))
        } else {
            Verdict::Met
        };
        Self {
            name,
            reference: "—".into(),
            measured: format!(
                "median {:.2} s, max {:.2} s, over {}",
                median.as_secs_f64(),
                max.as_secs_f64(),
                samples.len()
            ),
            verdict,
        }
    }

    /// The same target, not measured, and why.
    pub fn not_measured_because(self, why: &str) -> Self {
        Self::not_measured(self.name, self.reference, why)
    }

    fn not_measured(name: String, reference: impl Into<String>, why: &str) -> Self {
        Self {
            name,
            reference: reference.into(),
            measured: String::new(),
            verdict: Verdict::NotMeasured(why.to_owned()),
        }
    }

    /// The Markdown table of `targets`.
    pub fn table(targets: &[Target]) -> String {
        let mut out = String::from(
            "| target | reference | median (min–max of rounds) | verdict |\n|---|---|---|---|\n",
        );
        for t in targets {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                t.name,
                t.reference,
                t.measured,
                t.verdict.label()
            ));
        }
        out
    }

    /// The JSON form.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.name,
            "reference": self.reference,
            "measured": self.measured,
            "verdict": self.verdict.word(),
            "why": match &self.verdict {
                Verdict::Met => None,
                Verdict::NotMet(why) | Verdict::NotMeasured(why) => Some(why),
            },
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::{Durable, Figures};

    fn row(system: &str, rates: &[f64]) -> Row {
        let mut row = Row::missing("s", system, Durable::NotApplicable, "");
        row.missing = None;
        row.rounds = rates
            .iter()
            .map(|&per_second| Figures {
                per_second,
                p50: Duration::ZERO,
                p99: Duration::from_millis(per_second as u64),
            })
            .collect();
        row.per_second = crate::row::median(rates.to_vec());
        row
    }

    #[test]
    fn a_ratio_target_is_met_when_the_median_meets_it_and_the_rounds_agree() {
        let target = Target::ratio_at_least(
            "t",
            &row("ours", &[96.0, 97.0, 99.0]),
            &row("ref", &[100.0; 3]),
            0.95,
        );
        assert_eq!(target.verdict, Verdict::Met);
    }

    #[test]
    fn a_ratio_target_is_not_met_below_its_median() {
        let target = Target::ratio_at_least(
            "t",
            &row("ours", &[90.0, 93.0, 94.0]),
            &row("ref", &[100.0; 3]),
            0.95,
        );
        assert!(matches!(target.verdict, Verdict::NotMet(why) if why.contains("below")));
    }

    #[test]
    fn a_ratio_whose_rounds_disagree_does_not_meet_its_target_even_with_a_good_median() {
        let target = Target::ratio_at_least(
            "t",
            &row("ours", &[80.0, 110.0, 130.0]),
            &row("ref", &[100.0; 3]),
            0.95,
        );
        assert!(matches!(target.verdict, Verdict::NotMet(why) if why.contains("unstable")));
    }

    #[test]
    fn a_target_against_a_missing_reference_is_not_measured() {
        let missing = Row::missing("s", "etcd", Durable::NotApplicable, "not installed");
        let target = Target::ratio_at_least("t", &row("ours", &[1.0]), &missing, 4.0);
        assert_eq!(target.verdict, Verdict::NotMeasured("not installed".into()));
    }

    #[test]
    fn a_latency_target_needs_every_round_within_the_bound() {
        let within = Target::p99_at_most(
            "t",
            &row("ours", &[5.0, 10.0, 19.0]),
            Duration::from_millis(20),
        );
        assert_eq!(within.verdict, Verdict::Met);
        let one_over = Target::p99_at_most(
            "t",
            &row("ours", &[5.0, 10.0, 21.0]),
            Duration::from_millis(20),
        );
        assert!(matches!(one_over.verdict, Verdict::NotMet(_)));
    }
}
