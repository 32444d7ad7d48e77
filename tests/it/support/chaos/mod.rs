//! The machinery of the bank chaos test (`bank_invariant`): bank replicas on one store (a shared
//! SQLite data directory, or one PostgreSQL database) and the lock service (one lock-server, or
//! three elected on etcd), all serving mutual TLS (the lock-servers with a resource ACL),
//! clients that retry every mutation with its request id until it is answered, the record of what
//! each request was answered, a seeded plan of kill -9s, and the final checks that the ledgers
//! explain every balance and that the lock-server's ACL holds.

pub use super::rng::Rng;

mod checks;
mod clients;
mod cluster;
mod kills;

pub use checks::*;
pub use clients::*;
pub use cluster::*;
pub use kills::*;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tempfile::TempDir;
use tonic::{Code, Status};
use township_proto::bank::v1 as pb;
use township_proto::lock::v1::{LeaderRequest, lock_service_client::LockServiceClient};
use township_references::EtcdCluster;
use township_tests::{ServiceProcess, spawn_tls_service_at};

use crate::support::bank::{
    Rpc, admin_token, assert_adds_up, balance, deposit, ledger, tls_client, transfer, withdraw,
};
use crate::support::{
    process::fixed_address,
    status::reason,
    storage::{self, Backend, Storage},
    tls::Certs,
};

/// Concurrent clients.
pub const CLIENTS: usize = 16;
/// How long the clients keep issuing new requests: at least this long, and until the chaos plan
/// is done and [`MIN_ANSWERED`] operations are answered (a slow machine gets more time), but
/// never past [`HARD_STOP`].
pub const WORKLOAD: Duration = Duration::from_secs(30);
/// At most this many requests are issued in all.
pub const MAX_OPS: usize = 20_000;
/// The workload ends by then even if the chaos plan is still running.
pub const HARD_STOP: Duration = Duration::from_secs(50);
/// One attempt of one request may take this long before the client gives up on it and retries.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the final phase may spend getting an answer for every unanswered request.
pub const RESOLVE_BUDGET: Duration = Duration::from_secs(45);
/// The chaos plan: plain kill -9s of a bank replica and of the lock-server, and kill -9s of every
/// bank replica while the lock-server is frozen (each also kills the lock-server): with two
/// replicas 9 bank-server and 5 lock-server kills in all; on PostgreSQL also one immediate
/// restart of the database.
pub const PLAIN_BANK_KILLS: usize = 1;
/// Plain kill -9s of the lock-server (see [`PLAIN_BANK_KILLS`]).
pub const PLAIN_LOCK_KILLS: usize = 1;
/// Kill -9s of both bank replicas while the lock-server is frozen (see [`PLAIN_BANK_KILLS`]).
pub const FREEZE_KILLS: usize = 4;
/// The least the workload must get answered for the run to count.
pub const MIN_ANSWERED: usize = 1_000;
/// Every replica's flags beyond the shared ones: short leases, a pause between each lock grant
/// and its commit so that kills land in between, and a short one between each commit and its
/// answer so that some applied requests may lose their answer (their retries must then get the
/// original receipt; `bank::a_transfer_applied_but_unanswered_...` makes sure of one).
pub const REPLICA_FLAGS: &[&str] = &[
    "--lock-ttl",
    "2s",
    "--test-delay-after-grant",
    "30ms",
    "--test-delay-after-commit",
    "5ms",
];
/// The account holders and their PINs.
pub const HOLDERS: [(&str, &str); 3] = [("Ada", "1111"), ("Bob", "2222"), ("Cy", "3333")];
/// How many accounts each holder opens.
pub const ACCOUNTS_PER_HOLDER: usize = 2;
/// The user whose client certificate (`township certs issue --name`) the clients show the
/// replicas.
pub const CLIENT: &str = "teller";
/// The lock-server's resource ACL: only the bank (both replicas show its certificate) may lock
/// accounts, so every lock the workload takes goes through the ACL, and whatever else asks is
/// refused.
pub const LOCK_ACL: &str = r#"{"rules": [
  {"principals": ["spiffe://township/bank"], "prefixes": ["account/"], "modes": ["MODE_READ", "MODE_WRITE"]}
]}"#;
/// [`LOCK_ACL`]'s file, in a directory of its own.
pub const ACL_FILE: &str = "acl.json";
