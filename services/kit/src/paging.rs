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
//! Both return [`InvalidField`], which each service turns into its own error enum (one
//! `From<InvalidField>` for its `Error`), so that every status still leaves through the service's
//! one `From<Error> for Status`.
//!
//! A listing handler reads one row more than the page, to learn whether another page follows:
//!
//! ```
//! use township_kit::paging::{PageSize, PageTokens, Scope};
//!
//! # fn main() -> anyhow::Result<()> {
//! let tokens = PageTokens::new(&[7; 32])?;
//! let scope = Scope::rpc("township.example.v1.Example/List").caller("ada");
//! let size = PageSize::from_request(2)?;
//! let after: Option<i64> = tokens.check(&scope, "")?; // the first page
//! let mut rows: Vec<i64> = (after.unwrap_or(0) + 1..=10).take(size.lookahead() as usize).collect();
//! let next_page_token = size
//!     .cut(&mut rows)
//!     .map(|last| tokens.issue(&scope, last))
//!     .unwrap_or_default();
//! assert_eq!(rows, [1, 2]);
//! assert_eq!(tokens.check::<i64>(&scope, &next_page_token)?, Some(2));
//! # Ok(())
//! # }
//! ```

mod size;
mod token;

pub use size::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageSize};
pub use token::{MIN_KEY_BYTES, PageTokens, Position, Scope};

/// A request field that paging refused: the field's name and what is wrong with it, for the
/// service's own INVALID_ARGUMENT.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    /// The request field, `page_size` or `page_token`.
    pub field: &'static str,
    /// What is wrong with it, for people.
    pub problem: &'static str,
}
