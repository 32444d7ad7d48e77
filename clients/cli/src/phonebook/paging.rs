//! `township phonebook search` and `list`: a page at a time, with a hint to the next page, or
//! every page with `--all`.

use township_proto::phonebook::v1::{ListEntriesRequest, SearchRequest};

use super::{connect, entries::print_entry};
use crate::{connect::unary, error::CliError, global::Global, pages::Paging};

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
    let page_size = paging.page_size();
    let mut page_token = paging.first_token();
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
        match paging.after_page(next, global) {
            Some(next) => page_token = next,
            None => break,
        }
    }
    if shown == 0 && !global.json {
        match (&listing, paging.continues()) {
            (_, true) => println!("no more entries"),
            (Listing::Search(query), false) => println!("no entries match {query:?}"),
            (Listing::List, false) => println!("the phone book is empty"),
        }
    }
    Ok(())
}
