//! The bank's test helpers: a lock-server and bank-server (one replica or several sharing a data
//! directory), one function per RPC with the session or admin token, reading a whole ledger, and
//! the checks on receipts, errors and ledgers. The bank tests, the CLI tests' servers and the
//! chaos test (`bank_invariant`) all use them.

use std::{path::Path, time::Duration};

use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
use tempfile::TempDir;
use tonic::{
    Code, Request, Status,
    transport::{Channel, ClientTlsConfig, Endpoint},
};
use tonic_types::StatusExt;
use township_proto::bank::v1::{self as pb, bank_service_client::BankServiceClient};
use township_tests::ServiceProcess;

use crate::support::{
    process::{CALL_TIMEOUT, server_with, try_server},
    status::{expect_code, reason},
    storage::{Backend, Storage},
};

/// A bank client.
pub type Rpc = BankServiceClient<Channel>;

// ----- processes -----

/// A lock-server keeping its fencing epoch in `dir`, on `listen` (`None`: an ephemeral port),
/// with `extra` flags.
async fn try_lock_server(
    dir: &Path,
    listen: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<ServiceProcess> {
    let mut args = vec!["--data-dir", dir.to_str().expect("a UTF-8 temp path")];
    args.extend_from_slice(extra);
    try_server("lock-server", listen, &args).await
}

/// [`try_lock_server`] with no extra flags, which must start.
pub async fn lock_server(dir: &Path, listen: Option<&str>) -> ServiceProcess {
    lock_server_with(dir, listen, &[]).await
}

/// [`try_lock_server`], which must start.
pub async fn lock_server_with(dir: &Path, listen: Option<&str>, extra: &[&str]) -> ServiceProcess {
    try_lock_server(dir, listen, extra)
        .await
        .expect("the lock-server starts")
}

/// A bank-server on `data_dir` using the lock service at `lock_addr`, on `listen` (`None`: an
/// ephemeral port), with `extra` flags.
async fn try_bank_server(
    data_dir: &Path,
    lock_addr: &str,
    listen: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<ServiceProcess> {
    let mut args = vec![
        "--data-dir",
        data_dir.to_str().expect("a UTF-8 temp path"),
        "--lock-addr",
        lock_addr,
    ];
    args.extend_from_slice(extra);
    try_server("bank-server", listen, &args).await
}

/// [`try_bank_server`], which must start.
pub async fn bank_server(
    data_dir: &Path,
    lock_addr: &str,
    listen: Option<&str>,
    extra: &[&str],
) -> ServiceProcess {
    try_bank_server(data_dir, lock_addr, listen, extra)
        .await
        .expect("the bank-server starts")
}

/// A bank-server on `storage` (its data directory, and its database on PostgreSQL) using the
/// lock service at `lock_addr`, on `listen` (`None`: an ephemeral port), with `extra` flags;
/// it must start.
pub async fn bank_server_on(
    storage: &Storage,
    lock_addr: &str,
    listen: Option<&str>,
    extra: &[&str],
) -> ServiceProcess {
    let mut args = vec!["--lock-addr", lock_addr];
    args.extend_from_slice(extra);
    server_with("bank-server", storage, listen, &args).await
}

/// The staff token the bank-server created in its data directory.
pub fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin-token"))
        .expect("the bank-server wrote <data-dir>/admin-token")
        .trim()
        .to_owned()
}

/// A client of the bank at `addr` that connects when first used (and again after a restart).
pub fn client(addr: &str, timeout: Duration) -> Rpc {
    lazy_client(
        Channel::from_shared(format!("http://{addr}")).expect("valid uri"),
        timeout,
    )
}

/// [`client`] over TLS with `tls` (mutual with an identity in it).
pub fn tls_client(addr: &str, timeout: Duration, tls: ClientTlsConfig) -> Rpc {
    let endpoint = Channel::from_shared(format!("https://{addr}"))
        .expect("valid uri")
        .tls_config(tls)
        .expect("a valid TLS config");
    lazy_client(endpoint, timeout)
}

/// [`client`] whose connections come from the loopback address `from` (e.g. 127.0.0.2): another
/// caller, as the bank sees it.
pub fn client_from(addr: &str, from: &str, timeout: Duration) -> Rpc {
    let from: std::net::IpAddr = from.parse().expect("an IP address");
    let endpoint = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .local_address(Some(from));
    lazy_client(endpoint, timeout)
}

fn lazy_client(endpoint: Endpoint, timeout: Duration) -> Rpc {
    let channel = endpoint
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .connect_lazy();
    BankServiceClient::new(channel)
}

/// A lock-server and one bank-server, each on fresh state (the bank's on either backend).
pub struct TestBank {
    pub storage: Storage,
    _lock_dir: TempDir,
    pub lock: ServiceProcess,
    pub server: ServiceProcess,
    pub admin: String,
    pub rpc: Rpc,
}

/// Another bank-server on a [`TestBank`]'s state, and a client of it. Keep it as long as the
/// server.
pub struct Replica {
    _server: ServiceProcess,
    pub rpc: Rpc,
    _storage: Option<Storage>,
}

impl TestBank {
    /// A lock-server and a bank-server on SQLite with no extra flags.
    pub async fn start() -> Self {
        Self::start_on(Backend::Sqlite, &[]).await
    }

    /// [`TestBank::start`], the bank-server with `extra` flags.
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::start_on(Backend::Sqlite, extra).await
    }

    /// A lock-server and a bank-server on `backend` with `extra` flags.
    pub async fn start_on(backend: Backend, extra: &[&str]) -> Self {
        Self::start_in(Storage::new(backend).await, &[], extra).await
    }

    /// A lock-server with `lock_extra` flags and a bank-server on `storage` with `extra` flags.
    pub async fn start_in(storage: Storage, lock_extra: &[&str], extra: &[&str]) -> Self {
        let lock_dir = tempfile::tempdir().unwrap();
        let lock = lock_server_with(lock_dir.path(), None, lock_extra).await;
        let server = bank_server_on(&storage, &lock.addr.to_string(), None, extra).await;
        let admin = admin_token(storage.path());
        let rpc = client(&server.addr.to_string(), CALL_TIMEOUT);
        Self {
            storage,
            _lock_dir: lock_dir,
            lock,
            server,
            admin,
            rpc,
        }
    }

    /// The first bank-server's data directory.
    pub fn data_dir(&self) -> &Path {
        self.storage.path()
    }

    /// A bank-server on this bank's state with `extra` flags, as after a restart: the same data
    /// directory (and database). The first one must have stopped.
    pub async fn restart(&self, extra: &[&str]) -> ServiceProcess {
        bank_server_on(&self.storage, &self.lock.addr.to_string(), None, extra).await
    }

    /// A second bank-server serving beside the first: on SQLite in the same data directory, on
    /// PostgreSQL with a data directory of its own on the same database, given the first one's
    /// staff token file (`--admin-token-file`), as an operator provisions it.
    pub async fn replica(&self, extra: &[&str]) -> Replica {
        let lock_addr = self.lock.addr.to_string();
        let (server, storage) = match self.storage.database_url() {
            None => (
                bank_server_on(&self.storage, &lock_addr, None, extra).await,
                None,
            ),
            Some(_) => {
                let storage = self.storage.replica();
                let token_file = self.data_dir().join("admin-token");
                let mut args = vec!["--admin-token-file", token_file.to_str().unwrap()];
                args.extend_from_slice(extra);
                let server = bank_server_on(&storage, &lock_addr, None, &args).await;
                (server, Some(storage))
            }
        };
        let rpc = client(&server.addr.to_string(), CALL_TIMEOUT);
        Replica {
            _server: server,
            rpc,
            _storage: storage,
        }
    }

    /// Opens an account (as staff) and logs its holder in: (account id, session token).
    pub async fn customer(&self, name: &str, pin: &str, cents: i64) -> (String, String) {
        let failed =
            |err: Status| -> ! { panic!("{err:?}; the bank's log:\n{}", self.server.logs()) };
        let account = open_account(&self.rpc, &self.admin, name, pin, cents)
            .await
            .unwrap_or_else(|err| failed(err));
        let session = login(&self.rpc, name, pin)
            .await
            .unwrap_or_else(|err| failed(err));
        (account.account_id, session.session_token)
    }
}

// ----- calls -----

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ASCII token"),
    );
    request
}

/// A fresh client-chosen request id.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// OpenAccount, as staff (`admin` is the admin token), with a fresh request id.
pub async fn open_account(
    rpc: &Rpc,
    admin: &str,
    name: &str,
    pin: &str,
    cents: i64,
) -> Result<pb::Account, Status> {
    let request = pb::OpenAccountRequest {
        holder_name: name.into(),
        pin: pin.into(),
        initial_deposit_cents: cents,
        request_id: request_id(),
    };
    rpc.clone()
        .open_account(authed(admin, request))
        .await
        .map(|r| r.into_inner())
}

/// AddHolder, with `token` (a session's, or the admin token for staff).
pub async fn add_holder(
    rpc: &Rpc,
    token: &str,
    request: pb::AddHolderRequest,
) -> Result<pb::Account, Status> {
    rpc.clone()
        .add_holder(authed(token, request))
        .await
        .map(|r| r.into_inner())
}

/// AddHolder of `account` for `name` with `pin` (staff's way).
pub fn by_pin(account: &str, name: &str, pin: &str) -> pb::AddHolderRequest {
    pb::AddHolderRequest {
        account_id: account.into(),
        holder_name: name.into(),
        pin: pin.into(),
        ..Default::default()
    }
}

/// ChangePin, with the session `token`.
pub async fn change_pin(
    rpc: &Rpc,
    token: &str,
    old: &str,
    new: &str,
) -> Result<pb::ChangePinResponse, Status> {
    let request = pb::ChangePinRequest {
        old_pin: old.into(),
        new_pin: new.into(),
    };
    rpc.clone()
        .change_pin(authed(token, request))
        .await
        .map(|r| r.into_inner())
}

/// Unlock, as staff (`admin` is the admin token).
pub async fn unlock(rpc: &Rpc, admin: &str, name: &str) -> Result<u32, Status> {
    let request = pb::UnlockRequest {
        holder_name: name.into(),
    };
    rpc.clone()
        .unlock(authed(admin, request))
        .await
        .map(|r| r.into_inner().cleared)
}

/// RevokeSessions, as staff (`admin` is the admin token).
pub async fn revoke_sessions(rpc: &Rpc, admin: &str, name: &str) -> Result<u32, Status> {
    let request = pb::RevokeSessionsRequest {
        holder_name: name.into(),
    };
    rpc.clone()
        .revoke_sessions(authed(admin, request))
        .await
        .map(|r| r.into_inner().sessions_ended)
}

/// Logout of the session `token`.
pub async fn logout(rpc: &Rpc, token: &str) -> Result<(), Status> {
    rpc.clone()
        .logout(authed(token, pb::LogoutRequest {}))
        .await
        .map(drop)
}

/// Login.
pub async fn login(rpc: &Rpc, name: &str, pin: &str) -> Result<pb::LoginResponse, Status> {
    let request = pb::LoginRequest {
        holder_name: name.into(),
        pin: pin.into(),
    };
    rpc.clone().login(request).await.map(|r| r.into_inner())
}

/// GetBalance, with the session `token`.
pub async fn balance(rpc: &Rpc, token: &str, account: &str) -> Result<i64, Status> {
    let request = pb::GetBalanceRequest {
        account_id: account.into(),
    };
    rpc.clone()
        .get_balance(authed(token, request))
        .await
        .map(|r| r.into_inner().balance_cents)
}

/// The request of a deposit or withdrawal.
pub fn amount(account: &str, cents: i64, id: &str) -> pb::AmountRequest {
    pb::AmountRequest {
        account_id: account.into(),
        amount_cents: cents,
        request_id: id.into(),
    }
}

/// Deposit, with the session `token` and request id `id`.
pub async fn deposit(
    rpc: &Rpc,
    token: &str,
    account: &str,
    cents: i64,
    id: &str,
) -> Result<pb::Receipt, Status> {
    let request = authed(token, amount(account, cents, id));
    rpc.clone().deposit(request).await.map(|r| r.into_inner())
}

/// Withdraw, with the session `token` and request id `id`.
pub async fn withdraw(
    rpc: &Rpc,
    token: &str,
    account: &str,
    cents: i64,
    id: &str,
) -> Result<pb::Receipt, Status> {
    let request = authed(token, amount(account, cents, id));
    rpc.clone().withdraw(request).await.map(|r| r.into_inner())
}

/// Transfer, with the session `token` and request id `id`.
pub async fn transfer(
    rpc: &Rpc,
    token: &str,
    from: &str,
    to: &str,
    cents: i64,
    id: &str,
) -> Result<pb::Receipt, Status> {
    let request = pb::TransferRequest {
        from_account_id: from.into(),
        to_account_id: to.into(),
        amount_cents: cents,
        request_id: id.into(),
    };
    rpc.clone()
        .transfer(authed(token, request))
        .await
        .map(|r| r.into_inner())
}

/// [`transfer`] from a task of its own, so that the test can act while it is under way.
pub fn spawn_transfer(
    rpc: &Rpc,
    token: &str,
    from: &str,
    to: &str,
    cents: i64,
    id: &str,
) -> tokio::task::JoinHandle<Result<pb::Receipt, Status>> {
    let (rpc, token, from, to, id) = (
        rpc.clone(),
        token.to_owned(),
        from.to_owned(),
        to.to_owned(),
        id.to_owned(),
    );
    tokio::spawn(async move { transfer(&rpc, &token, &from, &to, cents, &id).await })
}

/// A customer logged in with two accounts, one funded: for tests that need transfers to go
/// through (or not) and do not care about whose.
pub struct Payer {
    rpc: Rpc,
    token: String,
    from: String,
    to: String,
}

impl Payer {
    /// Opens `name`'s account with 100.00 and `payee`'s empty one, as staff, and logs `name` in.
    pub async fn open(rpc: &Rpc, admin: &str, name: &str, payee: &str) -> Self {
        let from = open_account(rpc, admin, name, "2468", 10_000).await;
        let from = from.expect("the payer's account opens").account_id;
        let to = open_account(rpc, admin, payee, "1357", 0).await;
        let to = to.expect("the payee's account opens").account_id;
        let token = login(rpc, name, "2468").await.expect("the payer logs in");
        Self {
            rpc: rpc.clone(),
            token: token.session_token,
            from,
            to,
        }
    }

    /// Transfers `cents` to the payee with a fresh request id.
    pub async fn pay(&self, cents: i64) -> Result<pb::Receipt, Status> {
        let id = request_id();
        transfer(&self.rpc, &self.token, &self.from, &self.to, cents, &id).await
    }
}

/// One page of ListTransactions (newest first).
pub async fn page(
    rpc: &Rpc,
    token: &str,
    account: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListTransactionsResponse, Status> {
    let request = pb::ListTransactionsRequest {
        account_id: account.into(),
        page_size,
        page_token: page_token.into(),
    };
    rpc.clone()
        .list_transactions(authed(token, request))
        .await
        .map(|r| r.into_inner())
}

/// The account's whole ledger, read page by page, OLDEST first.
pub async fn ledger(rpc: &Rpc, token: &str, account: &str) -> Result<Vec<pb::Transaction>, Status> {
    let mut rows = Vec::new();
    let mut next = String::new();
    for _ in 0..10_000 {
        let reply = page(rpc, token, account, 1000, &next).await?;
        rows.extend(reply.transactions);
        if reply.next_page_token.is_empty() {
            rows.reverse();
            return Ok(rows);
        }
        next = reply.next_page_token;
    }
    panic!("the ledger of {account} never ends")
}

/// ApplyInterest, as staff: (accounts credited, total interest in cents).
pub async fn apply_interest(rpc: &Rpc, admin: &str, id: &str) -> Result<(i32, i64), Status> {
    let request = pb::ApplyInterestRequest {
        request_id: id.into(),
    };
    let reply = rpc
        .clone()
        .apply_interest(authed(admin, request))
        .await?
        .into_inner();
    Ok((reply.accounts_credited, reply.total_interest_cents))
}

// ----- checks -----

/// Asserts FAILED_PRECONDITION with ErrorInfo INSUFFICIENT_FUNDS.
#[track_caller]
pub fn expect_insufficient_funds<T: std::fmt::Debug>(result: Result<T, Status>) {
    let status = expect_code(result, Code::FailedPrecondition);
    assert_eq!(
        reason(&status).as_deref(),
        Some("INSUFFICIENT_FUNDS"),
        "{status:?}"
    );
}

/// Asserts that `ledger` (oldest first) adds up: it opens with OPEN, every row's balance_after is
/// the previous one plus its amount, and the last one is `balance`. Returns the sum of amounts.
#[track_caller]
pub fn assert_adds_up(ledger: &[pb::Transaction], balance: i64) -> i64 {
    assert_eq!(
        ledger.first().map(|t| t.kind.as_str()),
        Some("OPEN"),
        "{ledger:?}"
    );
    let mut running = 0i64;
    for row in ledger {
        running += row.amount_cents;
        assert_eq!(
            row.balance_after_cents, running,
            "row {row:?} of {ledger:?}"
        );
        assert!(row.balance_after_cents >= 0, "never negative: {row:?}");
    }
    assert_eq!(running, balance, "the balance is the sum of the ledger");
    running
}

/// The kind of each ledger row.
pub fn kinds(ledger: &[pb::Transaction]) -> Vec<&str> {
    ledger.iter().map(|t| t.kind.as_str()).collect()
}

/// Three failed logins for `name`, then the right `pin`: refused for a while, with RetryInfo.
pub async fn assert_three_strikes_lock(rpc: &Rpc, name: &str, pin: &str) {
    for strike in 1..=3 {
        let status = expect_code(login(rpc, name, "0000").await, Code::Unauthenticated);
        assert!(
            !status.message().contains("too many"),
            "strike {strike}: {status:?}"
        );
    }
    let status = expect_code(login(rpc, name, pin).await, Code::ResourceExhausted);
    assert_eq!(
        reason(&status).as_deref(),
        Some("TOO_MANY_ATTEMPTS"),
        "{status:?}"
    );
    let delay = status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or_else(|| panic!("RetryInfo with a delay: {status:?}"));
    assert!(
        delay > Duration::from_secs(20) && delay <= Duration::from_secs(30),
        "about 30 s: {delay:?}"
    );
}

/// Whether the bank on `storage` has committed the request `request_id` (read straight from its
/// database, which a reply delayed after the commit cannot hide, unlike a read under its locks).
pub async fn committed(storage: &Storage, request_id: &str) -> bool {
    let sql = format!("SELECT count(*) FROM requests WHERE request_id = '{request_id}'");
    storage.count("bank.db", &sql).await > 0
}

/// The schema versions `<data_dir>/bank.db` records as applied, in order.
pub async fn schema_versions(data_dir: &Path) -> Vec<i64> {
    crate::support::fixtures::schema_versions(&data_dir.join("bank.db")).await
}

/// The failed logins `<data_dir>/bank.db` counts for `name`, from every source.
pub async fn strikes(data_dir: &Path, name: &str) -> i64 {
    let mut db = read_bank_db(data_dir).await;
    sqlx::query_scalar("SELECT coalesce(sum(failures), 0) FROM login_strikes WHERE name = ?")
        .bind(name)
        .fetch_one(&mut db)
        .await
        .expect("read the login strikes")
}

/// The names `<data_dir>/bank.db` remembers failed logins for.
pub async fn names_with_strikes(data_dir: &Path) -> Vec<String> {
    let mut db = read_bank_db(data_dir).await;
    sqlx::query_scalar("SELECT DISTINCT name FROM login_strikes ORDER BY name")
        .fetch_all(&mut db)
        .await
        .expect("read the login strikes")
}

/// `<data_dir>/bank.db`, opened read-only beside the running bank (WAL lets both read).
pub async fn read_bank_db(data_dir: &Path) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(data_dir.join("bank.db"))
        .read_only(true);
    SqliteConnection::connect_with(&options)
        .await
        .expect("open the bank's database")
}
