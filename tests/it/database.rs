//! `--database-url` and `--database-password-file` against a real PostgreSQL: the password comes
//! from a file and is never shown (not in errors, logs or `--help`), and `sslmode=verify-full`
//! accepts the server's certificate only from the named CA and for the host connected to. The
//! phone book stands for every service that takes these flags (they are the store's). And while
//! the database is down, calls fail UNAVAILABLE with a RetryInfo, and a retry after it is back
//! applies once (the bank stands for every service here).

use township_references::PostgresSetup;
use township_tests::Output;

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{
    bank::{self, TestBank},
    cli::township_with,
    phonebook::*,
    process::*,
    storage::{Cluster, Storage},
    tls::Certs,
};

/// Runs phonebook-server on the data directory `data` with `flags` to its end (it must not
/// start serving) and returns its output.
async fn refused_start(data: &str, flags: &[&str]) -> Output {
    let mut args = vec!["--listen", "127.0.0.1:0", "--data-dir", data];
    args.extend_from_slice(flags);
    run_binary("phonebook-server", &args, &[]).await
}

/// A password no output may contain.
const PASSWORD: &str = "Tr0ub4dor-and-3-horses";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_password_comes_from_a_file_and_is_never_shown() {
    let cluster = Cluster::start_with(PostgresSetup {
        passwords: true,
        ..PostgresSetup::default()
    })
    .await;
    cluster
        .execute(&format!("CREATE ROLE book LOGIN PASSWORD '{PASSWORD}'"))
        .await;
    cluster.execute("CREATE DATABASE book OWNER book").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    std::fs::write(&right, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let url = format!("postgres://book@{}/book", cluster.address());

    let server = try_server(
        "phonebook-server",
        None,
        &[
            "--data-dir",
            data,
            "--database-url",
            &url,
            "--database-password-file",
            right.to_str().unwrap(),
        ],
    )
    .await
    .expect("the right password opens the database");
    let rpc = client(&server).await;
    add(&rpc, "Ada", &us(1), "").await.unwrap();
    stop(server, libc::SIGTERM).await;

    let refused = refused_start(
        data,
        &[
            "--database-url",
            &url,
            "--database-password-file",
            wrong.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("password authentication failed"),
        "{refused:?}"
    );
    assert!(!refused.stderr.contains("not-the-password"), "{refused:?}");

    // A password in the URL works too, and is not repeated either.
    let inline = format!("postgres://book:{PASSWORD}@{}/book", cluster.address());
    let server = try_server(
        "phonebook-server",
        None,
        &["--data-dir", data, "--database-url", &inline],
    )
    .await
    .expect("a password in the URL opens the database");
    add(&client(&server).await, "Bob", &us(2), "")
        .await
        .unwrap();
    let logs = server.logs();
    assert!(!logs.contains(PASSWORD), "{logs}");
    stop(server, libc::SIGTERM).await;
    let bad_inline = format!("postgres://book:{PASSWORD}x@{}/book", cluster.address());
    let refused = refused_start(data, &["--database-url", &bad_inline]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(!refused.stderr.contains(PASSWORD), "{refused:?}");
    let twice = refused_start(
        data,
        &[
            "--database-url",
            &inline,
            "--database-password-file",
            right.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        twice.code,
        Some(64),
        "a password given twice is bad config: {twice:?}"
    );
    assert!(!twice.stderr.contains(PASSWORD), "{twice:?}");

    // The environment's URL is not shown by --help.
    let help = run_binary(
        "phonebook-server",
        &["--help"],
        &[("TOWNSHIP_DATABASE_URL", &inline)],
    )
    .await;
    assert_eq!(help.code, Some(0), "{help:?}");
    assert!(help.stdout.contains("--database-url"), "{help:?}");
    assert!(!help.stdout.contains(PASSWORD), "{help:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_full_accepts_only_a_certificate_from_its_ca_for_its_host() {
    let certs = Certs::init(&[]).await;
    let dir = certs.path("");
    let out = township_with(
        &[
            "certs",
            "issue",
            "--server",
            "--name",
            "pg",
            "--ip",
            "127.0.0.1",
            dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let read = |file: &str| std::fs::read(certs.path(file)).unwrap();
    let cluster = Cluster::start_with(PostgresSetup {
        tls: Some((read("pg.pem"), read("pg.key"))),
        ..PostgresSetup::default()
    })
    .await;
    let url = cluster.new_database().await;
    let verified = |url: &str, ca: &str| format!("{url}?sslmode=verify-full&sslrootcert={ca}");
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap().to_owned();

    let server = try_server(
        "phonebook-server",
        None,
        &[
            "--data-dir",
            &data,
            "--database-url",
            &verified(&url, &certs.pem("ca")),
        ],
    )
    .await
    .expect("the server's certificate is verified");
    add(&client(&server).await, "Ada", &us(1), "")
        .await
        .unwrap();
    let encrypted = cluster
        .count(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND application_name = 'phonebook-server'",
        )
        .await;
    assert!(encrypted > 0, "the phone book's connections use TLS");
    stop(server, libc::SIGTERM).await;

    let other_ca = Certs::init(&[]).await;
    let refused = refused_start(
        &data,
        &["--database-url", &verified(&url, &other_ca.pem("ca"))],
    )
    .await;
    assert_eq!(
        refused.code,
        Some(1),
        "a certificate from another CA: {refused:?}"
    );
    assert!(refused.stderr.contains("certificate"), "{refused:?}");

    let other_host = url.replace("127.0.0.1", "localhost");
    let refused = refused_start(
        &data,
        &["--database-url", &verified(&other_host, &certs.pem("ca"))],
    )
    .await;
    assert_eq!(
        refused.code,
        Some(1),
        "a certificate for another host: {refused:?}"
    );
    assert!(refused.stderr.contains("certificate"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sslmode_require_refuses_a_server_without_tls() {
    let cluster = Cluster::shared().await;
    let url = cluster.new_database().await;
    let data = tempfile::tempdir().unwrap();
    let refused = refused_start(
        data.path().to_str().unwrap(),
        &["--database-url", &format!("{url}?sslmode=require")],
    )
    .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_the_database_is_down_calls_are_unavailable_with_retry_info_and_a_retry_applies_once()
{
    let database = Cluster::start_with(PostgresSetup::default()).await;
    let bank = TestBank::start_in(Storage::on(&database).await, &[], &[]).await;
    let (a, ada) = bank.customer("Ada", "1234", 1_000).await;
    let (b, _) = bank.customer("Bob", "5678", 0).await;
    // Long enough for the server's own wait for a connection (10 s).
    let rpc = bank::client(&bank.server.addr.to_string(), Duration::from_secs(40));

    database.crash().await;
    // A deposit (a transaction of its own) and a transfer (a batch of the group commit).
    let (deposit_id, transfer_id) = (bank::request_id(), bank::request_id());
    let deposit = bank::deposit(&rpc, &ada, &a, 250, &deposit_id).await;
    let transfer = bank::transfer(&rpc, &ada, &a, &b, 100, &transfer_id).await;
    for down in [deposit.map(|_| ()), transfer.map(|_| ())] {
        let status = down.expect_err("nothing is applied while the database is down");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let retry = status.get_details_retry_info().expect("a RetryInfo");
        assert!(retry.retry_delay.is_some(), "{retry:?}");
        assert!(
            !status.message().contains("127.0.0.1") && !status.message().contains("postgres"),
            "names no address or user: {status:?}"
        );
    }

    database.start_again().await;
    let receipt = bank::deposit(&rpc, &ada, &a, 250, &deposit_id)
        .await
        .unwrap();
    assert_eq!(receipt.balance_cents, 1_250);
    let moved = bank::transfer(&rpc, &ada, &a, &b, 100, &transfer_id)
        .await
        .unwrap();
    assert_eq!(moved.balance_cents, 1_150);
    assert_eq!(
        bank::deposit(&rpc, &ada, &a, 250, &deposit_id)
            .await
            .unwrap(),
        receipt,
        "applied once"
    );
    assert_eq!(bank::balance(&rpc, &ada, &a).await.unwrap(), 1_150);
}
