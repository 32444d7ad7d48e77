//! The bank's one clock reading, shared by the storage modules and the bank's rules.

use std::time::SystemTime;

/// Now, as Unix milliseconds (UTC).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
