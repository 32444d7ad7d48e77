//! How logins are throttled, with no I/O: the lockout policy, where a login comes from, and the
//! bound on PIN checks in flight. The aim (OWASP's authentication advice): guessing a PIN stays
//! hopeless, and a stranger cannot lock a customer out.
//!
//! - Strikes count per (name, source): the caller's certificate principal, else its IP address.
//!   [`STRIKES`] failures from one source refuse that source for that name for
//!   [`LoginPolicy::lockout`], doubling with each further failure up to `max_lockout`.
//! - A slower back-off per name, from every source together: once [`NAME_STRIKES`] failures are
//!   counted within `max_lockout`, the name is refused to everyone for `name_lockout` after the
//!   latest. A stranger must therefore spend a fresh source for every few guesses, and the
//!   owner's wait is bounded.
//! - Each attempt is counted as a failure *before* its PIN is checked (one transaction with the
//!   lockout check), and the count is cleared if the PIN is right: so attempts sent together
//!   cannot outrun the strikes.
//! - PIN checks in flight are bounded per name and in total ([`PinGate`]); past the bound the
//!   answer is RESOURCE_EXHAUSTED with a RetryInfo, and no PIN work is done.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use crate::types::HolderName;

/// Failures from one source after which it is refused that name for a while.
pub const STRIKES: u32 = 3;
/// Failures for a name from all sources, within `max_lockout`, after which the name is refused
/// to everyone for `name_lockout`.
pub const NAME_STRIKES: u32 = 10;
/// PIN checks in flight for one name (more: RESOURCE_EXHAUSTED).
pub const MAX_PIN_CHECKS_PER_NAME: usize = STRIKES as usize;
/// PIN checks in flight in all (each is ~19 MiB and tens of milliseconds of a core).
pub const MAX_PIN_CHECKS: usize = 32;
/// The RetryInfo of a refusal for PIN checks in flight.
pub const BUSY_RETRY: Duration = Duration::from_secs(1);

/// The lockout lengths (flags, so that tests can use seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginPolicy {
    /// How long a source is refused a name after its [`STRIKES`]th failure; doubling after.
    pub lockout: Duration,
    /// The longest refusal; also how long failures are remembered.
    pub max_lockout: Duration,
    /// How long a name is refused to everyone after [`NAME_STRIKES`] failures from all sources.
    pub name_lockout: Duration,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        Self {
            lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(15 * 60),
            name_lockout: Duration::from_secs(60),
        }
    }
}

impl LoginPolicy {
    /// How long a source is refused after `failures` failures in a row (0 before the third).
    pub fn source_lockout(&self, failures: u32) -> Duration {
        if failures < STRIKES {
            return Duration::ZERO;
        }
        let doublings = (failures - STRIKES).min(20);
        self.lockout
            .saturating_mul(2u32.pow(doublings))
            .min(self.max_lockout)
    }
}

/// Where a login comes from, for counting its strikes: the caller's certificate principal when
/// it shows one, else its IP address (without the port, which changes with every connection).
pub fn source(principal: Option<&str>, peer: Option<IpAddr>) -> String {
    match (principal.filter(|p| !p.is_empty()), peer) {
        (Some(principal), _) => format!("principal:{principal}"),
        (None, Some(ip)) => format!("ip:{}", ip.to_canonical()),
        (None, None) => "unknown".to_owned(),
    }
}

/// The bound on PIN checks in flight, per name and in total.
#[derive(Debug, Default)]
pub struct PinGate {
    in_flight: Mutex<InFlight>,
}

#[derive(Debug, Default)]
struct InFlight {
    total: usize,
    names: HashMap<HolderName, usize>,
}

impl PinGate {
    /// A pass for one PIN check of `name`, held until it is dropped; `None` when `name` or the
    /// whole bank already has as many in flight as allowed.
    pub fn enter(&self, name: &HolderName) -> Option<PinPass<'_>> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let of_name = in_flight.names.get(name).copied().unwrap_or(0);
        if in_flight.total >= MAX_PIN_CHECKS || of_name >= MAX_PIN_CHECKS_PER_NAME {
            return None;
        }
        in_flight.total += 1;
        in_flight.names.insert(name.clone(), of_name + 1);
        Some(PinPass {
            gate: self,
            name: name.clone(),
        })
    }
}

/// One PIN check in flight; dropping it lets another in.
#[derive(Debug)]
pub struct PinPass<'a> {
    gate: &'a PinGate,
    name: HolderName,
}

impl Drop for PinPass<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .gate
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.total = in_flight.total.saturating_sub(1);
        if let Some(count) = in_flight.names.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                in_flight.names.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_strikes_then_a_doubling_lockout_up_to_the_longest() {
        let policy = LoginPolicy::default();
        assert_eq!(policy.source_lockout(2), Duration::ZERO);
        assert_eq!(policy.source_lockout(3), Duration::from_secs(30));
        assert_eq!(policy.source_lockout(4), Duration::from_secs(60));
        assert_eq!(policy.source_lockout(5), Duration::from_secs(120));
        assert_eq!(policy.source_lockout(40), policy.max_lockout);
        assert_eq!(policy.source_lockout(u32::MAX), policy.max_lockout);
    }

    #[test]
    fn the_source_is_the_principal_else_the_ip_address_without_its_port() {
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(
            source(Some("spiffe://township/user/ada"), Some(ip)),
            "principal:spiffe://township/user/ada"
        );
        assert_eq!(source(Some(""), Some(ip)), "ip:127.0.0.2");
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(source(None, Some(mapped)), "ip:127.0.0.2");
        assert_eq!(source(None, None), "unknown");
    }

    #[test]
    fn pin_checks_in_flight_are_bounded_per_name_and_freed_when_done() {
        let gate = PinGate::default();
        let ada = HolderName::parse("holder_name", "Ada").unwrap();
        let bob = HolderName::parse("holder_name", "Bob").unwrap();
        let passes: Vec<_> = (0..MAX_PIN_CHECKS_PER_NAME)
            .map(|_| gate.enter(&ada).expect("a pass"))
            .collect();
        assert!(gate.enter(&ada).is_none(), "Ada's checks are at the bound");
        assert!(gate.enter(&bob).is_some(), "other names are not");
        drop(passes);
        assert!(gate.enter(&ada).is_some(), "passes are given back");
    }

    #[test]
    fn pin_checks_in_flight_are_bounded_in_total() {
        let gate = PinGate::default();
        let names: Vec<_> = (0..MAX_PIN_CHECKS)
            .map(|i| HolderName::parse("holder_name", &format!("name{i}")).unwrap())
            .collect();
        let passes: Vec<_> = names.iter().map(|n| gate.enter(n).unwrap()).collect();
        let one_more = HolderName::parse("holder_name", "one more").unwrap();
        assert!(gate.enter(&one_more).is_none());
        drop(passes);
        assert!(gate.enter(&one_more).is_some());
    }
}
