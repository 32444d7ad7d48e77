//! What the integration tests share, one module per concern.

pub mod bank;
pub mod bank_cli;
pub mod chaos;
pub mod chat;
pub mod chat_cli;
pub mod cli;
pub mod doctor;
pub mod doctor_cli;
pub mod grpcurl;
pub mod lock;
pub mod phonebook;
pub mod phonebook_cli;
pub mod process;
pub mod status;
pub mod time;
pub mod wait;
