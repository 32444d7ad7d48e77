//! The time domain: what the time is in a zone, and how it reads as C's ctime() text. No gRPC here.

use std::{
    fmt::{self, Write},
    str::FromStr,
    time::Duration,
};

use chrono::{DateTime, Datelike, Timelike, Utc};
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
    ///
    /// Written field by field rather than through `format("%a %b %e %H:%M:%S %Y")`, which parses
    /// its pattern and renders the zone's offset as text on every call (two thirds of a GetTime's
    /// own cost). A test holds the two to the same text.
    pub fn ctime(&self) -> String {
        let local = self.now.with_timezone(&self.zone.0);
        let mut text = String::with_capacity(24);
        text.push_str(WEEKDAYS[local.weekday().num_days_from_monday() as usize]);
        text.push(' ');
        text.push_str(MONTHS[local.month0() as usize]);
        text.push(' ');
        push_two_digits(&mut text, local.day(), ' ');
        text.push(' ');
        push_two_digits(&mut text, local.hour(), '0');
        text.push(':');
        push_two_digits(&mut text, local.minute(), '0');
        text.push(':');
        // A leap second reads as :60, as chrono's `%S` shows it.
        let leap = u32::from(local.nanosecond() >= 1_000_000_000);
        push_two_digits(&mut text, local.second() + leap, '0');
        text.push(' ');
        // As chrono's `%Y`: four digits within years 0 to 9999, else a sign and at least four.
        let year = local.year();
        if (0..=9999).contains(&year) {
            let year = year.unsigned_abs();
            push_two_digits(&mut text, year / 100, '0');
            push_two_digits(&mut text, year % 100, '0');
        } else {
            // Writing into a String cannot fail; the Result is only fmt::Write's signature.
            let _ = write!(text, "{year:+05}");
        }
        text
    }
}

/// The weekdays as ctime() abbreviates them, Monday first (chrono's numbering).
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The months as ctime() abbreviates them, January first.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends `n` (below 100) as two digits, the tens shown as `pad` when zero.
fn push_two_digits(text: &mut String, n: u32, pad: char) {
    let tens = n / 10 % 10;
    text.push(if tens == 0 {
        pad
    } else {
        char::from(b'0' + tens as u8)
    });
    text.push(char::from(b'0' + (n % 10) as u8));
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
    fn ctime_writes_what_chrono_strftime_writes() {
        let zones: Vec<Zone> = [
            "UTC",
            "Asia/Tokyo",
            "America/St_Johns",
            "Pacific/Kiritimati",
        ]
        .iter()
        .map(|name| name.parse().unwrap())
        .collect();
        // Every 7 days, 11 hours and 13 minutes over 60 years, plus the edges of %Y's range.
        let step = 7 * 86_400 + 11 * 3_600 + 13 * 60;
        let mut instants: Vec<i64> = (0..3_000).map(|i| 946_684_800 + i * step).collect();
        instants.extend([
            -62_167_219_200,
            253_402_300_799,
            253_402_300_800,
            -62_167_219_201,
        ]);
        let mut nows: Vec<DateTime<Utc>> = instants
            .into_iter()
            .map(|seconds| DateTime::from_timestamp(seconds, 0).unwrap())
            .collect();
        // A leap second (23:59:60 on 2016-12-31).
        nows.push(DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap());
        for now in nows {
            for &zone in &zones {
                let expected = now
                    .with_timezone(&zone.0)
                    .format("%a %b %e %H:%M:%S %Y")
                    .to_string();
                assert_eq!(
                    TimeOfDay::at(now, zone).ctime(),
                    expected,
                    "{now} in {zone}"
                );
            }
        }
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
