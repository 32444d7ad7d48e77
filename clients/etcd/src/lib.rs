//! A small client of etcd's v3 API, over whichever member of a cluster answers: what the lock
//! service's leader election needs (a key created once, under a lease kept alive, and watched).
//!
//! Why not the `etcd-client` crate: it compiles etcd's protos with a system `protoc`, and
//! Township builds with none. Here the few messages used are declared in `proto/etcd/` with
//! etcd's own names and field numbers and compiled with protox, like Township's own protos.
//!
//! - [`Etcd`]: the client. It dials the members of its endpoint list in order (township-client's
//!   [`Dialer`], so TLS and timeouts are the caller's) and keeps one connection; a call that finds
//!   the member gone, unavailable or not answering in time makes the next call dial on from the
//!   member after it. It never retries a call itself: a transaction whose answer was lost may have
//!   applied, and only the caller knows whether trying again is safe.
//! - [`pb`]: the messages, for building transactions ([`txn`] has the common pieces).

mod client;
pub mod txn;

pub use client::{Error, Etcd, Lease, Watch};

/// etcd's v3 messages and gRPC clients, as compiled from `proto/etcd/`.
pub mod pb {
    /// Keys and watch events.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// Requests and replies of KV, Lease and Watch.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}
