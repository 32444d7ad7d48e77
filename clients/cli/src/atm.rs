//! `township atm`: an interactive ATM session like the classic one. It asks for a name and PIN,
//! logs in (three tries), shows the holder's accounts, then offers a menu — balance, deposit,
//! withdraw, transfer, history, quit — until the customer quits or stdin ends. On a terminal the
//! PIN is read without echo; from a pipe every answer is one line, so a session can be scripted.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use tonic::{Code, Status};
use township_proto::money::format_cents;

use crate::{
    bank::{self, Bank, Movement, Session},
    error::CliError,
    global::Global,
    input::read_line,
};

/// Wrong PINs (or names) the ATM accepts before it gives up.
const PIN_TRIES: u32 = 3;

/// How many transactions the history choice shows.
const HISTORY_LINES: usize = 10;

const MENU: &str = "1 balance  2 deposit  3 withdraw  4 transfer  5 history  6 quit";

/// Flags of `township atm`.
#[derive(Debug, Args)]
pub struct AtmArgs {
    /// The holder's name (asked for when not given).
    #[arg(long)]
    name: Option<String>,
}

/// Runs `township atm`.
pub async fn run(args: AtmArgs, global: &Global) -> Result<(), CliError> {
    let mut input = LineReader::stdin();
    let bank = Bank::connect(global).await?;
    println!("Welcome to the Township bank.");
    let name = args
        .name
        .filter(|n| !n.trim().is_empty())
        .or_else(|| ask_name(&mut input));
    let session = match name {
        Some(name) => log_in(&bank, &name, &mut input).await?,
        None => None,
    };
    if let Some(session) = session {
        show_accounts(&session).await;
        menu(&session, &mut input, global).await;
        session.logout().await;
    }
    println!("Have a nice day!");
    Ok(())
}

/// Asks for a name until one is given; `None` at the end of input.
fn ask_name(input: &mut LineReader) -> Option<String> {
    loop {
        let name = input.ask("Name: ")?;
        if !name.is_empty() {
            return Some(name);
        }
    }
}

/// Asks for the PIN and logs in, up to [`PIN_TRIES`] times. `None` when the input ends first.
async fn log_in<'b>(
    bank: &'b Bank,
    name: &str,
    input: &mut LineReader,
) -> Result<Option<Session<'b>>, CliError> {
    let mut tries = 0;
    loop {
        let Some(pin) = input.ask_secret("PIN: ") else {
            return Ok(None);
        };
        let status = match bank.login(name, &pin).await {
            Ok(session) => return Ok(Some(session)),
            Err(status) => status,
        };
        tries += 1;
        match status.code() {
            Code::Unauthenticated => println!("Wrong name or PIN."),
            Code::InvalidArgument => println!("{}", status.message()),
            _ => return Err(bank.error(status)),
        }
        if tries == PIN_TRIES {
            return Err(bank.error(status));
        }
        println!("Please try again.");
    }
}

/// Lists the holder's accounts, numbered, with their balances.
async fn show_accounts(session: &Session<'_>) {
    println!("Your accounts:");
    for (number, account) in session.accounts().iter().enumerate() {
        let balance = match session.balance(account).await {
            Ok(cents) => format!("balance {}", format_cents(cents)),
            Err(status) => format!("balance unavailable: {}", status.message()),
        };
        println!("  {}. {account}  {balance}", number + 1);
    }
}

/// A menu choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Balance,
    Deposit,
    Withdraw,
    Transfer,
    History,
    Quit,
}

impl Choice {
    /// A number from the menu or its word, in any case.
    fn parse(text: &str) -> Option<Self> {
        let choice = match text.trim().to_lowercase().as_str() {
            "1" | "balance" => Choice::Balance,
            "2" | "deposit" => Choice::Deposit,
            "3" | "withdraw" => Choice::Withdraw,
            "4" | "transfer" => Choice::Transfer,
            "5" | "history" => Choice::History,
            "6" | "quit" => Choice::Quit,
            _ => return None,
        };
        Some(choice)
    }
}

/// Offers the menu until the customer quits or the input ends. Problems are shown, not fatal.
async fn menu(session: &Session<'_>, input: &mut LineReader, global: &Global) {
    loop {
        println!();
        println!("{MENU}");
        let Some(line) = input.ask("Choice: ") else {
            return;
        };
        match Choice::parse(&line) {
            None => println!("Please choose 1 to 6, or type the word."),
            Some(Choice::Quit) => return,
            Some(choice) => {
                if let Err(problem) = perform(choice, session, input, global).await {
                    println!("Sorry: {problem}");
                }
            }
        }
    }
}

/// Carries out one menu choice (Quit is the menu's own business).
async fn perform(
    choice: Choice,
    session: &Session<'_>,
    input: &mut LineReader,
    global: &Global,
) -> Result<(), String> {
    let question = match choice {
        Choice::Transfer => "From which account",
        _ => "Which account",
    };
    let account = choose_account(session, input, question)?;
    match choice {
        Choice::Balance => {
            let cents = session.balance(&account).await.map_err(message)?;
            bank::print_balance(global, &account, cents);
        }
        Choice::History => {
            let transactions = session
                .history(&account, HISTORY_LINES)
                .await
                .map_err(message)?;
            bank::print_history(global, &transactions);
        }
        Choice::Deposit => move_money(Movement::Deposit, &account, session, input, global).await?,
        Choice::Withdraw => {
            move_money(Movement::Withdraw, &account, session, input, global).await?
        }
        Choice::Transfer => {
            let to = destination(session, input)?;
            move_money(Movement::Transfer { to }, &account, session, input, global).await?;
        }
        Choice::Quit => {}
    }
    Ok(())
}

/// Asks for the amount and moves it, printing the receipt.
async fn move_money(
    movement: Movement,
    account: &str,
    session: &Session<'_>,
    input: &mut LineReader,
    global: &Global,
) -> Result<(), String> {
    let amount = input.ask("Amount: ").ok_or("no amount given")?;
    let cents = bank::parse_amount(&amount)?;
    let moved = session
        .move_money(&movement, account, cents)
        .await
        .map_err(message)?;
    bank::print_moved(global, &movement, account, cents, &moved);
    Ok(())
}

/// The account to act on: the only one, or the one the customer picks by number.
fn choose_account(
    session: &Session<'_>,
    input: &mut LineReader,
    question: &str,
) -> Result<String, String> {
    let accounts = session.accounts();
    match accounts {
        [] => Err("you have no accounts".to_owned()),
        [only] => Ok(only.clone()),
        _ => {
            let answer = input
                .ask(&format!("{question} [1-{}]: ", accounts.len()))
                .ok_or("no account chosen")?;
            own_account(accounts, &answer)
                .ok_or_else(|| format!("`{answer}` is not one of the numbers shown"))
        }
    }
}

/// The transfer's destination: one of the holder's accounts by number, or any account id.
fn destination(session: &Session<'_>, input: &mut LineReader) -> Result<String, String> {
    let answer = input
        .ask("To account (a number above, or an account id): ")
        .ok_or("no account given")?;
    match own_account(session.accounts(), &answer) {
        Some(account) => Ok(account),
        None => bank::parse_account(&answer),
    }
}

/// The account numbered `answer` (from 1) in `accounts`.
fn own_account(accounts: &[String], answer: &str) -> Option<String> {
    let number: usize = answer.trim().parse().ok()?;
    accounts.get(number.checked_sub(1)?).cloned()
}

/// What the bank said, for the customer.
fn message(status: Status) -> String {
    status.message().to_owned()
}

/// Reads the customer's answers a line at a time, from stdin, each trimmed. On a terminal the PIN
/// is read without echo; from a pipe every answer (the PIN too) is the next line, and a newline
/// follows each prompt so the transcript stays readable. An unreadable stdin counts as its end.
///
/// Reading blocks the thread: the session is one conversation, and the runtime's worker threads
/// keep the connection going meanwhile.
struct LineReader {
    input: Box<dyn BufRead>,
    terminal: bool,
}

impl LineReader {
    /// Reads from this process's stdin.
    fn stdin() -> Self {
        let stdin = std::io::stdin();
        Self {
            terminal: stdin.is_terminal(),
            input: Box::new(stdin.lock()),
        }
    }

    /// Shows `prompt` and reads one answer, trimmed; `None` at the end of input.
    fn ask(&mut self, prompt: &str) -> Option<String> {
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let line = read_line(&mut self.input);
        if !self.terminal {
            println!();
        }
        line.map(|answer| answer.trim().to_owned())
    }

    /// Like [`LineReader::ask`], without echo on a terminal.
    fn ask_secret(&mut self, prompt: &str) -> Option<String> {
        if !self.terminal {
            return self.ask(prompt);
        }
        rpassword::prompt_password(prompt)
            .ok()
            .map(|secret| secret.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_choices_are_numbers_or_words() {
        assert_eq!(Choice::parse("1"), Some(Choice::Balance));
        assert_eq!(Choice::parse(" Deposit "), Some(Choice::Deposit));
        assert_eq!(Choice::parse("6"), Some(Choice::Quit));
        assert_eq!(Choice::parse("QUIT"), Some(Choice::Quit));
        assert_eq!(Choice::parse("7"), None);
        assert_eq!(Choice::parse(""), None);
    }

    #[test]
    fn own_accounts_are_numbered_from_one() {
        let accounts = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(own_account(&accounts, "2").as_deref(), Some("b"));
        assert_eq!(own_account(&accounts, "0"), None);
        assert_eq!(own_account(&accounts, "3"), None);
        assert_eq!(own_account(&accounts, "b"), None);
    }
}
