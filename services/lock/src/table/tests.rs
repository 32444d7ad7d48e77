//! The lock table's claims, each shown on paused time: all-or-nothing grants in arrival order,
//! leases that expire and admit waiters, ownership by principal, caps, fencing tokens and
//! lease ids.

use std::sync::Arc;

use township_cell::Mode;

use super::*;

fn request(targets: &[(&str, Mode)], ttl_secs: u64) -> Request {
    Request {
        targets: targets
            .iter()
            .map(|(r, m)| Target {
                resource: (*r).to_owned(),
                mode: *m,
            })
            .collect(),
        ttl: Duration::from_secs(ttl_secs),
        owner: "test".into(),
        principal: PRINCIPAL.into(),
    }
}

const LONG: Duration = Duration::from_secs(60);
const PRINCIPAL: &str = "spiffe://township/bank";
const CAPS: Caps = Caps {
    max_leases: 1000,
    max_waiters: 1000,
    max_ttl: Duration::from_secs(300),
};

#[tokio::test(start_paused = true)]
async fn an_expired_lease_releases_its_grants_and_admits_the_waiter() {
    let table = Arc::new(LockTable::new(1));
    let shutdown = Shutdown::new();
    tokio::spawn(table.clone().expire_leases(shutdown.clone()));
    let first = table
        .acquire(request(&[("a", Mode::Write)], 5), LONG, CAPS)
        .await
        .unwrap();
    let started = Instant::now();
    let second = table
        .acquire(request(&[("a", Mode::Write)], 5), LONG, CAPS)
        .await
        .unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "granted exactly at the expiry"
    );
    assert!(second.grants[0].token > first.grants[0].token);
    assert!(matches!(
        table.release(first.lease, PRINCIPAL),
        Err(Error::LeaseNotFound)
    ));
    table.release(second.lease, PRINCIPAL).unwrap();
    assert!(table.inspect("").is_empty());
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_lease_granted_by_a_release_expires_on_time() {
    let table = Arc::new(LockTable::new(1));
    let shutdown = Shutdown::new();
    tokio::spawn(table.clone().expire_leases(shutdown.clone()));
    let long = table
        .acquire(request(&[("a", Mode::Write)], 60), LONG, CAPS)
        .await
        .unwrap();
    let short = {
        let table = table.clone();
        tokio::spawn(async move {
            table
                .acquire(request(&[("a", Mode::Write)], 1), LONG, CAPS)
                .await
        })
    };
    tokio::task::yield_now().await;
    table.release(long.lease, PRINCIPAL).unwrap();
    short.await.unwrap().expect("granted on the release");
    let started = Instant::now();
    table
        .acquire(request(&[("a", Mode::Write)], 1), LONG, CAPS)
        .await
        .unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "the 1 s lease expired on time"
    );
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn refresh_moves_the_expiry_and_a_wrong_secret_is_not_found() {
    let table = LockTable::new(1);
    let held = table
        .acquire(request(&[("a", Mode::Read)], 2), LONG, CAPS)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_millis(1500)).await;
    table.refresh(held.lease, PRINCIPAL).unwrap();
    tokio::time::advance(Duration::from_millis(1500)).await;
    let forged = LeaseId {
        seq: held.lease.seq,
        secret: held.lease.secret ^ 1,
    };
    assert!(matches!(
        table.refresh(forged, PRINCIPAL),
        Err(Error::LeaseNotFound)
    ));
    assert!(matches!(
        table.release(forged, PRINCIPAL),
        Err(Error::LeaseNotFound)
    ));
    table
        .refresh(held.lease, PRINCIPAL)
        .expect("still live 3 s after the grant thanks to the refresh");
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(
        matches!(
            table.refresh(held.lease, PRINCIPAL),
            Err(Error::LeaseNotFound)
        ),
        "expired"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_waiter_is_withdrawn_and_unblocks_the_readers_behind_it() {
    let table = Arc::new(LockTable::new(1));
    let reader = table
        .acquire(request(&[("a", Mode::Read)], 60), LONG, CAPS)
        .await
        .unwrap();
    let writer = {
        let table = table.clone();
        tokio::spawn(async move {
            table
                .acquire(
                    request(&[("a", Mode::Write)], 60),
                    Duration::from_secs(1),
                    CAPS,
                )
                .await
        })
    };
    tokio::task::yield_now().await;
    let late_reader = {
        let table = table.clone();
        tokio::spawn(async move {
            table
                .acquire(request(&[("a", Mode::Read)], 60), LONG, CAPS)
                .await
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(
        table.inspect("a")[0].waiters.len(),
        2,
        "writer preference: the reader waits"
    );
    assert!(matches!(writer.await.unwrap(), Err(Error::WaitTimedOut(_))));
    let late = late_reader
        .await
        .unwrap()
        .expect("admitted once the writer gave up");
    let view = &table.inspect("a")[0];
    assert_eq!(view.holders.len(), 2);
    assert!(view.waiters.is_empty());
    table.release(reader.lease, PRINCIPAL).unwrap();
    table.release(late.lease, PRINCIPAL).unwrap();
    assert!(table.inspect("").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_acquire_leaves_no_waiter_and_no_lease() {
    let table = LockTable::new(1);
    let held = table
        .acquire(request(&[("a", Mode::Write)], 60), LONG, CAPS)
        .await
        .unwrap();
    let waiting = table.acquire(
        request(&[("a", Mode::Write), ("b", Mode::Write)], 60),
        LONG,
        CAPS,
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .is_err()
    );
    let views = table.inspect("");
    assert_eq!(
        views.len(),
        1,
        "b is forgotten once its only waiter left: {views:?}"
    );
    assert!(views[0].waiters.is_empty());
    table.release(held.lease, PRINCIPAL).unwrap();
    assert!(table.inspect("").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_multi_target_request_is_all_or_nothing() {
    let table = Arc::new(LockTable::new(1));
    let b = table
        .acquire(request(&[("b", Mode::Write)], 60), LONG, CAPS)
        .await
        .unwrap();
    let both = {
        let table = table.clone();
        tokio::spawn(async move {
            table
                .acquire(
                    request(&[("a", Mode::Write), ("b", Mode::Write)], 60),
                    LONG,
                    CAPS,
                )
                .await
        })
    };
    tokio::task::yield_now().await;
    let a_view = table.inspect("a");
    assert!(
        a_view[0].holders.is_empty(),
        "a is not held while b is unavailable"
    );
    table.release(b.lease, PRINCIPAL).unwrap();
    let both = both.await.unwrap().unwrap();
    assert_eq!(both.grants.len(), 2);
    assert_eq!(both.grants[0].resource, "a");
    assert!(both.grants[1].token > both.grants[0].token);
}

#[test]
fn tokens_carry_the_epoch_in_their_high_bits() {
    let mut state = State {
        epoch: 3,
        ..State::default()
    };
    let first = state.next_token().unwrap();
    assert_eq!(first, (3 << COUNTER_BITS) | 1);
    assert!(state.next_token().unwrap() > first);
    state.granted_in_epoch = (1 << COUNTER_BITS) - 1;
    assert!(matches!(state.next_token(), Err(Error::TokensExhausted)));
    let later_epoch = State {
        epoch: 4,
        ..State::default()
    }
    .next_token()
    .unwrap();
    assert!(later_epoch > (3 << COUNTER_BITS) | ((1 << COUNTER_BITS) - 2));
}

#[test]
fn lease_ids_round_trip_and_garbage_is_not_found() {
    let id = LeaseId {
        seq: 42,
        secret: 0xdead_beef,
    };
    assert_eq!(id.to_string().parse::<LeaseId>().unwrap(), id);
    assert!(matches!(
        "garbage".parse::<LeaseId>(),
        Err(Error::LeaseNotFound)
    ));
    assert!(matches!(
        "1-zz".parse::<LeaseId>(),
        Err(Error::LeaseNotFound)
    ));
}

#[tokio::test]
async fn only_the_principal_that_took_a_lease_may_release_or_refresh_it_others_find_nothing() {
    let table = LockTable::new(1);
    let held = table
        .acquire(request(&[("account/1", Mode::Write)], 10), LONG, CAPS)
        .await
        .unwrap();
    for stranger in ["spiffe://township/user/mallory", ""] {
        assert!(matches!(
            table.refresh(held.lease, stranger),
            Err(Error::LeaseNotFound)
        ));
        assert!(matches!(
            table.release(held.lease, stranger),
            Err(Error::LeaseNotFound)
        ));
    }
    let views = table.inspect("account/");
    assert_eq!(views[0].holders.len(), 1, "the lease still stands");
    assert_eq!(views[0].holders[0].principal, PRINCIPAL);
    table.refresh(held.lease, PRINCIPAL).unwrap();
    table.release(held.lease, PRINCIPAL).unwrap();
    assert!(
        table
            .inspect("account/")
            .iter()
            .all(|v| v.holders.is_empty())
    );
}

#[tokio::test(start_paused = true)]
async fn past_its_hold_a_term_grants_nothing_even_to_a_waiter_whose_lease_then_expires() {
    let table = Arc::new(LockTable::new(1));
    let shutdown = Shutdown::new();
    tokio::spawn(table.clone().expire_leases(shutdown.clone()));
    table.serve_until(Instant::now() + Duration::from_secs(10));
    let held = table
        .acquire(request(&[("a", Mode::Write)], 20), LONG, CAPS)
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let table = table.clone();
        async move {
            table
                .acquire(request(&[("a", Mode::Write)], 5), LONG, CAPS)
                .await
        }
    });
    // The holder's lease expires at 20 s, after the hold (10 s): the waiter is not granted.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!waiter.is_finished(), "no grant past the hold");
    assert!(matches!(
        table.refresh(held.lease, PRINCIPAL),
        Err(Error::NotLeader(None))
    ));
    assert!(matches!(
        table
            .acquire(request(&[("b", Mode::Read)], 5), LONG, CAPS)
            .await,
        Err(Error::NotLeader(None))
    ));
    table.retire();
    assert!(matches!(waiter.await.unwrap(), Err(Error::NotLeader(None))));
    assert!(table.inspect("").is_empty(), "a retired term holds nothing");
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_renewed_hold_keeps_granting_and_a_retired_term_answers_its_waiters() {
    let table = Arc::new(LockTable::new(3));
    table.serve_until(Instant::now() + Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(900)).await;
    table.serve_until(Instant::now() + Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(900)).await;
    let granted = table
        .acquire(request(&[("a", Mode::Write)], 5), LONG, CAPS)
        .await
        .unwrap();
    assert_eq!(granted.grants[0].token >> COUNTER_BITS, 3);
    let waiter = tokio::spawn({
        let table = table.clone();
        async move {
            table
                .acquire(request(&[("a", Mode::Read)], 5), LONG, CAPS)
                .await
        }
    });
    tokio::task::yield_now().await;
    table.retire();
    assert!(matches!(waiter.await.unwrap(), Err(Error::NotLeader(None))));
    assert!(matches!(
        table.release(granted.lease, PRINCIPAL),
        Err(Error::LeaseNotFound)
    ));
}
