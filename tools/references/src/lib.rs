//! The external references Township is measured and tested beside — etcd, Redis and PostgreSQL —
//! started as throwaway servers on loopback for the bench (`township-bench`) and the integration
//! tests alike.
//!
//! Each reference:
//!
//! - runs as a direct child of this process (no shell, no `pg_ctl`, no service manager), so its
//!   PID is the server's; it is stopped by that PID exactly once, by `stop()` (a graceful signal,
//!   a bounded wait, then SIGKILL) or else by the drop, and always reaped. Nothing is left
//!   running, as long as this process lives to run `stop()` or the drop;
//! - listens on free loopback ports, chosen by binding 127.0.0.1:0, reading the port and letting
//!   it go. Another process may take the port in between; the start then fails with the
//!   reference's own "address already in use" in the error. Rare, but a caller may retry;
//! - keeps its data, its log and any socket in a fresh temporary directory (`township-<name>-*`
//!   under the system temporary directory), removed after the process is gone;
//! - is waited for with a bound (30 s to answer, every probe bounded too); a failure quotes the
//!   last lines of the reference's log.
//!
//! The API is synchronous and uses no async runtime: async callers start references at setup or
//! through `spawn_blocking`.
//!
//! When a reference is not installed, its `*_version()` answers `Ok(None)` and its `start()`
//! fails naming the Debian package to install: [`ETCD_PACKAGE`] (`etcd-server`),
//! [`REDIS_PACKAGE`] (`redis-server`) and [`POSTGRES_PACKAGE`] (`postgresql`). For example
//! `apt-get install etcd-server redis-server postgresql` (which `scripts/test` runs). The bench
//! checks the version first and says why it leaves a reference out; the integration tests fail
//! instead, naming the package.
//!
//! Durability matches what each reference is compared against: etcd fsyncs its WAL per write
//! (its default), Redis is started [`RedisDurability::InMemory`] or
//! [`RedisDurability::EveryWrite`], PostgreSQL keeps `fsync` and `synchronous_commit` on.

mod account;
mod etcd;
mod etcd_cluster;
mod postgres;
mod process;
mod redis;

pub use etcd::{ETCD_PACKAGE, Etcd, EtcdTls, etcd_version};
pub use etcd_cluster::EtcdCluster;
pub use postgres::{POSTGRES_PACKAGE, Postgres, Setup as PostgresSetup, postgres_version};
pub use redis::{REDIS_PACKAGE, Redis, RedisDurability, redis_version};
