//! The lock-servers a client may reach, and the one it takes for the leader. With one address
//! there is nothing to choose. With several (lock-servers elected on etcd), a server that does not
//! lead answers UNAVAILABLE naming the leader in the `township-lock-leader` trailer: the client
//! goes there; a server that cannot be reached, or knows no leader, sends it on to the next one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use tonic::{Code, Status, transport::Channel};
use township_client::{DialError, Dialer, addr_list};
use township_proto::lock::v1::lock_service_client::LockServiceClient;

/// The trailer in which a lock-server that does not lead names the leader (HOST:PORT).
pub const LEADER_TRAILER: &str = "township-lock-leader";

/// The servers and the current pick; clones share them.
#[derive(Clone, Debug)]
pub(crate) struct Servers {
    known: Arc<Mutex<Known>>,
    /// Dials a leader named by a trailer that is not in the list; `None` for a client made on
    /// one channel, which has nowhere else to go.
    dialer: Option<Dialer>,
}

#[derive(Debug)]
struct Known {
    /// Addresses in the order given (then any leader named that was not given).
    order: Vec<String>,
    /// A lazily connecting channel per address.
    channels: HashMap<String, Channel>,
    /// The index in `order` taken for the leader.
    current: usize,
}

impl Servers {
    /// One server on `channel`.
    pub(crate) fn one(channel: Channel) -> Self {
        let known = Known {
            order: vec![String::new()],
            channels: HashMap::from([(String::new(), channel)]),
            current: 0,
        };
        Self {
            known: Arc::new(Mutex::new(known)),
            dialer: None,
        }
    }

    /// The servers at `addrs` (`HOST:PORT`, comma-separated), each dialled lazily by `dialer` on
    /// its first call. Fails only on an address that cannot be read.
    pub(crate) fn dial(dialer: Dialer, addrs: &str) -> Result<Self, DialError> {
        let order = addr_list(addrs).map_err(|reason| DialError::BadAddress {
            addr: addrs.to_owned(),
            reason,
        })?;
        let mut channels = HashMap::new();
        for addr in &order {
            channels.insert(addr.clone(), dialer.lazy(addr)?);
        }
        let known = Known {
            order,
            channels,
            current: 0,
        };
        Ok(Self {
            known: Arc::new(Mutex::new(known)),
            dialer: Some(dialer),
        })
    }

    /// How many servers are known.
    pub(crate) fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// The server taken for the leader: its address and a client of it.
    pub(crate) fn leader(&self) -> (String, LockServiceClient<Channel>) {
        let known = self.lock();
        let addr = known.order[known.current].clone();
        let channel = known.channels[&addr].clone();
        (addr, LockServiceClient::new(channel))
    }

    /// After a call to `addr` failed with `status`: whether another server is worth a try now.
    /// A leader named in the trailer becomes the pick; a server that could not be reached or did
    /// not serve (UNAVAILABLE) hands the pick to the next one in the list.
    pub(crate) fn failed(&self, addr: &str, status: &Status) -> bool {
        if status.code() != Code::Unavailable {
            return false;
        }
        let named = status
            .metadata()
            .get(LEADER_TRAILER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut known = self.lock();
        if let Some(leader) = named.filter(|leader| leader != addr) {
            if let Some(index) = known.order.iter().position(|a| *a == leader) {
                known.current = index;
                return true;
            }
            if let Some(channel) = self.dialer.as_ref().and_then(|d| d.lazy(&leader).ok()) {
                known.order.push(leader.clone());
                known.channels.insert(leader, channel);
                known.current = known.order.len() - 1;
                return true;
            }
        }
        if known.order.len() < 2 {
            return false;
        }
        if known.order[known.current] == addr {
            known.current = (known.current + 1) % known.order.len();
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // Each change is one assignment or push: never half-made.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(addrs: &str) -> Servers {
        Servers::dial(Dialer::new(), addrs).unwrap()
    }

    fn not_leader(leader: Option<&str>) -> Status {
        let mut status = Status::unavailable("not the leader");
        if let Some(leader) = leader {
            status
                .metadata_mut()
                .insert(LEADER_TRAILER, leader.parse().unwrap());
        }
        status
    }

    #[tokio::test]
    async fn a_named_leader_is_followed_and_an_unavailable_server_passed_over() {
        let s = servers("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3");
        assert_eq!(s.leader().0, "127.0.0.1:1");
        assert!(s.failed("127.0.0.1:1", &not_leader(Some("127.0.0.1:3"))));
        assert_eq!(s.leader().0, "127.0.0.1:3");
        assert!(s.failed("127.0.0.1:3", &not_leader(None)));
        assert_eq!(s.leader().0, "127.0.0.1:1", "wraps round");
        // A late failure of a server no longer picked changes nothing.
        assert!(s.failed("127.0.0.1:3", &not_leader(None)));
        assert_eq!(s.leader().0, "127.0.0.1:1");
        // A refusal is the answer, not a reason to go elsewhere.
        assert!(!s.failed("127.0.0.1:1", &Status::invalid_argument("targets")));
        // A leader not in the list is dialled and picked.
        assert!(s.failed("127.0.0.1:1", &not_leader(Some("127.0.0.1:9"))));
        assert_eq!((s.leader().0, s.len()), ("127.0.0.1:9".to_owned(), 4));
    }

    #[tokio::test]
    async fn one_server_has_nowhere_else_to_go() {
        let s = servers("127.0.0.1:1");
        assert!(!s.failed("127.0.0.1:1", &not_leader(None)));
        assert!(s.failed("127.0.0.1:1", &not_leader(Some("127.0.0.1:2"))));
        let err = Servers::dial(Dialer::new(), "127.0.0.1:1,nowhere").unwrap_err();
        assert!(err.to_string().contains("`nowhere`"), "{err}");
    }
}
