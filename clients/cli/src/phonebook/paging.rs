//! `township phonebook search` and `list`: a page at a time, with a hint to the next page, or
//! every page with `--all`.

use township_proto::phonebook::v1::{ListEntriesRequest, SearchRequest};

use super::{Paging, connect, entries::print_entry};
use crate::{connect::unary, error::CliError, global::Global, output::print_json};

/// The largest page the phone book serves; `--all` asks for pages this big unless told otherwise.
const MAX_PAGE: i32 = 1000;

/// What `search` and `list` page through.
pub(super) enum Listing {
    Search(String),
    List,
}

/// Prints one page of `listing` (with a hint to the next one), or every page with `--all`.
pub(super) async fn paged(
    listing: Listing,
    paging: &Paging,
    global: &Global,
) -> Result<(), CliError> {
    let book = connect(global).await?;
    let page_size = paging
        .page_size
        .unwrap_or(if paging.all { MAX_PAGE } else { 0 });
    let mut page_token = paging.page_token.clone().unwrap_or_default();
    let continued = !page_token.is_empty();
    let mut shown = 0usize;
    loop {
        let mut client = book.client();
        let (entries, next) = match &listing {
            Listing::Search(query) => {
                let request = SearchRequest {
                    query: query.clone(),
                    page_size,
                    page_token,
                };
                client
                    .search(unary(request, global))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| (r.entries, r.next_page_token))
            }
            Listing::List => {
                let request = ListEntriesRequest {
                    page_size,
                    page_token,
                };
                client
                    .list_entries(unary(request, global))
                    .await
                    .map(|r| r.into_inner())
                    .map(|r| (r.entries, r.next_page_token))
            }
        }
        .map_err(|s| book.error(s))?;
        for entry in &entries {
            print_entry(global, "", entry);
        }
        shown += entries.len();
        if next.is_empty() {
            break;
        }
        if !paging.all {
            if global.json {
                print_json(&serde_json::json!({ "next_page_token": next }));
            } else {
                println!("next page: --page-token {next}");
            }
            break;
        }
        page_token = next;
    }
    if shown == 0 && !global.json {
        match (&listing, continued) {
            (_, true) => println!("no more entries"),
            (Listing::Search(query), false) => println!("no entries match {query:?}"),
            (Listing::List, false) => println!("the phone book is empty"),
        }
    }
    Ok(())
}
