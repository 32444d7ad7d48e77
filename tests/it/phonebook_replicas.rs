//! Phone book replicas on one PostgreSQL database: what one writes the other reads at once, a
//! page token one signs the other honours, and replicas started together on an empty database
//! all come up. (The concurrency tests in `phonebook.rs` race two replicas on PostgreSQL too.)

use tonic::Code;
use township_proto::phonebook::v1 as pb;

use crate::support::{
    phonebook::*,
    status::*,
    storage::{Backend, Storage},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_one_replica_is_read_through_the_other_at_once() {
    let book = phonebook_replicas(Backend::Postgres).await;
    let (one, other) = (client(book.server(0)).await, client(book.server(1)).await);
    let entry = add(&one, "Ada Lovelace", &us(1), "home").await.unwrap();
    assert_eq!(get(&other, &entry.id).await.unwrap(), entry);
    assert_eq!(
        lookup(&other, "ada lovelace").await.unwrap(),
        vec![entry.clone()]
    );

    let relabelled = pb::Entry {
        label: "work".into(),
        ..entry.clone()
    };
    let updated = update(&other, relabelled, &entry.etag, Some(&["label"]))
        .await
        .unwrap();
    assert_eq!(get(&one, &entry.id).await.unwrap(), updated);
    expect_code(
        update(&one, entry.clone(), &entry.etag, None).await,
        Code::Aborted,
    );
    delete(&one, &updated.id, &updated.etag).await.unwrap();
    expect_code(get(&other, &entry.id).await, Code::NotFound);
    assert_eq!(export(&other).await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_token_from_one_replica_works_on_another() {
    let book = phonebook_replicas(Backend::Postgres).await;
    let (one, other) = (client(book.server(0)).await, client(book.server(1)).await);
    let requests = (0..9)
        .map(|i| request(&format!("Smith {i}"), &us(i), ""))
        .collect();
    let added = batch_added(&one, requests).await;

    let search_page = search(&one, "smith", 4, "").await.unwrap();
    let searched: Vec<pb::Entry> = search_page
        .entries
        .into_iter()
        .chain(search_from(&other, "smith", 4, &search_page.next_page_token).await)
        .collect();
    assert_eq!(
        searched, added,
        "the rest from the other replica, no gap, no repeat"
    );

    let list_page = list(&other, 4, "").await.unwrap();
    let listed: Vec<pb::Entry> = list_page
        .entries
        .into_iter()
        .chain(list_from(&one, 4, &list_page.next_page_token).await)
        .collect();
    assert_eq!(listed, added, "and back, no gap, no repeat");

    // A forged token is refused by both alike.
    let forged = flip_a_character(&list_page.next_page_token);
    for rpc in [&one, &other] {
        let refused = list(rpc, 4, &forged).await;
        expect_invalid(refused, "page_token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_started_at_once_on_an_empty_database_all_come_up() {
    let first = Storage::new(Backend::Postgres).await;
    let storage = [first.replica(), first.replica(), first];
    // Together: their migrations race.
    let (a, b, c) = tokio::join!(
        phonebook_on(&storage[0], None, &[]),
        phonebook_on(&storage[1], None, &[]),
        phonebook_on(&storage[2], None, &[]),
    );
    let servers = [a, b, c];
    let mut ids = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        let rpc = client(server).await;
        let entry = add(&rpc, &format!("Replica {n}"), &us(n as u32), "")
            .await
            .unwrap();
        ids.push(entry.id);
    }
    let all = export(&client(&servers[0]).await).await;
    assert_eq!(crate::support::phonebook::ids(&all), ids);
}
