//! Township's shared cells: the readers/writers admission policy ([`admission`]) that the lock
//! service also uses, and the in-process cells built on it and on one waiting core ([`Monitor`]):
//! - [`SharedCell`]: many readers or one writer, admitted by [`RwQueue`];
//! - [`Slot`]: one item between producers and consumers;
//! - [`BroadcastSlot`]: one item that each registered [`Consumer`] takes before the next is put.
//!
//! [`demo`] holds the classic thread demonstrations that `examples/` runs and the tests check.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admission;
pub mod demo;
mod monitor;
mod shared;
mod slot;

pub use admission::{Mode, RwQueue};
pub use monitor::Monitor;
pub use shared::SharedCell;
pub use slot::{BroadcastSlot, Consumer, Slot};
