//! The pieces of an etcd transaction that Township's callers combine: a comparison on a key, and
//! the operations to apply.

use crate::pb::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp,
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
};

/// Holds while `key` does not exist (its create revision is 0).
pub fn absent(key: &[u8]) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(0)),
    }
}

/// Holds while `key` was last modified at `revision` (0: while it does not exist), so a value
/// read at that revision is still the value: a compare-and-swap.
pub fn unchanged_since(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::ModRevision(revision)),
    }
}

/// Puts `value` at `key`, under `lease` (0: none; the key then lasts until deleted).
pub fn put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            prev_kv: false,
        })),
    }
}

/// Reads `key`.
pub fn get(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..RangeRequest::default()
        })),
    }
}
