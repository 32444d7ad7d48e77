//! TLS and mutual TLS on every server (through the kit), shown mostly on the time-server with
//! certificates from the real `township certs`: with a client CA only clients whose certificate
//! that CA signed (and that has not expired) get in; without one, any TLS client does, and
//! plaintext never does; real grpcurl reaches every service with `-cacert -cert -key`, and none
//! without a client certificate; SIGHUP re-reads the
//! files, so new clients need the new CA while streams opened before stay open, and a broken
//! file keeps the old certificates in use.

use std::{fs, time::Duration};

use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use township_proto::time::v1::time_service_client::TimeServiceClient;
use township_tests::{grpcurl, health_status, run};

use crate::support::{cli::township_with, lock::Session, process::run_binary};

use crate::support::{
    tls::{Certs, get_time, get_time_plaintext, tls_service, tls_time_server, watch_ticks},
    wait::{wait_until, within},
};

const LIMIT: Duration = Duration::from_secs(30);
const HOUR: time::Duration = time::Duration::HOUR;
const DAY: time::Duration = time::Duration::DAY;

#[tokio::test]
async fn with_a_client_ca_only_a_client_showing_an_unexpired_certificate_from_that_ca_gets_in() {
    let certs = Certs::init(&["alice"]).await;
    let other = Certs::init(&["mallory"]).await;
    let server = tls_time_server(&certs.server_flags(true), certs.client(Some("alice"))).await;

    assert_eq!(get_time(&server, certs.client(Some("alice"))).await, Ok(()));
    assert_eq!(
        get_time(&server, certs.client(Some("bank"))).await,
        Ok(()),
        "a service's certificate is a client certificate too"
    );

    let refused = [
        ("no certificate", certs.client(None)),
        ("a certificate from another CA", {
            let mut tls = certs.client(None);
            tls = tls.identity(tonic::transport::Identity::from_pem(
                fs::read(other.path("mallory.pem")).unwrap(),
                fs::read(other.path("mallory.key")).unwrap(),
            ));
            tls
        }),
        (
            "an expired certificate",
            certs.client_valid("alice", -DAY, -HOUR),
        ),
    ];
    for (what, client) in refused {
        let result = get_time(&server, client).await;
        assert!(result.is_err(), "{what}: let in");
    }
    assert!(
        get_time_plaintext(&server).await.is_err(),
        "plaintext: let in"
    );
    // And the server still serves the rightful client after all that.
    assert_eq!(get_time(&server, certs.client(Some("alice"))).await, Ok(()));
}

#[tokio::test]
async fn without_a_client_ca_any_tls_client_gets_in_but_plaintext_and_an_untrusting_client_do_not()
{
    let certs = Certs::init(&[]).await;
    let other = Certs::init(&[]).await;
    let server = tls_time_server(&certs.server_flags(false), certs.client(None)).await;
    assert_eq!(get_time(&server, certs.client(None)).await, Ok(()));
    assert!(get_time_plaintext(&server).await.is_err());
    assert!(
        get_time(&server, other.client(None)).await.is_err(),
        "a client that trusts another CA does not accept the server"
    );
}

#[tokio::test]
async fn real_grpcurl_reaches_every_service_over_mutual_tls_with_cacert_cert_and_key_and_none_without_a_certificate()
 {
    let certs = Certs::init(&["alice"]).await;
    let data: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = |service: &str, data: &tempfile::TempDir, extra: &[&str]| {
        let mut args = vec!["--data-dir".to_owned(), data.path().display().to_string()];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args.extend(certs.service_flags(service, true));
        args
    };
    let start = |binary: &'static str, args: Vec<String>| {
        let client = certs.client(Some("alice"));
        async move { tls_service(binary, &args, client).await }
    };
    let lock = start("lock-server", args("lock", &data[0], &[])).await;
    let lock_addr = lock.addr.to_string();
    let servers = [
        ("township.lock.v1.LockService", lock),
        (
            "township.bank.v1.BankService",
            start(
                "bank-server",
                args("bank", &data[1], &["--lock-addr", &lock_addr]),
            )
            .await,
        ),
        (
            "township.time.v1.TimeService",
            start("time-server", args("time", &data[2], &[])).await,
        ),
        (
            "township.doctor.v1.DoctorService",
            start("doctor-server", args("doctor", &data[3], &[])).await,
        ),
        (
            "township.chat.v1.ChatService",
            start("chat-server", args("chat", &data[4], &[])).await,
        ),
        (
            "township.phonebook.v1.PhoneBookService",
            start("phonebook-server", args("phonebook", &data[5], &[])).await,
        ),
    ];
    let grpcurl_to = |addr: &str, with_identity: bool, body: &str, method: &str| {
        let mut command = grpcurl();
        command.args(["-cacert", &certs.pem("ca")]);
        if with_identity {
            command.args(["-cert", &certs.pem("alice"), "-key", &certs.key("alice")]);
        }
        command.args(["-d", body, addr, method]);
        command
    };
    for (service, server) in &servers {
        let addr = server.addr.to_string();
        let body = format!(r#"{{"service": "{service}"}}"#);
        let check = "grpc.health.v1.Health/Check";
        let out = run(grpcurl_to(&addr, true, &body, check), LIMIT).await;
        assert_eq!(out.code, Some(0), "{service}: {out:?}");
        assert!(out.stdout.contains("SERVING"), "{service}: {out:?}");
        let out = run(grpcurl_to(&addr, false, &body, check), LIMIT).await;
        assert_ne!(
            out.code,
            Some(0),
            "{service} without a client certificate: {out:?}"
        );
    }
    let time = &servers[2].1.addr.to_string();
    let out = run(
        grpcurl_to(time, true, "{}", "township.time.v1.TimeService/GetTime"),
        LIMIT,
    )
    .await;
    assert!(out.stdout.contains("Have a nice day!"), "{out:?}");
}

#[tokio::test]
async fn on_sighup_new_clients_need_the_new_ca_while_streams_opened_before_stay_open() {
    let old = Certs::init(&["alice"]).await;
    let new = Certs::init(&["alice"]).await;
    // The server reads its files from a directory of its own, which the rotation rewrites.
    let live = Certs::init(&[]).await;
    for file in ["time.pem", "time.key", "ca.pem"] {
        fs::copy(old.path(file), live.path(file)).unwrap();
    }
    let server = tls_time_server(&live.server_flags(true), old.client(Some("alice"))).await;

    let mut watch = watch_ticks(server.channel().await).await;
    within("a first tick", LIMIT, watch.next())
        .await
        .expect("a tick")
        .expect("a reply");

    for file in ["time.pem", "time.key", "ca.pem"] {
        fs::copy(new.path(file), live.path(file)).unwrap();
    }
    server.signal(libc::SIGHUP);
    wait_until("a client of the new CA gets in", LIMIT, async || {
        get_time(&server, new.client(Some("alice"))).await.is_ok()
    })
    .await;
    assert!(
        get_time(&server, old.client(Some("alice"))).await.is_err(),
        "a client of the old CA still gets in"
    );
    assert!(
        server
            .log_line("TLS certificates reloaded", LIMIT)
            .await
            .is_some()
    );
    for _ in 0..3 {
        within("a tick after the rotation", LIMIT, watch.next())
            .await
            .expect("the stream opened before stays open")
            .expect("a reply");
    }

    // A broken file on the next SIGHUP: the server says so and keeps the new certificates.
    fs::write(live.path("time.pem"), "not a certificate").unwrap();
    server.signal(libc::SIGHUP);
    assert!(
        server
            .log_line("TLS certificates not reloaded", LIMIT)
            .await
            .is_some(),
        "{}",
        server.logs()
    );
    assert_eq!(get_time(&server, new.client(Some("alice"))).await, Ok(()));
}

#[tokio::test]
async fn tls_flags_that_do_not_go_together_exit_64_and_files_that_do_not_work_exit_1_naming_them() {
    let certs = Certs::init(&[]).await;
    let (cert, key, ca) = (certs.pem("time"), certs.key("time"), certs.pem("ca"));
    let bad_usage: [(&[&str], &str); 2] = [
        (&["--tls-cert", &cert], "--tls-key"),
        (&["--tls-client-ca", &ca], "--tls-cert"),
    ];
    for (args, named) in bad_usage {
        let out = run_binary("time-server", args, &[]).await;
        assert_eq!(out.code, Some(64), "{args:?}: {out:?}");
        assert!(out.stderr.contains(named), "{args:?}: {}", out.stderr);
    }

    let missing = certs.path("missing.pem");
    let missing = missing.to_str().unwrap();
    let not_a_ca = certs.path("not-a-ca.pem");
    fs::write(&not_a_ca, "hello").unwrap();
    let not_a_ca = not_a_ca.to_str().unwrap();
    let bank_key = certs.key("bank");
    let failing: [(&[&str], &str); 3] = [
        (&["--tls-cert", missing, "--tls-key", &key], "missing.pem"),
        (
            &["--tls-cert", &cert, "--tls-key", &bank_key],
            "do not make a certificate and its key",
        ),
        (
            &[
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-client-ca",
                not_a_ca,
            ],
            "not-a-ca.pem",
        ),
    ];
    for (args, named) in failing {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = run_binary("time-server", &all, &[]).await;
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(out.stderr.contains(named), "{args:?}: {}", out.stderr);
    }
}

#[tokio::test]
async fn the_cli_reaches_a_mutual_tls_server_with_ca_cert_and_key_and_says_why_when_refused() {
    let certs = Certs::init(&["alice"]).await;
    let server = tls_time_server(&certs.server_flags(true), certs.client(Some("alice"))).await;
    let addr = server.addr.to_string();
    let (ca, cert, key) = (certs.pem("ca"), certs.pem("alice"), certs.key("alice"));

    let flags = [
        "--ca", &ca, "--cert", &cert, "--key", &key, "--addr", &addr, "time",
    ];
    let out = township_with(&flags, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Have a nice day!"), "{out:?}");
    let env = [
        ("TOWNSHIP_CA", ca.as_str()),
        ("TOWNSHIP_CERT", &cert),
        ("TOWNSHIP_KEY", &key),
    ];
    let out = township_with(&["health", &addr], &env).await;
    assert_eq!(out.code, Some(0), "the same from the environment: {out:?}");

    let out = township_with(
        &["--ca", &ca, "--addr", &addr, "--retries", "0", "time"],
        &[],
    )
    .await;
    // TLS 1.3 refuses a client's certificate after the client's side of the handshake is done,
    // so the client learns it from an alert or from the connection closing, whichever it reads.
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr.contains("cannot reach the time service"),
        "{}",
        out.stderr
    );
    let out = township_with(&["--addr", &addr, "--retries", "0", "time"], &[]).await;
    assert_eq!(out.code, Some(3), "plaintext to a TLS server: {out:?}");
    let out = township_with(
        &["--ca", &ca, "--cert", &cert, "--addr", &addr, "time"],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(2), "--cert without --key: {out:?}");
    let out = township_with(&["--ca", "/no/such/ca.pem", "--addr", &addr, "time"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("/no/such/ca.pem"), "{}", out.stderr);
}

#[tokio::test]
async fn health_listen_answers_plaintext_health_probes_of_a_tls_server_and_serves_nothing_else() {
    let certs = Certs::init(&[]).await;
    let mut flags = certs.server_flags(true);
    flags.extend(["--health-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let server = tls_time_server(&flags, certs.client(Some("bank"))).await;
    let line = server
        .stdout_line("health listening on ", LIMIT)
        .await
        .expect("the health listener is announced");
    let addr: std::net::SocketAddr = line["health listening on ".len()..].parse().unwrap();
    assert_ne!(addr, server.addr);

    assert_eq!(
        health_status(addr, "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health_status(addr, "township.time.v1.TimeService")
            .await
            .unwrap(),
        ServingStatus::Serving
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = TimeServiceClient::new(channel)
        .get_time(township_proto::time::v1::GetTimeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(
        health_status(server.addr, "").await.is_err(),
        "the gRPC port itself stays TLS only"
    );
}

#[tokio::test]
async fn over_mutual_tls_a_lease_is_its_takers_a_stranger_with_its_id_finds_nothing_and_inspect_shows_the_principal()
 {
    use township_proto::lock::v1::{
        AcquireRequest, InspectRequest, LockTarget, Mode, RefreshRequest, ReleaseRequest,
        lock_service_client::LockServiceClient,
    };
    let certs = Certs::init(&["mallory"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--data-dir".to_owned(),
        dir.path().to_str().unwrap().to_owned(),
    ];
    args.extend(certs.service_flags("lock", true));
    let server = tls_service("lock-server", &args, certs.client(Some("bank"))).await;
    let as_principal = async |who: &str| {
        let channel = server
            .endpoint()
            .tls_config(certs.client(Some(who)))
            .unwrap()
            .connect()
            .await
            .unwrap();
        LockServiceClient::new(channel)
    };
    let mut bank = as_principal("bank").await;
    let mut mallory = as_principal("mallory").await;

    let lease = bank
        .acquire(AcquireRequest {
            targets: vec![LockTarget {
                resource: "account/1".into(),
                mode: Mode::Write.into(),
            }],
            owner: "bank-a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let inspect = mallory
        .inspect(InspectRequest {
            resource_prefix: "account/".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let holder = &inspect.resources[0].holders[0];
    assert_eq!(holder.principal, "spiffe://township/bank");
    assert_eq!(holder.owner, "bank-a");
    assert!(
        !format!("{inspect:?}").contains(&lease.lease_id),
        "{inspect:?}"
    );

    // Even told the full id, a stranger gets what an unknown id gets.
    let id = lease.lease_id.clone();
    let release = mallory
        .release(ReleaseRequest {
            lease_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(release.code(), tonic::Code::NotFound, "{release:?}");
    let refresh = mallory
        .refresh(RefreshRequest {
            lease_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refresh.code(), tonic::Code::NotFound, "{refresh:?}");
    let unknown = mallory
        .release(ReleaseRequest {
            lease_id: "1-0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        release.message(),
        unknown.message(),
        "refusals reveal nothing"
    );
    // The same on a Session stream.
    let session = &mut Session::open(&mallory).await;
    session.release(7, &id).await;
    let error = session.error(7).await;
    assert_eq!(error.code, tonic::Code::NotFound as i32, "{error:?}");
    let still = bank
        .inspect(InspectRequest {
            resource_prefix: "account/".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        still.resources[0].holders.len(),
        1,
        "the bank's lease stands"
    );
    bank.release(ReleaseRequest { lease_id: id })
        .await
        .expect("its taker releases it");
}
