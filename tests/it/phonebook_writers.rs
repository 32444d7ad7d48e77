//! The phone book is shared, so reading stays open; with the sample policy
//! (`docker/phonebook-policy.json`, shown in the README) only editors may write: add, batch add,
//! update and delete (an import is adds), while everyone reads.

use tonic::Code;
use township_proto::phonebook::v1::phone_book_service_client::PhoneBookServiceClient;

use crate::support::{
    phonebook::{Rpc, add, batch, delete, request, search, update},
    status::expect_code,
    tls::{Certs, channel_as, tls_service},
};

/// The policy the README offers, as the repository ships it.
const SAMPLE_POLICY: &str = include_str!("../../docker/phonebook-policy.json");

async fn as_user(server: &township_tests::ServiceProcess, certs: &Certs, who: &str) -> Rpc {
    PhoneBookServiceClient::new(channel_as(server, certs, who).await)
}

#[tokio::test]
async fn with_the_sample_policy_everyone_reads_and_only_editors_write() {
    let certs = Certs::init(&["alice", "editor-ed"]).await;
    let policy = certs.path("phonebook-policy.json");
    std::fs::write(&policy, SAMPLE_POLICY).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut flags = certs.service_flags("phonebook", true);
    flags.extend([
        "--authz-policy".to_owned(),
        policy.to_str().unwrap().to_owned(),
        "--data-dir".to_owned(),
        data.path().to_str().unwrap().to_owned(),
    ]);
    let server = tls_service("phonebook-server", &flags, certs.client(Some("alice"))).await;
    let alice = as_user(&server, &certs, "alice").await;
    let editor = as_user(&server, &certs, "editor-ed").await;

    let entry = add(&editor, "Ada Lovelace", "+44 20 7946 0958", "work")
        .await
        .expect("an editor adds");
    let found = search(&alice, "ada", 0, "").await.expect("everyone reads");
    assert_eq!(found.entries.len(), 1);

    let denied = expect_code(
        add(&alice, "Mallory", "+44 20 7946 0000", "").await,
        Code::PermissionDenied,
    );
    assert!(denied.message().contains("AddEntry"), "{denied:?}");
    expect_code(
        batch(&alice, vec![request("Mallory", "+44 20 7946 0001", "")]).await,
        Code::PermissionDenied,
    );
    expect_code(
        delete(&alice, &entry.id, &entry.etag).await,
        Code::PermissionDenied,
    );
    let renamed = township_proto::phonebook::v1::Entry {
        name: "Mallory".into(),
        ..entry.clone()
    };
    expect_code(
        update(&alice, renamed, &entry.etag, Some(&["name"])).await,
        Code::PermissionDenied,
    );
    let book = search(&alice, "a", 0, "").await.unwrap();
    assert_eq!(book.entries.len(), 1, "nothing alice tried was written");
    delete(&editor, &entry.id, &entry.etag)
        .await
        .expect("an editor deletes");
}
