//! The gRPC face of the phone book: reads each request into its domain request (see `types`),
//! calls [`Book`], and answers with the entries and the next page token; errors leave through
//! [`Error`]'s one `From<Error> for Status`.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use township_kit::status::{InvalidField, internal, storage_full_message};
use township_proto::phonebook::v1::{self as pb, phone_book_service_server::PhoneBookService};

use crate::{
    Error,
    book::{Book, Entry},
    types::{Change, Deletion, EntryId, Listing, Lookup, NewEntry, Region, Search},
};

/// Entries buffered between the storage reader and a slow Export client.
const EXPORT_BUFFER: usize = 256;

/// Implements `township.phonebook.v1.PhoneBookService`.
#[derive(Clone)]
pub struct PhoneBookApi {
    book: Book,
    region: Region,
}

impl PhoneBookApi {
    /// Serves `book`, reading national numbers in `region`.
    pub fn new(book: Book, region: Region) -> Self {
        Self { book, region }
    }
}

#[tonic::async_trait]
impl PhoneBookService for PhoneBookApi {
    async fn add_entry(
        &self,
        request: Request<pb::AddEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let entry = NewEntry::parse(request.get_ref(), self.region)?;
        let added = self.book.add_one(entry).await?;
        Ok(Response::new(entry_to_pb(added)))
    }

    async fn batch_add_entries(
        &self,
        request: Request<pb::BatchAddEntriesRequest>,
    ) -> Result<Response<pb::BatchAddEntriesResponse>, Status> {
        let parsed = NewEntry::parse_batch(request.get_ref(), self.region)?;
        // Valid entries go to storage in one commit; invalid ones are answered in place.
        let valid: Vec<NewEntry> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let stored = self.book.add(valid).await?;
        if stored.iter().any(|o| matches!(o, Err(Error::StorageFull))) {
            // Once for the call: its entries are rejected without a log line each.
            tracing::warn!("a batch was refused: the disk (or the database's page limit) is full");
        }
        let mut stored = stored.into_iter();
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
        let id = EntryId::try_from(request.get_ref())?;
        Ok(Response::new(entry_to_pb(self.book.get(id).await?)))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let Lookup { key } = Lookup::try_from(request.get_ref())?;
        let entries = self.book.lookup(&key).await?;
        Ok(Response::new(pb::LookupResponse {
            entries: entries.into_iter().map(entry_to_pb).collect(),
        }))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let Search { query, page } =
            Search::parse(request.get_ref(), self.book.page_tokens(), self.region)?;
        let mut hits = self
            .book
            .search(&query, page.after.as_ref(), page.lookahead())
            .await?;
        let next_page_token = page.finish(self.book.page_tokens(), &mut hits, |(last, group)| {
            last.cursor(*group)
        });
        Ok(Response::new(pb::SearchResponse {
            entries: hits.into_iter().map(|(e, _)| entry_to_pb(e)).collect(),
            next_page_token,
        }))
    }

    async fn update_entry(
        &self,
        request: Request<pb::UpdateEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let change = Change::parse(request.into_inner(), self.region)?;
        Ok(Response::new(entry_to_pb(self.book.update(change).await?)))
    }

    async fn delete_entry(
        &self,
        request: Request<pb::DeleteEntryRequest>,
    ) -> Result<Response<pb::DeleteEntryResponse>, Status> {
        let Deletion { id, etag } = Deletion::try_from(request.get_ref())?;
        self.book.delete(id, etag).await?;
        Ok(Response::new(pb::DeleteEntryResponse {}))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let Listing { page } = Listing::parse(request.get_ref(), self.book.page_tokens())?;
        let mut entries = self
            .book
            .list(page.after.as_ref(), page.lookahead())
            .await?;
        let next_page_token =
            page.finish(self.book.page_tokens(), &mut entries, |last| last.cursor(0));
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
        Error::Invalid(InvalidField { field, .. }) => field.clone(),
        _ => String::new(),
    };
    let message = match &err {
        Error::Invalid(InvalidField { problem, .. }) => problem.clone(),
        // Logged with its chain, and answered as opaquely as a failed call.
        Error::Storage(_) | Error::Internal(_) => internal(&err).message().to_owned(),
        Error::StorageFull => storage_full_message("phone book"),
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
    let (number, extension, display_number) = (
        entry.number.e164().to_owned(),
        entry.number.extension().unwrap_or_default().to_owned(),
        entry.number.display().to_owned(),
    );
    pb::Entry {
        id: entry.id.to_string(),
        name: entry.name,
        number,
        extension,
        display_number,
        label: entry.label,
        etag: entry.etag.to_string(),
        create_time: Some(timestamp(entry.created_ms)),
        update_time: Some(timestamp(entry.updated_ms)),
    }
}
