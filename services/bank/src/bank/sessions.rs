//! The bank's callers: logging in under the login throttle, sessions, PIN changes, staff
//! unlocking and revoking, and staff reading the audit. Each records its event (see
//! [`crate::audit`]).

use crate::{
    Error,
    audit::{Call, Filter, Kind, Record},
    ledger::now_ms,
    pin,
    types::{HolderName, Pin},
};

use super::{Bank, Session, token_hash};

impl Bank {
    /// Logs `name` in with `pin` in `call` (see [`crate::logins`]: the attempt is counted as a
    /// failure from the call's source before the PIN is checked, and forgiven if it is right).
    /// Unknown names and wrong PINs get the same answer after the same work.
    pub async fn login(&self, name: HolderName, pin: Pin, call: &Call) -> Result<Session, Error> {
        if !self.throttled_pin_check(&name, pin, call).await? {
            tracing::info!(source = call.source(), "login refused");
            return Err(Error::BadCredentials);
        }
        let now = now_ms();
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expires_ms = now + self.config.session_ttl.as_millis() as i64;
        let event = call.event(Kind::Login).holder(name.as_str());
        self.ledger
            .create_session(&token_hash(&token), &name, now, expires_ms, event)
            .await?;
        let accounts = self.ledger.accounts_of(&name).await?;
        Ok(Session {
            token,
            accounts,
            expires_ms,
        })
    }

    /// Whether `pin` is `name`'s, checked under the login throttle (see [`crate::logins`]): a
    /// pass from the PIN gate, the attempt counted as a failure from the call's source before
    /// any PIN work (or refused by a lockout), and forgiven if the PIN is right. Unknown names
    /// are checked against a dummy hash, so they take as long as wrong PINs. Failures and
    /// lockouts go to the audit.
    async fn throttled_pin_check(
        &self,
        name: &HolderName,
        pin: Pin,
        call: &Call,
    ) -> Result<bool, Error> {
        let _pass = self.pin_gate.enter(name).ok_or(Error::LoginsBusy)?;
        let source = call.source();
        let reserved = self
            .ledger
            .reserve_login(name, &source, now_ms(), self.config.logins)
            .await;
        let stakes = match reserved {
            Err(Error::LockedOut(wait)) => {
                let event = call.event(Kind::LockedOut).holder(name.as_str());
                self.note(event.detail(format!("refused for {}s more", wait.as_secs().max(1))));
                return Err(Error::LockedOut(wait));
            }
            other => other?,
        };
        let stored = self.ledger.pin_hash(name).await?;
        let known = stored.is_some();
        let matches =
            pin::verify_blocking(pin, stored.unwrap_or_else(|| self.dummy_hash.clone())).await;
        if known && matches {
            self.ledger.clear_login_strikes(name, &source).await?;
            return Ok(true);
        }
        let failed = call.event(Kind::LoginFailed).holder(name.as_str());
        self.note(failed.clone().detail("wrong PIN or unknown name"));
        if !stakes.source_lockout.is_zero() {
            let secs = stakes.source_lockout.as_secs();
            let detail = format!("this source refused the name for {secs}s");
            self.note(failed.clone().kind(Kind::Lockout).detail(detail));
        }
        if !stakes.name_lockout.is_zero() {
            let secs = stakes.name_lockout.as_secs();
            let detail = format!("the name refused to every source for {secs}s");
            self.note(failed.kind(Kind::Lockout).detail(detail));
        }
        Ok(false)
    }

    /// The holder of `token`'s session, if it is live.
    pub(super) async fn authenticate(&self, token: Option<&str>) -> Result<HolderName, Error> {
        let token = token.ok_or(Error::Unauthenticated(
            "no `authorization: Bearer <token>` header",
        ))?;
        self.ledger
            .session_holder(&token_hash(token), now_ms())
            .await?
            .ok_or(Error::Unauthenticated(
                "the session token is unknown or expired",
            ))
    }

    /// Changes the PIN of `token`'s holder to `new`. The `old` PIN is checked as a login's is,
    /// from the call's source and under the same throttle (a stolen session cannot guess the
    /// PIN through it). Every other session of the holder ends, on every replica. Returns how
    /// many.
    pub async fn change_pin(
        &self,
        token: Option<&str>,
        old: Pin,
        new: Pin,
        call: &Call,
    ) -> Result<u32, Error> {
        let holder = self.authenticate(token).await?;
        let session = token_hash(token.unwrap_or_default());
        if !self.throttled_pin_check(&holder, old, call).await? {
            tracing::info!(source = call.source(), "PIN change refused: wrong old PIN");
            return Err(Error::WrongOldPin);
        }
        let hash = pin::hash_blocking(new).await?;
        let event = call.event(Kind::PinChanged).holder(holder.as_str());
        self.ledger
            .change_pin(&holder, &hash, &session, event)
            .await
    }

    /// Staff: lifts every lockout of `name`, from every source. Returns how many sources had
    /// failures counted.
    pub async fn unlock(&self, name: HolderName, call: &Call) -> Result<u32, Error> {
        let event = call.event(Kind::Unlock).holder(name.as_str());
        self.ledger.clear_all_login_strikes(&name, event).await
    }

    /// Staff: ends every session of `name`. Returns how many.
    pub async fn revoke_sessions(&self, name: HolderName, call: &Call) -> Result<u32, Error> {
        let event = call.event(Kind::SessionsRevoked).holder(name.as_str());
        self.ledger.end_sessions(&name, event).await
    }

    /// Staff: up to `limit` audit events matching `filter`, older than event `before`, newest
    /// first. The reading is itself recorded.
    pub async fn audit(
        &self,
        filter: &Filter,
        before: Option<i64>,
        limit: u32,
        call: &Call,
    ) -> Result<Vec<Record>, Error> {
        // What was read goes in the detail, not in `holder`: a holder's own events stay theirs.
        let mut read = String::from("read");
        if let Some(holder) = &filter.holder {
            read.push_str(&format!(" holder {holder:?}"));
        }
        if let Some(since_ms) = filter.since_ms {
            let since = std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(since_ms).unwrap_or(0));
            read.push_str(&format!(
                " since {}",
                humantime::format_rfc3339_millis(since)
            ));
        }
        self.note(call.event(Kind::AuditRead).detail(read));
        self.ledger.audit(filter, before, limit).await
    }

    /// Ends the session of `token`.
    pub async fn logout(&self, token: Option<&str>, call: &Call) -> Result<(), Error> {
        let holder = self.authenticate(token).await?;
        let session = token_hash(token.unwrap_or_default());
        let event = call.event(Kind::Logout).holder(holder.as_str());
        self.ledger.delete_session(&session, event).await?;
        self.vouched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(vouched, _), _| *vouched != session);
        Ok(())
    }
}
