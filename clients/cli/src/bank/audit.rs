//! `township bank audit`: staff read the bank's security audit (logins, failures, lockouts,
//! unlocks, PIN changes, holder changes, staff calls and refusals), newest first, a page at a
//! time or every page with `--all`, for one holder or all, since a time or from the start.

use std::time::{Duration, SystemTime};

use clap::Args;
use township_proto::bank::v1::{AuditEvent, ListAuditRequest};

use super::{Bank, Staff, credentials::admin_token};
use crate::{error::CliError, global::Global, output::print_json, pages::Paging};

/// Flags of `township bank audit`.
#[derive(Debug, Args)]
pub(super) struct AuditArgs {
    /// Only the events about this holder.
    #[arg(long, value_name = "NAME")]
    holder: Option<String>,
    /// Only the events at or after this time: an RFC 3339 time (2026-12-05T10:00:00Z), or a
    /// duration before now (90m, 2h, 7days).
    #[arg(long, value_name = "T", value_parser = parse_since)]
    since: Option<SystemTime>,
    #[command(flatten)]
    paging: Paging,
    #[command(flatten)]
    staff: Staff,
}

/// Prints one page of the audit (with a hint to the next one), or every page with `--all`.
pub(super) async fn audit(args: AuditArgs, global: &Global) -> Result<(), CliError> {
    let admin = admin_token(&args.staff.admin_token_file)?;
    let bank = Bank::connect(global).await?;
    let mut page_token = args.paging.first_token();
    let mut shown = 0usize;
    loop {
        let message = ListAuditRequest {
            holder_name: args.holder.clone().unwrap_or_default(),
            since: args.since.map(prost_types::Timestamp::from),
            page_size: args.paging.page_size(),
            page_token,
        };
        let page = bank
            .call(Some(&admin), message, |mut client, request| async move {
                client.list_audit(request).await
            })
            .await
            .map_err(|status| bank.error(status))?;
        for event in &page.events {
            print_event(global, event);
        }
        shown += page.events.len();
        match args.paging.after_page(page.next_page_token, global) {
            Some(next) => page_token = next,
            None => break,
        }
    }
    if shown == 0 && !global.json {
        println!(
            "{}",
            if args.paging.continues() {
                "no more events"
            } else {
                "no events"
            }
        );
    }
    Ok(())
}

/// Parses `--since`: an RFC 3339 time, else a duration before now.
fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.into());
    }
    let ago: Duration = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time (2026-12-05T10:00:00Z) nor a duration (2h)")
    })?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("`{text}` reaches before the start of time"))
}

/// Prints one event: `TIME  KIND  holder NAME  account ID  by PRINCIPAL from PEER  via METHOD
/// (DETAIL) ×COUNT`, leaving out what the event does not have; or one JSON object.
fn print_event(global: &Global, event: &AuditEvent) {
    let time = event.time.as_ref().map(ToString::to_string);
    if global.json {
        print_json(&serde_json::json!({
            "id": event.id,
            "time": time,
            "kind": event.kind,
            "method": event.method,
            "holder_name": event.holder_name,
            "account_id": event.account_id,
            "principal": event.principal,
            "peer": event.peer,
            "detail": event.detail,
            "count": event.count,
        }));
        return;
    }
    println!("{}", event_line(time.as_deref(), event));
}

/// The line [`print_event`] prints for people.
fn event_line(time: Option<&str>, event: &AuditEvent) -> String {
    let mut line = format!("{}  {}", time.unwrap_or("(no time)"), event.kind);
    let mut part = |label: &str, value: &str| {
        if !value.is_empty() {
            line.push_str(&format!("  {label}{value}"));
        }
    };
    part("holder ", &event.holder_name);
    part("account ", &event.account_id);
    part("by ", &event.principal);
    part("from ", &event.peer);
    part("via ", event.method.rsplit('/').next().unwrap_or_default());
    part("", &event.detail);
    if event.count > 1 {
        line.push_str(&format!("  x{}", event.count));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let at = parse_since("2026-12-05T10:00:00Z").unwrap();
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_464_800);
        assert_eq!(at, expected);
        let ago = parse_since("2h").unwrap();
        let elapsed = SystemTime::now().duration_since(ago).unwrap();
        assert!((Duration::from_secs(7199)..Duration::from_secs(7300)).contains(&elapsed));
        assert!(parse_since("yesterday-ish").is_err());
    }

    #[test]
    fn an_event_line_leaves_out_what_the_event_lacks() {
        let event = AuditEvent {
            kind: "LOGIN_FAILED".into(),
            method: "township.bank.v1.BankService/Login".into(),
            holder_name: "Ada".into(),
            peer: "127.0.0.2".into(),
            detail: "wrong PIN".into(),
            count: 3,
            ..AuditEvent::default()
        };
        assert_eq!(
            event_line(Some("2026-12-05T10:00:00Z"), &event),
            "2026-12-05T10:00:00Z  LOGIN_FAILED  holder Ada  from 127.0.0.2  via Login  wrong PIN  x3"
        );
    }
}
