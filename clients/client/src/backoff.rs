//! Exponential backoff with jitter, for every client loop that tries again.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

/// The delays between tries: the first about 200 ms, each next one about twice the one before,
/// never above 2 s. Each delay is drawn at random from the upper half of its step ("equal
/// jitter"), so that many clients that lost the same server do not all come back in the same
/// instant, while none retries much sooner than its step.
#[derive(Clone, Debug)]
pub struct Backoff {
    step: Duration,
    max: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    /// The first step when none is given.
    pub const FIRST: Duration = Duration::from_millis(200);
    /// The largest step when none is given.
    pub const MAX: Duration = Duration::from_secs(2);

    /// 200 ms doubling up to 2 s.
    pub fn new() -> Self {
        Self::between(Self::FIRST, Self::MAX)
    }

    /// `first` doubling up to `max`.
    pub fn between(first: Duration, max: Duration) -> Self {
        Self {
            step: first.min(max),
            max,
            random: RandomState::new(),
            draws: 0,
        }
    }

    /// The next delay to wait: in `[step / 2, step]`, and the step doubles (up to the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(self.unit())
    }

    /// A number in [0, 1), fresh on every call: std's randomly keyed hasher (each `RandomState`
    /// has its own random keys) over a counter. Enough to spread retries; not for secrets.
    fn unit(&mut self) -> f64 {
        self.draws += 1;
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.draws);
        (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_delay_lies_in_the_upper_half_of_a_doubling_capped_step() {
        let mut backoff = Backoff::new();
        let steps = [200, 400, 800, 1600, 2000, 2000, 2000];
        for step in steps {
            let step = Duration::from_millis(step);
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[test]
    fn delays_are_jittered_not_fixed() {
        let firsts: std::collections::HashSet<Duration> =
            (0..20).map(|_| Backoff::new().next_delay()).collect();
        assert!(
            firsts.len() > 1,
            "twenty clients all waited {firsts:?} before their first retry"
        );
    }
}
