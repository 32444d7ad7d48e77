//! Paging, the same in every service (Google's AIP-158):
//!
//! - **Page size** ([`PageSize::from_request`]): `0` means [`DEFAULT_PAGE_SIZE`] (50); a negative
//!   size is INVALID_ARGUMENT naming `page_size`; a size above [`MAX_PAGE_SIZE`] (1000) is served
//!   as 1000, silently.
//! - **Page tokens** ([`PageTokens`]): opaque text, HMAC-SHA256 signed with the service's own key
//!   (kept where the service keeps its state, so tokens outlive a restart), and bound to the RPC,
//!   the query and the caller ([`Scope`]). A token that was altered, truncated, made up, signed
//!   by another server, or issued for another RPC, query or caller is INVALID_ARGUMENT naming
//!   `page_token`, and the message says nothing more specific. `next_page_token` is empty on the
//!   last page.
//!
//! Both return [`InvalidField`], which each service's error enum carries as its `Invalid`
//! variant, so that every status still leaves through the service's one `From<Error> for Status`.
//!
//! A listing handler reads its request into a [`PageRequest`], reads one row more than the page
//! (to learn whether another page follows), and lets [`PageRequest::finish`] cut the rows to the
//! page and sign the next token:
//!
//! ```
//! use township_kit::paging::{PageRequest, PageTokens, Scope};
//!
//! # fn main() -> anyhow::Result<()> {
//! let tokens = PageTokens::new(&[7; 32])?;
//! let scope = || Scope::rpc("township.example.v1.Example/List").caller("ada");
//! let rows_after = |after: Option<i64>, limit: u32| -> Vec<i64> {
//!     (after.unwrap_or(0) + 1..=5).take(limit as usize).collect()
//! };
//!
//! let page = PageRequest::<i64>::read(&tokens, scope(), 2, "")?;
//! let mut rows = rows_after(page.after, page.lookahead());
//! let next_page_token = page.finish(&tokens, &mut rows, |row| *row);
//! assert_eq!(rows, [1, 2]);
//!
//! let page = PageRequest::<i64>::read(&tokens, scope(), 2, &next_page_token)?;
//! assert_eq!(page.after, Some(2));
//! let forged = PageRequest::<i64>::read(&tokens, scope(), 2, "bm90IGEgdG9rZW4");
//! assert_eq!(forged.unwrap_err().field, "page_token");
//! # Ok(())
//! # }
//! ```

mod size;
mod token;

pub use size::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageSize};
pub use token::{MIN_KEY_BYTES, PageTokens, Position, Scope};

pub use crate::status::InvalidField;

/// One page request, read: how many items, where the page starts, and the scope its next token
/// is bound to. `P` is the service's [`Position`].
#[derive(Debug)]
pub struct PageRequest<P> {
    /// How many items the page holds.
    pub size: PageSize,
    /// The position the page starts after; `None` for the first page.
    pub after: Option<P>,
    scope: Scope,
}

impl<P: Position> PageRequest<P> {
    /// Reads a request's `page_size` and `page_token` (in that order) for `scope`.
    pub fn read(
        tokens: &PageTokens,
        scope: Scope,
        page_size: i32,
        page_token: &str,
    ) -> Result<Self, InvalidField> {
        let size = PageSize::from_request(page_size)?;
        let after = tokens.check(&scope, page_token)?;
        Ok(Self { size, after, scope })
    }

    /// How many rows to read: one more than the page (see [`PageSize::lookahead`]).
    pub fn lookahead(&self) -> u32 {
        self.size.lookahead()
    }

    /// Cuts `rows` (read with [`PageRequest::lookahead`]) to the page and returns the
    /// `next_page_token`: the token for the page after the last row served, `""` on the last page.
    pub fn finish<T>(
        &self,
        tokens: &PageTokens,
        rows: &mut Vec<T>,
        position: impl FnOnce(&T) -> P,
    ) -> String {
        self.size
            .cut(rows)
            .map(|last| tokens.issue(&self.scope, &position(last)))
            .unwrap_or_default()
    }
}
