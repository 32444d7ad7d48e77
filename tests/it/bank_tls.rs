//! The bank's side of TLS toward its lock service (`--lock-ca`, `--lock-cert`, `--lock-key`, each
//! defaulting to the bank's own server setting): a bank serving mutual TLS reaches a mutual-TLS
//! lock service with its own certificate, a bank showing none is refused by it, and on SIGHUP the
//! bank reads its lock-side files again, so the lock service can move to a new CA without a
//! restart of the bank (a broken file keeps the files in use).

use std::{fs, time::Duration};

use township_proto::bank::v1::bank_service_client::BankServiceClient;
use township_tests::{free_port, spawn_tls_service_at};

use crate::support::{
    bank::{Payer, admin_token, bank_server, client},
    process::stop,
    tls::{Certs, tls_service},
    wait::wait_until,
};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_bank_serving_mutual_tls_reaches_its_mutual_tls_lock_service_with_its_own_certificate() {
    let certs = Certs::init(&[]).await;
    let (lock_dir, bank_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let as_bank = || certs.client(Some("bank"));
    let mut lock_args = vec![
        "--data-dir".to_owned(),
        lock_dir.path().to_str().unwrap().to_owned(),
    ];
    lock_args.extend(certs.service_flags("lock", true));
    let lock = tls_service("lock-server", &lock_args, as_bank()).await;
    let lock_addr = lock.addr.to_string();

    let mut bank_args = vec![
        "--data-dir".to_owned(),
        bank_dir.path().to_str().unwrap().to_owned(),
        "--lock-addr".to_owned(),
        lock_addr.clone(),
    ];
    bank_args.extend(certs.service_flags("bank", true));
    let bank = tls_service("bank-server", &bank_args, as_bank()).await;
    let rpc = BankServiceClient::new(bank.endpoint().timeout(LIMIT).connect().await.unwrap());
    let payer = Payer::open(&rpc, &admin_token(bank_dir.path()), "ada", "bob").await;
    let receipt = payer.pay(2_500).await;
    assert!(receipt.is_ok(), "{receipt:?}; bank logs:\n{}", bank.logs());

    // A bank that trusts the lock service's CA but shows it no certificate is refused by it.
    let plain_dir = tempfile::tempdir().unwrap();
    let ca = certs.pem("ca");
    let plain = bank_server(
        plain_dir.path(),
        &lock_addr,
        None,
        &["--lock-ca", &ca, "--lock-wait", "1s"],
    )
    .await;
    let rpc = client(&plain.addr.to_string(), LIMIT);
    let payer = Payer::open(&rpc, &admin_token(plain_dir.path()), "cy", "di").await;
    let refused = payer.pay(100).await;
    assert_eq!(
        refused.map_err(|s| s.code()).err(),
        Some(tonic::Code::Unavailable)
    );
}

#[tokio::test]
async fn on_sighup_the_bank_dials_its_lock_service_with_the_rotated_ca_and_certificate() {
    let (old, new) = (Certs::init(&[]).await, Certs::init(&[]).await);
    // The bank reads its lock-side files from a directory of its own, which the rotation rewrites.
    let live = Certs::init(&[]).await;
    let rotate_to = |certs: &Certs| {
        for file in ["ca.pem", "bank.pem", "bank.key"] {
            fs::copy(certs.path(file), live.path(file)).unwrap();
        }
    };
    rotate_to(&old);
    let lock_dir = tempfile::tempdir().unwrap();
    let lock_addr = format!("127.0.0.1:{}", free_port());
    let lock_server = |certs: &Certs| {
        let mut args = vec!["--data-dir", lock_dir.path().to_str().unwrap()];
        let flags = certs.service_flags("lock", true);
        args.extend(flags.iter().map(String::as_str));
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let (addr, client) = (lock_addr.clone(), certs.client(Some("bank")));
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn_tls_service_at("lock-server", &addr, &args, client)
                .await
                .expect("the lock-server starts")
        }
    };
    let lock = lock_server(&old).await;

    let bank_dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (live.pem("ca"), live.pem("bank"), live.key("bank"));
    let bank = bank_server(
        bank_dir.path(),
        &lock_addr,
        None,
        &[
            "--lock-ca",
            &ca,
            "--lock-cert",
            &cert,
            "--lock-key",
            &key,
            "--lock-wait",
            "1s",
        ],
    )
    .await;
    let rpc = client(&bank.addr.to_string(), LIMIT);
    let payer = Payer::open(&rpc, &admin_token(bank_dir.path()), "ada", "bob").await;
    assert!(payer.pay(1).await.is_ok(), "{}", bank.logs());

    // The lock service comes back under the new CA: the bank, trusting only the old one, and
    // showing the old CA's certificate, cannot reach it.
    stop(lock, libc::SIGTERM).await;
    let _lock = lock_server(&new).await;
    assert_eq!(
        payer.pay(1).await.map_err(|s| s.code()).err(),
        Some(tonic::Code::Unavailable),
        "the bank still holds the old files until SIGHUP"
    );

    rotate_to(&new);
    bank.signal(libc::SIGHUP);
    assert!(
        bank.log_line("the lock service's TLS files reloaded", LIMIT)
            .await
            .is_some(),
        "{}",
        bank.logs()
    );
    wait_until("a transfer goes through the new CA", LIMIT, async || {
        payer.pay(1).await.is_ok()
    })
    .await;

    // A broken key on the next SIGHUP: the bank says so and keeps dialling with the files in use.
    fs::write(live.path("bank.key"), "not a key").unwrap();
    bank.signal(libc::SIGHUP);
    let refused = bank
        .log_line("the lock service's TLS files not reloaded", LIMIT)
        .await
        .unwrap_or_else(|| panic!("{}", bank.logs()));
    assert!(refused.contains("bank.key"), "names the file: {refused}");
    assert!(
        !refused.contains("not a key"),
        "never echoes a key: {refused}"
    );
    let receipt = payer.pay(1).await;
    assert!(receipt.is_ok(), "{receipt:?}; bank logs:\n{}", bank.logs());
}
