//! Township's integration tests, one binary: each test starts real server processes on ephemeral
//! loopback ports and talks gRPC (or runs the real `township` CLI and grpcurl) against them.

mod authz;
mod bank;
mod bank_audit;
mod bank_cli;
mod bank_holders;
mod bank_invariant;
mod bank_logins;
mod bank_storage;
mod bank_tls;
mod certs;
mod chat;
mod chat_cli;
mod chat_members;
mod cli;
mod completions;
mod config;
mod conventions;
mod data_dirs;
mod daytime;
mod doctor;
mod doctor_cli;
mod doctor_keys;
mod grpcurl;
mod limits;
mod lock;
mod lock_acl;
mod lock_cli;
mod phonebook;
mod phonebook_cli;
mod phonebook_writers;
mod shutdown;
mod support;
mod time;
mod tls;
mod up;
