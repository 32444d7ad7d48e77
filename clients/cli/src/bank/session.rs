//! The connection to the bank and a customer's session on it: every call carries `--timeout`
//! and its credential, and is tried again while it fails transiently; a money movement keeps one
//! request id through every attempt, so the bank carries it out at most once.

use std::future::Future;

use tonic::{Code, Request, Response, Status, metadata::AsciiMetadataValue, transport::Channel};
use township_client::Backoff;
use township_proto::bank::v1::{
    AmountRequest, ChangePinRequest, GetBalanceRequest, ListTransactionsRequest, LoginRequest,
    LogoutRequest, Transaction, TransferRequest, bank_service_client::BankServiceClient,
};
use township_proto::town;

use super::credentials::bearer;
use crate::{
    connect::{Connection, unary},
    error::CliError,
    global::Global,
};

/// The bank's largest page of history.
const MAX_PAGE: usize = 1000;

/// A fresh request id: a retry reuses it, a new command never does.
pub(super) fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
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
    connection: Connection<BankServiceClient<Channel>>,
    global: Global,
}

impl Bank {
    /// Connects to the bank: `--addr`, else env TOWNSHIP_BANK_ADDR, else 127.0.0.1:50055.
    pub async fn connect(global: &Global) -> Result<Self, CliError> {
        Ok(Self {
            connection: Connection::open(&town::BANK, global, BankServiceClient::new).await?,
            global: global.clone(),
        })
    }

    /// The command's error for a failed call (see [`CliError::from_status`]).
    pub fn error(&self, status: Status) -> CliError {
        self.connection.error(status)
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
    pub(super) async fn call<M, R, Fut>(
        &self,
        auth: Option<&AsciiMetadataValue>,
        message: M,
        rpc: impl Fn(BankServiceClient<Channel>, Request<M>) -> Fut,
    ) -> Result<R, Status>
    where
        M: Clone,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        self.call_retrying(self.global.retries, auth, message, rpc)
            .await
    }

    /// [`Bank::call`], tried again at most `retries` times.
    async fn call_retrying<M, R, Fut>(
        &self,
        retries: u32,
        auth: Option<&AsciiMetadataValue>,
        message: M,
        rpc: impl Fn(BankServiceClient<Channel>, Request<M>) -> Fut,
    ) -> Result<R, Status>
    where
        M: Clone,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let mut backoff = Backoff::new();
        let mut retries_left = retries;
        loop {
            let mut request = unary(message.clone(), &self.global);
            if let Some(auth) = auth {
                request.metadata_mut().insert("authorization", auth.clone());
            }
            match rpc(self.connection.client(), request).await {
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
    pub(super) fn done(&self) -> &'static str {
        match self {
            Movement::Deposit => "deposited",
            Movement::Withdraw => "withdrew",
            Movement::Transfer { .. } => "transferred",
        }
    }

    /// The name of the operation, for JSON.
    pub(super) fn name(&self) -> &'static str {
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

    /// Changes the holder's PIN; returns how many of their other sessions ended. Tried once: a
    /// retry after a change that was made but not answered would send an old PIN that is no
    /// longer right, and count as a failed login.
    pub async fn change_pin(&self, old: &str, new: &str) -> Result<u32, Status> {
        let message = ChangePinRequest {
            old_pin: old.to_owned(),
            new_pin: new.to_owned(),
        };
        let reply = self
            .bank
            .call_retrying(
                0,
                Some(&self.auth),
                message,
                |mut client, request| async move { client.change_pin(request).await },
            )
            .await?;
        Ok(reply.sessions_ended)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(is_transient(Code::Unavailable));
        assert!(is_transient(Code::DeadlineExceeded));
        assert!(is_transient(Code::Aborted));
        assert!(!is_transient(Code::FailedPrecondition));
        assert!(!is_transient(Code::Unauthenticated));
    }
}
