//! The `township phonebook` CLI against a real phonebook-server: entries added, looked up (case
//! and accents ignored), searched, listed page by page, changed under etags and removed, in text
//! and `--json`; a 10,000-row CSV imported, exported, and imported again into a second server with
//! the same entries; bad rows reported one by one with exit 1; usage errors exit 2; a server that
//! is down exits 3.

use std::collections::BTreeSet;

use serde_json::Value;
use township_tests::{closed_port, run, township};

use crate::support::{cli::*, phonebook_cli::*};

#[tokio::test]
async fn an_entry_is_added_found_without_case_or_accents_changed_and_removed_as_text() {
    let book = start_book().await;
    let out = book
        .run(&["add", "Zoë Ångström", "(201) 555-0123", "--label", "home"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let added = out.stdout.trim_end();
    assert!(added.starts_with("added "), "{out:?}");
    assert!(
        added.ends_with("  Zoë Ångström  +1 201-555-0123  [home]  etag v1"),
        "{out:?}"
    );
    let id = added
        .split_whitespace()
        .nth(1)
        .expect("an id after `added`")
        .to_owned();
    let line = format!("{id}  Zoë Ångström  +1 201-555-0123  [home]  etag v1\n");

    let out = book.run(&["lookup", "zoe  ANGSTROM"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, line, "accents, case and spacing are ignored");
    let out = book.run(&["get", &id]).await;
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), line.as_str()));
    let out = book.run(&["lookup", "Nobody"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "no entries for \"Nobody\"\n");

    let out = book.run(&["add", "Bob Smith", "+44 20 7946 0958"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("  Bob Smith  +44 20 7946 0958  etag v1"),
        "no label shown when there is none: {out:?}"
    );
    let out = book.run(&["search", "smi"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(out.stdout.contains("Bob Smith"), "{out:?}");
    let out = book.run(&["search", "2015550"]).await;
    assert_eq!(out.stdout, line, "digits match numbers: {out:?}");
    let out = book.run(&["search", "xyz"]).await;
    assert_eq!(out.stdout, "no entries match \"xyz\"\n", "{out:?}");

    let out = book.run(&["update", &id, "--label", "work"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let updated = format!("{id}  Zoë Ångström  +1 201-555-0123  [work]  etag v2\n");
    assert_eq!(out.stdout, format!("updated {updated}"), "a new etag");
    let out = book.run(&["get", &id]).await;
    assert_eq!(out.stdout, updated);

    let out = book.run(&["rm", &id]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("removed entry {id}\n"));
    let out = book.run(&["get", &id]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(one_error_line(&out).contains("NotFound"), "{out:?}");
    let out = book.run(&["lookup", "Zoë Ångström"]).await;
    assert_eq!(out.stdout, "no entries for \"Zoë Ångström\"\n");
}

#[tokio::test]
async fn with_json_every_command_prints_one_object_per_entry_in_the_protos_field_names() {
    let book = start_book().await;
    let zoe = book.add("Zoë Ångström", "+1 201 555 0123", "home").await;
    let mut keys: Vec<&str> = zoe
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "create_time",
            "display_number",
            "etag",
            "id",
            "label",
            "name",
            "number",
            "update_time"
        ]
    );
    assert_eq!(zoe["name"], "Zoë Ångström");
    assert_eq!(zoe["number"], "+12015550123");
    assert_eq!(zoe["display_number"], "+1 201-555-0123");
    assert_eq!(zoe["label"], "home");
    assert_eq!(zoe["etag"], "v1");
    let created = text(&zoe, "create_time");
    assert!(created.ends_with('Z'), "UTC: {zoe}");
    let created = chrono::DateTime::parse_from_rfc3339(created).expect("RFC 3339");
    let id = text(&zoe, "id").to_owned();

    assert_eq!(
        book.json(&["lookup", "ZOE angström"]).await,
        std::slice::from_ref(&zoe)
    );
    assert_eq!(book.json(&["get", &id]).await, std::slice::from_ref(&zoe));
    assert_eq!(
        book.json(&["search", "zoe"]).await,
        std::slice::from_ref(&zoe)
    );
    assert!(
        book.json(&["lookup", "Nobody"]).await.is_empty(),
        "no entry prints nothing"
    );

    let relabelled = book.json(&["update", &id, "--label", "work"]).await;
    let relabelled = &relabelled[0];
    assert_eq!(relabelled["label"], "work");
    assert_eq!(relabelled["name"], zoe["name"], "only the label changed");
    assert_eq!(
        relabelled["number"], zoe["number"],
        "only the label changed"
    );
    assert_ne!(relabelled["etag"], zoe["etag"]);
    assert_eq!(relabelled["create_time"], zoe["create_time"]);
    let updated = chrono::DateTime::parse_from_rfc3339(text(relabelled, "update_time")).unwrap();
    assert!(updated >= created);

    let etag = text(relabelled, "etag").to_owned();
    let renamed = book
        .json(&["update", &id, "--name", "Zoe Angstrom", "--etag", &etag])
        .await;
    assert_eq!(renamed[0]["name"], "Zoe Angstrom");
    assert_eq!(renamed[0]["label"], "work", "the label was kept");
    assert_ne!(renamed[0]["etag"], relabelled["etag"]);

    let etag = text(&renamed[0], "etag").to_owned();
    let removed = book.json(&["rm", &id, "--etag", &etag]).await;
    assert_eq!(removed, [serde_json::json!({ "id": id, "removed": true })]);
    assert!(book.json(&["lookup", "zoe angstrom"]).await.is_empty());
}

#[tokio::test]
async fn list_and_search_go_page_by_page_with_tokens_or_all_at_once() {
    let book = start_book().await;
    for i in 0..5 {
        book.add(&format!("Smith {i}"), &format!("+1 201 555 010{i}"), "")
            .await;
    }
    book.add("Ada", "+1 201 555 0200", "").await;
    let names = |entries: &[Value]| -> Vec<String> {
        entries.iter().map(|e| text(e, "name").to_owned()).collect()
    };

    let first = book.json(&["list", "--page-size", "2"]).await;
    assert_eq!(first.len(), 3, "two entries, then the token: {first:?}");
    assert_eq!(names(&first[..2]), ["Ada", "Smith 0"]);
    let token = text(&first[2], "next_page_token").to_owned();
    let second = book
        .json(&["list", "--page-size", "2", "--page-token", &token])
        .await;
    assert_eq!(names(&second[..2]), ["Smith 1", "Smith 2"]);

    let all = book.json(&["list", "--all", "--page-size", "2"]).await;
    assert_eq!(
        names(&all),
        ["Ada", "Smith 0", "Smith 1", "Smith 2", "Smith 3", "Smith 4"]
    );

    let out = book.run(&["search", "smith", "--page-size", "4"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    let hint = lines[4]
        .strip_prefix("next page: --page-token ")
        .unwrap_or_else(|| panic!("a hint to the next page: {lines:?}"));
    let out = book
        .run(&["search", "smith", "--page-size", "4", "--page-token", hint])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "the last page: {out:?}");
    assert!(out.stdout.contains("Smith 4"), "{out:?}");
    let all = book.json(&["search", "SMITH", "--all"]).await;
    assert_eq!(all.len(), 5, "{all:?}");

    // The address can come from TOWNSHIP_PHONEBOOK_ADDR instead of --addr.
    let mut command = township();
    command
        .args(["phonebook", "lookup", "ada"])
        .env("TOWNSHIP_PHONEBOOK_ADDR", book.server.addr.to_string());
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Ada  +1 201-555-0200"), "{out:?}");
}

#[tokio::test]
async fn a_stale_etag_exits_1_saying_the_entry_changed_and_changes_nothing() {
    let book = start_book().await;
    let ada = book.add("Ada", "+1 201 555 0100", "home").await;
    let id = text(&ada, "id");
    let first_etag = text(&ada, "etag");
    let changed = book.json(&["update", id, "--label", "work"]).await;

    let out = book
        .run(&["update", id, "--label", "mine", "--etag", first_etag])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let line = one_error_line(&out);
    assert!(line.contains("Aborted"), "{line}");
    assert!(
        line.contains("changed by someone else since you read it"),
        "{line}"
    );
    assert!(line.contains("nothing was updated"), "{line}");
    assert!(
        line.contains(&format!("township phonebook get {id}")),
        "{line}"
    );

    let out = book.run(&["rm", id, "--etag", first_etag]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        one_error_line(&out).contains("nothing was removed"),
        "{out:?}"
    );
    assert_eq!(
        book.json(&["get", id]).await,
        changed,
        "neither the update nor the removal happened"
    );
}

#[tokio::test]
async fn removing_an_unknown_id_exits_1_with_not_found() {
    let book = start_book().await;
    let out = book.run(&["rm", "424242"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let line = one_error_line(&out);
    assert!(line.contains("NotFound"), "{line}");
    assert!(line.contains("no entry with id 424242"), "{line}");
}

#[tokio::test]
async fn update_without_a_field_to_change_is_a_usage_error_before_any_call() {
    let book = start_book().await;
    let ada = book.add("Ada", "+1 201 555 0100", "home").await;
    let id = text(&ada, "id");
    let out = book.run(&["update", id]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--name"), "{out:?}");
    let out = book.run(&["update", id, "--etag", "v1"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(book.json(&["get", id]).await, [ada], "unchanged");

    // Against an address where nothing listens: still a usage error, so nothing was dialled.
    let nowhere = format!("127.0.0.1:{}", closed_port());
    let mut command = township();
    command.args([
        "--addr",
        &nowhere,
        "--retries",
        "0",
        "phonebook",
        "update",
        "1",
    ]);
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(!out.stderr.contains("cannot reach"), "{out:?}");
}

#[tokio::test]
async fn ten_thousand_rows_import_export_and_import_again_into_another_book_unchanged() {
    const ROWS: u32 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("people.csv");
    let mut csv = String::from("name,number,label\n");
    let mut expected = BTreeSet::new();
    for i in 0..ROWS {
        // Every 1000th name needs CSV quoting, every third row has no label.
        let name = if i % 1000 == 0 {
            format!("Smith, \"Jo\" {i:05}")
        } else {
            format!("Person {:05}", i + 1)
        };
        let label = ["home", "work", ""][i as usize % 3];
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        csv.push_str(&format!("{quoted},+1 201 555 {i:04},{label}\n"));
        expected.insert((name, format!("+1201555{i:04}"), label.to_owned()));
    }
    std::fs::write(&input, csv).unwrap();

    let first = start_book().await;
    let out = first.run(&["import", input.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .ends_with("10,000 rows read, 10,000 added, 0 rejected\n"),
        "{out:?}"
    );
    assert!(
        out.stderr.is_empty(),
        "no progress bar when stderr is not a terminal: {out:?}"
    );

    let exported = dir.path().join("out.csv");
    let out = first.run(&["export", exported.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        out.stderr,
        format!("exported 10,000 entries to {}\n", exported.display())
    );
    let rows = exported_rows(&exported);
    assert_eq!(rows.len(), ROWS as usize);
    let first_set: BTreeSet<_> = rows.into_iter().collect();
    assert_eq!(first_set, expected, "every row, numbers in E.164");

    let second = start_book().await;
    let out = second.run(&["import", exported.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .ends_with("10,000 rows read, 10,000 added, 0 rejected\n"),
        "the export imports back: {out:?}"
    );
    let again = dir.path().join("again.csv");
    let out = second.run(&["export", again.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let second_set: BTreeSet<_> = exported_rows(&again).into_iter().collect();
    assert_eq!(second_set, first_set);

    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["again.csv", "out.csv", "people.csv"],
        "no temporary files left"
    );

    // To stdout: the same CSV, or one JSON object per entry.
    let out = second.run(&["export"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), ROWS as usize + 1);
    let entries = second.json(&["export"]).await;
    assert_eq!(entries.len(), ROWS as usize);
    assert!(
        entries.iter().all(|e| e["etag"] == "v1"),
        "{:?}",
        entries[0]
    );
}

#[tokio::test]
async fn an_import_with_bad_rows_adds_the_rest_lists_each_bad_row_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    let mut csv = b"name,number,label,note\n".to_vec();
    csv.extend_from_slice(b"Ada,+1 201 555 0100,home,\n"); // row 1: added
    csv.extend_from_slice(b"Bob,12,,\n"); // row 2: not a number
    csv.extend_from_slice(b",+1 201 555 0102,,\n"); // row 3: no name
    csv.extend_from_slice(b"ADA,(201) 555-0100,work,\n"); // row 4: Ada's number again
    csv.extend_from_slice(b"Cy,+1 201 555 0103\n"); // row 5: two fields short
    csv.extend_from_slice(b"D\xffe,+1 201 555 0104,,\n"); // row 6: not UTF-8
    csv.extend_from_slice(b"Eve,+44 20 7946 0958,,\"met at\nthe fair\"\n"); // row 7: lines 8-9
    csv.extend_from_slice(b"Fay,+1 201 555 0105,,\n"); // row 8, line 10: added
    csv.extend_from_slice(b"Gus,555,,\n"); // row 9, line 11: not a number
    std::fs::write(&input, csv).unwrap();
    let path = input.to_str().unwrap();

    let book = start_book().await;
    let out = book.run(&["import", path]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let ada = book.json(&["lookup", "ada"]).await;
    assert_eq!(ada.len(), 1, "{ada:?}");
    let ada_id = text(&ada[0], "id");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{out:?}");
    assert!(
        lines[0].starts_with("row 2 (line 3): INVALID_ARGUMENT: number: \"12\" is not a valid"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        "row 3 (line 4): INVALID_ARGUMENT: name: must not be empty"
    );
    assert_eq!(
        lines[2],
        format!(
            "row 4 (line 5): ALREADY_EXISTS: this name already has this number (entry {ada_id})"
        )
    );
    assert_eq!(
        lines[3],
        "row 5 (line 6): MALFORMED_ROW: the row has 2 fields but the header has 4"
    );
    assert_eq!(
        lines[4],
        "row 6 (line 7): MALFORMED_ROW: name: field 1 is not valid UTF-8"
    );
    assert!(
        lines[5].starts_with("row 9 (line 11): INVALID_ARGUMENT: number: \"555\""),
        "a row over two lines is one row: {lines:?}"
    );
    assert_eq!(
        lines[6],
        format!("imported {path}: 9 rows read, 3 added, 6 rejected")
    );
    assert_eq!(
        one_error_line(&out),
        "township: 6 of 9 rows were rejected (listed above)"
    );
    assert_eq!(book.json(&["lookup", "fay"]).await.len(), 1, "added");
    assert_eq!(book.json(&["lookup", "eve"]).await.len(), 1, "added");

    // The same file with --json into a fresh book: one object per rejected row, then the summary.
    let fresh = start_book().await;
    let out = fresh.run(&["import", path, "--json"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let objects = json_lines(&out);
    assert_eq!(objects.len(), 7, "{objects:?}");
    let rows: Vec<(i64, i64, &str, &str)> = objects[..6]
        .iter()
        .map(|o| {
            (
                o["row"].as_i64().unwrap(),
                o["line"].as_i64().unwrap(),
                text(o, "code"),
                text(o, "field"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (2, 3, "INVALID_ARGUMENT", "number"),
            (3, 4, "INVALID_ARGUMENT", "name"),
            (4, 5, "ALREADY_EXISTS", ""),
            (5, 6, "MALFORMED_ROW", ""),
            (6, 7, "MALFORMED_ROW", "name"),
            (9, 11, "INVALID_ARGUMENT", "number"),
        ]
    );
    assert!(text(&objects[2], "message").contains("already has this number"));
    assert_eq!(
        objects[6],
        serde_json::json!({ "file": path, "rows": 9, "added": 3, "rejected": 6, "complete": true })
    );
}

#[tokio::test]
async fn a_phone_book_that_is_down_exits_3_and_an_export_leaves_the_old_file_alone() {
    let nowhere = format!("127.0.0.1:{}", closed_port());
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("book.csv");
    std::fs::write(&existing, "the previous export\n").unwrap();
    let import = dir.path().join("in.csv");
    std::fs::write(&import, "name,number\nAda,+1 201 555 0100\n").unwrap();

    let commands: [&[&str]; 4] = [
        &["list"],
        &["add", "Ada", "+1 201 555 0100"],
        &["import", import.to_str().unwrap()],
        &["export", existing.to_str().unwrap()],
    ];
    for args in commands {
        let mut command = township();
        command
            .args(["--addr", &nowhere, "--retries", "0", "phonebook"])
            .args(args);
        let out = run(command, LIMIT).await;
        assert_eq!(out.code, Some(3), "{args:?}: {out:?}");
        let line = one_error_line(&out);
        assert!(
            line.contains(&format!("cannot reach the phonebook service at {nowhere}")),
            "{line}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "the previous export\n"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temporary file left"
    );

    // The address from TOWNSHIP_PHONEBOOK_ADDR is the one dialled.
    let mut command = township();
    command
        .args(["--retries", "0", "phonebook", "get", "1"])
        .env("TOWNSHIP_PHONEBOOK_ADDR", &nowhere);
    let out = run(command, LIMIT).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(one_error_line(&out).contains(&nowhere), "{out:?}");
}
