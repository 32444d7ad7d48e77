//! The book's own tests, on a SQLite file (the integration tests run the service on both
//! backends).

use super::*;
use township_store::Database;

use crate::types::{Label, Name};

/// A book on a fresh SQLite file (keep the directory as long as the book).
async fn book() -> (tempfile::TempDir, Book) {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite {
        dir: dir.path().to_owned(),
        file: "phonebook.db".into(),
    };
    let book = Book::open(&database).await.unwrap();
    (dir, book)
}

fn new_entry(name: &str, number: &str) -> NewEntry {
    NewEntry {
        name: Name::parse("name", name).unwrap(),
        number: Number::parse("number", number, "US".parse().unwrap()).unwrap(),
        label: Label::default(),
    }
}

#[tokio::test]
async fn concurrent_adds_all_land_with_distinct_ids() {
    let (_dir, book) = book().await;
    let adds = (0..100).map(|i| {
        let book = book.clone();
        tokio::spawn(async move {
            book.add_one(new_entry(
                &format!("Person {i}"),
                &format!("+1 201 555 {i:04}"),
            ))
            .await
        })
    });
    let mut ids = Vec::new();
    for add in adds {
        ids.push(add.await.unwrap().unwrap().id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
    assert_eq!(book.list(None, 1000).await.unwrap().len(), 100);
}

#[tokio::test]
async fn a_batch_rejects_duplicates_one_by_one() {
    let (_dir, book) = book().await;
    let results = book
        .add(vec![
            new_entry("Zoë", "+12015550100"),
            new_entry("ZOE", "(201) 555-0100"),
            new_entry("Zoë", "+12015550101"),
        ])
        .await
        .unwrap();
    let first = results[0].as_ref().unwrap().id;
    assert!(matches!(results[1], Err(Error::Duplicate(id)) if id == first));
    assert!(results[2].is_ok());
    assert_eq!(book.lookup("zoe").await.unwrap().len(), 2);
}

#[tokio::test]
async fn updates_need_the_current_etag() {
    let (_dir, book) = book().await;
    let entry = book
        .add_one(new_entry("Ada", "+12015550100"))
        .await
        .unwrap();
    let change = |etag| Change {
        id: entry.id,
        etag,
        name: None,
        number: None,
        label: Some(Label::parse("label", "work").unwrap()),
    };
    let updated = book.update(change(entry.etag)).await.unwrap();
    assert_eq!(updated.label, "work");
    assert_ne!(updated.etag, entry.etag);
    assert!(matches!(
        book.update(change(entry.etag)).await,
        Err(Error::StaleEtag { current }) if current == updated.etag
    ));
    assert!(matches!(
        book.delete(entry.id, Some(entry.etag)).await,
        Err(Error::StaleEtag { .. })
    ));
    book.delete(entry.id, Some(updated.etag)).await.unwrap();
    assert!(matches!(book.get(entry.id).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn search_lists_prefix_matches_first_and_pages_without_gaps() {
    let (_dir, book) = book().await;
    for (i, name) in [
        "Anna Smith",
        "Smith Jones",
        "Bob Smithers",
        "Carol",
        "smith",
    ]
    .iter()
    .enumerate()
    {
        book.add_one(new_entry(name, &format!("+1201555{i:04}")))
            .await
            .unwrap();
    }
    let query = Query::parse("SMITH", "US".parse().unwrap()).unwrap();
    let mut names = Vec::new();
    let mut after = None;
    loop {
        let page = book.search(&query, after.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        let (last, group) = page.last().unwrap().clone();
        after = Some(last.cursor(group));
        names.extend(page.into_iter().map(|(e, g)| (e.name, g)));
    }
    let expected = [
        ("smith", 0),
        ("Smith Jones", 0),
        ("Anna Smith", 1),
        ("Bob Smithers", 1),
    ];
    assert_eq!(names, expected.map(|(n, g)| (n.to_owned(), g)).to_vec());
}

#[tokio::test]
async fn search_by_digits_lists_number_prefixes_first() {
    let (_dir, book) = book().await;
    book.add_one(new_entry("Inner", "+44 20 7946 1201"))
        .await
        .unwrap();
    book.add_one(new_entry("Prefix", "+1 201 555 0100"))
        .await
        .unwrap();
    book.add_one(new_entry("Neither", "+44 20 7946 0000"))
        .await
        .unwrap();
    let query = Query::parse("1201", "US".parse().unwrap()).unwrap();
    let hits = book.search(&query, None, 10).await.unwrap();
    let names: Vec<_> = hits.iter().map(|(e, g)| (e.name.as_str(), *g)).collect();
    assert_eq!(names, [("Prefix", 0), ("Inner", 1)]);
}

#[tokio::test]
async fn a_search_in_national_format_finds_the_regions_numbers_first() {
    let (_dir, book) = book().await;
    for (name, number) in [
        ("London", "+44 20 7946 0958"),
        ("Elsewhere", "+1 201 555 0100"),
        ("Inner", "+1 210 207 9461"),
    ] {
        book.add_one(new_entry(name, number)).await.unwrap();
    }
    let query = Query::parse("020 7946", "GB".parse().unwrap()).unwrap();
    let hits = book.search(&query, None, 10).await.unwrap();
    let names: Vec<_> = hits.iter().map(|(e, g)| (e.name.as_str(), *g)).collect();
    assert_eq!(names, [("London", 0), ("Inner", 1)]);
}

#[tokio::test]
async fn the_same_number_with_another_extension_is_not_a_duplicate() {
    let (_dir, book) = book().await;
    let front_desk = book
        .add_one(new_entry("Acme", "+1 201 555 0100 ext. 46"))
        .await
        .unwrap();
    assert_eq!(front_desk.number.extension(), Some("46"));
    book.add_one(new_entry("Acme", "+1 201 555 0100 ext. 47"))
        .await
        .expect("another extension");
    book.add_one(new_entry("Acme", "+1 201 555 0100"))
        .await
        .expect("no extension");
    let again = book
        .add_one(new_entry("acme", "+1 (201) 555-0100 x46"))
        .await;
    assert!(
        matches!(again, Err(Error::Duplicate(id)) if id == front_desk.id),
        "{again:?}"
    );
}

#[test]
fn a_prefix_range_ends_just_above_every_string_with_that_prefix() {
    assert_eq!(prefix_end("smith"), "smiti");
    assert_eq!(prefix_end("ab\u{10FFFF}"), "ac");
    assert_eq!(prefix_end("\u{D7FF}"), "\u{E000}");
    for name in ["smith", "smith jones", "smith\u{FFFD}", "smith\u{10FFFD}"] {
        assert!(
            name >= "smith" && name < prefix_end("smith").as_str(),
            "{name}"
        );
    }
}
