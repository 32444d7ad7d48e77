//! The bank audit's test helpers: ListAudit a page at a time or whole, waiting for events that
//! are written soon rather than at once (refusals), and what the bank stores that must never be
//! shown: every audit row as text, and the PIN and session-token hashes.

use std::time::Duration;

use tonic::Status;
use township_proto::bank::v1 as pb;

use crate::support::{
    bank::{Rpc, authed, read_bank_db},
    wait::wait_until,
};

/// One ListAudit page, as staff (`admin`).
pub async fn audit_page(
    rpc: &Rpc,
    admin: &str,
    request: pb::ListAuditRequest,
) -> Result<pb::ListAuditResponse, Status> {
    rpc.clone()
        .list_audit(authed(admin, request))
        .await
        .map(|r| r.into_inner())
}

/// Every audit event about `holder` (empty: every event), newest first, page after page.
pub async fn audit_events(rpc: &Rpc, admin: &str, holder: &str) -> Vec<pb::AuditEvent> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    for _ in 0..1000 {
        let request = pb::ListAuditRequest {
            holder_name: holder.into(),
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page = audit_page(rpc, admin, request)
            .await
            .expect("staff read the audit");
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
    panic!("more than 1000 pages of audit");
}

/// Waits up to `limit` until the audit holds an event of each of `kinds`, and returns every event.
pub async fn audit_with(
    rpc: &Rpc,
    admin: &str,
    kinds: &[&str],
    limit: Duration,
) -> Vec<pb::AuditEvent> {
    let has_all = async || {
        let events = audit_events(rpc, admin, "").await;
        kinds
            .iter()
            .all(|kind| events.iter().any(|e| e.kind == *kind))
    };
    wait_until(&format!("the audit records {kinds:?}"), limit, has_all).await;
    audit_events(rpc, admin, "").await
}

/// The first event of `kind` in `events`.
pub fn first<'e>(events: &'e [pb::AuditEvent], kind: &str) -> &'e pb::AuditEvent {
    events
        .iter()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("a {kind} event in {events:#?}"))
}

/// Every column of every audit row of the bank on `data_dir`, as text.
pub async fn audit_table(data_dir: &std::path::Path) -> String {
    let mut db = read_bank_db(data_dir).await;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT id || '|' || time_ms || '|' || kind || '|' || method || '|' || holder || '|'
                || account || '|' || principal || '|' || peer || '|' || detail || '|' || count
         FROM audit ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .expect("read the audit table");
    rows.join("\n")
}

/// The PIN hashes and session-token hashes the bank on `data_dir` stores.
pub async fn stored_hashes(data_dir: &std::path::Path) -> Vec<String> {
    let mut db = read_bank_db(data_dir).await;
    sqlx::query_scalar("SELECT pin_hash FROM holders UNION ALL SELECT token_hash FROM sessions")
        .fetch_all(&mut db)
        .await
        .expect("read the stored hashes")
}
