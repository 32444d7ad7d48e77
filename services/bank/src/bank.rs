//! The bank's rules, with no gRPC in them: who may do what (sessions, staff), login with three
//! strikes, and each operation done under the right locks from the shared lock service and then
//! one fenced, exactly-once transaction in the [`Ledger`].

use std::{collections::HashMap, sync::PoisonError, time::Duration};

use sha2::{Digest, Sha256};
use township_lock_client::{LockClient, Mode};

use crate::{
    Error,
    ledger::{AccountView, Entry, Ledger, Movement, Receipt, now_ms},
    pin,
    types::{AccountId, Amount, HolderName, Pin, RequestId},
};

/// Failed logins in a row after which a name is refused for a while.
pub const STRIKES: u32 = 3;
/// How long a name is refused after the third failure; each further failure doubles it.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
/// The longest refusal.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3600);

/// How the bank behaves.
#[derive(Clone, Debug)]
pub struct BankConfig {
    /// How long a session token lives.
    pub session_ttl: Duration,
    /// The interest rate of new accounts, in basis points per ApplyInterest.
    pub interest_rate_bp: i32,
    /// Debug builds only: pauses the integration tests put around each locked operation.
    #[cfg(debug_assertions)]
    pub test_delays: crate::test_seam::TestDelays,
}

/// A logged-in customer's session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The bearer token (shown once; only its hash is stored).
    pub token: String,
    /// The holder's accounts.
    pub accounts: Vec<AccountId>,
    /// When the token stops working (Unix ms).
    pub expires_ms: i64,
}

/// An account the caller has been shown to hold: only [`Bank::authorize`] (checking the session
/// and the holding in one read) and [`Bank::authorize_transfer`] make one.
#[derive(Clone, Debug)]
pub struct OwnAccount {
    account: AccountId,
    /// The hash of the session's token.
    session: String,
}

impl OwnAccount {
    /// The hash of the session that holds it: who is asking, for what binds to the caller
    /// (page tokens).
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The account's id.
    pub fn id(&self) -> &AccountId {
        &self.account
    }
}

/// Most (session, account) pairs [`Bank::authorize_transfer`] remembers; when full it forgets
/// them all, so memory stays bounded whatever the number of sessions.
const MAX_VOUCHED: usize = 10_000;

/// The bank.
pub struct Bank {
    ledger: Ledger,
    /// Replaced whole when the lock service's TLS files are read again (SIGHUP); an operation
    /// clones it once and keeps that client, and so its lease, to the end.
    locks: std::sync::RwLock<LockClient>,
    config: BankConfig,
    /// Verified against when a name is unknown, so unknown names take as long as wrong PINs.
    dummy_hash: String,
    /// Sessions recently shown to hold an account, keyed by token hash and account, with when
    /// each session ends (Unix ms). See [`Bank::authorize_transfer`].
    vouched: std::sync::Mutex<HashMap<(String, AccountId), i64>>,
}

impl Bank {
    /// A bank over `ledger`, locking through `locks`.
    pub fn new(ledger: Ledger, locks: LockClient, config: BankConfig) -> Result<Self, Error> {
        let dummy_hash = pin::hash(&Pin::parse("pin", "0000")?)?;
        Ok(Self {
            ledger,
            locks: std::sync::RwLock::new(locks),
            config,
            dummy_hash,
            vouched: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// From now on, operations lock through `locks` (for example, dialled with rotated TLS
    /// certificates); operations already running finish on the client they started with.
    pub fn replace_locks(&self, locks: LockClient) {
        *self.locks.write().unwrap_or_else(PoisonError::into_inner) = locks;
    }

    /// How long a name is refused after `failures` failed logins in a row (0 before the third).
    pub fn lockout(failures: u32) -> Duration {
        if failures < STRIKES {
            return Duration::ZERO;
        }
        let doublings = (failures - STRIKES).min(16);
        (FIRST_LOCKOUT * 2u32.pow(doublings)).min(MAX_LOCKOUT)
    }

    /// Logs `name` in with `pin`. Unknown names and wrong PINs get the same answer after the same
    /// work; three failures in a row (counted for any name) refuse the name for a growing period.
    pub async fn login(&self, name: HolderName, pin: Pin) -> Result<Session, Error> {
        let now = now_ms();
        let (_, locked_until) = self.ledger.login_failures(&name).await?;
        if locked_until > now {
            return Err(Error::LockedOut(Duration::from_millis(
                (locked_until - now) as u64,
            )));
        }
        let stored = self.ledger.pin_hash(&name).await?;
        let known = stored.is_some();
        let matches =
            pin::verify_blocking(pin, stored.unwrap_or_else(|| self.dummy_hash.clone())).await;
        if !(known && matches) {
            let failures = self
                .ledger
                .record_login_failure(&name, now, |n| Self::lockout(n).as_millis() as i64)
                .await?;
            tracing::info!(failures, "login refused");
            return Err(Error::BadCredentials);
        }
        self.ledger.clear_login_failures(&name).await?;
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expires_ms = now + self.config.session_ttl.as_millis() as i64;
        self.ledger
            .create_session(&token_hash(&token), &name, now, expires_ms)
            .await?;
        let accounts = self.ledger.accounts_of(&name).await?;
        Ok(Session {
            token,
            accounts,
            expires_ms,
        })
    }

    /// Checks that `token` is a live session's.
    async fn authenticate(&self, token: Option<&str>) -> Result<(), Error> {
        let token = token.ok_or(Error::Unauthenticated(
            "no `authorization: Bearer <token>` header",
        ))?;
        match self
            .ledger
            .session_holder(&token_hash(token), now_ms())
            .await?
        {
            Some(_) => Ok(()),
            None => Err(Error::Unauthenticated(
                "the session token is unknown or expired",
            )),
        }
    }

    /// The account `account` (named by the request field `field`) if the session of `token` is
    /// live and its holder holds the account.
    pub async fn authorize(
        &self,
        token: Option<&str>,
        account: AccountId,
        field: &'static str,
    ) -> Result<OwnAccount, Error> {
        let token = token.ok_or(Error::Unauthenticated(
            "no `authorization: Bearer <token>` header",
        ))?;
        let session = token_hash(token);
        let holding = self
            .ledger
            .session_holding(&session, now_ms(), &account)
            .await?;
        match holding {
            None => Err(Error::Unauthenticated(
                "the session token is unknown or expired",
            )),
            Some((None, _)) => Err(Error::AccountNotFound { field }),
            Some((Some(false), _)) => Err(Error::NotYourAccount { field }),
            Some((Some(true), expires_ms)) => {
                let mut vouched = self.vouched.lock().unwrap_or_else(|e| e.into_inner());
                if vouched.len() >= MAX_VOUCHED {
                    vouched.clear();
                }
                vouched.insert((session.clone(), account.clone()), expires_ms);
                Ok(OwnAccount { account, session })
            }
        }
    }

    /// [`Bank::authorize`] for a transfer, which checks the session again inside its own
    /// transaction: a session shown to hold the account before, and not yet expired, is taken
    /// at its word without a read, and the transaction has the last say (a logout since then
    /// refuses the transfer there). Unknown tokens and accounts are still refused here, before
    /// any lock is taken.
    pub async fn authorize_transfer(
        &self,
        token: Option<&str>,
        account: AccountId,
        field: &'static str,
    ) -> Result<OwnAccount, Error> {
        if let Some(token) = token {
            let session = token_hash(token);
            let key = (session, account);
            let expires_ms = self
                .vouched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .copied();
            let (session, account) = key;
            if expires_ms.is_some_and(|expires_ms| expires_ms > now_ms()) {
                return Ok(OwnAccount { account, session });
            }
            return self.authorize(Some(token), account, field).await;
        }
        self.authorize(token, account, field).await
    }

    /// Ends the session of `token`.
    pub async fn logout(&self, token: Option<&str>) -> Result<(), Error> {
        self.authenticate(token).await?;
        let session = token_hash(token.unwrap_or_default());
        self.ledger.delete_session(&session).await?;
        self.vouched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(vouched, _), _| *vouched != session);
        Ok(())
    }

    /// Staff: opens an account for `holder` (new, or existing with their PIN).
    pub async fn open_account(
        &self,
        holder: HolderName,
        pin: Pin,
        initial_cents: i64,
        request_id: RequestId,
    ) -> Result<AccountView, Error> {
        let new_pin_hash = self.pin_for(&holder, pin).await?;
        let rate = self.config.interest_rate_bp;
        let account = self
            .ledger
            .open_account(
                &request_id,
                &holder,
                new_pin_hash.as_deref(),
                initial_cents,
                rate,
            )
            .await?;
        self.ledger.account(&account).await
    }

    /// Adds `holder` to one of the customer's accounts.
    pub async fn add_holder(
        &self,
        account: OwnAccount,
        holder: HolderName,
        pin: Pin,
    ) -> Result<AccountView, Error> {
        let account = account.account;
        let new_pin_hash = self.pin_for(&holder, pin).await?;
        self.ledger
            .add_holder(&account, &holder, new_pin_hash.as_deref())
            .await?;
        self.ledger.account(&account).await
    }

    /// The hash to create a new holder with, or `None` when the holder exists and `pin` is theirs.
    async fn pin_for(&self, holder: &HolderName, pin: Pin) -> Result<Option<String>, Error> {
        let Some(stored) = self.ledger.pin_hash(holder).await? else {
            return Ok(Some(pin::hash_blocking(pin).await?));
        };
        if pin::verify_blocking(pin, stored).await {
            Ok(None)
        } else {
            Err(Error::PinMismatch)
        }
    }

    /// The balance, read under a READ lock.
    pub async fn balance(&self, account: OwnAccount) -> Result<i64, Error> {
        let account = account.account;
        let resource = account.resource();
        self.locked(&[(&resource, Mode::Read)], async |tokens| {
            self.ledger.balance(&account, tokens[0]).await
        })
        .await
    }

    /// A page of the ledger, newest first, read under a READ lock.
    pub async fn history(
        &self,
        account: OwnAccount,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Entry>, Error> {
        let account = account.account;
        let resource = account.resource();
        self.locked(&[(&resource, Mode::Read)], async |tokens| {
            self.ledger
                .history(&account, tokens[0], before, limit)
                .await
        })
        .await
    }

    /// A deposit or withdrawal, under a WRITE lock, exactly once per request id.
    pub async fn move_money(
        &self,
        movement: Movement,
        account: OwnAccount,
        amount: Amount,
        request_id: RequestId,
    ) -> Result<Receipt, Error> {
        let account = account.account;
        let resource = account.resource();
        self.locked(&[(&resource, Mode::Write)], async |tokens| {
            self.ledger
                .move_money(movement, &account, amount, &request_id, tokens[0])
                .await
        })
        .await
    }

    /// A transfer, under WRITE locks on both accounts taken in one atomic acquire.
    pub async fn transfer(
        &self,
        from: OwnAccount,
        to: AccountId,
        amount: Amount,
        request_id: RequestId,
    ) -> Result<Receipt, Error> {
        let OwnAccount {
            account: from,
            session,
        } = from;
        if from == to {
            return Err(Error::SameAccount);
        }
        // An unknown destination is found inside the transaction (NOT_FOUND naming
        // to_account_id): one read fewer on the hottest path.
        let (from_resource, to_resource) = (from.resource(), to.resource());
        let targets = [
            (from_resource.as_str(), Mode::Write),
            (to_resource.as_str(), Mode::Write),
        ];
        self.locked(&targets, async |tokens| {
            self.ledger
                .transfer(
                    &session,
                    &from,
                    &to,
                    amount,
                    &request_id,
                    (tokens[0], tokens[1]),
                )
                .await
        })
        .await
    }

    /// Staff: credits every account with its interest, each under its own WRITE lock. A retry
    /// with the same request id credits only the accounts not yet credited by it.
    pub async fn apply_interest(&self, request_id: RequestId) -> Result<(u32, i64), Error> {
        self.ledger.begin_interest(&request_id).await?;
        let (mut credited, mut total) = (0u32, 0i64);
        for account in self.ledger.all_accounts().await? {
            let resource = account.resource();
            let paid = self
                .locked(&[(&resource, Mode::Write)], async |tokens| {
                    self.ledger
                        .credit_interest(&account, &request_id, tokens[0])
                        .await
                })
                .await?;
            if let Some(paid) = paid {
                credited += 1;
                total = total.saturating_add(paid);
            }
        }
        Ok((credited, total))
    }

    /// Runs `work` with the fencing tokens of `targets` (in order), holding them all.
    async fn locked<R>(
        &self,
        targets: &[(&str, Mode)],
        work: impl AsyncFnOnce(Vec<u64>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        #[cfg(debug_assertions)]
        let work = async |tokens| self.config.test_delays.around(work, tokens).await;
        let locks = self
            .locks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        locks
            .with_locks(targets, async |lease| {
                let tokens: Vec<u64> = lease.grants().iter().map(|g| g.fencing_token).collect();
                work(tokens).await
            })
            .await
            .map_err(|err| Error::LockUnavailable(err.to_string()))?
    }
}

/// The stored form of a session token: its SHA-256, in hex.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_strikes_then_a_growing_lockout() {
        assert_eq!(Bank::lockout(1), Duration::ZERO);
        assert_eq!(Bank::lockout(2), Duration::ZERO);
        assert_eq!(Bank::lockout(3), Duration::from_secs(30));
        assert_eq!(Bank::lockout(4), Duration::from_secs(60));
        assert_eq!(Bank::lockout(5), Duration::from_secs(120));
        assert_eq!(Bank::lockout(40), MAX_LOCKOUT);
    }

    #[test]
    fn session_tokens_are_stored_hashed() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
