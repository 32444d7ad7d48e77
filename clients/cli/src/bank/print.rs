//! How `township bank` and `township atm` print balances, receipts and history: one line each
//! for people, or one JSON object each with `--json`.

use township_proto::bank::v1::{Account, ApplyInterestResponse, Transaction};
use township_proto::money::format_cents;

use super::session::{Moved, Movement};
use crate::{global::Global, output::print_json};

/// Prints a newly opened account: `opened account ID for NAME: balance 12.34`.
pub(super) fn print_opened(global: &Global, account: &Account) {
    if global.json {
        print_json(&serde_json::json!({
            "account_id": account.account_id,
            "holders": account.holders,
            "balance_cents": account.balance_cents,
            "balance": format_cents(account.balance_cents),
            "interest_rate_bp": account.interest_rate_bp,
        }));
    } else {
        println!(
            "opened account {} for {}: balance {}",
            account.account_id,
            account.holders.join(", "),
            format_cents(account.balance_cents)
        );
    }
}

/// Prints what applying interest did: `credited interest to 3 accounts: 1.23 in total`.
pub(super) fn print_interest(global: &Global, reply: &ApplyInterestResponse) {
    let total = format_cents(reply.total_interest_cents);
    if global.json {
        print_json(&serde_json::json!({
            "accounts_credited": reply.accounts_credited,
            "total_interest_cents": reply.total_interest_cents,
            "total_interest": total,
        }));
    } else {
        let plural = if reply.accounts_credited == 1 {
            ""
        } else {
            "s"
        };
        println!(
            "credited interest to {} account{plural}: {total} in total",
            reply.accounts_credited
        );
    }
}

/// Prints a balance: `balance 12.34`.
pub fn print_balance(global: &Global, account: &str, cents: i64) {
    if global.json {
        print_json(&serde_json::json!({
            "account_id": account,
            "balance_cents": cents,
            "balance": format_cents(cents),
        }));
    } else {
        println!("balance {}", format_cents(cents));
    }
}

/// Prints a movement's receipt: `deposited 5.00: balance 17.34 (transaction 7)`.
pub fn print_moved(global: &Global, movement: &Movement, account: &str, cents: i64, moved: &Moved) {
    let to = match movement {
        Movement::Transfer { to } => Some(to.as_str()),
        _ => None,
    };
    if global.json {
        print_json(&serde_json::json!({
            "operation": movement.name(),
            "account_id": account,
            "to_account_id": to,
            "amount_cents": cents,
            "amount": format_cents(cents),
            "transaction_id": moved.transaction_id,
            "balance_cents": moved.balance_cents,
            "balance": format_cents(moved.balance_cents),
            "request_id": moved.request_id,
        }));
        return;
    }
    let to = to.map(|to| format!(" to {to}")).unwrap_or_default();
    println!(
        "{} {}{to}: balance {} (transaction {})",
        movement.done(),
        format_cents(cents),
        format_cents(moved.balance_cents),
        moved.transaction_id
    );
}

/// Prints transactions, one per line (or one JSON object each).
pub fn print_history(global: &Global, transactions: &[Transaction]) {
    for t in transactions {
        let time = t.time.as_ref().map(ToString::to_string).unwrap_or_default();
        if global.json {
            print_json(&serde_json::json!({
                "transaction_id": t.id,
                "kind": t.kind,
                "amount_cents": t.amount_cents,
                "amount": format_cents(t.amount_cents),
                "balance_after_cents": t.balance_after_cents,
                "balance_after": format_cents(t.balance_after_cents),
                "time": time,
                "counterparty_account_id": t.counterparty_account_id,
                "request_id": t.request_id,
            }));
            continue;
        }
        let sign = if t.amount_cents > 0 { "+" } else { "" };
        let amount = format!("{sign}{}", format_cents(t.amount_cents));
        let counterparty = match t.counterparty_account_id.as_str() {
            "" => String::new(),
            other => format!("  {other}"),
        };
        println!(
            "{:>6}  {time}  {:<12} {amount:>14}  balance {}{counterparty}",
            t.id,
            t.kind,
            format_cents(t.balance_after_cents)
        );
    }
}

/// Prints a PIN change: `PIN changed; 2 other sessions ended`.
pub(super) fn print_pin_changed(global: &Global, sessions_ended: u32) {
    if global.json {
        print_json(&serde_json::json!({ "pin_changed": true, "sessions_ended": sessions_ended }));
    } else {
        println!(
            "PIN changed; {} ended",
            sessions(sessions_ended, "other session")
        );
    }
}

/// Prints what Unlock did: `unlocked Ada (lockouts from 2 sources lifted)`.
pub(super) fn print_unlocked(global: &Global, name: &str, cleared: u32) {
    if global.json {
        print_json(&serde_json::json!({ "holder_name": name, "sources_cleared": cleared }));
    } else {
        let sources = if cleared == 1 { "source" } else { "sources" };
        println!("unlocked {name} (failed logins from {cleared} {sources} forgotten)");
    }
}

/// Prints what RevokeSessions did: `ended 3 sessions of Ada`.
pub(super) fn print_revoked(global: &Global, name: &str, ended: u32) {
    if global.json {
        print_json(&serde_json::json!({ "holder_name": name, "sessions_ended": ended }));
    } else {
        println!("ended {} of {name}", sessions(ended, "session"));
    }
}

/// `1 session`, `2 sessions`.
fn sessions(count: u32, what: &str) -> String {
    if count == 1 {
        format!("1 {what}")
    } else {
        format!("{count} {what}s")
    }
}
