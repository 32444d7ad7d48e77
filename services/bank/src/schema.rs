//! The bank's tables as versioned migrations, one list per dialect
//! (`services/bank/migrations/{sqlite,postgres}/`). `requests` holds each request id's outcome
//! (a receipt, or a refusal as `rules::Refusal::stored`); `accounts` holds each account's fences
//! (see `rules::AccountState`); the ledger and the audit (`crate::audit`) are append-only.

use township_store::Migration;

/// The bank's SQLite migrations, in order (see township_store::Migration).
pub const SQLITE_SCHEMA: &[Migration] = &[
    Migration {
        version: 1,
        description: "baseline",
        sql: include_str!("../migrations/sqlite/0001_baseline.sql"),
    },
    Migration {
        version: 2,
        description: "login strikes per name and source",
        sql: include_str!("../migrations/sqlite/0002_login_strikes.sql"),
    },
    Migration {
        version: 3,
        description: "the security audit",
        sql: include_str!("../migrations/sqlite/0003_audit.sql"),
    },
];

/// The bank's PostgreSQL migrations, in order.
pub const POSTGRES_SCHEMA: &[Migration] = &[
    Migration {
        version: 1,
        description: "baseline",
        sql: include_str!("../migrations/postgres/0001_baseline.sql"),
    },
    Migration {
        version: 2,
        description: "a batch of transfers written in one call",
        sql: include_str!("../migrations/postgres/0002_write_transfers.sql"),
    },
];
