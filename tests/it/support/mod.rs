//! What the integration tests share, one module per concern.

pub mod bank;
pub mod chat;
pub mod cli;
pub mod doctor;
pub mod grpcurl;
pub mod lock;
pub mod phonebook;
pub mod process;
pub mod status;
pub mod wait;
