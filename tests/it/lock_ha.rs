//! Lock-servers elected on a real three-member etcd cluster: one leads and serves, the others
//! answer UNAVAILABLE naming it and keep nothing on disk; when the leader is killed another leads
//! within 15 s, with tokens above every earlier one; a leader frozen past its lease grants nothing
//! when it wakes, not even an Acquire queued while it was frozen; the service goes on without
//! one etcd member, grants nothing without a majority, and leads again once it is back; a lock
//! leader keeps its term while etcd replaces its own raft leader; election
//! flags that cannot work are refused (exit 64). Given every server, a `LockClient`, the CLI and a
//! bank find the leader and follow it when it is killed. Over mutual TLS to etcd (certificates
//! from `township certs`) a leader is elected; a server etcd does not trust never leads.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;
use township_client::Dialer;
use township_lock_client::{LockClient, Mode};
use township_proto::lock::v1::lock_service_client::LockServiceClient;
use township_references::EtcdTls;
use township_tests::{free_port, run, spawn_service_at, township};

use crate::support::{
    bank::{admin_token, balance, bank_server, client, login, open_account, request_id, transfer},
    cli::township_with,
    lock::token,
    lock_ha::{FAILOVER, LockCluster, named_leader, try_acquire},
    process::run_binary,
    tls::Certs,
    wait::wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_three_lock_servers_leads_and_the_others_name_it_keeping_nothing_on_disk() {
    let cluster = LockCluster::start(3).await;
    let (leader, epoch) = cluster.leader(None).await;
    assert!(epoch >= 1);
    let lease = try_acquire(&cluster.rpc(leader).await, "account/1")
        .await
        .expect("the leader grants");
    assert_eq!(
        token(&lease, "account/1") >> 40,
        epoch,
        "tokens in its epoch"
    );
    for follower in (0..3).filter(|&i| i != leader) {
        let refused = try_acquire(&cluster.rpc(follower).await, "account/2")
            .await
            .expect_err("a follower grants nothing");
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert_eq!(
            named_leader(&refused).as_deref(),
            Some(cluster.addrs[leader].as_str()),
            "{refused:?}"
        );
        assert!(
            refused.message().contains(&cluster.addrs[leader]),
            "{refused:?}"
        );
    }
    for dir in &cluster.dirs {
        let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(
            kept.is_empty(),
            "an elected lock-server keeps nothing: {kept:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_leader_is_killed_another_leads_with_tokens_above_every_earlier_one() {
    let mut cluster = LockCluster::start(3).await;
    let (mut leader, mut epoch) = cluster.leader(None).await;
    let mut highest = token(
        &try_acquire(&cluster.rpc(leader).await, "r").await.unwrap(),
        "r",
    );
    for _ in 0..2 {
        let killed = Instant::now();
        cluster.kill(leader).await;
        let (next, next_epoch) = cluster.leader(Some(leader)).await;
        assert!(killed.elapsed() < FAILOVER);
        assert!(
            next_epoch > epoch,
            "a new epoch: {next_epoch} after {epoch}"
        );
        // The lease of the old holder went with its leader: the new one grants at once.
        let lease = try_acquire(&cluster.rpc(next).await, "r")
            .await
            .expect("the new leader grants");
        assert!(token(&lease, "r") > highest, "tokens only grow");
        highest = token(&lease, "r");
        cluster.restart(leader).await;
        (leader, epoch) = (next, next_epoch);
    }
    let (_, last) = cluster.leader(None).await;
    assert_eq!(
        last, epoch,
        "a restarted server follows: no election without a need"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_frozen_past_its_lease_grants_nothing_when_it_wakes() {
    let cluster = LockCluster::start(3).await;
    let (frozen, epoch) = cluster.leader(None).await;
    let straight = cluster.rpc(frozen).await;
    let before = try_acquire(&straight, "held").await.expect("grants");

    cluster.signal(frozen, libc::SIGSTOP);
    let (next, next_epoch) = cluster.leader(Some(frozen)).await;
    assert!(next_epoch > epoch);
    let lease = try_acquire(&cluster.rpc(next).await, "held")
        .await
        .expect("the new leader grants what the frozen one held");
    assert!(token(&lease, "held") > token(&before, "held"));

    // Sent straight to the frozen server, on a connection it accepted before: queued there.
    let queued = tokio::spawn({
        let straight = straight.clone();
        async move {
            let request = crate::support::lock::ask(
                "late",
                &[("fresh", township_proto::lock::v1::Mode::Write)],
                Duration::from_secs(1),
            );
            tokio::time::timeout(FAILOVER, straight.clone().acquire(request)).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.signal(frozen, libc::SIGCONT);
    let answer = queued.await.unwrap().expect("answered once awake");
    let refused = answer.expect_err("a woken leader grants nothing");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // Awake, it finds the new leader and names it.
    let (leader, _) = cluster.leader(None).await;
    assert_eq!(leader, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_one_etcd_member_it_serves_and_without_a_majority_it_grants_nothing() {
    let mut cluster = LockCluster::start(3).await;
    cluster.leader(None).await;
    cluster.etcd.kill(0).expect("etcd member 0 killed");
    // Two of three etcd members are enough. Losing etcd's own raft leader may cost the lock
    // leader a renewal and its term: a leader (maybe a new one) serves within the bound.
    let deadline = Instant::now() + FAILOVER;
    loop {
        let (leader, _) = cluster.leader(None).await;
        match try_acquire(&cluster.rpc(leader).await, "one-down").await {
            Ok(_) => break,
            Err(status) => assert!(
                Instant::now() < deadline,
                "no grant with two of three etcd members: {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cluster.etcd.kill(1).expect("etcd member 1 killed");
    // Within the lease every server stops granting, and none grants while the quorum is lost.
    let deadline = Instant::now() + FAILOVER;
    let mut refused_since: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut any_granted = false;
        for i in 0..3 {
            let resource = format!("no-quorum/{attempt}/{i}");
            if try_acquire(&cluster.rpc(i).await, &resource).await.is_ok() {
                any_granted = true;
            }
        }
        match (any_granted, refused_since) {
            (true, Some(since)) => {
                panic!("granted {:?} after every server refused", since.elapsed())
            }
            (true, None) => assert!(Instant::now() < deadline, "still granting without a quorum"),
            (false, None) => refused_since = Some(Instant::now()),
            (false, Some(since)) if since.elapsed() > Duration::from_secs(4) => break,
            (false, Some(_)) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    tokio::task::spawn_blocking(move || {
        cluster.etcd.start_again(1).expect("etcd member 1 back");
        cluster
    })
    .await
    .map(|cluster| async move {
        let (leader, _) = cluster.leader(None).await;
        try_acquire(&cluster.rpc(leader).await, "quorum-again")
            .await
            .expect("a majority again: a leader serves");
    })
    .unwrap()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_etcd_loses_its_own_raft_leader_the_lock_leader_keeps_its_term() {
    // The default lease (5 s): a renewal that fails while etcd elects a new raft leader (a second
    // or two) is retried within the leader's hold, and etcd's new raft leader keeps the lease.
    let mut cluster = LockCluster::start_with_lease(3, "5s").await;
    let (leader, epoch) = cluster.leader(None).await;
    let raft = cluster.etcd.raft_leader().expect("etcd has a raft leader");
    cluster.etcd.kill(raft).expect("etcd's raft leader killed");
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(10) {
        let said = cluster
            .leader_of(leader)
            .await
            .expect("the lock leader answers");
        assert!(
            said.serving && said.epoch == epoch,
            "after {:?} without etcd's raft leader, the lock leader says {said:?}, not serving \
             epoch {epoch}",
            watched.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cluster.etcd.raft_leader().is_some(),
        "etcd elected no new raft leader"
    );
    let granted = try_acquire(&cluster.rpc(leader).await, "raft-leader-lost")
        .await
        .expect("the lock leader grants");
    assert_eq!(
        token(&granted, "raft-leader-lost") >> 40,
        epoch,
        "granted in its first term"
    );
}

#[tokio::test]
async fn election_flags_that_cannot_work_are_refused_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--etcd-endpoints", "127.0.0.1:2379"], "--advertise-addr"),
        (&["--advertise-addr", "127.0.0.1:50055"], "--etcd-endpoints"),
        (
            &[
                "--etcd-endpoints",
                "127.0.0.1:2379,nowhere",
                "--advertise-addr",
                "127.0.0.1:1",
            ],
            "`nowhere`",
        ),
        (
            &[
                "--etcd-endpoints",
                "127.0.0.1:2379",
                "--advertise-addr",
                "lock",
            ],
            "--advertise-addr",
        ),
        (
            &[
                "--etcd-endpoints",
                "127.0.0.1:2379",
                "--advertise-addr",
                "127.0.0.1:1",
                "--leader-lease",
                "1500ms",
            ],
            "--leader-lease",
        ),
    ];
    for (flags, named) in cases {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let out = run_binary("lock-server", &args, &[]).await;
        assert_eq!(out.code, Some(64), "{flags:?}: {out:?}");
        assert!(
            out.stderr.contains(named),
            "{flags:?} names {named}: {out:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_client_given_every_server_finds_the_leader_and_follows_it_when_it_changes() {
    let mut cluster = LockCluster::start(3).await;
    let (leader, epoch) = cluster.leader(None).await;
    // The leader last in the list: the client is sent there by the others.
    let mut listed: Vec<&str> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.addrs[i].as_str())
        .collect();
    listed.push(&cluster.addrs[leader]);
    let dialer = Dialer::new().connect_timeout(Duration::from_secs(1));
    let client = LockClient::dial(dialer, &listed.join(","), "ha-test")
        .unwrap()
        .with_ttl(Duration::from_secs(3))
        .with_wait(Duration::from_secs(1));
    let held = client
        .acquire(&[("k", Mode::Write)])
        .await
        .expect("granted by the leader");
    let first = held.token("k").unwrap();
    assert_eq!(first >> 40, epoch);

    cluster.kill(leader).await;
    wait_until("the lease is lost with its leader", FAILOVER, async || {
        held.is_lost()
    })
    .await;
    let deadline = Instant::now() + FAILOVER;
    let again = loop {
        match client.acquire(&[("k", Mode::Write)]).await {
            Ok(lease) => break lease,
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "no grant after the failover: {err}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(again.token("k").unwrap() > first, "tokens only grow");
    again.release().await.expect("released on the new leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_given_every_server_asks_the_leader_and_says_who_it_is() {
    let cluster = LockCluster::start(3).await;
    let (leader, epoch) = cluster.leader(None).await;
    let follower = (leader + 1) % 3;
    let cli = |args: &[&str]| {
        let mut command = township();
        command
            .env_remove("TOWNSHIP_LOCK_ADDR")
            .args(["--addr", &cluster.addrs[follower], "lock"])
            .args(args);
        command
    };
    let out = run(cli(&["leader"]), FAILOVER).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("leader {} epoch {epoch}\n", cluster.addrs[leader])
    );
    let out = run(cli(&["inspect"]), FAILOVER).await;
    assert_eq!(out.code, Some(0), "asked the leader: {out:?}");

    let every = format!("{},{}", cluster.addrs[follower], cluster.addrs.join(","));
    let mut command = township();
    command.env_remove("TOWNSHIP_LOCK_ADDR").args([
        "--addr", &every, "--json", "lock", "acquire", "r", "--hold", "0s",
    ]);
    let out = run(command, FAILOVER).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let acquired: serde_json::Value =
        serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(acquired["fencing_token"].as_u64().unwrap() >> 40, epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bank_given_every_lock_server_goes_on_after_the_lock_leader_is_killed() {
    let mut cluster = LockCluster::start(3).await;
    let (leader, _) = cluster.leader(None).await;
    let dir = tempfile::tempdir().unwrap();
    let bank = bank_server(dir.path(), &cluster.addrs.join(","), None, &[]).await;
    let rpc = client(&bank.addr.to_string(), Duration::from_secs(10));
    let admin = admin_token(dir.path());
    let ada = open_account(&rpc, &admin, "ada", "1234", 1_000)
        .await
        .unwrap();
    let bob = open_account(&rpc, &admin, "bob", "5678", 0).await.unwrap();
    let token = login(&rpc, "ada", "1234").await.unwrap().session_token;
    let (before, after) = (request_id(), request_id());
    let pay =
        async |id: &str| transfer(&rpc, &token, &ada.account_id, &bob.account_id, 100, id).await;
    pay(&before)
        .await
        .expect("a transfer under the first leader");

    cluster.kill(leader).await;
    let deadline = Instant::now() + FAILOVER;
    // Retried with its request id, as a client does: applied once.
    while let Err(status) = pay(&after).await {
        assert!(
            Instant::now() < deadline,
            "no transfer after the failover: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pay(&after)
        .await
        .expect("the retry answers the first outcome");
    assert_eq!(balance(&rpc, &token, &ada.account_id).await.unwrap(), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_mutual_tls_to_etcd_a_leader_is_elected_and_a_server_etcd_does_not_trust_never_leads()
{
    let certs = Certs::init(&[]).await;
    let dir = certs.path("");
    let dir = dir.to_str().unwrap();
    let out = township_with(
        &[
            "certs",
            "issue",
            "--server",
            "--name",
            "etcd",
            "--ip",
            "127.0.0.1",
            dir,
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let tls = EtcdTls {
        cert: certs.path("etcd.pem"),
        key: certs.path("etcd.key"),
        client_ca: certs.path("ca.pem"),
    };
    let ca = certs.pem("ca");
    let (cert, key) = (certs.pem("lock"), certs.key("lock"));
    let flags = ["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key].map(String::from);
    let cluster = LockCluster::start_with(2, Some(tls), &flags).await;
    let (leader, _) = cluster.leader(None).await;
    try_acquire(&cluster.rpc(leader).await, "over-tls")
        .await
        .expect("the leader, elected over TLS, grants");

    // Shown no certificate, or given another CA to trust, etcd and the server part at the
    // handshake: it never leads and knows no leader.
    let other = Certs::init(&[]).await;
    let endpoints = cluster.etcd.endpoints().join(",");
    let other_ca = other.pem("ca");
    let refused: [&[&str]; 2] = [
        &["--etcd-ca", &ca],
        &[
            "--etcd-ca",
            &other_ca,
            "--etcd-cert",
            &cert,
            "--etcd-key",
            &key,
        ],
    ];
    for tls_flags in refused {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--etcd-endpoints",
            &endpoints,
            "--advertise-addr",
            &addr,
            "--leader-lease",
            "2s",
        ];
        args.extend_from_slice(tls_flags);
        let stranger = spawn_service_at("lock-server", &addr, &args).await.unwrap();
        let rpc = LockServiceClient::new(stranger.channel().await);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let said = rpc
            .clone()
            .leader(township_proto::lock::v1::LeaderRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            !said.serving && said.leader.is_empty(),
            "{tls_flags:?}: {said:?}"
        );
        assert!(
            stranger.logs().contains("election: trying again"),
            "{tls_flags:?}: {}",
            stranger.logs()
        );
    }
    let (still, _) = cluster.leader(None).await;
    assert_eq!(still, leader);
}
