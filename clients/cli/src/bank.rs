//! `township bank`: the bank's command-line client. Staff open accounts and apply interest with
//! the admin token; customers log in with their name and PIN, check a balance, deposit, withdraw,
//! transfer or read their history, and log out again. Every money movement carries a fresh
//! request id and is retried with that same id when the bank may not have answered, so a retry
//! never moves money twice. Also the bank session that `township atm` drives.

use std::{
    future::Future,
    io::IsTerminal,
    path::{Path, PathBuf},
};

use clap::{Args, Subcommand};
use tonic::{Code, Request, Response, Status, metadata::AsciiMetadataValue, transport::Channel};
use township_proto::bank::v1::{
    AmountRequest, ApplyInterestRequest, GetBalanceRequest, ListTransactionsRequest, LoginRequest,
    LogoutRequest, OpenAccountRequest, Transaction, TransferRequest,
    bank_service_client::BankServiceClient,
};
use township_proto::money::{format_cents, parse_cents};

use crate::{
    Global,
    connect::{addr_of, connect, unary},
    error::CliError,
    print_json,
};
use township_client::Backoff;
use township_proto::town;

const SERVICE: &str = "bank";

/// Where `township up` keeps the bank's admin token (`bank-server --data-dir ./township-data/bank`).
const DEFAULT_ADMIN_TOKEN_FILE: &str = "./township-data/bank/admin-token";

/// The env var holding the PIN when no `--pin-file` is given.
const PIN_ENV: &str = "TOWNSHIP_BANK_PIN";

/// The bank's largest page of history.
const MAX_PAGE: usize = 1000;

const RETRIES_HELP: &str = "A call the bank could not complete (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED) \
is tried again up to --retries times with backoff; a money movement keeps its request id, so the \
bank carries it out at most once.";

/// `township bank ...`.
#[derive(Debug, Args)]
#[command(after_help = RETRIES_HELP)]
pub struct BankArgs {
    #[command(subcommand)]
    command: BankCommand,
}

#[derive(Debug, Subcommand)]
enum BankCommand {
    /// Staff: open an account for a holder (new, or existing with their PIN).
    Open(OpenArgs),
    /// Show an account's balance.
    Balance {
        /// The account id.
        #[arg(value_parser = parse_account)]
        account: String,
        #[command(flatten)]
        customer: Customer,
    },
    /// Put money into an account.
    Deposit(MovementArgs),
    /// Take money out of an account.
    Withdraw(MovementArgs),
    /// Move money from one of your accounts to any account.
    Transfer {
        /// Your account the money leaves.
        #[arg(value_parser = parse_account)]
        from: String,
        /// The account the money goes to.
        #[arg(value_parser = parse_account)]
        to: String,
        /// The amount, e.g. 12.34.
        #[arg(value_parser = parse_amount)]
        amount: i64,
        #[command(flatten)]
        customer: Customer,
    },
    /// Show an account's transactions, newest first.
    History {
        /// The account id.
        #[arg(value_parser = parse_account)]
        account: String,
        /// How many transactions to show.
        #[arg(long, value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        #[command(flatten)]
        customer: Customer,
    },
    /// Staff: credit every account with interest at its rate.
    Interest {
        #[command(flatten)]
        staff: Staff,
    },
}

/// Flags of `township bank open`.
#[derive(Debug, Args)]
struct OpenArgs {
    /// The holder's name.
    #[arg(long)]
    name: String,
    /// The first deposit, e.g. 100.50.
    #[arg(long, value_name = "AMOUNT", default_value = "0", value_parser = parse_initial)]
    initial: i64,
    #[command(flatten)]
    pin: PinSource,
    #[command(flatten)]
    staff: Staff,
}

/// Flags of `township bank deposit` and `withdraw`.
#[derive(Debug, Args)]
struct MovementArgs {
    /// The account id.
    #[arg(value_parser = parse_account)]
    account: String,
    /// The amount, e.g. 12.34.
    #[arg(value_parser = parse_amount)]
    amount: i64,
    #[command(flatten)]
    customer: Customer,
}

/// Who a customer command logs in as.
#[derive(Debug, Args)]
struct Customer {
    /// The account holder's name.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    pin: PinSource,
}

/// Where the PIN comes from.
#[derive(Debug, Args)]
struct PinSource {
    /// A file whose first line is the PIN. Default: env TOWNSHIP_BANK_PIN, else a prompt
    /// (without echo) when stdin is a terminal.
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
}

/// The staff credential.
#[derive(Debug, Args)]
struct Staff {
    /// The file holding the bank's admin token (bank-server writes it in its data directory).
    #[arg(long, value_name = "FILE", env = "TOWNSHIP_BANK_ADMIN_TOKEN_FILE",
          default_value = DEFAULT_ADMIN_TOKEN_FILE)]
    admin_token_file: PathBuf,
}

/// Runs `township bank`.
pub async fn run(args: BankArgs, global: &Global) -> Result<(), CliError> {
    match args.command {
        BankCommand::Open(args) => open(args, global).await,
        BankCommand::Interest { staff } => interest(&staff, global).await,
        BankCommand::Balance { account, customer } => {
            as_customer(&customer, global, async |session| {
                let cents = session.balance(&account).await?;
                print_balance(global, &account, cents);
                Ok(())
            })
            .await
        }
        BankCommand::Deposit(args) => move_money(Movement::Deposit, args, global).await,
        BankCommand::Withdraw(args) => move_money(Movement::Withdraw, args, global).await,
        BankCommand::Transfer {
            from,
            to,
            amount,
            customer,
        } => {
            let args = MovementArgs {
                account: from,
                amount,
                customer,
            };
            move_money(Movement::Transfer { to }, args, global).await
        }
        BankCommand::History {
            account,
            limit,
            customer,
        } => {
            as_customer(&customer, global, async |session| {
                let transactions = session.history(&account, limit as usize).await?;
                print_history(global, &transactions);
                Ok(())
            })
            .await
        }
    }
}

async fn open(args: OpenArgs, global: &Global) -> Result<(), CliError> {
    let admin = admin_token(&args.staff.admin_token_file)?;
    let pin = read_pin(&args.pin, &format!("PIN for {}: ", args.name))?;
    let bank = Bank::connect(global).await?;
    let message = OpenAccountRequest {
        holder_name: args.name,
        pin,
        initial_deposit_cents: args.initial,
        request_id: new_request_id(),
    };
    let account = bank
        .call(Some(&admin), message, |mut client, request| async move {
            client.open_account(request).await
        })
        .await
        .map_err(|status| bank.error(status))?;
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
    Ok(())
}

async fn interest(staff: &Staff, global: &Global) -> Result<(), CliError> {
    let admin = admin_token(&staff.admin_token_file)?;
    let bank = Bank::connect(global).await?;
    let message = ApplyInterestRequest {
        request_id: new_request_id(),
    };
    let reply = bank
        .call(Some(&admin), message, |mut client, request| async move {
            client.apply_interest(request).await
        })
        .await
        .map_err(|status| bank.error(status))?;
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
    Ok(())
}

async fn move_money(
    movement: Movement,
    args: MovementArgs,
    global: &Global,
) -> Result<(), CliError> {
    as_customer(&args.customer, global, async |session| {
        let receipt = session
            .move_money(&movement, &args.account, args.amount)
            .await?;
        print_moved(global, &movement, &args.account, args.amount, &receipt);
        Ok(())
    })
    .await
}

/// Logs the customer in, runs `work` in their session, and logs out whatever `work` returned.
async fn as_customer(
    customer: &Customer,
    global: &Global,
    work: impl AsyncFnOnce(&Session<'_>) -> Result<(), Status>,
) -> Result<(), CliError> {
    let pin = read_pin(&customer.pin, &format!("PIN for {}: ", customer.name))?;
    let bank = Bank::connect(global).await?;
    let session = bank
        .login(&customer.name, &pin)
        .await
        .map_err(|status| bank.error(status))?;
    let result = work(&session).await;
    session.logout().await;
    result.map_err(|status| bank.error(status))
}

/// The PIN: from `--pin-file`, else env TOWNSHIP_BANK_PIN, else asked without echo on a terminal.
fn read_pin(source: &PinSource, prompt: &str) -> Result<String, CliError> {
    if let Some(path) = &source.pin_file {
        return first_line(path, "PIN file");
    }
    if let Some(pin) = std::env::var(PIN_ENV).ok().filter(|p| !p.trim().is_empty()) {
        return Ok(pin.trim().to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "no PIN: give --pin-file FILE or set {PIN_ENV} (stdin is not a terminal to ask on)"
        )));
    }
    rpassword::prompt_password(prompt)
        .map(|pin| pin.trim().to_owned())
        .map_err(|e| CliError::Usage(format!("cannot read the PIN: {e}")))
}

/// The admin token from `path`, ready to send as `authorization: Bearer <token>`.
fn admin_token(path: &Path) -> Result<AsciiMetadataValue, CliError> {
    let token = first_line(path, "admin token file")?;
    bearer(&token).map_err(|()| {
        CliError::Usage(format!(
            "the admin token file {} does not hold a token",
            path.display()
        ))
    })
}

/// The first line of `path`, trimmed; an unreadable or empty file is a usage error.
fn first_line(path: &Path, what: &str) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read the {what} {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return Err(CliError::Usage(format!(
            "the {what} {} is empty",
            path.display()
        )));
    }
    Ok(line.to_owned())
}

/// `Bearer <token>` as a metadata value.
fn bearer(token: &str) -> Result<AsciiMetadataValue, ()> {
    format!("Bearer {token}").parse().map_err(|_| ())
}

/// A fresh request id: a retry reuses it, a new command never does.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Parses an account id (a UUID) typed by a person.
pub fn parse_account(text: &str) -> Result<String, String> {
    uuid::Uuid::try_parse(text.trim())
        .map(|id| id.to_string())
        .map_err(|_| format!("`{text}` is not an account id (a UUID)"))
}

/// Parses an amount to move, e.g. `12.34`, into cents: exact, and more than zero.
pub fn parse_amount(text: &str) -> Result<i64, String> {
    match parse_cents(text)? {
        0 => Err(format!("`{text}` is zero: give an amount above 0")),
        cents => Ok(cents),
    }
}

/// Parses an opening deposit, which may be zero.
fn parse_initial(text: &str) -> Result<i64, String> {
    parse_cents(text)
}

/// Whether a failure is transient: the bank did not answer in time or at all (UNAVAILABLE,
/// DEADLINE_EXCEEDED) or changed nothing and asks for a retry (ABORTED). Trying again — with the
/// same request id, for a mutation — is then both useful and safe.
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
    )
}

/// A connection to the bank, with the flags that shape every call.
pub struct Bank {
    client: BankServiceClient<Channel>,
    addr: String,
    global: Global,
}

impl Bank {
    /// Connects to the bank: `--addr`, else env TOWNSHIP_BANK_ADDR, else 127.0.0.1:50055.
    pub async fn connect(global: &Global) -> Result<Self, CliError> {
        let addr = addr_of(&town::BANK, global);
        let channel = connect(SERVICE, &addr, global).await?;
        Ok(Self {
            client: BankServiceClient::new(channel),
            addr,
            global: global.clone(),
        })
    }

    /// The command's error for a failed call (see [`CliError::from_status`]).
    pub fn error(&self, status: Status) -> CliError {
        CliError::from_status(SERVICE, &self.addr, status)
    }

    /// Logs `name` in with `pin`.
    pub async fn login(&self, name: &str, pin: &str) -> Result<Session<'_>, Status> {
        let message = LoginRequest {
            holder_name: name.to_owned(),
            pin: pin.to_owned(),
        };
        let reply = self
            .call(None, message, |mut client, request| async move {
                client.login(request).await
            })
            .await?;
        let auth = bearer(&reply.session_token)
            .map_err(|()| Status::internal("the bank sent an unusable session token"))?;
        Ok(Session {
            bank: self,
            auth,
            accounts: reply.account_ids,
        })
    }

    /// Makes one call with `--timeout` as its deadline and `auth` as its credential, and tries it
    /// again (up to `--retries` more times, with backoff) while it fails transiently.
    async fn call<M, R, Fut>(
        &self,
        auth: Option<&AsciiMetadataValue>,
        message: M,
        rpc: impl Fn(BankServiceClient<Channel>, Request<M>) -> Fut,
    ) -> Result<R, Status>
    where
        M: Clone,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let mut backoff = Backoff::new();
        let mut retries_left = self.global.retries;
        loop {
            let mut request = unary(message.clone(), &self.global);
            if let Some(auth) = auth {
                request.metadata_mut().insert("authorization", auth.clone());
            }
            match rpc(self.client.clone(), request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if retries_left > 0 && is_transient(status.code()) => {
                    retries_left -= 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(status) => return Err(status),
            }
        }
    }
}

/// A money movement: what happens to the account a command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Movement {
    /// Money in.
    Deposit,
    /// Money out.
    Withdraw,
    /// Money out, to the account `to`.
    Transfer {
        /// The account the money goes to.
        to: String,
    },
}

impl Movement {
    /// The verb in the past tense, for receipts.
    fn done(&self) -> &'static str {
        match self {
            Movement::Deposit => "deposited",
            Movement::Withdraw => "withdrew",
            Movement::Transfer { .. } => "transferred",
        }
    }

    /// The name of the operation, for JSON.
    fn name(&self) -> &'static str {
        match self {
            Movement::Deposit => "deposit",
            Movement::Withdraw => "withdraw",
            Movement::Transfer { .. } => "transfer",
        }
    }
}

/// What a money movement returned.
#[derive(Debug, Clone)]
pub struct Moved {
    /// The ledger entry's id.
    pub transaction_id: String,
    /// The named account's balance afterwards.
    pub balance_cents: i64,
    /// The request id the movement was sent (and any retry re-sent) with.
    pub request_id: String,
}

/// A logged-in customer.
pub struct Session<'a> {
    bank: &'a Bank,
    auth: AsciiMetadataValue,
    accounts: Vec<String>,
}

impl Session<'_> {
    /// The holder's accounts, as Login listed them.
    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }

    /// The balance of `account`, in cents.
    pub async fn balance(&self, account: &str) -> Result<i64, Status> {
        let message = GetBalanceRequest {
            account_id: account.to_owned(),
        };
        let reply = self
            .bank
            .call(
                Some(&self.auth),
                message,
                |mut client, request| async move { client.get_balance(request).await },
            )
            .await?;
        Ok(reply.balance_cents)
    }

    /// Moves `cents` in or out of `account`, exactly once: one request id for every attempt.
    pub async fn move_money(
        &self,
        movement: &Movement,
        account: &str,
        cents: i64,
    ) -> Result<Moved, Status> {
        let request_id = new_request_id();
        let auth = Some(&self.auth);
        let receipt = match movement {
            Movement::Transfer { to } => {
                let message = TransferRequest {
                    from_account_id: account.to_owned(),
                    to_account_id: to.clone(),
                    amount_cents: cents,
                    request_id: request_id.clone(),
                };
                self.bank
                    .call(auth, message, |mut client, request| async move {
                        client.transfer(request).await
                    })
                    .await?
            }
            Movement::Deposit | Movement::Withdraw => {
                let message = AmountRequest {
                    account_id: account.to_owned(),
                    amount_cents: cents,
                    request_id: request_id.clone(),
                };
                let deposit = *movement == Movement::Deposit;
                self.bank
                    .call(auth, message, |mut client, request| async move {
                        if deposit {
                            client.deposit(request).await
                        } else {
                            client.withdraw(request).await
                        }
                    })
                    .await?
            }
        };
        Ok(Moved {
            transaction_id: receipt.transaction_id,
            balance_cents: receipt.balance_cents,
            request_id,
        })
    }

    /// Up to `limit` of the account's transactions, newest first, a page at a time.
    pub async fn history(&self, account: &str, limit: usize) -> Result<Vec<Transaction>, Status> {
        let mut transactions = Vec::new();
        let mut page_token = String::new();
        while transactions.len() < limit {
            let message = ListTransactionsRequest {
                account_id: account.to_owned(),
                page_size: (limit - transactions.len()).min(MAX_PAGE) as i32,
                page_token,
            };
            let page = self
                .bank
                .call(
                    Some(&self.auth),
                    message,
                    |mut client, request| async move { client.list_transactions(request).await },
                )
                .await?;
            transactions.extend(page.transactions);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        transactions.truncate(limit);
        Ok(transactions)
    }

    /// Ends the session. A failure only warns: the session expires by itself.
    pub async fn logout(self) {
        let result = self
            .bank
            .call(
                Some(&self.auth),
                LogoutRequest {},
                |mut client, request| async move { client.logout(request).await },
            )
            .await;
        if let Err(status) = result {
            eprintln!(
                "township: warning: logging out failed (the session expires by itself): {}",
                status.message()
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_and_zero_is_refused() {
        assert_eq!(parse_amount("12.34"), Ok(1234));
        assert_eq!(parse_amount("0.1"), Ok(10));
        assert!(parse_amount("12.345").is_err());
        assert!(parse_amount("0").is_err());
        assert!(parse_amount("-1").is_err());
        assert_eq!(parse_initial("0"), Ok(0));
    }

    #[test]
    fn account_ids_must_be_uuids() {
        let id = "6f1c2b1e-6d0a-4c55-9a40-0c3a3b7f9b11";
        assert_eq!(parse_account(&format!(" {id} ")).as_deref(), Ok(id));
        assert!(parse_account("42").is_err());
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(is_transient(Code::Unavailable));
        assert!(is_transient(Code::DeadlineExceeded));
        assert!(is_transient(Code::Aborted));
        assert!(!is_transient(Code::FailedPrecondition));
        assert!(!is_transient(Code::Unauthenticated));
    }
}
