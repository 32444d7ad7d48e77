//! What the integration tests share, one module per concern: starting and stopping servers
//! (`process`), waiting for an event (`wait`), checking gRPC statuses (`status`), running the CLI
//! (`cli`) and grpcurl (`grpcurl`), keeping state on SQLite or PostgreSQL (`storage`), restoring earlier versions' data (`fixtures`), filling the disk
//! (`disk`); per service, its calls and checks (`bank`, `bank_audit`, `chat`, `doctor`, `lock`,
//! `phonebook`, `time`) and its CLI tests' harness (`*_cli`); and the bank chaos test's machinery
//! (`chaos`), with its seedable random source (`rng`), shared with the lock's stress test.
//! Test files hold only tests.

pub mod bank;
pub mod bank_audit;
pub mod bank_cli;
pub mod certs;
pub mod chaos;
pub mod chat;
pub mod chat_cli;
pub mod cli;
pub mod disk;
pub mod doctor;
pub mod doctor_cli;
pub mod fixtures;
pub mod grpcurl;
pub mod lock;
pub mod lock_ha;
pub mod phonebook;
pub mod phonebook_cli;
pub mod process;
pub mod rng;
pub mod status;
pub mod storage;
pub mod time;
pub mod tls;
pub mod wait;
