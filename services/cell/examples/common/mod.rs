//! What every example shares: the flags that set the pace of a demonstration.

use std::time::Duration;

use township_cell::demo::{self, Pace};

/// Flags for how fast a demonstration runs and which random sleeps it draws.
#[derive(Debug, clap::Args)]
pub struct PaceArgs {
    /// Length of one of the demonstration's "seconds", in milliseconds (e.g. 10 for a quick run).
    #[arg(long, default_value_t = 1000)]
    pub time_unit_ms: u64,

    /// Seed for the random sleep times (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl PaceArgs {
    /// The pace these flags ask for.
    pub fn pace(&self) -> Pace {
        Pace {
            time_unit: Duration::from_millis(self.time_unit_ms),
            seed: self.seed.unwrap_or_else(demo::seed_from_time),
        }
    }
}
