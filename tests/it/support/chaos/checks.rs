//! What the test runs with and checks at the end: the seed, settling calls, the ledgers that
//! must explain every balance, and the lock-server's ACL.

use township_proto::lock::v1::{Mode, lock_service_client::LockServiceClient};

use super::*;
use crate::support::{
    lock::{acquire, ask},
    status::expect_code,
    tls::channel_as,
};

/// The chaos plan's seed: `BANK_INVARIANT_SEED`, or one from the clock.
pub fn seed() -> u64 {
    match std::env::var("BANK_INVARIANT_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .expect("BANK_INVARIANT_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42),
    }
}

/// Retries a read-only check call a few times (the servers have just been through chaos).
pub async fn settled<T>(what: &str, mut call: impl AsyncFnMut() -> Result<T, Status>) -> T {
    let mut last = None;
    for _ in 0..50 {
        match call().await {
            Ok(value) => return value,
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} never answered: {last:?}")
}

/// The checks, through the API: balances, ledgers, receipts, reads and the total. Returns how
/// many requests were applied by an attempt whose answer was lost (the row is older than the
/// attempt that got the receipt).
pub async fn check_ledgers(
    shared: &Shared,
    rpcs: &[Rpc],
    records: &[Record],
    reads: &[(usize, i64)],
) -> usize {
    let accounts = &shared.accounts;
    // What each account's ledger must hold beyond its OPEN row: request id → (kind, amount,
    // counterparty), from the applied requests alone.
    let mut expected_rows: Vec<HashMap<&str, Row>> = vec![HashMap::new(); accounts.len()];
    let mut expected_balance: Vec<i64> = accounts.iter().map(|a| a.opening_cents).collect();
    let mut rejected_ids = HashSet::new();
    let mut net_inflow = 0i64;
    for record in records {
        match &record.outcome {
            Outcome::Applied(_) => {
                for row in record.op.rows() {
                    let (account, _, cents, _) = row;
                    expected_balance[account] += cents;
                    let fresh = expected_rows[account].insert(&record.id, row).is_none();
                    assert!(fresh, "request ids are unique: {record:?}");
                    if matches!(record.op, Op::Deposit { .. } | Op::Withdraw { .. }) {
                        net_inflow += cents;
                    }
                }
            }
            Outcome::Rejected => {
                rejected_ids.insert(record.id.as_str());
            }
            Outcome::Unresolved => unreachable!("checked before"),
        }
    }

    let mut ledgers = Vec::new();
    let mut total = 0i64;
    for (index, account) in accounts.iter().enumerate() {
        let token = &shared.tokens[account.holder];
        let what = format!("the ledger of account {index}");
        let rows = settled(&what, async || {
            ledger(&rpcs[index % rpcs.len()], token, &account.id).await
        })
        .await;
        let what = format!("the balance of account {index}");
        let now = settled(&what, async || {
            balance(&rpcs[(index + 1) % rpcs.len()], token, &account.id).await
        })
        .await;
        total += now;

        // Its opening deposit plus the answered operations that touched it; never negative; the
        // sum of its ledger.
        assert!(now >= 0, "account {index}: negative balance {now}");
        assert_eq!(
            now, expected_balance[index],
            "account {index}: the balance is its opening deposit plus its applied operations"
        );
        assert_eq!(rows[0].kind, "OPEN", "account {index}");
        assert_eq!(
            rows[0].amount_cents, account.opening_cents,
            "account {index}"
        );
        assert_adds_up(&rows, now);

        // Each applied request exactly once, each row explained by one, no rejected one at all.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for row in &rows[1..] {
            assert!(
                !rejected_ids.contains(row.request_id.as_str()),
                "account {index}: a rejected request is in the ledger: {row:?}"
            );
            let Some(&(_, kind, cents, counterparty)) =
                expected_rows[index].get(row.request_id.as_str())
            else {
                panic!("account {index}: a ledger row no applied request explains: {row:?}");
            };
            assert_eq!(
                (row.kind.as_str(), row.amount_cents),
                (kind, cents),
                "{row:?}"
            );
            let counterparty = counterparty.map(|c| accounts[c].id.as_str()).unwrap_or("");
            assert_eq!(row.counterparty_account_id, counterparty, "{row:?}");
            *seen.entry(row.request_id.as_str()).or_default() += 1;
        }
        for id in expected_rows[index].keys() {
            assert_eq!(
                seen.get(id).copied().unwrap_or(0),
                1,
                "account {index}: applied request {id} appears exactly once in its ledger"
            );
        }

        // Every balance a client read is one the account really had.
        let had: HashSet<i64> = rows.iter().map(|r| r.balance_after_cents).collect();
        for &(_, cents) in reads.iter().filter(|(a, _)| *a == index) {
            assert!(
                had.contains(&cents),
                "account {index}: a read saw {cents}, a balance it never had"
            );
        }
        ledgers.push(rows);
    }

    // Every receipt (the first answer or a retry's) is the row its request wrote.
    let mut lost_answers = 0;
    for record in records {
        let Outcome::Applied(receipt) = &record.outcome else {
            continue;
        };
        let row = ledgers[record.op.named()]
            .iter()
            .find(|r| r.request_id == record.id)
            .expect("checked above");
        assert_eq!(receipt.transaction_id, row.id, "{record:?}");
        assert_eq!(receipt.balance_cents, row.balance_after_cents, "{record:?}");
        let written_ms = row
            .time
            .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
            .unwrap_or(i64::MAX);
        if written_ms < record.last_attempt_ms {
            lost_answers += 1;
        }
    }

    // Transfers move money; only deposits and withdrawals change the total.
    let opening: i64 = accounts.iter().map(|a| a.opening_cents).sum();
    assert_eq!(total, opening + net_inflow, "the total is conserved");
    lost_answers
}

/// The lock-server, restarted many times, still enforces [`LOCK_ACL`]: the bank's locks went
/// through it, and a caller that is not the bank (the clients' certificate) may not lock an
/// account.
pub async fn check_lock_acl(shared: &Shared, lock: &ServiceProcess) {
    let rpc = LockServiceClient::new(channel_as(lock, &shared.cluster.certs, CLIENT).await);
    let account = format!("account/{}", shared.accounts[0].id);
    let request = ask(CLIENT, &[(&account, Mode::Write)], Duration::from_secs(1));
    expect_code(acquire(&rpc, request).await, Code::PermissionDenied);
}
