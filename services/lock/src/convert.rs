//! The lock API's messages and the table's types, converted in one place: requests are validated
//! into [`table::Request`]s (each bad field named), grants become [`pb::Lease`]s and what
//! Inspect sees becomes [`pb::ResourceState`]s. Used by the unary RPCs and by the Session stream
//! alike.

use std::time::Duration;

use township_cell::Mode;
use township_proto::lock::v1 as pb;

use crate::{
    Error,
    table::{self, LeaseId},
};

/// Lease lifetime when the request gives none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Shortest lease lifetime allowed.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest lease lifetime allowed.
pub const MAX_TTL: Duration = Duration::from_secs(300);
/// Longest wait for a grant, whatever the request or its deadline says.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Most targets in one request.
pub const MAX_TARGETS: usize = 64;
/// Longest resource name, in bytes.
pub const MAX_RESOURCE_BYTES: usize = 256;
/// Longest owner text, in bytes.
pub const MAX_OWNER_BYTES: usize = 256;

/// An AcquireRequest as the table's request, and its `wait_timeout` if it gives one.
/// An Acquire from `principal` (see [`table::Request::principal`]).
pub(crate) fn parse_acquire(
    request: pb::AcquireRequest,
    principal: &str,
) -> Result<(table::Request, Option<Duration>), Error> {
    if request.targets.is_empty() {
        return Err(Error::invalid(
            "targets",
            "give at least one resource to lock",
        ));
    }
    if request.targets.len() > MAX_TARGETS {
        return Err(Error::invalid(
            "targets",
            format!("at most {MAX_TARGETS} per request"),
        ));
    }
    let mut targets: Vec<table::Target> = Vec::with_capacity(request.targets.len());
    for (i, target) in request.targets.into_iter().enumerate() {
        let resource = target.resource;
        if resource.is_empty() || resource.len() > MAX_RESOURCE_BYTES {
            return Err(Error::invalid(
                format!("targets[{i}].resource"),
                format!("must be 1 to {MAX_RESOURCE_BYTES} bytes"),
            ));
        }
        if let Some(j) = targets.iter().position(|t| t.resource == resource) {
            return Err(Error::invalid(
                format!("targets[{i}].resource"),
                format!("{resource:?} is already targets[{j}]"),
            ));
        }
        let mode = match pb::Mode::try_from(target.mode) {
            Ok(pb::Mode::Read) => Mode::Read,
            Ok(pb::Mode::Write) => Mode::Write,
            _ => {
                return Err(Error::invalid(
                    format!("targets[{i}].mode"),
                    "must be MODE_READ or MODE_WRITE",
                ));
            }
        };
        targets.push(table::Target { resource, mode });
    }
    let ttl = match request.ttl {
        None => DEFAULT_TTL,
        Some(ttl) => Duration::try_from(ttl)
            .ok()
            .filter(|ttl| (MIN_TTL..=MAX_TTL).contains(ttl))
            .ok_or_else(|| Error::invalid("ttl", "must be from 1s to 5m"))?,
    };
    let wait_timeout = request
        .wait_timeout
        .map(|wait| {
            Duration::try_from(wait)
                .ok()
                .filter(|wait| *wait <= MAX_WAIT)
                .ok_or_else(|| Error::invalid("wait_timeout", "must be from 0s to 5m"))
        })
        .transpose()?;
    if request.owner.len() > MAX_OWNER_BYTES {
        return Err(Error::invalid(
            "owner",
            format!("at most {MAX_OWNER_BYTES} bytes"),
        ));
    }
    Ok((
        table::Request {
            targets,
            ttl,
            owner: request.owner,
            principal: principal.to_owned(),
        },
        wait_timeout,
    ))
}

/// A lease id as the client sent it.
pub(crate) fn parse_lease_id(text: &str) -> Result<LeaseId, Error> {
    if text.is_empty() {
        return Err(Error::invalid("lease_id", "must not be empty"));
    }
    text.parse()
}

/// A grant as the API's Lease.
pub(crate) fn lease_to_pb(granted: table::Granted) -> pb::Lease {
    pb::Lease {
        lease_id: granted.lease.to_string(),
        grants: granted
            .grants
            .into_iter()
            .map(|g| pb::Grant {
                resource: g.resource,
                mode: mode_to_pb(g.mode).into(),
                fencing_token: g.token,
            })
            .collect(),
        expires_at: Some(granted.expires_at.into()),
        ttl: duration_to_pb(granted.ttl),
    }
}

/// What Inspect shows of one resource, as the API's ResourceState.
pub(crate) fn resource_to_pb(view: table::ResourceView) -> pb::ResourceState {
    pb::ResourceState {
        resource: view.resource,
        holders: view
            .holders
            .into_iter()
            .map(|h| pb::Holder {
                principal: h.principal,
                owner: h.owner,
                mode: mode_to_pb(h.mode).into(),
                fencing_token: h.token,
                lease_age: duration_to_pb(h.age),
                expires_at: Some(h.expires_at.into()),
                ..Default::default()
            })
            .collect(),
        waiters: view
            .waiters
            .into_iter()
            .map(|w| pb::Waiter {
                owner: w.owner,
                mode: mode_to_pb(w.mode).into(),
                waiting_for: duration_to_pb(w.waiting_for),
            })
            .collect(),
    }
}

/// A mode as the API's.
fn mode_to_pb(mode: Mode) -> pb::Mode {
    match mode {
        Mode::Read => pb::Mode::Read,
        Mode::Write => pb::Mode::Write,
    }
}

/// A duration as the API's (none if it does not fit).
fn duration_to_pb(duration: Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(duration).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use township_kit::status::InvalidField;

    proptest::proptest! {
        #[test]
        fn any_acquire_is_read_or_refused_never_a_panic_and_reads_within_the_limits(
            resources in proptest::collection::vec(".{0,300}", 0..70),
            mode in proptest::prelude::any::<i32>(),
            ttl in proptest::option::of((proptest::prelude::any::<i64>(), proptest::prelude::any::<i32>())),
            wait in proptest::option::of((proptest::prelude::any::<i64>(), proptest::prelude::any::<i32>())),
        ) {
            let duration = |(seconds, nanos)| prost_types::Duration { seconds, nanos };
            let request = pb::AcquireRequest {
                targets: resources
                    .iter()
                    .map(|resource| pb::LockTarget { resource: resource.clone(), mode })
                    .collect(),
                ttl: ttl.map(duration),
                wait_timeout: wait.map(duration),
                owner: String::new(),
            };
            if let Ok((read, wait)) = parse_acquire(request, "") {
                proptest::prop_assert!((MIN_TTL..=MAX_TTL).contains(&read.ttl));
                proptest::prop_assert!(wait.is_none_or(|wait| wait <= MAX_WAIT));
                proptest::prop_assert!(read.targets.len() <= MAX_TARGETS);
            }
        }

        #[test]
        fn any_text_is_a_lease_id_or_a_refusal_and_an_id_reads_back(text in ".{0,60}|[0-9a-f-]{0,40}") {
            if let Ok(id) = parse_lease_id(&text) {
                proptest::prop_assert_eq!(parse_lease_id(&id.to_string()).ok(), Some(id));
            }
        }
    }

    fn target(resource: &str, mode: pb::Mode) -> pb::LockTarget {
        pb::LockTarget {
            resource: resource.into(),
            mode: mode.into(),
        }
    }

    fn field_of(request: pb::AcquireRequest) -> String {
        match parse_acquire(request, "") {
            Err(Error::Invalid(InvalidField { field, .. })) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn bad_acquire_requests_name_the_field() {
        let ok = || pb::AcquireRequest {
            targets: vec![target("a", pb::Mode::Read)],
            ..Default::default()
        };
        assert_eq!(field_of(pb::AcquireRequest::default()), "targets");
        let mut r = ok();
        r.targets.push(target("", pb::Mode::Write));
        assert_eq!(field_of(r), "targets[1].resource");
        let mut r = ok();
        r.targets.push(target(&"x".repeat(257), pb::Mode::Write));
        assert_eq!(field_of(r), "targets[1].resource");
        let mut r = ok();
        r.targets.push(target("a", pb::Mode::Write));
        assert_eq!(field_of(r), "targets[1].resource");
        let mut r = ok();
        r.targets.push(target("b", pb::Mode::Unspecified));
        assert_eq!(field_of(r), "targets[1].mode");
        let mut r = ok();
        r.targets[0].mode = 7;
        assert_eq!(field_of(r), "targets[0].mode");
        let mut r = ok();
        r.ttl = Some(prost_types::Duration {
            seconds: 0,
            nanos: 999_999_999,
        });
        assert_eq!(field_of(r), "ttl");
        let mut r = ok();
        r.ttl = Some(prost_types::Duration {
            seconds: 301,
            nanos: 0,
        });
        assert_eq!(field_of(r), "ttl");
        let mut r = ok();
        r.wait_timeout = Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        });
        assert_eq!(field_of(r), "wait_timeout");
        let mut r = ok();
        r.owner = "o".repeat(257);
        assert_eq!(field_of(r), "owner");
    }

    #[test]
    fn defaults_are_a_ten_second_lease_and_no_explicit_wait() {
        let request = pb::AcquireRequest {
            targets: vec![target("a", pb::Mode::Write)],
            ..Default::default()
        };
        let (parsed, wait) = parse_acquire(request, "spiffe://township/bank").unwrap();
        assert_eq!(parsed.principal, "spiffe://township/bank");
        assert_eq!(parsed.ttl, DEFAULT_TTL);
        assert_eq!(wait, None);
        assert_eq!(
            parsed.targets,
            vec![table::Target {
                resource: "a".into(),
                mode: Mode::Write
            }]
        );
    }
}
