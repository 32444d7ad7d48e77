//! The `township bank` and `township atm` CLIs against a real lock-server and bank-server: staff
//! commands with the admin token file, customer commands with the PIN from the environment, exact
//! amounts, one-line errors with their exit codes, retries with the same request id while the
//! bank answers UNAVAILABLE, a PIN change, staff unlocking a name, ending its sessions and reading
//! the audit, and an ATM session driven through piped stdin.

use std::process::Stdio;

use tokio::process::Command;
use township_tests::{Output, binary, closed_port, health_status, run, township};

use crate::support::{
    bank_cli::*,
    cli::{LIMIT, json, json_lines, one_error_line},
    wait::wait_until,
};

#[tokio::test]
async fn open_reports_the_initial_deposit_exactly_in_cents_and_as_text() {
    let town = town().await;
    let out = town
        .staff(
            &["open", "--name", "Ada", "--initial", "100.50", "--json"],
            PIN,
        )
        .await;
    let account = json(&out);
    assert_eq!(account["balance_cents"], 10050, "{account}");
    assert_eq!(account["balance"], "100.50", "{account}");
    assert_eq!(account["holders"], serde_json::json!(["Ada"]), "{account}");
    let id = account["account_id"].as_str().unwrap();
    assert_eq!(town.balance("Ada", id).await, 10050);

    let out = town.bank_as("Ada", &["balance", id]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "balance 100.50\n");
}

#[tokio::test]
async fn deposit_withdraw_transfer_balance_and_history_through_the_cli() {
    let town = town().await;
    let ada = town.open("Ada", "100.50").await;
    let bob = town.open("Bob", "0").await;

    let out = town.bank_as("Ada", &["deposit", &ada, "5"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .starts_with("deposited 5.00: balance 105.50 (transaction "),
        "{out:?}"
    );
    let out = town.bank_as("Ada", &["withdraw", &ada, "0.50"]).await;
    assert!(
        out.stdout
            .starts_with("withdrew 0.50: balance 105.00 (transaction "),
        "{out:?}"
    );
    let out = town
        .bank_as("Ada", &["transfer", &ada, &bob, "10.01", "--json"])
        .await;
    let receipt = json(&out);
    assert_eq!(receipt["operation"], "transfer", "{receipt}");
    assert_eq!(receipt["to_account_id"], bob.as_str(), "{receipt}");
    assert_eq!(receipt["amount_cents"], 1001, "{receipt}");
    assert_eq!(receipt["balance_cents"], 9499, "{receipt}");
    assert_eq!(receipt["balance"], "94.99", "{receipt}");

    assert_eq!(town.balance("Ada", &ada).await, 9499);
    assert_eq!(town.balance("Bob", &bob).await, 1001);

    let out = town.bank_as("Ada", &["history", &ada, "--json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let entries: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["TRANSFER_OUT", "WITHDRAW", "DEPOSIT", "OPEN"]);
    let amounts: Vec<i64> = entries
        .iter()
        .map(|e| e["amount_cents"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [-1001, -50, 500, 10050]);
    assert_eq!(entries[0]["counterparty_account_id"], bob.as_str());
    assert_eq!(entries[0]["request_id"], receipt["request_id"]);

    let out = town
        .bank_as("Ada", &["history", &ada, "--limit", "2"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("TRANSFER_OUT") && lines[0].contains("-10.01"),
        "{lines:?}"
    );
    assert!(lines[0].contains("balance 94.99"), "{lines:?}");
    assert!(lines[0].contains(&bob), "{lines:?}");
    assert!(lines[1].contains("WITHDRAW"), "{lines:?}");
}

#[tokio::test]
async fn insufficient_funds_is_one_line_naming_it_and_exit_1() {
    let town = town().await;
    let ada = town.open("Ada", "10").await;
    let out = town.bank_as("Ada", &["withdraw", &ada, "10.01"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        one_error_line(&out).contains("insufficient funds"),
        "{out:?}"
    );
    assert_eq!(town.balance("Ada", &ada).await, 1000, "nothing moved");
}

#[tokio::test]
async fn an_amount_with_three_decimals_is_a_usage_error_before_any_call() {
    let town = town().await;
    let ada = town.open("Ada", "10").await;
    let out = town.bank_as("Ada", &["deposit", &ada, "12.345"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("12.345"), "{out:?}");
    assert_eq!(town.balance("Ada", &ada).await, 1000, "nothing moved");

    // Against an address where nothing listens: still a usage error, so nothing was dialled.
    let nowhere = format!("127.0.0.1:{}", closed_port());
    let mut command = township();
    command
        .args(["bank", "deposit", &ada, "12.345", "--name", "Ada"])
        .args(["--addr", &nowhere, "--retries", "0"])
        .env("TOWNSHIP_BANK_PIN", PIN);
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(!out.stderr.contains("cannot reach"), "{out:?}");
}

#[tokio::test]
async fn a_wrong_pin_exits_1_with_unauthenticated() {
    let town = town().await;
    let ada = town.open("Ada", "10").await;
    let out = town.bank(&["balance", &ada, "--name", "Ada"], "9999").await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let line = one_error_line(&out);
    assert!(line.contains("Unauthenticated"), "{line}");
    assert!(line.contains("pin is wrong"), "{line}");
}

#[tokio::test]
async fn the_pin_can_come_from_a_file_and_is_required() {
    let town = town().await;
    let ada = town.open("Ada", "10").await;
    let pin_file = town.bank_dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let pin_arg = pin_file.to_str().unwrap();
    let mut command = town.command(
        &[
            "bank",
            "balance",
            &ada,
            "--name",
            "Ada",
            "--pin-file",
            pin_arg,
        ],
        None,
    );
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "balance 10.00\n");

    command = town.command(&["bank", "balance", &ada, "--name", "Ada"], None);
    let out = run(command, LIMIT).await;
    assert_eq!(
        out.code,
        Some(2),
        "no PIN anywhere and no terminal: {out:?}"
    );
    assert!(
        one_error_line(&out).contains("TOWNSHIP_BANK_PIN"),
        "{out:?}"
    );
}

#[tokio::test]
async fn staff_commands_need_the_admin_token_and_interest_credits_every_account() {
    let town = town().await;
    town.open("Ada", "100").await;
    town.open("Bob", "50.50").await;

    let wrong = town.bank_dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let out = town
        .bank(
            &["interest", "--admin-token-file", wrong.to_str().unwrap()],
            PIN,
        )
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(one_error_line(&out).contains("PermissionDenied"), "{out:?}");

    let out = town.staff(&["interest", "--json"], PIN).await;
    let reply = json(&out);
    assert_eq!(reply["accounts_credited"], 2, "{reply}");
    // 2 % of 100.00 and of 50.50.
    assert_eq!(reply["total_interest_cents"], 200 + 101, "{reply}");
    assert_eq!(reply["total_interest"], "3.01", "{reply}");
}

#[tokio::test]
async fn a_deposit_is_retried_with_its_request_id_until_the_lock_service_is_back() {
    let lock_port = closed_port();
    let lock_addr = format!("127.0.0.1:{lock_port}");
    let (bank, bank_dir) = bank_using(&lock_addr, &["--lock-wait", "1s"]).await;
    let town = Town {
        bank,
        bank_dir,
        _lock: None,
    };
    let ada = town.open("Ada", "10").await;

    // Without retries the bank's UNAVAILABLE is its answer (exit 1), not an unreachable bank.
    let mut command = town.command(
        &["bank", "deposit", &ada, "2.50", "--name", "Ada"],
        Some(PIN),
    );
    command.args(["--retries", "0"]);
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = one_error_line(&out);
    assert!(line.contains("lock service is unavailable"), "{line}");
    assert!(!line.contains("cannot reach"), "{line}");

    wait_until("the bank logs the refusal", LIMIT, async || {
        refused_deposits(&town) >= 1
    })
    .await;
    let refused_before = refused_deposits(&town);
    let mut deposit = town
        .command(
            &["bank", "deposit", &ada, "2.50", "--name", "Ada", "--json"],
            Some(PIN),
        )
        .args(["--retries", "8"])
        .spawn()
        .unwrap();
    wait_until(
        "the bank answers the deposit UNAVAILABLE (its log says so)",
        LIMIT,
        async || refused_deposits(&town) > refused_before,
    )
    .await;
    assert!(
        deposit.try_wait().unwrap().is_none(),
        "after an UNAVAILABLE the deposit waits for the lock service: {}",
        town.bank.logs()
    );
    let lock_dir = tempfile::tempdir().unwrap();
    let _lock = Command::new(binary("lock-server"))
        .args(["--listen", &lock_addr, "--data-dir", path(&lock_dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let output = tokio::time::timeout(LIMIT, deposit.wait_with_output())
        .await
        .expect("the deposit ends")
        .unwrap();
    let out = Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    let receipt = json(&out);
    assert_eq!(receipt["balance_cents"], 1250, "{receipt}");
    assert!(health_status(town.bank.addr, "").await.is_ok());

    let out = town.bank_as("Ada", &["history", &ada, "--json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let deposits: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "DEPOSIT")
        .collect();
    assert_eq!(deposits.len(), 1, "exactly once: {}", out.stdout);
    assert_eq!(deposits[0]["request_id"], receipt["request_id"]);
}

#[tokio::test]
async fn the_atm_deposits_then_shows_the_balance_and_says_goodbye() {
    let town = town().await;
    town.open("Ada", "100.50").await;
    let out = town.atm(&[], &format!("Ada\n{PIN}\n2\n5.25\n1\n6\n")).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let stdout = &out.stdout;
    let deposited = stdout
        .find("deposited 5.25: balance 105.75 (transaction ")
        .unwrap_or_else(|| panic!("a receipt: {stdout}"));
    let balance = stdout
        .rfind("balance 105.75\n")
        .unwrap_or_else(|| panic!("the balance: {stdout}"));
    assert!(
        deposited < balance,
        "the balance after the deposit: {stdout}"
    );
    assert!(
        stdout.contains("balance 100.50"),
        "accounts shown: {stdout}"
    );
    assert!(stdout.ends_with("Have a nice day!\n"), "{stdout}");
    assert!(!stdout.contains(PIN), "the PIN is never shown: {stdout}");
}

#[tokio::test]
async fn the_atm_with_two_accounts_asks_which_shows_errors_and_carries_on() {
    let town = town().await;
    // The ATM numbers them in the order Login lists them: the order they were opened.
    let first = town.open("Ada", "20").await;
    let second = town.open("Ada", "20").await;
    // Withdraw too much from account 1 (an error, shown), transfer 7.5 from 1 to 2, balance of
    // 2, then the word "quit".
    let answers = format!("{PIN}\n3\n1\n20.01\n4\n1\n2\n7.5\nbalance\n2\nquit\n");
    let out = town.atm(&["--name", "Ada"], &answers).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let stdout = &out.stdout;
    assert!(
        stdout.contains(&first) && stdout.contains(&second),
        "{stdout}"
    );
    assert!(
        stdout.contains("Sorry: insufficient funds"),
        "the error is shown: {stdout}"
    );
    assert!(
        stdout.contains(&format!("transferred 7.50 to {second}: balance 12.50")),
        "{stdout}"
    );
    assert!(stdout.contains("balance 27.50\n"), "{stdout}");
    assert!(stdout.ends_with("Have a nice day!\n"), "{stdout}");
    assert_eq!(town.balance("Ada", &first).await, 1250);
}

#[tokio::test]
async fn the_atm_asks_again_after_a_wrong_pin_and_gives_up_after_three() {
    let town = town().await;
    town.open("Ada", "1").await;
    let out = town.atm(&[], &format!("Ada\n1111\n{PIN}\n6\n")).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Wrong name or PIN."), "{out:?}");
    assert!(out.stdout.contains("balance 1.00"), "logged in: {out:?}");
    assert!(out.stdout.ends_with("Have a nice day!\n"), "{out:?}");

    let out = town.atm(&["--name", "Ada"], "1111\n2222\n3333\n").await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stdout.matches("Wrong name or PIN.").count(),
        3,
        "{out:?}"
    );
    assert!(one_error_line(&out).contains("Unauthenticated"), "{out:?}");

    let out = town.atm(&[], "").await;
    assert_eq!(out.code, Some(0), "end of input quits: {out:?}");
    assert!(out.stdout.ends_with("Have a nice day!\n"), "{out:?}");
}

#[tokio::test]
async fn a_customer_changes_their_pin_and_staff_unlock_a_locked_out_name_and_revoke_its_sessions() {
    let town = town().await;
    let ada = town.open("Ada", "10").await;
    let mut command = town.command(&["bank", "pin", "--name", "Ada"], Some(PIN));
    command.env("TOWNSHIP_BANK_NEW_PIN", "8642");
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "PIN changed; 0 other sessions ended\n");

    // The old PIN no longer works: three failures lock the name out, even for the new PIN.
    for _ in 0..3 {
        let out = town.bank(&["balance", &ada, "--name", "Ada"], PIN).await;
        assert!(one_error_line(&out).contains("Unauthenticated"), "{out:?}");
    }
    let out = town.bank(&["balance", &ada, "--name", "Ada"], "8642").await;
    assert!(
        one_error_line(&out).contains("ResourceExhausted"),
        "{out:?}"
    );

    let out = town.staff(&["unlock", "--name", "Ada"], PIN).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "unlocked Ada (failed logins from 1 source forgotten)\n"
    );
    let out = town.bank(&["balance", &ada, "--name", "Ada"], "8642").await;
    assert_eq!(out.stdout, "balance 10.00\n", "{out:?}");

    let out = town
        .staff(&["--json", "revoke", "--name", "Ada"], PIN)
        .await;
    assert_eq!(
        json(&out)["sessions_ended"],
        0,
        "the CLI logs out after each command"
    );
}

#[tokio::test]
async fn staff_read_the_audit_for_one_holder_a_page_at_a_time_or_since_a_time() {
    let town = town().await;
    let ada = town.open("Ada", "10").await;
    town.open("Bob", "0").await;
    let out = town.bank(&["balance", &ada, "--name", "Ada"], "0000").await;
    assert!(one_error_line(&out).contains("Unauthenticated"), "{out:?}");

    // A failed login is recorded soon rather than at once.
    let mut out = town.staff(&["audit", "--holder", "Ada"], PIN).await;
    wait_until("the failed login is in the audit", LIMIT, async || {
        out = town.staff(&["audit", "--holder", "Ada"], PIN).await;
        out.stdout.contains("LOGIN_FAILED")
    })
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "newest first, Ada's only: {out:?}");
    assert!(
        lines[0].contains("  LOGIN_FAILED  holder Ada  from 127.0.0.1  via Login"),
        "{out:?}"
    );
    assert!(
        lines[1].contains(&format!("  ACCOUNT_OPENED  holder Ada  account {ada}")),
        "{out:?}"
    );

    let out = town
        .staff(
            &["--json", "audit", "--holder", "Ada", "--page-size", "1"],
            PIN,
        )
        .await;
    let page = json_lines(&out);
    assert_eq!(
        page.len(),
        2,
        "one event, then the next page's token: {out:?}"
    );
    assert_eq!(page[0]["kind"], "LOGIN_FAILED");
    let token = page[1]["next_page_token"].as_str().expect("a token");
    let out = town
        .staff(
            &[
                "--json",
                "audit",
                "--holder",
                "Ada",
                "--page-size",
                "1",
                "--page-token",
                token,
            ],
            PIN,
        )
        .await;
    let page = json_lines(&out);
    assert_eq!(page.len(), 1, "the last page: {out:?}");
    assert_eq!(page[0]["kind"], "ACCOUNT_OPENED");
    assert_eq!(page[0]["account_id"], ada.as_str());

    let out = town.staff(&["audit", "--all", "--since", "1h"], PIN).await;
    assert!(out.stdout.contains("holder Bob"), "{out:?}");
    let out = town
        .staff(&["audit", "--since", "2999-01-01T00:00:00Z"], PIN)
        .await;
    assert_eq!(out.stdout, "no events\n", "{out:?}");
    let out = town.staff(&["audit", "--since", "last tuesday"], PIN).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--since"), "{out:?}");

    let out = town
        .bank(&["audit", "--admin-token-file", "/dev/null"], PIN)
        .await;
    assert_ne!(out.code, Some(0), "no admin token, no audit: {out:?}");
}
