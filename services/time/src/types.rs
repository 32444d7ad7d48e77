//! Each time request message read once into the domain request a handler passes on (the zone and
//! interval themselves are validated by [`crate::clock`]): the handlers hold no validation of
//! their own. A request that names no zone gets the server's default, so these are `parse`
//! functions taking it.

use std::time::Duration;

use township_proto::time::v1::{GetTimeRequest, WatchTimeRequest};

use crate::{
    Error,
    clock::{WatchInterval, Zone},
};

/// A GetTime request: the zone to answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeQuery {
    /// The zone asked for, or the server's default.
    pub zone: Zone,
}

impl TimeQuery {
    /// Reads a GetTime request; an empty `time_zone` means `default_zone`.
    pub fn parse(r: &GetTimeRequest, default_zone: Zone) -> Result<Self, Error> {
        Ok(Self {
            zone: zone(&r.time_zone, default_zone)?,
        })
    }
}

/// A WatchTime request: how often, and in which zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The time between two replies.
    pub interval: WatchInterval,
    /// The zone asked for, or the server's default.
    pub zone: Zone,
}

impl Watch {
    /// Reads a WatchTime request: no `interval` means [`WatchInterval::DEFAULT`]; an empty
    /// `time_zone` means `default_zone`.
    pub fn parse(r: &WatchTimeRequest, default_zone: Zone) -> Result<Self, Error> {
        let interval = match r.interval {
            None => WatchInterval::DEFAULT,
            Some(interval) => {
                let shown = format!("{}s+{}ns", interval.seconds, interval.nanos);
                Duration::try_from(interval)
                    .map_err(|_| Error::IntervalOutOfRange(shown))?
                    .try_into()?
            }
        };
        Ok(Self {
            interval,
            zone: zone(&r.time_zone, default_zone)?,
        })
    }
}

/// The zone a request asks for: its own, or `default_zone` when empty. Naming the default zone
/// itself (the common case) skips the lookup among every IANA name.
fn zone(requested: &str, default_zone: Zone) -> Result<Zone, Error> {
    let requested = requested.trim();
    if requested.is_empty() || requested == default_zone.name() {
        Ok(default_zone)
    } else {
        requested.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_zone_means_the_default_and_an_unknown_one_is_refused() {
        let paris: Zone = "Europe/Paris".parse().unwrap();
        let ask = |zone: &str| GetTimeRequest {
            time_zone: zone.into(),
        };
        assert_eq!(TimeQuery::parse(&ask(" "), paris).unwrap().zone, paris);
        assert_eq!(
            TimeQuery::parse(&ask("UTC"), paris).unwrap().zone,
            Zone::UTC
        );
        assert!(matches!(
            TimeQuery::parse(&ask("Mars/Olympus"), paris),
            Err(Error::UnknownZone(_))
        ));
    }

    #[test]
    fn a_watch_interval_defaults_to_a_second_and_is_bounded() {
        let watch = |interval: Option<prost_types::Duration>| WatchTimeRequest {
            interval,
            time_zone: String::new(),
        };
        let read = Watch::parse(&watch(None), Zone::UTC).unwrap();
        assert_eq!(read.interval, WatchInterval::DEFAULT);
        let too_short = prost_types::Duration {
            seconds: 0,
            nanos: 1_000,
        };
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        for bad in [too_short, negative] {
            assert!(matches!(
                Watch::parse(&watch(Some(bad)), Zone::UTC),
                Err(Error::IntervalOutOfRange(_))
            ));
        }
    }
}
