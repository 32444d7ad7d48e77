//! What a phone book entry may hold and how names match: names, numbers and labels refused
//! naming the field, national numbers read in the server's region and an extension part of the
//! number, Unicode-, case- and accent-insensitive lookup in several scripts (Indic vowel signs
//! told apart), and SQL-, quote- and LIKE-looking text stored and searched as plain data.

use tonic::Code;

use crate::support::{
    phonebook::*,
    status::*,
    storage::{Backend, Storage, on_both_backends},
};

// On SQLite and on PostgreSQL alike.
on_both_backends!(
    lookup_ignores_case_accents_and_spacing_in_every_script,
    a_name_that_looks_like_sql_is_stored_and_found_as_plain_data,
    search_treats_percent_underscore_and_backslash_literally,
    an_extension_is_part_of_the_number_and_a_national_search_finds_international_numbers,
);

// ----- field errors -----

#[tokio::test]
async fn names_must_be_1_to_200_characters_without_control_characters() {
    let (_dir, _server, rpc) = phonebook().await;
    let ascii_201 = "a".repeat(201);
    let accented_201 = "é".repeat(201);
    for (bad, problem) in [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("\u{301}\u{308}", "combining marks"),
        (ascii_201.as_str(), "at most 200 characters (got 201)"),
        (accented_201.as_str(), "at most 200 characters (got 201)"),
        ("Ada\u{0}Lovelace", "control characters"),
        ("Ada\u{7}", "control characters"),
        ("Ada\nLovelace", "control characters"),
        ("Ada\u{1b}[31m", "control characters"),
    ] {
        let status = expect_invalid(add(&rpc, bad, &us(1), "").await, "name");
        assert!(status.message().contains(problem), "{bad:?}: {status:?}");
    }
    assert!(export(&rpc).await.is_empty(), "nothing was added");

    let accented_200 = "é".repeat(200);
    let long = add(&rpc, &accented_200, &us(2), "").await.unwrap();
    assert_eq!(
        long.name, accented_200,
        "200 characters, 400 bytes, are fine"
    );
    let padded = format!("  {}  ", "b".repeat(200));
    let trimmed = add(&rpc, &padded, &us(3), "").await.unwrap();
    assert_eq!(trimmed.name, "b".repeat(200), "counted after trimming");
    assert_eq!(lookup(&rpc, &"É".repeat(200)).await.unwrap(), vec![long]);
}

#[tokio::test]
async fn invalid_numbers_are_invalid_argument_naming_number() {
    let (_dir, _server, rpc) = phonebook().await;
    let too_long = "9".repeat(100);
    for bad in [
        "",
        "   ",
        "12",
        "hello",
        "+999 123",
        "555-0123-555-0123-555",
        "+1 000 000 0000",
        too_long.as_str(),
    ] {
        let status = expect_invalid(add(&rpc, "Ada", bad, "").await, "number");
        assert!(
            status.message().starts_with("number:"),
            "{bad:?}: {status:?}"
        );
    }
    let status = expect_invalid(add(&rpc, "Ada", "hello", "").await, "number");
    assert!(
        status
            .message()
            .contains("\"hello\" is not a valid phone number"),
        "quotes the number: {status:?}"
    );
    assert!(
        status.message().contains("US"),
        "names the region: {status:?}"
    );
    assert!(export(&rpc).await.is_empty(), "nothing was added");
}

#[tokio::test]
async fn labels_longer_than_64_characters_are_invalid_argument() {
    let (_dir, _server, rpc) = phonebook().await;
    let status = expect_invalid(add(&rpc, "Ada", &us(1), &"l".repeat(65)).await, "label");
    assert!(
        status.message().contains("at most 64 characters (got 65)"),
        "{status:?}"
    );
    let status = expect_invalid(add(&rpc, "Ada", &us(1), "home\u{7}x").await, "label");
    assert!(
        status.message().contains("control characters"),
        "{status:?}"
    );
    assert!(export(&rpc).await.is_empty(), "nothing was added");
    let longest = "ł".repeat(64);
    let entry = add(&rpc, "Ada", &us(1), &longest).await.unwrap();
    assert_eq!(entry.label, longest);
}

// ----- Unicode -----

async fn lookup_ignores_case_accents_and_spacing_in_every_script(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let cases: &[(&str, &[&str])] = &[
        (
            "Zoë Ångström",
            &[
                "zoe angstrom",
                "  ZOË   ÅNGSTRÖM ",
                "Zoe\u{308} A\u{30a}ngstro\u{308}m",
                "ZOE\tANGSTROM",
            ],
        ),
        ("Straße", &["STRASSE", "strasse", "STRAẞE"]),
        ("Nguyễn Văn An", &["nguyen van an", "NGUYEN  VAN AN"]),
        ("İpek Çelik", &["ipek celik", "IPEK ÇELIK"]),
        (
            "Νίκος Παπαδόπουλος",
            &["ΝΙΚΟΣ ΠΑΠΑΔΟΠΟΥΛΟΣ", "νικος παπαδοπουλος"],
        ),
        ("Ἀθηνᾶ", &["αθηνα", "ΑΘΗΝΑ"]),
        (
            "Фёдор Достоевский",
            &["федор достоевский", "ФЕДОР ДОСТОЕВСКИЙ"],
        ),
        ("王 小明", &["王\u{3000}小明", " 王  小明 "]),
        ("李小龍", &["李小龍"]),
        ("ガンダム", &["ｶﾞﾝﾀﾞﾑ"]),
        ("مُحَمَّد", &["محمد"]),
        ("ＭＡＲＩＡ", &["maria", "Maria"]),
    ];
    let mut added = Vec::new();
    for (i, (name, _)) in cases.iter().enumerate() {
        let entry = add(&rpc, name, &us(i as u32), "").await.unwrap();
        assert_eq!(entry.name, *name, "stored as given");
        added.push(entry);
    }
    for ((name, spellings), entry) in cases.iter().zip(&added) {
        assert_eq!(
            lookup(&rpc, name).await.unwrap(),
            vec![entry.clone()],
            "{name}"
        );
        for spelling in spellings.iter() {
            let found = lookup(&rpc, spelling).await.unwrap();
            assert_eq!(found, vec![entry.clone()], "{spelling:?} finds {name:?}");
        }
    }
    assert!(
        lookup(&rpc, "zoe").await.unwrap().is_empty(),
        "whole names only"
    );
    assert!(lookup(&rpc, "Zoë Ångström Jr").await.unwrap().is_empty());
    // The same name spelt otherwise with the same number is the same entry.
    let status = expect_code(
        add(&rpc, "ZOE ANGSTROM", &us(0), "").await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains(&added[0].id), "{status:?}");
}

/// Devanagari (like the other Indic scripts) writes most vowels as combining vowel signs: they
/// are letters of the name, not accents. मीना (Meena) and मोना (Mona) are two names.
#[tokio::test]
async fn lookup_tells_apart_names_that_differ_only_in_indic_vowel_signs() {
    let (_dir, _server, rpc) = phonebook().await;
    let meena = add(&rpc, "मीना", &us(1), "").await.unwrap();
    let mona = add(&rpc, "मोना", &us(2), "").await.unwrap();
    assert_eq!(
        lookup(&rpc, "मीना").await.unwrap(),
        vec![meena.clone()],
        "Lookup(मीना) must not find मोना"
    );
    assert_eq!(lookup(&rpc, "मोना").await.unwrap(), vec![mona]);
    // Two people sharing one home number are two entries, not a duplicate.
    let home = add(&rpc, "मोना", &us(1), "home").await;
    assert!(home.is_ok(), "मोना may share मीना's number: {home:?}");
}

async fn a_name_that_looks_like_sql_is_stored_and_found_as_plain_data(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let other = add(&rpc, "Alice", &us(1), "").await.unwrap();
    let sql = "Robert'); DROP TABLE entries;--";
    let bobby = add(&rpc, sql, &us(2), "'; DELETE FROM entries; --")
        .await
        .unwrap();
    assert_eq!(bobby.name, sql);
    assert_eq!(bobby.label, "'; DELETE FROM entries; --");
    assert_eq!(get(&rpc, &bobby.id).await.unwrap(), bobby);
    assert_eq!(lookup(&rpc, sql).await.unwrap(), vec![bobby.clone()]);
    assert_eq!(
        lookup(&rpc, "ROBERT'); drop table ENTRIES;--")
            .await
            .unwrap(),
        vec![bobby.clone()]
    );
    let found = search(&rpc, "drop table", 10, "").await.unwrap();
    assert_eq!(found.entries, vec![bobby.clone()]);
    let quote = search(&rpc, "'", 10, "").await.unwrap();
    assert_eq!(quote.entries, vec![bobby.clone()]);
    // Quotes, backslashes and escape-like text are data too, one by one and in a batch.
    let tricky = [
        r#"Dwayne "The Rock" Johnson"#,
        r"C:\Users\ada \u0041 \n",
        "Ada 👩🏽‍💻 𝒜𝒹𝒶",
        r#"{"name": "injected"}"#,
    ];
    let one = add(&rpc, tricky[0], &us(3), r#"say "hi""#).await.unwrap();
    assert_eq!(
        (one.name.as_str(), one.label.as_str()),
        (tricky[0], r#"say "hi""#)
    );
    let requests = tricky[1..]
        .iter()
        .enumerate()
        .map(|(i, name)| request(name, &us(4 + i as u32), r"\ tricky"))
        .collect();
    let many = batch_added(&rpc, requests).await;
    assert_eq!(names(&many), tricky[1..]);
    for entry in std::iter::once(&one).chain(&many) {
        assert_eq!(get(&rpc, &entry.id).await.unwrap(), *entry);
        let found = lookup(&rpc, &entry.name).await.unwrap();
        assert_eq!(found, vec![entry.clone()]);
    }
    assert_eq!(
        export(&rpc).await,
        [vec![other, bobby, one], many].concat(),
        "the table is still there"
    );
}

async fn search_treats_percent_underscore_and_backslash_literally(backend: Backend) {
    let (_dir, _server, rpc) = phonebook_with(backend).await;
    let percent = add(&rpc, "100% Pure", &us(1), "").await.unwrap();
    let underscore = add(&rpc, "Snake_Case", &us(2), "").await.unwrap();
    let backslash = add(&rpc, r"Back\Slash", &us(3), "").await.unwrap();
    add(&rpc, "Plain Name", &us(4), "").await.unwrap();
    let found = |query: &'static str| {
        let rpc = rpc.clone();
        async move { search(&rpc, query, 10, "").await.unwrap().entries }
    };
    assert_eq!(found("%").await, vec![percent]);
    assert_eq!(found("_").await, vec![underscore]);
    assert_eq!(found(r"\").await, vec![backslash]);
    assert!(found("%%").await.is_empty());
}

// ----- extensions and national numbers -----

#[tokio::test]
async fn national_numbers_are_read_in_the_server_region() {
    let dir = tempfile::tempdir().unwrap();
    let server = phonebook_server(dir.path(), None, &["--region", "GB"]).await;
    let rpc = client(&server).await;
    let london = add(&rpc, "Big Ben", "020 7946 0958", "").await.unwrap();
    assert_eq!(london.number, "+442079460958");
    assert_eq!(london.display_number, "+44 20 7946 0958");
    let international = add(&rpc, "Ada", "+1 (201) 555-0123", "").await.unwrap();
    assert_eq!(international.number, "+12015550123");
    let status = expect_invalid(add(&rpc, "Nobody", "12", "").await, "number");
    assert!(
        status.message().contains("GB"),
        "names the region: {status:?}"
    );
}

async fn an_extension_is_part_of_the_number_and_a_national_search_finds_international_numbers(
    backend: Backend,
) {
    let dir = Storage::new(backend).await;
    let server = phonebook_on(&dir, None, &["--region", "GB"]).await;
    let rpc = client(&server).await;
    let desk = add(&rpc, "Acme", "+44 20 7946 0958 ext. 46", "desk")
        .await
        .unwrap();
    assert_eq!(
        (
            desk.number.as_str(),
            desk.extension.as_str(),
            desk.display_number.as_str()
        ),
        ("+442079460958", "46", "+44 20 7946 0958 x46")
    );
    let other = add(&rpc, "Acme", "020 7946 0958 x47", "").await.unwrap();
    assert_eq!(other.extension, "47", "another extension is another number");
    let plain = add(&rpc, "Acme", "+44 20 7946 0958", "").await.unwrap();
    assert_eq!(plain.extension, "");
    let again = expect_code(
        add(&rpc, "acme", "+44 (20) 7946-0958 ext. 46", "").await,
        Code::AlreadyExists,
    );
    assert!(again.message().contains(&desk.id), "{again:?}");

    let _elsewhere = add(&rpc, "Elsewhere", "+1 201 555 0100", "").await.unwrap();
    let found = search(&rpc, "020 7946", 0, "").await.unwrap();
    let mut ids: Vec<&str> = found.entries.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    let mut acme = vec![desk.id.as_str(), other.id.as_str(), plain.id.as_str()];
    acme.sort();
    assert_eq!(
        ids, acme,
        "the national digits find the GB numbers, and only them"
    );
}
