//! The security audit: every login, failure, lockout, unlock, PIN change, holder change, staff
//! call and refusal, appended to the `audit` table with when, who was calling (certificate
//! principal and IP address), which holder and account, and what happened. No PIN, token or
//! hash is ever part of an event: the types here have no field that could carry one.
//!
//! Two ways in:
//! - An event that goes with a change (a login's session, a PIN change, an unlock, a new holder)
//!   is appended by [`append`] in the change's own transaction: both or neither.
//! - An event that changes nothing (a failed login, a refusal) is [`Notes::note`]d: queued,
//!   bounded, and written in batches by one task, where identical events of a burst become one
//!   row with a count. A flood of refusals therefore costs one write per batch, and if even the
//!   queue is full, what was dropped is counted and recorded as an `AUDIT_OVERFLOW` row.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;
use township_store::{Db, Tx, either, sqlx};

use crate::{Error, clock::now_ms, logins, writer::Writer};

/// Events queued for [`Notes`] at most; past it they are counted, not queued.
const QUEUE: usize = 4096;
/// Events written in one transaction at most.
const BATCH: usize = 512;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A holder logged in (a session was opened).
    Login,
    /// A wrong PIN or an unknown name, at Login or ChangePin.
    LoginFailed,
    /// A failure locked a source, or the whole name, out for a while.
    Lockout,
    /// An attempt refused because of a lockout in force (no PIN was checked).
    LockedOut,
    /// A holder logged out.
    Logout,
    /// A holder changed their PIN.
    PinChanged,
    /// Staff lifted a holder's lockouts.
    Unlock,
    /// Staff ended a holder's sessions.
    SessionsRevoked,
    /// Staff opened an account.
    AccountOpened,
    /// A holder was added to an account (by staff, or by a holder of it).
    HolderAdded,
    /// Staff applied interest.
    InterestApplied,
    /// Staff read the audit.
    AuditRead,
    /// A staff call without the admin token.
    StaffRefused,
    /// A customer asked about an account that is not theirs.
    NotYourAccount,
    /// The authorization policy refused the call.
    PolicyDenied,
    /// Events dropped because the queue was full (`count` says how many).
    AuditOverflow,
}

impl Kind {
    /// The name stored and shown (`LOGIN_FAILED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Login => "LOGIN",
            Kind::LoginFailed => "LOGIN_FAILED",
            Kind::Lockout => "LOCKOUT",
            Kind::LockedOut => "LOCKED_OUT",
            Kind::Logout => "LOGOUT",
            Kind::PinChanged => "PIN_CHANGED",
            Kind::Unlock => "UNLOCK",
            Kind::SessionsRevoked => "SESSIONS_REVOKED",
            Kind::AccountOpened => "ACCOUNT_OPENED",
            Kind::HolderAdded => "HOLDER_ADDED",
            Kind::InterestApplied => "INTEREST_APPLIED",
            Kind::AuditRead => "AUDIT_READ",
            Kind::StaffRefused => "STAFF_REFUSED",
            Kind::NotYourAccount => "NOT_YOUR_ACCOUNT",
            Kind::PolicyDenied => "POLICY_DENIED",
            Kind::AuditOverflow => "AUDIT_OVERFLOW",
        }
    }
}

/// One call, as the audit and the login throttle see it: the RPC and who made it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Call {
    /// The RPC, `township.bank.v1.BankService/Login`.
    pub method: String,
    /// The caller's certificate principal (mutual TLS), else empty.
    pub principal: String,
    /// The caller's IP address, if known.
    pub peer: Option<IpAddr>,
}

impl Call {
    /// Where the call comes from, for counting login strikes (see [`logins::source`]).
    pub fn source(&self) -> String {
        logins::source(Some(&self.principal), self.peer)
    }

    /// An event of `kind` about this call.
    pub fn event(&self, kind: Kind) -> Event {
        Event {
            kind,
            call: self.clone(),
            holder: String::new(),
            account: String::new(),
            detail: String::new(),
        }
    }
}

/// An event to record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// The call it happened in.
    pub call: Call,
    /// The holder it concerns (as named, for a failed login), or empty.
    pub holder: String,
    /// The account it concerns, or empty.
    pub account: String,
    /// Anything more, in words (never a secret).
    pub detail: String,
}

impl Event {
    /// The event, of another kind.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// The event, about `holder`.
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// The event, about `account`.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = account.into();
        self
    }

    /// The event, with `detail`.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// A stored event, as staff read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its id: increasing, so newer events have larger ids.
    pub id: i64,
    /// When (Unix ms).
    pub time_ms: i64,
    /// [`Kind::as_str`].
    pub kind: String,
    /// The RPC.
    pub method: String,
    /// The holder, or empty.
    pub holder: String,
    /// The account, or empty.
    pub account: String,
    /// The caller's certificate principal, or empty.
    pub principal: String,
    /// The caller's IP address, or empty.
    pub peer: String,
    /// Anything more.
    pub detail: String,
    /// How many identical events this row stands for.
    pub count: u32,
}

/// Which events to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only those about this holder (`None`: all).
    pub holder: Option<String>,
    /// Only those at or after this time (Unix ms; `None`: all).
    pub since_ms: Option<i64>,
}

/// The event of a call the authorization policy refused (told by the kit's [`DenialHook`]).
///
/// [`DenialHook`]: township_kit::DenialHook
pub fn denied_by_policy(denial: township_kit::Denial) -> Event {
    let call = Call {
        method: denial.method,
        principal: denial.principal,
        peer: denial.peer.map(|addr| addr.ip()),
    };
    call.event(Kind::PolicyDenied)
}

/// Appends `event` (standing for `count` identical ones) at `time_ms`, in the caller's
/// transaction.
pub(crate) async fn append(
    tx: &mut Tx,
    time_ms: i64,
    event: &Event,
    count: u32,
) -> Result<(), Error> {
    let peer = event
        .call
        .peer
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_default();
    either!(tx, |conn| sqlx::query(
        "INSERT INTO audit (time_ms, kind, method, holder, account, principal, peer, detail, count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(time_ms)
    .bind(event.kind.as_str())
    .bind(&event.call.method)
    .bind(&event.holder)
    .bind(&event.account)
    .bind(&event.call.principal)
    .bind(&peer)
    .bind(&event.detail)
    .bind(i64::from(count.max(1)))
    .execute(conn)
    .await?
    .rows_affected());
    Ok(())
}

/// Up to `limit` events matching `filter` older than event `before` (all, if `None`), newest
/// first.
pub(crate) async fn page(
    db: &Db,
    filter: &Filter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Record>, Error> {
    type Row = (
        i64,
        i64,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
    );
    // Only the conditions given, so that the database can use the index they need: by holder,
    // the (holder, id) index; since a time, the id range from the first event at or after it.
    // Parameters: $1 before, then the holder and the time if given, then the limit.
    const SINCE: &str = " AND time_ms >= {t} AND id >= (SELECT coalesce(min(id), 0) FROM audit WHERE time_ms >= {t})";
    let (holder, since, limit_at) = match (filter.holder.is_some(), filter.since_ms.is_some()) {
        (false, false) => (String::new(), String::new(), 2),
        (true, false) => (" AND holder = $2".to_owned(), String::new(), 3),
        (false, true) => (String::new(), SINCE.replace("{t}", "$2"), 3),
        (true, true) => (" AND holder = $2".to_owned(), SINCE.replace("{t}", "$3"), 4),
    };
    let sql = format!(
        "SELECT id, time_ms, kind, method, holder, account, principal, peer, detail, count
         FROM audit WHERE id < $1{holder}{since} ORDER BY id DESC LIMIT ${limit_at}"
    );
    let rows: Vec<Row> = either!(pool db, |pool| {
        let mut query =
            sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.clone())).bind(before.unwrap_or(i64::MAX));
        if let Some(holder) = &filter.holder {
            query = query.bind(holder);
        }
        if let Some(since_ms) = filter.since_ms {
            query = query.bind(since_ms);
        }
        query.bind(i64::from(limit)).fetch_all(pool).await?
    });
    Ok(rows
        .into_iter()
        .map(
            |(id, time_ms, kind, method, holder, account, principal, peer, detail, count)| Record {
                id,
                time_ms,
                kind,
                method,
                holder,
                account,
                principal,
                peer,
                detail,
                count: u32::try_from(count).unwrap_or(u32::MAX),
            },
        )
        .collect())
}

/// The queue of events that change nothing, written in batches (see the module's header).
/// Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Notes {
    queue: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl Notes {
    /// Starts the task that writes queued events through `writer`; it ends when every handle
    /// is dropped, after writing what was queued.
    pub fn start(writer: Writer) -> Self {
        let (queue, queued) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_notes(writer, queued, Arc::clone(&dropped)));
        Self { queue, dropped }
    }

    /// Queues `event` without waiting; when the queue is full it is counted as dropped instead.
    pub fn note(&self, event: Event) {
        if self.queue.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writing task: each batch of queued events, identical ones merged, in one transaction.
async fn write_notes(writer: Writer, mut queued: mpsc::Receiver<Event>, dropped: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queued.recv_many(&mut batch, BATCH).await > 0 {
        let mut counts: HashMap<Event, u32> = HashMap::new();
        for event in batch.drain(..) {
            let count = counts.entry(event).or_default();
            *count = count.saturating_add(1);
        }
        let mut rows: Vec<(Event, u32)> = counts.into_iter().collect();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let overflow = Call::default()
                .event(Kind::AuditOverflow)
                .detail("events not recorded: the audit queue was full");
            rows.push((overflow, u32::try_from(lost).unwrap_or(u32::MAX)));
        }
        let written = writer
            .run(move |db| async move {
                let time_ms = now_ms();
                let mut tx = db.begin_write().await?;
                for (event, count) in &rows {
                    append(&mut tx, time_ms, event, *count).await?;
                }
                tx.commit().await?;
                Ok(())
            })
            .await;
        if let Err(err) = written {
            tracing::error!(err = format!("{err:#}"), "audit events not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use township_store::sqlx::{Connection, SqliteConnection};

    use super::*;
    use crate::ledger::Ledger;

    /// A fresh ledger in a temporary directory.
    async fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&township_store::Database::sqlite(dir.path(), "bank.db"))
            .await
            .unwrap();
        (dir, ledger)
    }

    /// A call from 127.0.0.2 with no certificate.
    fn stranger() -> Call {
        Call {
            method: "township.bank.v1.BankService/Login".into(),
            principal: String::new(),
            peer: Some(Ipv4Addr::new(127, 0, 0, 2).into()),
        }
    }

    /// Every event recorded, once `total` events (counting each row's count) are.
    async fn recorded(ledger: &Ledger, total: u64) -> Vec<Record> {
        for _ in 0..500 {
            let rows = ledger
                .audit(&Filter::default(), None, 10_000)
                .await
                .unwrap();
            if rows.iter().map(|r| u64::from(r.count)).sum::<u64>() >= total {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{total} events were not recorded in 10 s");
    }

    #[tokio::test]
    async fn a_burst_of_identical_refusals_is_one_row_that_counts_them() {
        let (_dir, ledger) = ledger().await;
        for _ in 0..100 {
            ledger.note(stranger().event(Kind::LoginFailed).holder("Ada"));
        }
        ledger.note(stranger().event(Kind::LoginFailed).holder("Bob"));
        let mut rows = recorded(&ledger, 101).await;
        rows.sort_by_key(|r| r.count);
        let summary: Vec<_> = rows
            .iter()
            .map(|r| (r.kind.as_str(), r.holder.as_str(), r.peer.as_str(), r.count))
            .collect();
        assert_eq!(
            summary,
            [
                ("LOGIN_FAILED", "Bob", "127.0.0.2", 1),
                ("LOGIN_FAILED", "Ada", "127.0.0.2", 100)
            ]
        );
    }

    #[tokio::test]
    async fn events_past_a_full_queue_are_counted_in_an_overflow_row() {
        let (_dir, ledger) = ledger().await;
        let extra = 904;
        for i in 0..QUEUE + extra {
            // Distinct events, so none merge: the queue is what fills.
            ledger.note(
                stranger()
                    .event(Kind::LoginFailed)
                    .holder(format!("name {i}")),
            );
        }
        let rows = recorded(&ledger, (QUEUE + extra) as u64).await;
        let overflow: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == "AUDIT_OVERFLOW")
            .map(|r| r.count)
            .collect();
        assert_eq!(overflow, [extra as u32]);
        assert_eq!(rows.len(), QUEUE + 1);
    }

    #[tokio::test]
    async fn an_event_with_no_peer_is_recorded_and_the_audit_is_append_only() {
        let (dir, ledger) = ledger().await;
        let call = Call::default();
        ledger.note(call.event(Kind::PolicyDenied));
        let rows = recorded(&ledger, 1).await;
        assert_eq!(
            (rows[0].kind.as_str(), rows[0].peer.as_str()),
            ("POLICY_DENIED", "")
        );

        let mut db = SqliteConnection::connect(&format!(
            "sqlite://{}",
            dir.path().join("bank.db").display()
        ))
        .await
        .unwrap();
        for sql in ["UPDATE audit SET holder = 'x'", "DELETE FROM audit"] {
            let err = sqlx::query(sql).execute(&mut db).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
    }
}
