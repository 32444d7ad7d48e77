//! The bank's tables, in the one SQLite file every replica shares, as versioned migrations
//! (`services/bank/migrations/`). `requests` holds each request id's outcome (a receipt, or a
//! refusal as `rules::Refusal::stored`); `accounts` holds each account's fences (see
//! `rules::AccountState`); the ledger and the audit (`crate::audit`) are append-only.

use township_store::Migration;

/// The bank's migrations, in order (see township_store::Migration).
pub const SCHEMA: &[Migration] = &[
    Migration {
        version: 1,
        description: "baseline",
        sql: include_str!("../migrations/0001_baseline.sql"),
    },
    Migration {
        version: 2,
        description: "login strikes per name and source",
        sql: include_str!("../migrations/0002_login_strikes.sql"),
    },
    Migration {
        version: 3,
        description: "the security audit",
        sql: include_str!("../migrations/0003_audit.sql"),
    },
];
