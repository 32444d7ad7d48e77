//! Each phone book request message, read once into the domain request a handler passes on: the
//! handlers hold no validation of their own. Conversions that need the server's region or its
//! page token key are `parse` functions; the others are `TryFrom`.

use township_kit::paging::{PageRequest, PageTokens};
use township_proto::phonebook::v1 as pb;

use super::{EntryId, Etag, Label, Name, Number, Query, Region, match_key};
use crate::{
    Error,
    token::{Cursor, list_scope, search_scope},
};

/// Most entries one BatchAddEntries may hold.
pub const MAX_BATCH_ENTRIES: usize = 1000;

/// The fields UpdateEntry's `update_mask` may name.
const UPDATABLE_FIELDS: [&str; 3] = ["name", "number", "label"];

/// A validated entry to add (AddEntry, and each entry of BatchAddEntries).
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// Its name.
    pub name: Name,
    /// Its number.
    pub number: Number,
    /// Its label.
    pub label: Label,
}

impl NewEntry {
    /// Reads an AddEntry request, with national numbers in `region`.
    pub fn parse(r: &pb::AddEntryRequest, region: Region) -> Result<Self, Error> {
        Ok(Self {
            name: Name::parse("name", &r.name)?,
            number: Number::parse("number", &r.number, region)?,
            label: Label::parse("label", &r.label)?,
        })
    }

    /// Reads a BatchAddEntries request: it must hold 1 to [`MAX_BATCH_ENTRIES`] entries; each is
    /// read on its own, so an invalid one is answered in place and the others still go in.
    pub fn parse_batch(
        r: &pb::BatchAddEntriesRequest,
        region: Region,
    ) -> Result<Vec<Result<Self, Error>>, Error> {
        let count = r.requests.len();
        if count == 0 || count > MAX_BATCH_ENTRIES {
            return Err(Error::invalid(
                "requests",
                format!("must hold 1 to {MAX_BATCH_ENTRIES} entries (got {count})"),
            ));
        }
        Ok(r.requests.iter().map(|r| Self::parse(r, region)).collect())
    }
}

/// A validated change to an entry (UpdateEntry): the fields that are `Some` are replaced.
#[derive(Clone, Debug)]
pub struct Change {
    /// The entry.
    pub id: EntryId,
    /// The etag the client last read.
    pub etag: Etag,
    /// A new name.
    pub name: Option<Name>,
    /// A new number.
    pub number: Option<Number>,
    /// A new label.
    pub label: Option<Label>,
}

impl Change {
    /// Reads an UpdateEntry request, with national numbers in `region`: an empty `update_mask`
    /// replaces every field, otherwise only the fields it names.
    pub fn parse(r: pb::UpdateEntryRequest, region: Region) -> Result<Self, Error> {
        let entry = r
            .entry
            .ok_or_else(|| Error::invalid("entry", "required: the entry's id and new values"))?;
        let id = EntryId::parse("entry.id", &entry.id)?;
        if r.etag.trim().is_empty() {
            return Err(Error::invalid(
                "etag",
                "required: the etag of the entry as you last read it",
            ));
        }
        let etag = Etag::parse("etag", &r.etag)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if let Some(path) = paths
            .iter()
            .find(|p| !UPDATABLE_FIELDS.contains(&p.as_str()))
        {
            return Err(Error::invalid(
                "update_mask",
                format!("{path:?} cannot be changed (name, number and label can)"),
            ));
        }
        let wanted = |field: &str| paths.is_empty() || paths.iter().any(|p| p == field);
        Ok(Self {
            id,
            etag,
            name: wanted("name")
                .then(|| Name::parse("entry.name", &entry.name))
                .transpose()?,
            number: wanted("number")
                .then(|| Number::parse("entry.number", &entry.number, region))
                .transpose()?,
            label: wanted("label")
                .then(|| Label::parse("entry.label", &entry.label))
                .transpose()?,
        })
    }
}

/// The entry GetEntry asks for.
impl TryFrom<&pb::GetEntryRequest> for EntryId {
    type Error = Error;

    fn try_from(r: &pb::GetEntryRequest) -> Result<Self, Error> {
        EntryId::parse("id", &r.id)
    }
}

/// A DeleteEntry request: the entry, and the etag it must still have (if given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// The entry.
    pub id: EntryId,
    /// The etag the client last read; `None` deletes whatever the entry holds now.
    pub etag: Option<Etag>,
}

impl TryFrom<&pb::DeleteEntryRequest> for Deletion {
    type Error = Error;

    fn try_from(r: &pb::DeleteEntryRequest) -> Result<Self, Error> {
        Ok(Self {
            id: EntryId::parse("id", &r.id)?,
            etag: match r.etag.trim() {
                "" => None,
                text => Some(Etag::parse("etag", text)?),
            },
        })
    }
}

/// A Lookup request: the match key of the name looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// [`match_key`] of the name; never empty.
    pub key: String,
}

impl TryFrom<&pb::LookupRequest> for Lookup {
    type Error = Error;

    fn try_from(r: &pb::LookupRequest) -> Result<Self, Error> {
        let key = match_key(&r.name);
        if key.is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        Ok(Self { key })
    }
}

/// A Search request: the query and its page.
#[derive(Debug)]
pub struct Search {
    /// What is searched for.
    pub query: Query,
    /// Which page of the results.
    pub page: PageRequest<Cursor>,
}

impl Search {
    /// Reads a Search request (national numbers read as `region`'s); its page token must be one
    /// `tokens` issued for this query.
    pub fn parse(
        r: &pb::SearchRequest,
        tokens: &PageTokens,
        region: Region,
    ) -> Result<Self, Error> {
        let query = Query::parse(&r.query, region)?;
        let page = PageRequest::read(
            tokens,
            search_scope(&query.key, &query.digits),
            r.page_size,
            &r.page_token,
        )?;
        Ok(Self { query, page })
    }
}

/// A ListEntries request: which page of the whole book.
#[derive(Debug)]
pub struct Listing {
    /// Which page.
    pub page: PageRequest<Cursor>,
}

impl Listing {
    /// Reads a ListEntries request; its page token must be one `tokens` issued for ListEntries.
    pub fn parse(r: &pb::ListEntriesRequest, tokens: &PageTokens) -> Result<Self, Error> {
        let page = PageRequest::read(tokens, list_scope(), r.page_size, &r.page_token)?;
        Ok(Self { page })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use township_kit::status::InvalidField;

    fn us() -> Region {
        "US".parse().unwrap()
    }

    fn field(err: Error) -> String {
        match err {
            Error::Invalid(InvalidField { field, .. }) => field,
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    #[test]
    fn an_update_mask_names_only_updatable_fields() {
        let update = |paths: &[&str]| pb::UpdateEntryRequest {
            entry: Some(pb::Entry {
                id: "7".into(),
                name: "Ada".into(),
                number: "+1 201 555 0123".into(),
                ..Default::default()
            }),
            etag: "v1".into(),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        };
        let change = Change::parse(update(&["name"]), us()).unwrap();
        assert!(change.name.is_some() && change.number.is_none() && change.label.is_none());
        let change = Change::parse(update(&[]), us()).unwrap();
        assert!(change.name.is_some() && change.number.is_some() && change.label.is_some());
        let err = Change::parse(update(&["etag"]), us()).unwrap_err();
        assert_eq!(field(err), "update_mask");
    }

    #[test]
    fn a_batch_holds_1_to_1000_entries() {
        let entry = pb::AddEntryRequest {
            name: "Ada".into(),
            number: "+1 201 555 0123".into(),
            label: String::new(),
        };
        let batch = |n| pb::BatchAddEntriesRequest {
            requests: vec![entry.clone(); n],
        };
        assert_eq!(
            NewEntry::parse_batch(&batch(1000), us()).unwrap().len(),
            1000
        );
        for n in [0, 1001] {
            let err = NewEntry::parse_batch(&batch(n), us()).unwrap_err();
            assert_eq!(field(err), "requests", "{n}");
        }
    }

    impl Search {
        fn parse_in_us(r: &pb::SearchRequest, tokens: &PageTokens) -> Result<Self, Error> {
            Search::parse(r, tokens, us())
        }
    }

    #[test]
    fn a_search_reads_its_query_then_its_page_size_then_its_token() {
        let tokens = PageTokens::new(&[3; 32]).unwrap();
        let search = |query: &str, page_size, page_token: &str| pb::SearchRequest {
            query: query.into(),
            page_size,
            page_token: page_token.into(),
        };
        let read = Search::parse_in_us(&search("ada", 5000, ""), &tokens).unwrap();
        assert_eq!(read.page.size.get(), 1000, "coerced to the maximum");
        let err = Search::parse_in_us(&search("", -1, "forged"), &tokens).unwrap_err();
        assert_eq!(field(err), "query");
        let err = Search::parse_in_us(&search("ada", -1, "forged"), &tokens).unwrap_err();
        assert_eq!(field(err), "page_size");
        let err = Search::parse_in_us(&search("ada", 1, "forged"), &tokens).unwrap_err();
        assert_eq!(field(err), "page_token");
    }
}
