//! `township bank`: the bank's command-line client. Staff open accounts and apply interest with
//! the admin token; customers log in with their name and PIN, check a balance, deposit, withdraw,
//! transfer or read their history, change their PIN, and log out again; staff also lift
//! lockouts, end a holder's sessions and read the security audit. Every money movement carries
//! a fresh request id and is retried with that same id when the bank may not have answered, so
//! a retry never moves money twice. Also the bank session that `township atm` drives.
//!
//! Here: the arguments and each command; `session` holds the connection, the retried calls and
//! the customer's session, `credentials` the PIN and admin token, `print` the receipts, `audit`
//! the audit listing.

mod audit;
mod credentials;
mod print;
mod session;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use tonic::Status;
use township_proto::bank::v1::{
    ApplyInterestRequest, OpenAccountRequest, RevokeSessionsRequest, UnlockRequest,
};
use township_proto::money::parse_cents;

use crate::{error::CliError, global::Global};
use credentials::{admin_token, read_new_pin, read_pin};
pub use print::{print_balance, print_history, print_moved};
use print::{print_interest, print_opened, print_pin_changed, print_revoked, print_unlocked};
use session::new_request_id;
pub use session::{Bank, Movement, Session};

/// Where `township up` keeps the bank's admin token (`bank-server --data-dir ./township-data/bank`).
const DEFAULT_ADMIN_TOKEN_FILE: &str = "./township-data/bank/admin-token";

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
    /// Change your PIN; your other sessions end.
    Pin {
        /// A file whose first line is the new PIN. Default: env TOWNSHIP_BANK_NEW_PIN, else a
        /// prompt (without echo) when stdin is a terminal.
        #[arg(long, value_name = "FILE")]
        new_pin_file: Option<PathBuf>,
        #[command(flatten)]
        customer: Customer,
    },
    /// Staff: lift every lockout of a holder's name.
    Unlock {
        /// The holder's name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        staff: Staff,
    },
    /// Staff: read the security audit, newest first.
    Audit(audit::AuditArgs),
    /// Staff: end every session of a holder.
    Revoke {
        /// The holder's name.
        #[arg(long)]
        name: String,
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
        BankCommand::Pin {
            new_pin_file,
            customer,
        } => change_pin(&customer, new_pin_file.as_deref(), global).await,
        BankCommand::Unlock { name, staff } => unlock(&name, &staff, global).await,
        BankCommand::Revoke { name, staff } => revoke(&name, &staff, global).await,
        BankCommand::Audit(args) => audit::audit(args, global).await,
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
    print_opened(global, &account);
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
    print_interest(global, &reply);
    Ok(())
}

async fn change_pin(
    customer: &Customer,
    new_pin_file: Option<&Path>,
    global: &Global,
) -> Result<(), CliError> {
    let old = read_pin(&customer.pin, &format!("PIN for {}: ", customer.name))?;
    let new = read_new_pin(new_pin_file)?;
    let bank = Bank::connect(global).await?;
    let session = bank
        .login(&customer.name, &old)
        .await
        .map_err(|status| bank.error(status))?;
    let changed = session.change_pin(&old, &new).await;
    session.logout().await;
    let ended = changed.map_err(|status| bank.error(status))?;
    print_pin_changed(global, ended);
    Ok(())
}

async fn unlock(name: &str, staff: &Staff, global: &Global) -> Result<(), CliError> {
    let admin = admin_token(&staff.admin_token_file)?;
    let bank = Bank::connect(global).await?;
    let message = UnlockRequest {
        holder_name: name.to_owned(),
    };
    let reply = bank
        .call(Some(&admin), message, |mut client, request| async move {
            client.unlock(request).await
        })
        .await
        .map_err(|status| bank.error(status))?;
    print_unlocked(global, name, reply.cleared);
    Ok(())
}

async fn revoke(name: &str, staff: &Staff, global: &Global) -> Result<(), CliError> {
    let admin = admin_token(&staff.admin_token_file)?;
    let bank = Bank::connect(global).await?;
    let message = RevokeSessionsRequest {
        holder_name: name.to_owned(),
    };
    let reply = bank
        .call(Some(&admin), message, |mut client, request| async move {
            client.revoke_sessions(request).await
        })
        .await
        .map_err(|status| bank.error(status))?;
    print_revoked(global, name, reply.sessions_ended);
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
}
