//! The claims of township-etcd against a real three-member etcd cluster from Debian's package
//! (`township-references`): a key created in a transaction is created once, whoever asks; a key
//! under a lease lasts while the lease is kept alive and goes when it is revoked or lapses, which
//! a watch sees; and with the first member of its list killed, the client goes on through
//! another.

use std::time::{Duration, Instant};

use township_client::Dialer;
use township_etcd::{
    Etcd,
    pb::{
        etcdserverpb::{TxnRequest, response_op::Response},
        mvccpb::event::EventType,
    },
    txn,
};
use township_references::EtcdCluster;

/// The bound on anything etcd does by itself (a lease lapsing, a new raft leader).
const SETTLE: Duration = Duration::from_secs(15);

async fn cluster() -> EtcdCluster {
    tokio::task::spawn_blocking(|| EtcdCluster::start(3))
        .await
        .unwrap()
        .expect("a three-member etcd cluster starts (apt-get install etcd-server)")
}

fn client(cluster: &EtcdCluster) -> Etcd {
    Etcd::new(&cluster.endpoints().join(","), Dialer::new()).expect("a readable list")
}

/// Creates `key` = `value` under `lease` unless it exists: whether it did, and the value there.
async fn create(etcd: &Etcd, key: &[u8], value: &[u8], lease: i64) -> (bool, Vec<u8>) {
    let reply = etcd
        .txn(TxnRequest {
            compare: vec![txn::absent(key)],
            success: vec![txn::put(key, value, lease)],
            failure: vec![txn::get(key)],
        })
        .await
        .expect("the transaction runs");
    if reply.succeeded {
        return (true, value.to_vec());
    }
    match reply.responses.first().and_then(|r| r.response.as_ref()) {
        Some(Response::ResponseRange(range)) => (false, range.kvs[0].value.clone()),
        other => panic!("a failed create answers the key: {other:?}"),
    }
}

#[tokio::test]
async fn a_key_created_in_a_transaction_is_created_once_whoever_asks() {
    let cluster = cluster().await;
    let (first, second) = (client(&cluster), client(&cluster));
    let (lease_a, lease_b) = (
        first.grant(Duration::from_secs(30)).await.unwrap(),
        second.grant(Duration::from_secs(30)).await.unwrap(),
    );
    let (a, b) = tokio::join!(
        create(&first, b"leader", b"a", lease_a.id),
        create(&second, b"leader", b"b", lease_b.id)
    );
    assert!(a.0 != b.0, "exactly one created it: {a:?} {b:?}");
    assert_eq!(a.1, b.1, "both read the one value");
    let (kv, revision) = first.get(b"leader").await.unwrap();
    let kv = kv.expect("the key exists");
    assert_eq!(kv.value, a.1);
    assert_eq!(kv.lease, if a.0 { lease_a.id } else { lease_b.id });
    assert!(revision >= kv.create_revision && kv.create_revision > 0);

    // A compare-and-swap on the revision read: the second swap from one read fails.
    let swap = |value: &'static [u8]| TxnRequest {
        compare: vec![txn::unchanged_since(b"epoch", 0)],
        success: vec![txn::put(b"epoch", value, 0)],
        failure: vec![],
    };
    assert!(first.txn(swap(b"1")).await.unwrap().succeeded);
    assert!(!second.txn(swap(b"2")).await.unwrap().succeeded);
    assert_eq!(second.get(b"epoch").await.unwrap().0.unwrap().value, b"1");
}

#[tokio::test]
async fn a_key_under_a_lease_lasts_while_kept_alive_and_goes_when_revoked_or_lapsed() {
    let cluster = cluster().await;
    let etcd = client(&cluster);
    let lease = etcd.grant(Duration::from_secs(2)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(2));
    assert!(create(&etcd, b"kept", b"x", lease.id).await.0);
    let (_, revision) = etcd.get(b"kept").await.unwrap();
    let mut watch = etcd.watch(b"kept", revision + 1).await.unwrap();

    // Kept alive for twice its time to live, it stays.
    let began = Instant::now();
    while began.elapsed() < 2 * lease.ttl {
        let left = etcd.keep_alive(lease.id).await.unwrap();
        assert!(left.is_some_and(|ttl| ttl > Duration::ZERO), "{left:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(etcd.get(b"kept").await.unwrap().0.is_some());

    // Left alone, it lapses: the key goes, the watch sees it, and a renewal is too late.
    let lapsed = Instant::now();
    let event = tokio::time::timeout(SETTLE, async {
        loop {
            let reply = watch.next().await.unwrap().expect("the watch goes on");
            if let Some(event) = reply.events.into_iter().next() {
                return event;
            }
        }
    })
    .await
    .expect("the lease lapses within 15 s");
    assert_eq!(event.r#type(), EventType::Delete);
    assert_eq!(event.kv.unwrap().key, b"kept");
    assert!(
        lapsed.elapsed() >= Duration::from_secs(1),
        "not before its time"
    );
    assert_eq!(etcd.keep_alive(lease.id).await.unwrap(), None);
    assert!(etcd.get(b"kept").await.unwrap().0.is_none());

    // Revoked, its key goes at once.
    let lease = etcd.grant(Duration::from_secs(60)).await.unwrap();
    assert!(create(&etcd, b"revoked", b"y", lease.id).await.0);
    etcd.revoke(lease.id).await.unwrap();
    assert!(etcd.get(b"revoked").await.unwrap().0.is_none());
}

#[tokio::test]
async fn with_the_first_member_of_its_list_killed_the_client_goes_on_through_another() {
    let mut cluster = cluster().await;
    let etcd = client(&cluster).call_timeout(Duration::from_secs(2));
    assert!(create(&etcd, b"before", b"1", 0).await.0);
    cluster.kill(0).expect("member 0 killed"); // SIGKILL and reap: brief

    // The call that finds its member gone fails; a later one goes through another.
    let deadline = Instant::now() + SETTLE;
    let mut failures = 0;
    let value = loop {
        match etcd.get(b"before").await {
            Ok((kv, _)) => break kv.expect("the key survives").value,
            Err(err) => {
                assert!(err.is_unavailable(), "{err}");
                failures += 1;
                assert!(Instant::now() < deadline, "no member answered: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(value, b"1");
    assert!(
        failures <= 3,
        "{failures} calls failed before one went through"
    );
    assert!(create(&etcd, b"after", b"2", 0).await.0, "writes go on too");

    let unreadable = Etcd::new("127.0.0.1:1,nowhere", Dialer::new()).err();
    assert!(
        unreadable.is_some_and(|e| e.to_string().contains("`nowhere`")),
        "a bad list is refused before any call"
    );
}
