//! The time domain: what the time is in a zone, and how it reads as C's ctime() text. No gRPC here.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::Error;

/// What every reply says after the time, as the classic day/time server did.
pub const GREETING: &str = "Have a nice day!";

/// An IANA time zone such as `Europe/Paris` or `UTC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone(Tz);

impl Zone {
    /// Coordinated Universal Time, the default.
    pub const UTC: Zone = Zone(Tz::UTC);

    /// The zone's IANA name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl FromStr for Zone {
    type Err = Error;

    /// Parses an IANA name; surrounding white space is ignored, case is not.
    fn from_str(name: &str) -> Result<Self, Error> {
        let name = name.trim();
        Tz::from_str(name)
            .map(Zone)
            .map_err(|_| Error::UnknownZone(name.to_owned()))
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One reading of the clock, to be shown in one zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeOfDay {
    /// The instant, in UTC.
    pub now: DateTime<Utc>,
    /// The zone the text forms are given in.
    pub zone: Zone,
}

impl TimeOfDay {
    /// Reads the system clock.
    pub fn now(zone: Zone) -> Self {
        Self::at(Utc::now(), zone)
    }

    /// The given instant (for tests and replays).
    pub fn at(now: DateTime<Utc>, zone: Zone) -> Self {
        Self { now, zone }
    }

    /// Exactly like C's `ctime()` without the newline: `Sun Jun  4 09:05:01 2017` (the day of the
    /// month padded with a space), in this reading's zone.
    pub fn ctime(&self) -> String {
        self.now
            .with_timezone(&self.zone.0)
            .format("%a %b %e %H:%M:%S %Y")
            .to_string()
    }
}

/// The time between two replies of a watch: from [`Self::MIN`] to [`Self::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchInterval(Duration);

impl WatchInterval {
    /// The shortest interval allowed.
    pub const MIN: Duration = Duration::from_millis(100);
    /// The longest interval allowed.
    pub const MAX: Duration = Duration::from_secs(3600);
    /// The interval when the client gives none.
    pub const DEFAULT: WatchInterval = WatchInterval(Duration::from_secs(1));

    /// The interval as a duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl TryFrom<Duration> for WatchInterval {
    type Error = Error;

    fn try_from(interval: Duration) -> Result<Self, Error> {
        if (Self::MIN..=Self::MAX).contains(&interval) {
            Ok(Self(interval))
        } else {
            Err(Error::IntervalOutOfRange(format!("{interval:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn ctime_matches_the_c_library_format() {
        let t = TimeOfDay::at(at(2017, 6, 24, 12, 54, 32), Zone::UTC);
        assert_eq!(t.ctime(), "Sat Jun 24 12:54:32 2017");
    }

    #[test]
    fn ctime_pads_a_one_digit_day_with_a_space() {
        let t = TimeOfDay::at(at(2017, 6, 4, 9, 5, 1), Zone::UTC);
        assert_eq!(t.ctime(), "Sun Jun  4 09:05:01 2017");
    }

    #[test]
    fn ctime_is_given_in_the_requested_zone() {
        let tokyo: Zone = "Asia/Tokyo".parse().unwrap();
        let t = TimeOfDay::at(at(2017, 6, 24, 20, 0, 0), tokyo);
        assert_eq!(t.ctime(), "Sun Jun 25 05:00:00 2017");
        let ny: Zone = " America/New_York ".parse().unwrap();
        assert_eq!(ny.name(), "America/New_York");
        assert_eq!(
            TimeOfDay::at(at(2017, 1, 1, 3, 0, 0), ny).ctime(),
            "Sat Dec 31 22:00:00 2016"
        );
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(
            matches!("Mars/Olympus".parse::<Zone>(), Err(Error::UnknownZone(z)) if z == "Mars/Olympus")
        );
        assert!("".parse::<Zone>().is_err());
    }

    #[test]
    fn watch_intervals_are_bounded() {
        assert!(WatchInterval::try_from(Duration::from_millis(99)).is_err());
        assert!(WatchInterval::try_from(Duration::from_millis(100)).is_ok());
        assert!(WatchInterval::try_from(Duration::from_secs(3600)).is_ok());
        assert!(WatchInterval::try_from(Duration::from_secs(3601)).is_err());
    }
}
