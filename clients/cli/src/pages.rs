//! Paging through a listing (`phonebook list` and `search`, `doctor history`): the flags
//! `--page-size`, `--page-token` and `--all`, and what follows each page — the next one with
//! `--all`, else a hint that says how to ask for it.

use clap::Args;

use crate::{global::Global, output::print_json};

/// The largest page the services serve; `--all` asks for pages this big unless told otherwise.
const MAX_PAGE: i32 = 1000;

/// Flags of a command that lists a page at a time.
#[derive(Debug, Args)]
pub struct Paging {
    /// How many per page, 1 to 1000 (default: the server's, 50; 1000 with --all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=1000))]
    page_size: Option<i32>,

    /// Start from this page token, which the previous page printed.
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,

    /// Print every page, not just the first; without it a page that has more after it ends with
    /// `next page: --page-token TOKEN` (with --json, a `{"next_page_token": ...}` object).
    #[arg(long)]
    all: bool,
}

impl Paging {
    /// The page size to ask for: `--page-size`, else the largest with `--all`, else 0 (the
    /// server's default).
    pub fn page_size(&self) -> i32 {
        self.page_size
            .unwrap_or(if self.all { MAX_PAGE } else { 0 })
    }

    /// The token of the first page to ask for (empty: from the start).
    pub fn first_token(&self) -> String {
        self.page_token.clone().unwrap_or_default()
    }

    /// Whether the listing goes on from an earlier one (`--page-token`), so that an empty result
    /// means "no more" rather than "none".
    pub fn continues(&self) -> bool {
        self.page_token.as_deref().is_some_and(|t| !t.is_empty())
    }

    /// What follows a page whose next page token is `next`: the token to ask for next, or `None`
    /// when the listing is done — the last page, or (without `--all`) once the hint to the next
    /// page is printed.
    pub fn after_page(&self, next: String, global: &Global) -> Option<String> {
        if next.is_empty() {
            return None;
        }
        if self.all {
            return Some(next);
        }
        if global.json {
            print_json(&serde_json::json!({ "next_page_token": next }));
        } else {
            println!("next page: --page-token {next}");
        }
        None
    }
}
