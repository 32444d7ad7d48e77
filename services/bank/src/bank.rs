//! The bank's rules, with no gRPC in them: who may do what (sessions, staff), and each operation
//! done under the right locks from the shared lock service and then one fenced, exactly-once
//! transaction in the [`Ledger`]. Logins, sessions, PIN changes and the audit's reading are in
//! `sessions`.

use std::{
    collections::HashMap,
    sync::{
        PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sha2::{Digest, Sha256};
use township_lock_client::{LockClient, Mode};

use crate::{
    Error,
    audit::{Call, Event, Kind},
    ledger::{AccountView, Entry, Ledger, Movement, Receipt, now_ms},
    logins::{LoginPolicy, PinGate},
    pin,
    types::{AccountId, Amount, HolderName, Pin, RequestId},
};

mod sessions;

/// How the bank behaves.
#[derive(Clone, Debug)]
pub struct BankConfig {
    /// How long a session token lives.
    pub session_ttl: Duration,
    /// The interest rate of new accounts, in basis points per ApplyInterest.
    pub interest_rate_bp: i32,
    /// How failed logins lock a source, or a name, out.
    pub logins: LoginPolicy,
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
    /// Whether the required epoch of a lost lock has been logged (once per process).
    told_required_epoch: AtomicBool,
    /// PIN checks in flight.
    pin_gate: PinGate,
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
            told_required_epoch: AtomicBool::new(false),
            pin_gate: PinGate::default(),
        })
    }

    /// From now on, operations lock through `locks` (for example, dialled with rotated TLS
    /// certificates); operations already running finish on the client they started with.
    pub fn replace_locks(&self, locks: LockClient) {
        *self.locks.write().unwrap_or_else(PoisonError::into_inner) = locks;
    }

    /// Records `event`, which goes with no change, in the audit (soon; see
    /// [`crate::audit::Notes`]).
    pub fn note(&self, event: Event) {
        self.ledger.note(event);
    }

    /// The account `account` (named by the request field `field`) if the session of `token` is
    /// live and its holder holds the account. A session's asking about an account not its own
    /// goes to the audit, with the holder and the `call` (made only then: this is every
    /// customer operation's path).
    pub async fn authorize(
        &self,
        token: Option<&str>,
        account: AccountId,
        field: &'static str,
        call: &(dyn Fn() -> Call + Sync),
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
            Some((Some(false), _)) => {
                let holder = self.authenticate(Some(token)).await?;
                let event = call().event(Kind::NotYourAccount).holder(holder.as_str());
                self.note(event.account(account.as_str()));
                Err(Error::NotYourAccount { field })
            }
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
        call: &(dyn Fn() -> Call + Sync),
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
            return self.authorize(Some(token), account, field, call).await;
        }
        self.authorize(token, account, field, call).await
    }

    /// Staff: opens an account for `holder` (new, or existing with their PIN).
    pub async fn open_account(
        &self,
        holder: HolderName,
        pin: Pin,
        initial_cents: i64,
        request_id: RequestId,
        call: &Call,
    ) -> Result<AccountView, Error> {
        let rate = self.config.interest_rate_bp;
        let event = call.event(Kind::AccountOpened).holder(holder.as_str());
        let account = loop {
            let new_pin_hash = self.pin_for(&holder, pin.clone()).await?;
            let opened = self
                .ledger
                .open_account(
                    &request_id,
                    &holder,
                    new_pin_hash.as_deref(),
                    initial_cents,
                    rate,
                    event.clone(),
                )
                .await;
            match opened {
                // See `pin_for`: now the holder exists, and their PIN is checked.
                Err(Error::HolderCreatedMeanwhile) if new_pin_hash.is_some() => continue,
                opened => break opened?,
            }
        };
        self.ledger.account(&account).await
    }

    /// Customer: adds to one of the caller's accounts the person whose own live session is
    /// `joining_token` (they log in first, e.g. at the same ATM). No PIN is asked or checked, so
    /// this cannot test anyone's PIN, and no answer depends on whether some name exists.
    pub async fn add_joining_holder(
        &self,
        account: OwnAccount,
        named: Option<HolderName>,
        joining_token: &str,
        call: &Call,
    ) -> Result<AccountView, Error> {
        let joining = self
            .ledger
            .session_holder(&token_hash(joining_token), now_ms())
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    "holder_session_token",
                    "not a live session: the holder to add logs in first",
                )
            })?;
        if named.is_some_and(|named| named != joining) {
            return Err(Error::invalid(
                "holder_name",
                "must be the holder of holder_session_token, or empty",
            ));
        }
        let account = account.account;
        let event = call.event(Kind::HolderAdded).holder(joining.as_str());
        let event = event
            .account(account.as_str())
            .detail("by a holder, with the new holder's own session");
        self.ledger
            .add_holder(&account, &joining, None, event)
            .await?;
        self.ledger.account(&account).await
    }

    /// Staff: adds `holder` to `account`, as OpenAccount does: a new holder with `pin`, an
    /// existing one only with their own PIN.
    pub async fn add_holder(
        &self,
        account: AccountId,
        holder: HolderName,
        pin: Pin,
        call: &Call,
    ) -> Result<AccountView, Error> {
        self.ledger.account(&account).await?;
        let event = call.event(Kind::HolderAdded).holder(holder.as_str());
        let event = event.account(account.as_str()).detail("by staff");
        loop {
            let new_pin_hash = self.pin_for(&holder, pin.clone()).await?;
            let added = self
                .ledger
                .add_holder(&account, &holder, new_pin_hash.as_deref(), event.clone())
                .await;
            match added {
                // See `pin_for`: now the holder exists, and their PIN is checked.
                Err(Error::HolderCreatedMeanwhile) if new_pin_hash.is_some() => continue,
                added => break added?,
            }
        }
        self.ledger.account(&account).await
    }

    /// The hash to create a new holder with, or `None` when the holder exists and `pin` is theirs.
    /// Staff only: for anyone else it would test PINs without strikes and tell which names exist.
    /// The check and the write are apart (hashing is slow), so two requests may both find no
    /// such holder: the write of the second fails with [`Error::HolderCreatedMeanwhile`] and
    /// changes nothing, and its caller asks again, which now checks the PIN against the
    /// holder's. (Holders are never deleted, so the second ask never offers a hash.)
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
    ///
    /// The locks go as soon as the transfer is committed, before its commit is flushed, and the
    /// answer only after the flush. Whoever takes the locks next commits after it, in the same
    /// WAL, and is not answered before a flush of their own that covers it too (a transfer by
    /// [`crate::syncer`], any other change or fenced read by its `synchronous = FULL` commit, on
    /// any replica), so nothing is shown that a power loss could take back. Holding the locks
    /// through the flush made every transfer that touched either account wait for it too.
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
        let committed = self
            .locked(&targets, async |tokens| {
                self.ledger
                    .commit_transfer(
                        &session,
                        &from,
                        &to,
                        amount,
                        &request_id,
                        (tokens[0], tokens[1]),
                    )
                    .await
            })
            .await?;
        let outcome = self.ledger.once_durable(committed).await;
        self.fenced(outcome).await
    }

    /// Staff: credits every account with its interest, each under its own WRITE lock. A retry
    /// with the same request id credits only the accounts not yet credited by it.
    pub async fn apply_interest(
        &self,
        request_id: RequestId,
        call: &Call,
    ) -> Result<(u32, i64), Error> {
        let event = call.event(Kind::InterestApplied);
        let event = event.detail(format!("request_id {}", request_id.as_str()));
        self.ledger.begin_interest(&request_id, event).await?;
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
        let done = locks
            .with_locks(targets, async |lease| {
                let tokens: Vec<u64> = lease.grants().iter().map(|g| g.fencing_token).collect();
                work(tokens).await
            })
            .await
            .map_err(|err| Error::LockUnavailable(err.to_string()))?;
        self.fenced(done).await
    }

    /// `done`, with a token refused by an account's fence told as [`Error::LockLost`].
    async fn fenced<R>(&self, done: Result<R, Error>) -> Result<R, Error> {
        match done {
            Err(Error::StaleLease { token, recorded }) => {
                Err(self.lock_lost(token, recorded).await)
            }
            done => done,
        }
    }

    /// [`Error::LockLost`] for a token older than an account's fence. Usually a lease that
    /// expired mid-operation, and a retry succeeds; but if the lock service lost its state and
    /// started its epochs again, every retry fails until it is restarted at `required_epoch`,
    /// which is logged (once per process) for the operator.
    async fn lock_lost(&self, token: u64, recorded: u64) -> Error {
        let required_epoch = match self.ledger.required_epoch().await {
            Ok(epoch) => epoch,
            Err(err) => return err,
        };
        if !self.told_required_epoch.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                token,
                recorded,
                required_epoch,
                "a fencing token was older than an account's fence: if this repeats, the lock service has lost its state; restart it with --initial-epoch {required_epoch}"
            );
        }
        Error::LockLost {
            token,
            recorded,
            required_epoch,
        }
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
    fn session_tokens_are_stored_hashed() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
