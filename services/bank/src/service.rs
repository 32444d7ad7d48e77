//! The gRPC face of the bank: reads the caller's credentials (`authorization: Bearer <token>`),
//! validates requests into the bank's types, calls [`Bank`], maps errors.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use township_kit::{
    Caller, RpcMethod,
    paging::{PageRequest, PageTokens, Scope},
    secrets::constant_time_eq,
};
use township_proto::bank::v1::{self as pb, bank_service_server::BankService};

use crate::{
    Error,
    audit::{Call, Filter, Kind, Record},
    bank::Bank,
    ledger::{Entry, Movement, Receipt},
    requests::{
        self, Credentials, JoiningHolder, NewAccount, PinChange, StaffNewHolder, TransferOrder,
    },
    types::{AccountId, HolderName, RequestId},
};

/// Implements `township.bank.v1.BankService`.
#[derive(Clone)]
pub struct BankApi {
    bank: Arc<Bank>,
    admin_token: Arc<str>,
    page_tokens: PageTokens,
}

impl BankApi {
    /// Serves `bank`; staff calls must carry `admin_token`; history page tokens are signed with
    /// `page_tokens`.
    pub fn new(bank: Arc<Bank>, admin_token: &str, page_tokens: PageTokens) -> Self {
        Self {
            bank,
            admin_token: admin_token.into(),
            page_tokens,
        }
    }

    /// Whether `request` carries the admin token; a refusal goes to the audit.
    fn staff<T>(&self, request: &Request<T>, call: &Call) -> Result<(), Error> {
        if self.is_admin_token(bearer(request)?) {
            Ok(())
        } else {
            self.bank.note(call.event(Kind::StaffRefused));
            Err(Error::NotStaff)
        }
    }

    fn is_admin_token(&self, given: Option<&str>) -> bool {
        let given = given.unwrap_or_default();
        constant_time_eq(given.as_bytes(), self.admin_token.as_bytes()) && !given.is_empty()
    }
}

/// The call, for the audit and the login throttle: its RPC, and the caller's certificate
/// principal and IP address.
fn call<T>(request: &Request<T>) -> Call {
    Call {
        method: RpcMethod::of(request).to_owned(),
        principal: Caller::of(request)
            .map(Caller::principal)
            .unwrap_or_default()
            .to_owned(),
        peer: request.remote_addr().map(|a| a.ip()),
    }
}

/// The call's `authorization: Bearer <token>`, if any; any other form is UNAUTHENTICATED.
fn bearer<T>(request: &Request<T>) -> Result<Option<&str>, Error> {
    let Some(value) = request.metadata().get("authorization") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::Unauthenticated("the authorization header is not readable text"))?;
    text.strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .map(|token| Some(token.trim()))
        .ok_or(Error::Unauthenticated(
            "the authorization header must be `Bearer <token>`",
        ))
}

#[tonic::async_trait]
impl BankService for BankApi {
    async fn open_account(
        &self,
        request: Request<pb::OpenAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let call = call(&request);
        self.staff(&request, &call)?;
        let r = NewAccount::try_from(request.get_ref())?;
        let account = self
            .bank
            .open_account(
                r.holder,
                r.pin,
                r.initial_deposit_cents,
                r.request_id,
                &call,
            )
            .await?;
        Ok(Response::new(account_to_pb(account)))
    }

    async fn add_holder(
        &self,
        request: Request<pb::AddHolderRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let call = call(&request);
        let token = bearer(&request)?;
        let account = if self.is_admin_token(token) {
            let r = StaffNewHolder::try_from(request.get_ref())?;
            self.bank
                .add_holder(r.account, r.holder, r.pin, &call)
                .await?
        } else {
            let r = JoiningHolder::try_from(request.get_ref())?;
            let account = self
                .bank
                .authorize(token, r.account, "account_id", &|| call.clone())
                .await?;
            self.bank
                .add_joining_holder(account, r.holder, &r.session_token, &call)
                .await?
        };
        Ok(Response::new(account_to_pb(account)))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let r = Credentials::try_from(request.get_ref())?;
        let session = self.bank.login(r.name, r.pin, &call(&request)).await?;
        Ok(Response::new(pb::LoginResponse {
            session_token: session.token,
            account_ids: session.accounts.iter().map(ToString::to_string).collect(),
            expires_at: Some(timestamp(session.expires_ms)),
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        self.bank.logout(bearer(&request)?, &call(&request)).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn change_pin(
        &self,
        request: Request<pb::ChangePinRequest>,
    ) -> Result<Response<pb::ChangePinResponse>, Status> {
        let r = PinChange::try_from(request.get_ref())?;
        let call = call(&request);
        let token = bearer(&request)?;
        let sessions_ended = self.bank.change_pin(token, r.old, r.new, &call).await?;
        Ok(Response::new(pb::ChangePinResponse { sessions_ended }))
    }

    async fn unlock(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let call = call(&request);
        self.staff(&request, &call)?;
        let name = HolderName::parse("holder_name", &request.get_ref().holder_name)?;
        let cleared = self.bank.unlock(name, &call).await?;
        Ok(Response::new(pb::UnlockResponse { cleared }))
    }

    async fn revoke_sessions(
        &self,
        request: Request<pb::RevokeSessionsRequest>,
    ) -> Result<Response<pb::RevokeSessionsResponse>, Status> {
        let call = call(&request);
        self.staff(&request, &call)?;
        let name = HolderName::parse("holder_name", &request.get_ref().holder_name)?;
        let sessions_ended = self.bank.revoke_sessions(name, &call).await?;
        Ok(Response::new(pb::RevokeSessionsResponse { sessions_ended }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::Balance>, Status> {
        let token = bearer(&request)?;
        let account = AccountId::parse("account_id", &request.get_ref().account_id)?;
        let account = self
            .bank
            .authorize(token, account, "account_id", &|| call(&request))
            .await?;
        let account_id = account.id().to_string();
        let balance_cents = self.bank.balance(account).await?;
        Ok(Response::new(pb::Balance {
            account_id,
            balance_cents,
        }))
    }

    async fn deposit(
        &self,
        request: Request<pb::AmountRequest>,
    ) -> Result<Response<pb::Receipt>, Status> {
        self.movement(request, Movement::Deposit).await
    }

    async fn withdraw(
        &self,
        request: Request<pb::AmountRequest>,
    ) -> Result<Response<pb::Receipt>, Status> {
        self.movement(request, Movement::Withdraw).await
    }

    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let token = bearer(&request)?;
        let r = TransferOrder::try_from(request.get_ref())?;
        let from = self
            .bank
            .authorize_transfer(token, r.from, "from_account_id", &|| call(&request))
            .await?;
        let receipt = self
            .bank
            .transfer(from, r.to, r.amount, r.request_id)
            .await?;
        Ok(Response::new(receipt_to_pb(receipt)))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let token = bearer(&request)?;
        let r = request.get_ref();
        let account = AccountId::parse("account_id", &r.account_id)?;
        let account = self
            .bank
            .authorize(token, account, "account_id", &|| call(&request))
            .await?;
        // Newest first: a page continues before the id of the last entry served. Its token is
        // bound to the account and to the session that asked.
        let scope = Scope::rpc("township.bank.v1.BankService/ListTransactions")
            .query(account.id().as_str())
            .caller(account.session());
        let page = PageRequest::<i64>::read(&self.page_tokens, scope, r.page_size, &r.page_token)
            .map_err(Error::from)?;
        let mut entries = self
            .bank
            .history(account, page.after, page.lookahead())
            .await?;
        let next_page_token = page.finish(&self.page_tokens, &mut entries, |last| last.id);
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: entries.into_iter().map(entry_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn apply_interest(
        &self,
        request: Request<pb::ApplyInterestRequest>,
    ) -> Result<Response<pb::ApplyInterestResponse>, Status> {
        let call = call(&request);
        self.staff(&request, &call)?;
        let request_id = RequestId::parse(&request.get_ref().request_id)?;
        let (credited, total) = self.bank.apply_interest(request_id, &call).await?;
        Ok(Response::new(pb::ApplyInterestResponse {
            accounts_credited: i32::try_from(credited).unwrap_or(i32::MAX),
            total_interest_cents: total,
        }))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let call = call(&request);
        self.staff(&request, &call)?;
        let r = request.get_ref();
        let filter = Filter::try_from(r)?;
        // Newest first, as ListTransactions: a page continues before the id of the last event
        // served. Its token is bound to the filter.
        let query = format!(
            "{}|{}",
            filter.holder.as_deref().unwrap_or_default(),
            filter.since_ms.unwrap_or(i64::MIN)
        );
        let scope = Scope::rpc("township.bank.v1.BankService/ListAudit").query(&query);
        let page = PageRequest::<i64>::read(&self.page_tokens, scope, r.page_size, &r.page_token)
            .map_err(Error::from)?;
        let mut events = self
            .bank
            .audit(&filter, page.after, page.lookahead(), &call)
            .await?;
        let next_page_token = page.finish(&self.page_tokens, &mut events, |last| last.id);
        Ok(Response::new(pb::ListAuditResponse {
            events: events.into_iter().map(audit_to_pb).collect(),
            next_page_token,
        }))
    }
}

impl BankApi {
    async fn movement(
        &self,
        request: Request<pb::AmountRequest>,
        movement: Movement,
    ) -> Result<Response<pb::Receipt>, Status> {
        let token = bearer(&request)?;
        let r = requests::Movement::try_from(request.get_ref())?;
        let account = self
            .bank
            .authorize(token, r.account, "account_id", &|| call(&request))
            .await?;
        let receipt = self
            .bank
            .move_money(movement, account, r.amount, r.request_id)
            .await?;
        Ok(Response::new(receipt_to_pb(receipt)))
    }
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn account_to_pb(account: crate::ledger::AccountView) -> pb::Account {
    pb::Account {
        account_id: account.id.to_string(),
        holders: account.holders,
        balance_cents: account.balance_cents,
        interest_rate_bp: account.interest_rate_bp,
    }
}

fn receipt_to_pb(receipt: Receipt) -> pb::Receipt {
    pb::Receipt {
        transaction_id: receipt.transaction_id,
        balance_cents: receipt.balance_cents,
    }
}

fn entry_to_pb(entry: Entry) -> pb::Transaction {
    pb::Transaction {
        id: entry.id.to_string(),
        kind: entry.kind,
        amount_cents: entry.amount_cents,
        balance_after_cents: entry.balance_after_cents,
        time: Some(timestamp(entry.time_ms)),
        counterparty_account_id: entry.counterparty,
        request_id: entry.request_id,
    }
}

fn audit_to_pb(record: Record) -> pb::AuditEvent {
    pb::AuditEvent {
        id: record.id.to_string(),
        time: Some(timestamp(record.time_ms)),
        kind: record.kind,
        method: record.method,
        holder_name: record.holder,
        account_id: record.account,
        principal: record.principal,
        peer: record.peer,
        detail: record.detail,
        count: record.count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_and_other_schemes_refused() {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&request).unwrap(), Some("abc"));
        let mut basic = Request::new(());
        basic
            .metadata_mut()
            .insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(bearer(&basic), Err(Error::Unauthenticated(_))));
        assert_eq!(bearer(&Request::new(())).unwrap(), None);
    }
}
