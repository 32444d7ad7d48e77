//! Data directories made by this version, kept as SQL in `tests/it/fixtures`, open and serve what
//! they hold: when a later version adds a migration, these are the data it must carry over. (The
//! bank's and the doctor's directories from before their migrations are tested beside their
//! other storage tests.)

use crate::support::{
    chat::{self, story},
    fixtures::{restore_dump, schema_versions},
    phonebook::{self, list, search},
};

#[tokio::test]
async fn a_chat_data_dir_at_schema_1_serves_its_transcript_and_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat.db");
    restore_dump(&file, include_str!("fixtures/chat-at-schema-1/chat.sql")).await;
    let server = chat::chat_server(dir.path(), &[]).await;
    let rpc = chat::connect(&server).await;
    assert_eq!(schema_versions(&file).await, [1]);
    let before = [
        "ada joined",
        "ada: hello, is anyone here?",
        "ada: a line\nwith a break and a \\ backslash",
        "ada left (left)",
    ];
    assert_eq!(story(&rpc, "lobby").await, before);
    let _bob = chat::joined(&rpc, "lobby", "bob", 4).await;
    assert_eq!(chat::sent(&rpc, "lobby", "bob", "still here", "").await, 6);
}

#[tokio::test]
async fn a_phonebook_data_dir_at_schema_1_serves_its_entries_extensions_included() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("phonebook.db");
    restore_dump(
        &file,
        include_str!("fixtures/phonebook-at-schema-1/phonebook.sql"),
    )
    .await;
    let server = phonebook::phonebook_server(dir.path(), None, &[]).await;
    let rpc = phonebook::client(&server).await;
    assert_eq!(schema_versions(&file).await, [1]);
    let entries = list(&rpc, 0, "").await.unwrap().entries;
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.number.as_str(), e.extension.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("Ada Lovelace", "+442079460958", ""),
            ("Ada Lovelace", "+442079460958", "46"),
            ("Zoë Ångström", "+12015550123", ""),
        ]
    );
    assert_eq!(search(&rpc, "zoe", 0, "").await.unwrap().entries.len(), 1);
}
