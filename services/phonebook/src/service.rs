//! The gRPC face of the phone book: validates requests into the book's types, signs and checks page
//! tokens, calls [`Book`], maps errors.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use township_proto::phonebook::v1::{self as pb, phone_book_service_server::PhoneBookService};

use crate::{
    Error,
    book::{Book, Change, Entry, NewEntry},
    token::{PageTokens, Scope},
    types::{
        EntryId, Etag, Label, MAX_PAGE_SIZE, Name, Number, Query, Region, match_key, page_size,
    },
};

/// Entries buffered between the storage reader and a slow Export client.
const EXPORT_BUFFER: usize = 256;

/// Implements `township.phonebook.v1.PhoneBookService`.
#[derive(Clone)]
pub struct PhoneBookApi {
    book: Book,
    tokens: PageTokens,
    region: Region,
}

impl PhoneBookApi {
    /// Serves `book`, reading national numbers in `region`.
    pub fn new(book: Book, region: Region) -> Self {
        let tokens = PageTokens::new(book.token_key());
        Self {
            book,
            tokens,
            region,
        }
    }

    fn new_entry(&self, r: &pb::AddEntryRequest) -> Result<NewEntry, Error> {
        Ok(NewEntry {
            name: Name::parse("name", &r.name)?,
            number: Number::parse("number", &r.number, self.region)?,
            label: Label::parse("label", &r.label)?,
        })
    }

    fn change(&self, r: pb::UpdateEntryRequest) -> Result<Change, Error> {
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
        for path in &paths {
            if !["name", "number", "label"].contains(&path.as_str()) {
                return Err(Error::invalid(
                    "update_mask",
                    format!("{path:?} cannot be changed (name, number and label can)"),
                ));
            }
        }
        let wanted = |field: &str| paths.is_empty() || paths.iter().any(|p| p == field);
        Ok(Change {
            id,
            etag,
            name: wanted("name")
                .then(|| Name::parse("entry.name", &entry.name))
                .transpose()?,
            number: wanted("number")
                .then(|| Number::parse("entry.number", &entry.number, self.region))
                .transpose()?,
            label: wanted("label")
                .then(|| Label::parse("entry.label", &entry.label))
                .transpose()?,
        })
    }
}

#[tonic::async_trait]
impl PhoneBookService for PhoneBookApi {
    async fn add_entry(
        &self,
        request: Request<pb::AddEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let entry = self.new_entry(request.get_ref())?;
        let added = self.book.add_one(entry).await?;
        Ok(Response::new(entry_to_pb(added)))
    }

    async fn batch_add_entries(
        &self,
        request: Request<pb::BatchAddEntriesRequest>,
    ) -> Result<Response<pb::BatchAddEntriesResponse>, Status> {
        let requests = request.into_inner().requests;
        if requests.is_empty() || requests.len() > MAX_PAGE_SIZE as usize {
            return Err(Error::invalid(
                "requests",
                format!(
                    "must hold 1 to {MAX_PAGE_SIZE} entries (got {})",
                    requests.len()
                ),
            )
            .into());
        }
        // Valid entries go to storage in one commit; invalid ones are answered in place.
        let parsed: Vec<Result<NewEntry, Error>> =
            requests.iter().map(|r| self.new_entry(r)).collect();
        let valid: Vec<NewEntry> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let mut stored = self.book.add(valid).await?.into_iter();
        let results = parsed
            .into_iter()
            .map(|p| {
                let outcome = match p {
                    Ok(_) => stored
                        .next()
                        .unwrap_or(Err(Error::Internal("a batch entry got no outcome"))),
                    Err(err) => Err(err),
                };
                pb::AddResult {
                    outcome: Some(match outcome {
                        Ok(entry) => pb::add_result::Outcome::Entry(entry_to_pb(entry)),
                        Err(err) => pb::add_result::Outcome::Rejected(rejection(err)),
                    }),
                }
            })
            .collect();
        Ok(Response::new(pb::BatchAddEntriesResponse { results }))
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let id = EntryId::parse("id", &request.get_ref().id)?;
        Ok(Response::new(entry_to_pb(self.book.get(id).await?)))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let key = match_key(&request.get_ref().name);
        if key.is_empty() {
            return Err(Error::invalid("name", "must not be empty").into());
        }
        let entries = self.book.lookup(&key).await?;
        Ok(Response::new(pb::LookupResponse {
            entries: entries.into_iter().map(entry_to_pb).collect(),
        }))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let r = request.into_inner();
        let query = Query::parse(&r.query)?;
        let limit = page_size(r.page_size)?;
        let scope = Scope::Search(&query.key, &query.digits);
        let after = self.tokens.check(scope, &r.page_token)?;
        let mut hits = self.book.search(&query, after.as_ref(), limit + 1).await?;
        let more = hits.len() > limit as usize;
        hits.truncate(limit as usize);
        let next_page_token = match hits.last() {
            Some((last, group)) if more => self.tokens.issue(scope, &last.cursor(*group)),
            _ => String::new(),
        };
        Ok(Response::new(pb::SearchResponse {
            entries: hits.into_iter().map(|(e, _)| entry_to_pb(e)).collect(),
            next_page_token,
        }))
    }

    async fn update_entry(
        &self,
        request: Request<pb::UpdateEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let change = self.change(request.into_inner())?;
        Ok(Response::new(entry_to_pb(self.book.update(change).await?)))
    }

    async fn delete_entry(
        &self,
        request: Request<pb::DeleteEntryRequest>,
    ) -> Result<Response<pb::DeleteEntryResponse>, Status> {
        let r = request.into_inner();
        let id = EntryId::parse("id", &r.id)?;
        let etag = match r.etag.trim() {
            "" => None,
            text => Some(Etag::parse("etag", text)?),
        };
        self.book.delete(id, etag).await?;
        Ok(Response::new(pb::DeleteEntryResponse {}))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let r = request.into_inner();
        let limit = page_size(r.page_size)?;
        let after = self.tokens.check(Scope::List, &r.page_token)?;
        let mut entries = self.book.list(after.as_ref(), limit + 1).await?;
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next_page_token = match entries.last() {
            Some(last) if more => self.tokens.issue(Scope::List, &last.cursor(0)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListEntriesResponse {
            entries: entries.into_iter().map(entry_to_pb).collect(),
            next_page_token,
        }))
    }

    type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::Entry, Status>> + Send>>;

    async fn export(
        &self,
        _request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let entries = ReceiverStream::new(self.book.export(EXPORT_BUFFER))
            .map(|entry| entry.map(entry_to_pb).map_err(Status::from));
        Ok(Response::new(Box::pin(entries)))
    }
}

fn rejection(err: Error) -> pb::Rejection {
    let field = match &err {
        Error::Invalid { field, .. } => field.clone(),
        _ => String::new(),
    };
    let message = match &err {
        Error::Invalid { problem, .. } => problem.clone(),
        Error::Storage(_) | Error::Internal(_) => "internal error (see the server log)".to_owned(),
        other => other.to_string(),
    };
    let existing_id = match &err {
        Error::Duplicate(id) => id.to_string(),
        _ => String::new(),
    };
    pb::Rejection {
        code: err.code().1.to_owned(),
        field,
        message,
        existing_id,
    }
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn entry_to_pb(entry: Entry) -> pb::Entry {
    let (number, display_number) = (
        entry.number.e164().to_owned(),
        entry.number.display().to_owned(),
    );
    pb::Entry {
        id: entry.id.to_string(),
        name: entry.name,
        number,
        display_number,
        label: entry.label,
        etag: entry.etag.to_string(),
        create_time: Some(timestamp(entry.created_ms)),
        update_time: Some(timestamp(entry.updated_ms)),
    }
}
