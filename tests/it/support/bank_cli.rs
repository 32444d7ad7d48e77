//! The harness of the `township bank` and `township atm` CLI tests: a town of a lock-server and a
//! bank-server, and the CLI run against it as a customer (PIN from the environment) or as staff
//! (the admin token file).

use std::path::PathBuf;

use tempfile::TempDir;
use tokio::process::Command;
use township_tests::{Output, ServiceProcess, run, township};

use crate::support::{
    bank::{bank_server, lock_server},
    cli::{LIMIT, json, piped},
};

/// The PIN every test holder uses, unless a test says otherwise.
pub const PIN: &str = "4321";

/// A bank-server (and, usually, the lock-server it uses), each on a fresh data directory.
pub struct Town {
    pub bank: ServiceProcess,
    pub bank_dir: TempDir,
    pub _lock: Option<(ServiceProcess, TempDir)>,
}

/// A running lock-server and a bank-server that uses it.
pub async fn town() -> Town {
    let lock_dir = tempfile::tempdir().unwrap();
    let lock = lock_server(lock_dir.path(), None).await;
    let (bank, bank_dir) = bank_using(&lock.addr.to_string(), &[]).await;
    Town {
        bank,
        bank_dir,
        _lock: Some((lock, lock_dir)),
    }
}

/// A bank-server whose lock service is at `lock_addr` (which may be down), with `extra` flags.
pub async fn bank_using(lock_addr: &str, extra: &[&str]) -> (ServiceProcess, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let bank = bank_server(dir.path(), lock_addr, None, extra).await;
    (bank, dir)
}

/// A temporary directory as a UTF-8 path.
pub fn path(dir: &TempDir) -> &str {
    dir.path().to_str().expect("a UTF-8 temp path")
}

impl Town {
    /// The admin token file the bank-server wrote in its data directory.
    pub fn admin_token_file(&self) -> PathBuf {
        self.bank_dir.path().join("admin-token")
    }

    /// `township --addr <bank> ARGS`, with TOWNSHIP_BANK_PIN set to `pin` (or unset).
    pub fn command(&self, args: &[&str], pin: Option<&str>) -> Command {
        let mut command = township();
        command
            .arg("--addr")
            .arg(self.bank.addr.to_string())
            .args(args)
            .env_remove("TOWNSHIP_BANK_PIN")
            .env_remove("TOWNSHIP_BANK_ADMIN_TOKEN_FILE");
        if let Some(pin) = pin {
            command.env("TOWNSHIP_BANK_PIN", pin);
        }
        command
    }

    /// Runs `township --addr <bank> bank ARGS` as a customer whose PIN is `pin`.
    pub async fn bank(&self, args: &[&str], pin: &str) -> Output {
        let mut full = vec!["bank"];
        full.extend_from_slice(args);
        run(self.command(&full, Some(pin)), LIMIT).await
    }

    /// Runs `township bank ARGS --name NAME` with the usual PIN.
    pub async fn bank_as(&self, name: &str, args: &[&str]) -> Output {
        let mut full = args.to_vec();
        full.extend(["--name", name]);
        self.bank(&full, PIN).await
    }

    /// Runs a staff command, `township bank ARGS --admin-token-file <the bank's>`.
    pub async fn staff(&self, args: &[&str], pin: &str) -> Output {
        let token_file = self.admin_token_file();
        let mut full = args.to_vec();
        full.extend(["--admin-token-file", token_file.to_str().unwrap()]);
        self.bank(&full, pin).await
    }

    /// Opens an account for `name` with `initial` and returns its id.
    pub async fn open(&self, name: &str, initial: &str) -> String {
        let out = self
            .staff(
                &["--json", "open", "--name", name, "--initial", initial],
                PIN,
            )
            .await;
        json(&out)["account_id"]
            .as_str()
            .expect("an account id")
            .to_owned()
    }

    /// The balance of `account` in cents, asked through the CLI as `name`.
    pub async fn balance(&self, name: &str, account: &str) -> i64 {
        let out = self.bank_as(name, &["balance", account, "--json"]).await;
        json(&out)["balance_cents"].as_i64().expect("cents")
    }

    /// Runs `township atm ARGS` with `answers` piped into its stdin.
    pub async fn atm(&self, args: &[&str], answers: &str) -> Output {
        let mut full = vec!["atm"];
        full.extend_from_slice(args);
        piped(self.command(&full, None), answers).await
    }
}

/// How many Deposit calls the town's bank-server has logged as answered UNAVAILABLE.
pub fn refused_deposits(town: &Town) -> usize {
    town.bank
        .logs()
        .lines()
        .filter(|l| l.contains("BankService/Deposit") && l.contains("Unavailable"))
        .count()
}
