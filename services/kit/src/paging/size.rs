//! Page sizes: how a request's `page_size` reads, and how a handler cuts what it read to the page.

use super::InvalidField;

/// The page size a request gets when it asks for `0`.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page: a request for more is served this many.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A valid page size: 1 to [`MAX_PAGE_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// Reads a request's `page_size` (AIP-158): `0` means [`DEFAULT_PAGE_SIZE`], above
    /// [`MAX_PAGE_SIZE`] means the maximum, negative is refused naming `page_size`.
    pub fn from_request(page_size: i32) -> Result<Self, InvalidField> {
        match u32::try_from(page_size) {
            Ok(0) => Ok(Self(DEFAULT_PAGE_SIZE)),
            Ok(n) => Ok(Self(n.min(MAX_PAGE_SIZE))),
            Err(_) => Err(InvalidField::new(
                "page_size",
                "must not be negative (0 means the default, 50)",
            )),
        }
    }

    /// How many items a page holds.
    pub fn get(self) -> u32 {
        self.0
    }

    /// How many rows to read: one more than the page, so that [`PageSize::cut`] knows whether
    /// another page follows.
    pub fn lookahead(self) -> u32 {
        self.0 + 1
    }

    /// Cuts `rows` (read with [`PageSize::lookahead`]) to the page. Returns the last item served
    /// when more follow (the next page starts after it), `None` on the last page.
    pub fn cut<T>(self, rows: &mut Vec<T>) -> Option<&T> {
        let page = self.0 as usize;
        let more = rows.len() > page;
        rows.truncate(page);
        rows.last().filter(|_| more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_the_default_and_sizes_above_the_maximum_are_coerced_to_it() {
        let size = |n| PageSize::from_request(n).unwrap().get();
        assert_eq!(size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(size(1), 1);
        assert_eq!(size(999), 999);
        assert_eq!(size(1000), MAX_PAGE_SIZE);
        assert_eq!(size(1001), MAX_PAGE_SIZE);
        assert_eq!(size(i32::MAX), MAX_PAGE_SIZE);
    }

    #[test]
    fn a_negative_size_is_refused_naming_page_size() {
        for n in [-1, -50, i32::MIN] {
            let err = PageSize::from_request(n).unwrap_err();
            assert_eq!(err.field, "page_size", "{n}");
        }
    }

    #[test]
    fn cut_keeps_one_page_and_says_whether_another_follows() {
        let size = PageSize::from_request(3).unwrap();
        assert_eq!(size.lookahead(), 4);
        let mut more = vec![1, 2, 3, 4];
        assert_eq!(size.cut(&mut more), Some(&3));
        assert_eq!(more, [1, 2, 3]);
        let mut exact = vec![1, 2, 3];
        assert_eq!(size.cut(&mut exact), None, "a full last page");
        assert_eq!(exact, [1, 2, 3]);
        let mut short = vec![1];
        assert_eq!(size.cut(&mut short), None);
        let mut none: Vec<i32> = Vec::new();
        assert_eq!(size.cut(&mut none), None);
    }
}
