//! `township certs`, run as the real binary: `init` makes a CA and a certificate per service with
//! the names mutual TLS and the authorization policy rely on, keys mode 0600; re-running keeps
//! every file, `--renew` reissues certificates with the same keys, and no key is ever replaced;
//! `issue` makes a user's client certificate or a server certificate for a peer outside Township.

use std::{fs, net::IpAddr, path::Path};

use crate::support::{
    certs::{is_signed_by, mode, now, read_cert},
    cli::township_with,
};

const SERVICES: [&str; 6] = ["time", "doctor", "chat", "phonebook", "bank", "lock"];
const DAY: i64 = 24 * 3600;

async fn certs(args: &[&str], dir: &Path) -> township_tests::Output {
    let dir = dir.to_str().expect("a UTF-8 temp dir");
    let mut all = vec!["certs"];
    all.extend_from_slice(args);
    all.push(dir);
    township_with(&all, &[]).await
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn init_makes_a_ca_and_a_certificate_per_service_signed_by_it_with_keys_readable_only_by_their_owner()
 {
    let dir = tempfile::tempdir().unwrap();
    let out = certs(&["init"], dir.path()).await;
    assert_eq!(out.code, Some(0), "{out:?}");

    let ca = read_cert(&dir.path().join("ca.pem"));
    assert!(ca.is_ca, "{ca:?}");
    assert_eq!(ca.subject, ca.issuer);
    assert!(ca.not_after - now() > 9 * 365 * DAY, "{ca:?}");
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);

    let loopback: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    for service in SERVICES {
        let pem = dir.path().join(format!("{service}.pem"));
        let cert = read_cert(&pem);
        assert!(is_signed_by(&pem, &dir.path().join("ca.pem")), "{service}");
        assert_eq!(cert.issuer, ca.subject, "{service}");
        assert!(!cert.is_ca, "{service}");
        assert!(cert.server_auth && cert.client_auth, "{service}: {cert:?}");
        let mut dns = vec![service.to_owned()];
        match service {
            "bank" => dns.extend(["bank-a", "bank-b", "bank-c"].map(String::from)),
            "lock" => dns.extend(["lock-2", "lock-3"].map(String::from)),
            _ => {}
        }
        dns.push("localhost".to_owned());
        assert_eq!(cert.dns, dns, "{service}");
        assert_eq!(cert.ips, loopback, "{service}");
        assert_eq!(cert.uris, [format!("spiffe://township/{service}")]);
        assert!(cert.not_before <= now(), "{service}: not valid yet");
        let days = (cert.not_after - now()) / DAY;
        assert!((364..=365).contains(&days), "{service}: {days} days");
        assert_eq!(mode(&dir.path().join(format!("{service}.key"))), 0o600);
        let key = fs::read_to_string(dir.path().join(format!("{service}.key"))).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{service}");
        assert!(
            out.stdout.contains(&format!("{service}.pem")),
            "{}",
            out.stdout
        );
    }
    let serials: std::collections::BTreeSet<_> = SERVICES
        .iter()
        .map(|s| read_cert(&dir.path().join(format!("{s}.pem"))).serial)
        .collect();
    assert_eq!(serials.len(), SERVICES.len(), "serials are unique");
}

#[tokio::test]
async fn running_init_again_keeps_every_file_and_renew_reissues_each_certificate_with_its_own_key()
{
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(certs(&["init"], dir.path()).await.code, Some(0));
    let before = snapshot(dir.path());

    let out = certs(&["init"], dir.path()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(snapshot(dir.path()), before, "a second run changed files");
    assert_eq!(
        out.stdout.matches("kept ").count(),
        1 + SERVICES.len(),
        "{}",
        out.stdout
    );

    let out = certs(&["init", "--renew", "--valid-for", "30days"], dir.path()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let after = snapshot(dir.path());
    let names: Vec<_> = after.iter().map(|(name, _)| name).collect();
    let before_names: Vec<_> = before.iter().map(|(name, _)| name).collect();
    assert_eq!(names, before_names, "no file added or removed");
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        if name.ends_with(".key") {
            assert_eq!(old, new, "{name}: a key was replaced");
        } else {
            assert_ne!(old, new, "{name}: not reissued");
        }
    }
    for stem in std::iter::once("ca").chain(SERVICES) {
        let pem = dir.path().join(format!("{stem}.pem"));
        let old_pem = tempfile::NamedTempFile::new().unwrap();
        let old = &before
            .iter()
            .find(|(n, _)| *n == format!("{stem}.pem"))
            .unwrap()
            .1;
        fs::write(old_pem.path(), old).unwrap();
        let (old, new) = (read_cert(old_pem.path()), read_cert(&pem));
        assert_eq!(old.public_key, new.public_key, "{stem}: same key");
        assert_ne!(
            old.serial, new.serial,
            "{stem}: a renewal gets a new serial"
        );
        assert!(is_signed_by(&pem, &dir.path().join("ca.pem")), "{stem}");
        if stem != "ca" {
            let days = (new.not_after - now()) / DAY;
            assert!((29..=30).contains(&days), "{stem}: {days} days");
            // A certificate issued before the CA was renewed still verifies against it.
            assert!(
                is_signed_by(old_pem.path(), &dir.path().join("ca.pem")),
                "{stem}"
            );
        }
    }
}

#[tokio::test]
async fn issue_makes_a_users_client_certificate_and_a_server_certificate_with_the_names_given() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(certs(&["init"], dir.path()).await.code, Some(0));

    let out = certs(&["issue", "--name", "alice"], dir.path()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let pem = dir.path().join("alice.pem");
    let alice = read_cert(&pem);
    assert!(is_signed_by(&pem, &dir.path().join("ca.pem")));
    let other = tempfile::tempdir().unwrap();
    assert_eq!(certs(&["init"], other.path()).await.code, Some(0));
    assert!(
        !is_signed_by(&pem, &other.path().join("ca.pem")),
        "each init makes its own CA"
    );
    assert_eq!(alice.uris, ["spiffe://township/user/alice"]);
    assert!(alice.dns.is_empty() && alice.ips.is_empty(), "{alice:?}");
    assert!(alice.client_auth && !alice.server_auth, "{alice:?}");
    assert_eq!(mode(&dir.path().join("alice.key")), 0o600);

    let out = certs(
        &[
            "issue",
            "--server",
            "--name",
            "pg",
            "--dns",
            "db.internal",
            "--dns",
            "postgres",
            "--ip",
            "10.0.0.5",
        ],
        dir.path(),
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let pg = read_cert(&dir.path().join("pg.pem"));
    assert_eq!(pg.dns, ["db.internal", "postgres"]);
    assert_eq!(pg.ips, ["10.0.0.5".parse::<IpAddr>().unwrap()]);
    assert!(
        pg.uris.is_empty(),
        "an outside server is no Township principal: {pg:?}"
    );
    assert!(pg.server_auth && pg.client_auth, "{pg:?}");

    let out = certs(&["issue", "--server", "--name", "etcd-1"], dir.path()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(read_cert(&dir.path().join("etcd-1.pem")).dns, ["etcd-1"]);
}

#[tokio::test]
async fn with_ca_dir_the_cas_key_stays_there_and_dir_gets_only_a_copy_of_its_certificate() {
    let root = tempfile::tempdir().unwrap();
    let (ca_dir, dir) = (root.path().join("ca"), root.path().join("certs"));
    let ca_flag = ["--ca-dir", ca_dir.to_str().unwrap()];
    let out = certs(&[&["init"][..], &ca_flag].concat(), &dir).await;
    assert_eq!(out.code, Some(0), "{out:?}");

    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    assert!(
        !dir.join("ca.key").exists(),
        "the CA's key must not reach DIR"
    );
    assert_eq!(
        fs::read(dir.join("ca.pem")).unwrap(),
        fs::read(ca_dir.join("ca.pem")).unwrap()
    );
    for service in SERVICES {
        let pem = dir.join(format!("{service}.pem"));
        assert!(is_signed_by(&pem, &ca_dir.join("ca.pem")), "{service}");
        assert!(!ca_dir.join(format!("{service}.pem")).exists(), "{service}");
    }
    let before = snapshot(&dir);
    assert_eq!(
        certs(&[&["init"][..], &ca_flag].concat(), &dir).await.code,
        Some(0)
    );
    assert_eq!(snapshot(&dir), before, "a re-run keeps every file");

    let out = certs(&["issue", "--name", "alice"], &dir).await;
    assert_eq!(out.code, Some(2), "DIR has no CA key to sign with: {out:?}");
    assert!(out.stderr.contains("--ca-dir"), "{}", out.stderr);
    assert!(!dir.join("alice.pem").exists() && !dir.join("alice.key").exists());

    let mine = root.path().join("mine");
    let out = certs(
        &[&["issue", "--name", "alice"][..], &ca_flag].concat(),
        &mine,
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(is_signed_by(
        &mine.join("alice.pem"),
        &ca_dir.join("ca.pem")
    ));
    assert_eq!(
        fs::read(mine.join("ca.pem")).unwrap(),
        fs::read(ca_dir.join("ca.pem")).unwrap(),
        "a user's directory gets the CA certificate to trust servers by"
    );
    assert!(!mine.join("ca.key").exists());
}

#[tokio::test]
async fn issue_without_a_ca_or_with_a_name_unfit_or_taken_is_bad_usage_and_writes_nothing() {
    let empty = tempfile::tempdir().unwrap();
    let out = certs(&["issue", "--name", "alice"], empty.path()).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("township certs init"), "{}", out.stderr);
    assert!(snapshot(empty.path()).is_empty());

    let dir = tempfile::tempdir().unwrap();
    assert_eq!(certs(&["init"], dir.path()).await.code, Some(0));
    let before = snapshot(dir.path());
    for name in ["../alice", "Alice", "", "ca", "bank", "a b"] {
        let out = certs(&["issue", "--name", name], dir.path()).await;
        assert_eq!(out.code, Some(2), "{name:?}: {out:?}");
        assert!(out.stderr.contains("--name"), "{name:?}: {}", out.stderr);
    }
    let out = certs(&["issue", "--name", "alice", "--dns", "x"], dir.path()).await;
    assert_eq!(out.code, Some(2), "--dns needs --server: {out:?}");
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn a_certificate_without_its_key_or_a_key_others_can_read_is_refused_and_nothing_is_replaced()
{
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(certs(&["init"], dir.path()).await.code, Some(0));
    fs::remove_file(dir.path().join("lock.key")).unwrap();
    let before = snapshot(dir.path());
    let out = certs(&["init", "--renew"], dir.path()).await;
    assert_eq!(out.code, Some(6), "{out:?}");
    assert!(
        out.stderr.contains("lock.pem exists without its key"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.path().join("lock.key").exists(),
        "no key was made up for lock.pem"
    );
    let kept = snapshot(dir.path());
    for ((name, old), (_, new)) in before.iter().zip(&kept) {
        if name.ends_with(".key") || name == "lock.pem" {
            assert_eq!(old, new, "{name}");
        }
    }

    // A key left behind alone (a run cut short) gets its certificate.
    fs::remove_file(dir.path().join("lock.pem")).unwrap();
    fs::remove_file(dir.path().join("chat.pem")).unwrap();
    let chat_key = fs::read(dir.path().join("chat.key")).unwrap();
    let out = certs(&["init"], dir.path()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(fs::read(dir.path().join("chat.key")).unwrap(), chat_key);
    assert!(is_signed_by(
        &dir.path().join("chat.pem"),
        &dir.path().join("ca.pem")
    ));

    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.path().join("ca.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = certs(&["issue", "--name", "bob"], dir.path()).await;
    assert_eq!(out.code, Some(6), "{out:?}");
    assert!(
        out.stderr.contains("ca.key is readable by others"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("bob.pem").exists());
}
