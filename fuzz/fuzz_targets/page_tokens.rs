//! Page tokens (`township_kit::paging::PageTokens`) on any text: checking a made-up token never
//! panics and never accepts it, whatever the position type (a row id, the phone book's cursor);
//! and any position, signed, reads back exactly, in its own scope only.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use township_kit::paging::{PageTokens, Scope};
use township_phonebook::token::Cursor;

static TOKENS: LazyLock<PageTokens> =
    LazyLock::new(|| PageTokens::new(&[7; 32]).expect("a 32-byte key"));

fn scope() -> Scope {
    Scope::rpc("township.example.v1.Example/List").caller("ada")
}

fuzz_target!(|data: &[u8]| {
    // Made up: refused (an empty token is the first page).
    let text = String::from_utf8_lossy(data);
    let as_row = TOKENS.check::<i64>(&scope(), &text);
    let as_cursor = TOKENS.check::<Cursor>(&scope(), &text);
    if text.is_empty() {
        assert!(matches!(as_row, Ok(None)) && matches!(as_cursor, Ok(None)));
    } else {
        let row = as_row.expect_err("a made-up token is refused");
        assert_eq!(row.field, "page_token");
        assert_eq!(
            as_cursor.expect_err("a made-up token is refused").field,
            "page_token"
        );
    }

    // Signed: read back exactly, and only in its scope.
    if let Some((&group, rest)) = data.split_first()
        && let Some((id, key)) = rest.split_first_chunk::<8>()
        && let Ok(key) = std::str::from_utf8(key)
    {
        let cursor = Cursor {
            group,
            id: i64::from_be_bytes(*id),
            key: key.to_owned(),
        };
        let token = TOKENS.issue(&scope(), &cursor);
        assert_eq!(TOKENS.check(&scope(), &token).unwrap(), Some(cursor));
        let elsewhere = Scope::rpc("township.example.v1.Example/List").caller("bob");
        assert!(TOKENS.check::<Cursor>(&elsewhere, &token).is_err());
    }
});
