//! The bank's money rules, pure: no SQL, no I/O, no clock. Every mutation — a deposit, a
//! withdrawal, a transfer in a batch, an interest credit — decides by these functions, so the
//! rules exist once and are tested here on their own.
//!
//! - Exactly once: a request id's stored outcome ([`PriorRequest`]) is answered again
//!   ([`prior_outcome`]); a refusal by a money rule is final too, stored as [`Refusal::stored`].
//! - Fencing: each account records `fence_write`, the highest token that changed it, and
//!   `fence_any`, the highest token that read or changed it. A change needs a token at least
//!   `fence_any` ([`AccountState::admit_change`]: no newer holder has even looked); a read needs
//!   one at least `fence_write` ([`AccountState::admit_read`]: readers holding the lock together
//!   may have tokens in any order).
//! - Money: no negative balance, nothing past [`MAX_BALANCE_CENTS`], no overflow ([`apply`]).

use crate::{
    Error,
    types::{Amount, MAX_BALANCE_CENTS},
};

/// What a mutation returns, and what a retry with the same request id returns again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The ledger row of the named account (the source, for a transfer).
    pub transaction_id: String,
    /// That account's balance after the mutation.
    pub balance_cents: i64,
}

/// A deposit or a withdrawal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Movement {
    /// Adds money.
    Deposit,
    /// Takes money out.
    Withdraw,
}

impl Movement {
    /// The ledger row's kind.
    pub fn kind(self) -> &'static str {
        match self {
            Movement::Deposit => "DEPOSIT",
            Movement::Withdraw => "WITHDRAW",
        }
    }

    /// The signed change to the balance: credits positive, debits negative.
    pub fn delta(self, amount: Amount) -> i64 {
        match self {
            Movement::Deposit => amount.cents(),
            Movement::Withdraw => -amount.cents(),
        }
    }
}

/// A refusal by a money rule. It is final for its request id: stored with the id (see
/// [`Refusal::stored`]), so a retry gets the same answer and an old attempt still under way can
/// never apply after its request was answered as refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The debit is larger than the balance.
    InsufficientFunds {
        /// The balance the debit would exceed.
        balance_cents: i64,
    },
    /// The credit would take the balance past the maximum (or overflow).
    BalanceLimit,
}

const INSUFFICIENT_FUNDS: &str = "INSUFFICIENT_FUNDS";
const BALANCE_LIMIT: &str = "BALANCE_LIMIT";

impl Refusal {
    /// The refusal as its request id records it: the `rejection` and `balance_cents` columns.
    pub fn stored(self) -> (&'static str, i64) {
        match self {
            Refusal::InsufficientFunds { balance_cents } => (INSUFFICIENT_FUNDS, balance_cents),
            Refusal::BalanceLimit => (BALANCE_LIMIT, 0),
        }
    }

    /// The refusal a request id recorded, or `None` if it recorded none (it was applied).
    pub fn from_stored(rejection: &str, balance_cents: i64) -> Option<Self> {
        match rejection {
            INSUFFICIENT_FUNDS => Some(Refusal::InsufficientFunds { balance_cents }),
            BALANCE_LIMIT => Some(Refusal::BalanceLimit),
            _ => None,
        }
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InsufficientFunds { balance_cents } => {
                Error::InsufficientFunds { balance_cents }
            }
            Refusal::BalanceLimit => Error::BalanceLimit,
        }
    }
}

/// `balance + delta`, if the result is a balance the bank allows.
pub fn apply(balance: i64, delta: i64) -> Result<i64, Refusal> {
    let after = balance.checked_add(delta).ok_or(Refusal::BalanceLimit)?;
    if after < 0 {
        return Err(Refusal::InsufficientFunds {
            balance_cents: balance,
        });
    }
    if after > MAX_BALANCE_CENTS {
        return Err(Refusal::BalanceLimit);
    }
    Ok(after)
}

/// Interest for one run: `floor(balance × rate_bp / 10,000)` — rounded down to the cent, so the
/// bank never pays a fraction of a cent. Computed in 128 bits: no overflow.
pub fn interest_cents(balance_cents: i64, rate_bp: i64) -> i64 {
    let interest = i128::from(balance_cents) * i128::from(rate_bp) / 10_000;
    i64::try_from(interest.max(0)).unwrap_or(i64::MAX)
}

/// An account's balance and fences, as a transaction read them (or as the transfers before it in
/// a batch left them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    /// The balance in cents.
    pub balance: i64,
    /// The highest fencing token that read or changed the account.
    pub fence_any: i64,
    /// The highest fencing token that changed the account.
    pub fence_write: i64,
}

impl AccountState {
    /// Admits a change under `token`: refused if any newer holder has read or changed the
    /// account. Returns the token as stored.
    pub fn admit_change(&self, token: u64) -> Result<i64, Error> {
        refuse_older(token, self.fence_any)
    }

    /// Admits a read under `token`: refused if a newer holder has changed the account. Returns the
    /// `fence_any` to record when `token` is the newest to have looked.
    pub fn admit_read(&self, token: u64) -> Result<Option<i64>, Error> {
        let token = refuse_older(token, self.fence_write)?;
        Ok((token > self.fence_any).then_some(token))
    }

    /// The account after its balance became `balance` under the admitted `token`.
    fn changed(self, balance: i64, token: i64) -> Self {
        AccountState {
            balance,
            fence_any: self.fence_any.max(token),
            fence_write: self.fence_write.max(token),
        }
    }
}

/// A token older than the one `recorded` on the account is refused; returns the token as stored.
fn refuse_older(token: u64, recorded: i64) -> Result<i64, Error> {
    let stored = i64::try_from(token)
        .map_err(|_| Error::Internal(format!("fencing token {token} exceeds 63 bits")))?;
    if stored < recorded {
        return Err(Error::StaleLease {
            token,
            recorded: recorded as u64,
        });
    }
    Ok(stored)
}

/// A request id's stored outcome (a row of `requests`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorRequest {
    /// What the request was (kind, accounts, amount): a reuse for another request is refused.
    pub params: String,
    /// Its receipt's transaction id (empty when refused).
    pub transaction_id: String,
    /// Its receipt's balance, or the balance named by its refusal.
    pub balance_cents: i64,
    /// Its refusal as [`Refusal::stored`], or empty.
    pub rejection: String,
}

/// The answer a request with `params` gets given its id's stored outcome: `None` if the id is
/// new; else its receipt, or the same refusal it got; [`Error::RequestIdReused`] if that request
/// had other parameters.
pub fn prior_outcome(prior: Option<PriorRequest>, params: &str) -> Result<Option<Receipt>, Error> {
    let Some(prior) = prior else {
        return Ok(None);
    };
    if prior.params != params {
        return Err(Error::RequestIdReused);
    }
    if let Some(refusal) = Refusal::from_stored(&prior.rejection, prior.balance_cents) {
        return Err(refusal.into());
    }
    Ok(Some(Receipt {
        transaction_id: prior.transaction_id,
        balance_cents: prior.balance_cents,
    }))
}

/// One account a money movement changes.
#[derive(Clone, Copy, Debug)]
pub struct Leg {
    /// The account as read, `None` if there is no such account.
    pub account: Option<AccountState>,
    /// The request field that named the account (for [`Error::AccountNotFound`]).
    pub field: &'static str,
    /// The signed change to its balance.
    pub delta: i64,
    /// The fencing token of the WRITE lock held on it.
    pub token: u64,
}

/// A money movement's verdict once its accounts exist and its tokens are admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<const N: usize> {
    /// Every leg applies: the accounts after the movement, in the legs' order.
    Applied([AccountState; N]),
    /// A money rule refuses it: nothing changes, and the refusal is recorded.
    Refused(Refusal),
}

/// Decides a money movement of `N` legs (one for a deposit, withdrawal or interest credit, two
/// for a transfer: source, then destination), for a request id with no prior outcome. Each leg's
/// account must exist and admit the change, in order; then each balance must stay allowed. All
/// legs apply or none does.
pub fn decide<const N: usize>(legs: [Leg; N]) -> Result<Verdict<N>, Error> {
    let mut admitted = [(AccountState::default(), 0); N];
    for (slot, leg) in admitted.iter_mut().zip(&legs) {
        let account = leg
            .account
            .ok_or(Error::AccountNotFound { field: leg.field })?;
        *slot = (account, account.admit_change(leg.token)?);
    }
    let mut after = [AccountState::default(); N];
    for ((slot, leg), (account, token)) in after.iter_mut().zip(&legs).zip(admitted) {
        match apply(account.balance, leg.delta) {
            Ok(balance) => *slot = account.changed(balance, token),
            Err(refusal) => return Ok(Verdict::Refused(refusal)),
        }
    }
    Ok(Verdict::Applied(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(balance: i64, fence_any: i64, fence_write: i64) -> Option<AccountState> {
        Some(AccountState {
            balance,
            fence_any,
            fence_write,
        })
    }

    fn leg(account: Option<AccountState>, field: &'static str, delta: i64, token: u64) -> Leg {
        Leg {
            account,
            field,
            delta,
            token,
        }
    }

    #[test]
    fn interest_rounds_down_to_the_cent() {
        assert_eq!(interest_cents(10_000, 200), 200);
        assert_eq!(interest_cents(149, 200), 2, "2.98 cents pays 2");
        assert_eq!(interest_cents(49, 200), 0);
        assert_eq!(interest_cents(MAX_BALANCE_CENTS, 10_000), MAX_BALANCE_CENTS);
    }

    #[test]
    fn a_balance_never_goes_negative_nor_past_the_maximum() {
        assert_eq!(apply(100, -100), Ok(0));
        assert_eq!(
            apply(100, -101),
            Err(Refusal::InsufficientFunds { balance_cents: 100 })
        );
        assert_eq!(apply(MAX_BALANCE_CENTS - 1, 1), Ok(MAX_BALANCE_CENTS));
        assert_eq!(apply(MAX_BALANCE_CENTS, 1), Err(Refusal::BalanceLimit));
        assert_eq!(apply(i64::MAX, 1), Err(Refusal::BalanceLimit), "overflow");
    }

    #[test]
    fn a_refusal_reads_back_as_it_was_stored() {
        for refusal in [
            Refusal::InsufficientFunds { balance_cents: 42 },
            Refusal::BalanceLimit,
        ] {
            let (rejection, balance) = refusal.stored();
            assert_eq!(Refusal::from_stored(rejection, balance), Some(refusal));
        }
        assert_eq!(Refusal::from_stored("", 7), None, "an applied request");
    }

    #[test]
    fn a_change_needs_a_token_no_older_than_any_reader_or_writer() {
        let state = account(0, 20, 10).unwrap();
        assert!(matches!(
            state.admit_change(15),
            Err(Error::StaleLease {
                token: 15,
                recorded: 20
            })
        ));
        assert_eq!(state.admit_change(20).unwrap(), 20);
        assert!(matches!(
            state.admit_change(u64::MAX),
            Err(Error::Internal(_))
        ));
    }

    #[test]
    fn a_read_needs_a_token_no_older_than_the_last_writer_and_records_the_newest() {
        let state = account(0, 20, 10).unwrap();
        assert!(matches!(
            state.admit_read(9),
            Err(Error::StaleLease {
                token: 9,
                recorded: 10
            })
        ));
        assert_eq!(
            state.admit_read(15).unwrap(),
            None,
            "readers' tokens may interleave"
        );
        assert_eq!(state.admit_read(21).unwrap(), Some(21));
    }

    #[test]
    fn a_request_id_gets_its_first_answer_again() {
        let applied = PriorRequest {
            params: "DEPOSIT|a|5".into(),
            transaction_id: "7".into(),
            balance_cents: 105,
            rejection: String::new(),
        };
        assert_eq!(prior_outcome(None, "DEPOSIT|a|5").unwrap(), None);
        assert_eq!(
            prior_outcome(Some(applied.clone()), "DEPOSIT|a|5").unwrap(),
            Some(Receipt {
                transaction_id: "7".into(),
                balance_cents: 105
            })
        );
        assert!(matches!(
            prior_outcome(Some(applied), "DEPOSIT|a|6"),
            Err(Error::RequestIdReused)
        ));
        let (rejection, balance_cents) = Refusal::InsufficientFunds { balance_cents: 3 }.stored();
        let refused = PriorRequest {
            params: "WITHDRAW|a|5".into(),
            transaction_id: String::new(),
            balance_cents,
            rejection: rejection.into(),
        };
        assert!(matches!(
            prior_outcome(Some(refused), "WITHDRAW|a|5"),
            Err(Error::InsufficientFunds { balance_cents: 3 })
        ));
    }

    #[test]
    fn a_movement_changes_every_leg_and_raises_its_fences() {
        let verdict = decide([
            leg(account(100, 4, 4), "from_account_id", -30, 5),
            leg(account(0, 9, 2), "to_account_id", 30, 9),
        ])
        .unwrap();
        assert_eq!(
            verdict,
            Verdict::Applied([account(70, 5, 5).unwrap(), account(30, 9, 9).unwrap()])
        );
    }

    #[test]
    fn a_movement_is_refused_whole_when_one_leg_breaks_a_money_rule() {
        let overdraft = decide([
            leg(account(10, 0, 0), "from_account_id", -30, 1),
            leg(account(0, 0, 0), "to_account_id", 30, 1),
        ]);
        assert_eq!(
            overdraft.unwrap(),
            Verdict::Refused(Refusal::InsufficientFunds { balance_cents: 10 })
        );
        let overflow = decide([
            leg(account(10, 0, 0), "from_account_id", -1, 1),
            leg(account(MAX_BALANCE_CENTS, 0, 0), "to_account_id", 1, 1),
        ]);
        assert_eq!(overflow.unwrap(), Verdict::Refused(Refusal::BalanceLimit));
    }

    #[test]
    fn a_movement_names_the_first_missing_account_or_stale_token() {
        let missing = decide([
            leg(account(10, 0, 0), "from_account_id", -1, 1),
            leg(None, "to_account_id", 1, 1),
        ]);
        assert!(matches!(
            missing,
            Err(Error::AccountNotFound {
                field: "to_account_id"
            })
        ));
        let stale = decide([
            leg(account(10, 8, 0), "from_account_id", -1, 3),
            leg(None, "to_account_id", 1, 1),
        ]);
        assert!(matches!(stale, Err(Error::StaleLease { token: 3, .. })));
    }

    #[test]
    fn a_movement_amount_is_signed_by_its_kind() {
        let amount = Amount::parse("amount_cents", 250).unwrap();
        assert_eq!(Movement::Deposit.delta(amount), 250);
        assert_eq!(Movement::Withdraw.delta(amount), -250);
        assert_eq!(Movement::Withdraw.kind(), "WITHDRAW");
    }
}
