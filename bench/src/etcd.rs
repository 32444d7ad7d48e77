//! etcd as a reference for the lock benchmark: a small client for the three v3 RPCs a lock cycle
//! needs (LeaseGrant, Lock, Unlock), with the messages declared here rather than generated. The
//! server itself is started by `township-references` (one member, one core, its default
//! durability: the write-ahead log fsynced before a write is acknowledged).

use std::time::Duration;

use anyhow::{Context, bail};
use tonic::{client::Grpc, codegen::http::uri::PathAndQuery, transport::Channel};

/// The deadline sent with every RPC, so a stuck etcd ends the benchmark instead of hanging it
/// (the same bound as the lock-server's `wait_timeout`).
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of etcd's v3 gRPC API, limited to what a lock cycle uses. Each holds its own
/// connection.
pub struct Client {
    grpc: Grpc<Channel>,
}

impl Client {
    /// Connects to etcd's client URL.
    pub async fn connect(uri: &str) -> anyhow::Result<Self> {
        let channel = crate::server::dial(uri)
            .await
            .with_context(|| format!("cannot connect to etcd at {uri}"))?;
        Ok(Self {
            grpc: Grpc::new(channel),
        })
    }

    /// Grants a lease of `ttl_seconds` and returns its ID.
    pub async fn lease_grant(&mut self, ttl_seconds: i64) -> anyhow::Result<i64> {
        let reply: LeaseGrantResponse = self
            .unary(
                "/etcdserverpb.Lease/LeaseGrant",
                LeaseGrantRequest {
                    ttl: ttl_seconds,
                    id: 0,
                },
            )
            .await?;
        if !reply.error.is_empty() {
            bail!("etcd refused the lease: {}", reply.error);
        }
        Ok(reply.id)
    }

    /// Waits for the lock `name` and takes it under `lease`; returns the key that holds it.
    pub async fn lock(&mut self, name: &[u8], lease: i64) -> anyhow::Result<Vec<u8>> {
        let reply: LockResponse = self
            .unary(
                "/v3lockpb.Lock/Lock",
                LockRequest {
                    name: name.to_vec(),
                    lease,
                },
            )
            .await?;
        if reply.key.is_empty() {
            bail!("etcd granted a lock without a key");
        }
        Ok(reply.key)
    }

    /// Releases the lock held by `key`.
    pub async fn unlock(&mut self, key: Vec<u8>) -> anyhow::Result<()> {
        let _: UnlockResponse = self
            .unary("/v3lockpb.Lock/Unlock", UnlockRequest { key })
            .await?;
        Ok(())
    }

    /// One unary call at `path`, with [`RPC_TIMEOUT`] as its deadline.
    async fn unary<Req, Resp>(&mut self, path: &'static str, message: Req) -> anyhow::Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .with_context(|| format!("etcd {path}: connection not ready"))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(RPC_TIMEOUT);
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let reply = self
            .grpc
            .unary(request, PathAndQuery::from_static(path), codec)
            .await
            .with_context(|| format!("etcd {path}"))?;
        Ok(reply.into_inner())
    }
}

/// `etcdserverpb.LeaseGrantRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantRequest {
    /// Time to live, in seconds.
    #[prost(int64, tag = "1")]
    pub ttl: i64,
    /// The lease ID wanted; 0 lets etcd choose.
    #[prost(int64, tag = "2")]
    pub id: i64,
}

/// `etcdserverpb.LeaseGrantResponse` (its header is not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantResponse {
    /// The granted lease's ID.
    #[prost(int64, tag = "2")]
    pub id: i64,
    /// The granted time to live, in seconds.
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    /// Set when the lease was not granted.
    #[prost(string, tag = "4")]
    pub error: String,
}

/// `v3lockpb.LockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LockRequest {
    /// The lock's name, shared by everyone contending for it.
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    /// The lease the lock is held under; the lock ends with it.
    #[prost(int64, tag = "2")]
    pub lease: i64,
}

/// `v3lockpb.LockResponse` (its header is not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LockResponse {
    /// The key that holds the lock while it exists.
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
}

/// `v3lockpb.UnlockRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockRequest {
    /// The key returned by Lock.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// `v3lockpb.UnlockResponse` (only a header, not decoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnlockResponse {}
