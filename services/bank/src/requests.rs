//! Each request message read once into the bank's types (`TryFrom<&pb::X>`), every bad field
//! named: the handlers in `service` then act on values that are already valid.

use township_proto::bank::v1 as pb;

use crate::{
    Error,
    audit::Filter,
    types::{AccountId, Amount, HolderName, MAX_AMOUNT_CENTS, Pin, RequestId},
};

/// OpenAccount: a new account for a holder (created with `pin` if new), with a first deposit.
pub struct NewAccount {
    /// Who holds it.
    pub holder: HolderName,
    /// The holder's PIN: set if the holder is new, checked if not.
    pub pin: Pin,
    /// From 0 to [`MAX_AMOUNT_CENTS`].
    pub initial_deposit_cents: i64,
    /// The client's id for this opening: a retry opens nothing new.
    pub request_id: RequestId,
}

impl TryFrom<&pb::OpenAccountRequest> for NewAccount {
    type Error = Error;

    fn try_from(r: &pb::OpenAccountRequest) -> Result<Self, Error> {
        let holder = HolderName::parse("holder_name", &r.holder_name)?;
        let pin = Pin::parse("pin", &r.pin)?;
        if !(0..=MAX_AMOUNT_CENTS).contains(&r.initial_deposit_cents) {
            return Err(Error::invalid(
                "initial_deposit_cents",
                format!("must be from 0 to {MAX_AMOUNT_CENTS} cents"),
            ));
        }
        Ok(Self {
            holder,
            pin,
            initial_deposit_cents: r.initial_deposit_cents,
            request_id: RequestId::parse(&r.request_id)?,
        })
    }
}

/// AddHolder by staff: another holder of an account, with their PIN (set if they are new,
/// checked if not, as for OpenAccount).
pub struct StaffNewHolder {
    /// The account.
    pub account: AccountId,
    /// The holder to add.
    pub holder: HolderName,
    /// Their PIN.
    pub pin: Pin,
}

impl TryFrom<&pb::AddHolderRequest> for StaffNewHolder {
    type Error = Error;

    fn try_from(r: &pb::AddHolderRequest) -> Result<Self, Error> {
        Ok(Self {
            account: AccountId::parse("account_id", &r.account_id)?,
            holder: HolderName::parse("holder_name", &r.holder_name)?,
            pin: Pin::parse("pin", &r.pin)?,
        })
    }
}

/// AddHolder by a customer: one of their accounts, and the joining person's own live session
/// (never a PIN: see [`crate::Bank::add_joining_holder`]).
pub struct JoiningHolder {
    /// The account, one the caller holds.
    pub account: AccountId,
    /// The name the caller expects the session to be of, if given.
    pub holder: Option<HolderName>,
    /// The joining person's session token.
    pub session_token: String,
}

impl TryFrom<&pb::AddHolderRequest> for JoiningHolder {
    type Error = Error;

    fn try_from(r: &pb::AddHolderRequest) -> Result<Self, Error> {
        if !r.pin.is_empty() {
            return Err(Error::invalid(
                "pin",
                "a customer adds a holder by holder_session_token, never by PIN",
            ));
        }
        if r.holder_session_token.trim().is_empty() {
            return Err(Error::invalid(
                "holder_session_token",
                "required: the session of the holder to add (they log in first)",
            ));
        }
        let holder = match r.holder_name.trim() {
            "" => None,
            _ => Some(HolderName::parse("holder_name", &r.holder_name)?),
        };
        Ok(Self {
            account: AccountId::parse("account_id", &r.account_id)?,
            holder,
            session_token: r.holder_session_token.trim().to_owned(),
        })
    }
}

/// ChangePin: the old PIN and the new one.
pub struct PinChange {
    /// The PIN now.
    pub old: Pin,
    /// The PIN from now on.
    pub new: Pin,
}

impl TryFrom<&pb::ChangePinRequest> for PinChange {
    type Error = Error;

    fn try_from(r: &pb::ChangePinRequest) -> Result<Self, Error> {
        Ok(Self {
            old: Pin::parse("old_pin", &r.old_pin)?,
            new: Pin::parse("new_pin", &r.new_pin)?,
        })
    }
}

/// Login: a holder's name and PIN.
pub struct Credentials {
    /// The holder's name.
    pub name: HolderName,
    /// Their PIN.
    pub pin: Pin,
}

impl TryFrom<&pb::LoginRequest> for Credentials {
    type Error = Error;

    fn try_from(r: &pb::LoginRequest) -> Result<Self, Error> {
        Ok(Self {
            name: HolderName::parse("holder_name", &r.holder_name)?,
            pin: Pin::parse("pin", &r.pin)?,
        })
    }
}

/// Deposit or Withdraw: an amount for an account, once per request id.
pub struct Movement {
    /// The account, one the caller holds.
    pub account: AccountId,
    /// How much.
    pub amount: Amount,
    /// The client's id for this movement: it applies once.
    pub request_id: RequestId,
}

impl TryFrom<&pb::AmountRequest> for Movement {
    type Error = Error;

    fn try_from(r: &pb::AmountRequest) -> Result<Self, Error> {
        Ok(Self {
            account: AccountId::parse("account_id", &r.account_id)?,
            amount: Amount::parse("amount_cents", r.amount_cents)?,
            request_id: RequestId::parse(&r.request_id)?,
        })
    }
}

/// Transfer: an amount from one account to another, once per request id.
pub struct TransferOrder {
    /// The source, one the caller holds.
    pub from: AccountId,
    /// The destination, any account.
    pub to: AccountId,
    /// How much moves.
    pub amount: Amount,
    /// The client's id for this transfer: it applies once.
    pub request_id: RequestId,
}

impl TryFrom<&pb::TransferRequest> for TransferOrder {
    type Error = Error;

    fn try_from(r: &pb::TransferRequest) -> Result<Self, Error> {
        Ok(Self {
            from: AccountId::parse("from_account_id", &r.from_account_id)?,
            to: AccountId::parse("to_account_id", &r.to_account_id)?,
            amount: Amount::parse("amount_cents", r.amount_cents)?,
            request_id: RequestId::parse(&r.request_id)?,
        })
    }
}

/// ListAudit: which events (the page is read by the kit's paging).
impl TryFrom<&pb::ListAuditRequest> for Filter {
    type Error = Error;

    fn try_from(r: &pb::ListAuditRequest) -> Result<Self, Error> {
        let holder = if r.holder_name.is_empty() {
            None
        } else {
            Some(
                HolderName::parse("holder_name", &r.holder_name)?
                    .as_str()
                    .to_owned(),
            )
        };
        let since_ms = r
            .since
            .as_ref()
            .map(|since| {
                if !(0..1_000_000_000).contains(&since.nanos) {
                    return Err(Error::invalid(
                        "since",
                        "nanos must be from 0 to 999,999,999",
                    ));
                }
                since
                    .seconds
                    .checked_mul(1000)
                    .and_then(|ms| ms.checked_add(i64::from(since.nanos / 1_000_000)))
                    .ok_or_else(|| Error::invalid("since", "out of range"))
            })
            .transpose()?;
        Ok(Self { holder, since_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use township_kit::status::InvalidField;

    fn field_of<T>(result: Result<T, Error>) -> String {
        match result {
            Err(Error::Invalid(InvalidField { field, .. })) => field,
            Err(other) => panic!("expected an invalid field, got {other:?}"),
            Ok(_) => panic!("expected an invalid field, got a valid request"),
        }
    }

    #[test]
    fn an_initial_deposit_may_be_zero_but_not_negative_nor_above_the_largest_amount() {
        let request = |cents| pb::OpenAccountRequest {
            holder_name: "ada".into(),
            pin: "1234".into(),
            initial_deposit_cents: cents,
            request_id: "6f1c5a0e-8b7e-4c7a-9a53-1f0d2a3b4c5d".into(),
        };
        assert!(NewAccount::try_from(&request(0)).is_ok());
        assert!(NewAccount::try_from(&request(MAX_AMOUNT_CENTS)).is_ok());
        for bad in [-1, MAX_AMOUNT_CENTS + 1] {
            assert_eq!(
                field_of(NewAccount::try_from(&request(bad))),
                "initial_deposit_cents"
            );
        }
    }

    #[test]
    fn a_transfer_names_the_first_bad_field() {
        let ok = || pb::TransferRequest {
            from_account_id: AccountId::new().to_string(),
            to_account_id: AccountId::new().to_string(),
            amount_cents: 100,
            request_id: "0b5e2f3a-1c4d-4e6f-8a9b-7c2d1e0f3a4b".into(),
        };
        assert!(TransferOrder::try_from(&ok()).is_ok());
        let mut r = ok();
        r.to_account_id = "nope".into();
        assert_eq!(field_of(TransferOrder::try_from(&r)), "to_account_id");
        let mut r = ok();
        r.amount_cents = 0;
        assert_eq!(field_of(TransferOrder::try_from(&r)), "amount_cents");
        let mut r = ok();
        r.request_id = String::new();
        assert_eq!(field_of(TransferOrder::try_from(&r)), "request_id");
    }

    #[test]
    fn an_audit_filter_names_a_bad_holder_or_since() {
        let request = |name: &str, nanos| pb::ListAuditRequest {
            holder_name: name.into(),
            since: Some(prost_types::Timestamp {
                seconds: 1_796_464_800,
                nanos,
            }),
            ..pb::ListAuditRequest::default()
        };
        let filter = Filter::try_from(&request("Ada", 5_000_000)).unwrap();
        assert_eq!(filter.holder.as_deref(), Some("Ada"));
        assert_eq!(filter.since_ms, Some(1_796_464_800_005));
        assert_eq!(field_of(Filter::try_from(&request("Ada", -1))), "since");
        assert_eq!(field_of(Filter::try_from(&request(" ", 0))), "holder_name");
        let everything = Filter::try_from(&pb::ListAuditRequest::default()).unwrap();
        assert_eq!((everything.holder, everything.since_ms), (None, None));
    }
}
