//! Phone book: a book of 100,000 and of 1,000,000 entries, loaded in batches; then Lookup latency
//! by name (16 clients) and durable AddEntry throughput (16 clients, group-committed) against it.
//! Each book is kept twice, by two servers measured in alternating rounds: one on its SQLite file
//! (the default) and one on a throwaway PostgreSQL (`--database-url`), when one can be started.

use std::{
    rc::Rc,
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use township_proto::phonebook::v1::{
    AddEntryRequest, BatchAddEntriesRequest, LookupRequest, SearchRequest, add_result::Outcome,
    phone_book_service_client::PhoneBookServiceClient,
};
use township_references::Postgres;

use crate::{
    load::{self, Plan},
    pgbench,
    report::{Reference, Report},
    row::{Durable, Figures, Rounds, Row},
    server::{self, Server},
};

/// Every add is committed with SQLite's `synchronous = FULL` before it is answered.
const SQLITE: Durable = Durable::Yes("SQLite WAL, synchronous=FULL");
/// Every add is committed by PostgreSQL with its defaults before it is answered.
const POSTGRES: Durable = Durable::Yes("PostgreSQL, fsync on, synchronous_commit on");

/// Concurrent closed-loop clients.
const CLIENTS: usize = 16;
/// Entries per BatchAddEntries call while loading the book (the API's maximum).
const BATCH: usize = 1000;
/// Batches in flight while loading.
const LOADERS: usize = 4;

type Client = PhoneBookServiceClient<Channel>;

/// A phone book under test: its server, a connection to it and what it is called in the rows.
struct Book {
    server: Server,
    channel: Channel,
    system: &'static str,
    durable: Durable,
    _data: tempfile::TempDir,
}

impl Book {
    /// A phonebook-server on a fresh data directory, with `args`.
    async fn start(args: &[&str], system: &'static str, durable: Durable) -> anyhow::Result<Book> {
        let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
        let server = server::start("phonebook-server", data.path(), args).await?;
        let channel = server::dial(&server.addr.to_string())
            .await
            .context("connect to the phone book")?;
        Ok(Book {
            server,
            channel,
            system,
            durable,
            _data: data,
        })
    }
}

/// Runs the phone book scenarios at each book size, each against fresh servers.
pub async fn run(plan: &Plan, smoke: bool) -> anyhow::Result<Report> {
    let sizes: &[usize] = if smoke {
        &[2_000]
    } else {
        &[100_000, 1_000_000]
    };
    let mut report = Report::default();
    let postgres = start_postgres(&mut report).await;
    for &size in sizes {
        let mut books = vec![Book::start(&[], "phonebook-server", SQLITE).await?];
        if let Ok(postgres) = &postgres {
            let url = pgbench::new_database(postgres, &format!("book_{size}")).await?;
            let args = ["--database-url", url.as_str()];
            books.push(Book::start(&args, "phonebook-server on PostgreSQL", POSTGRES).await?);
        }
        let rows = &mut report.rows;
        for book in &books {
            rows.push(load_book(book, size).await?);
        }
        for clients in [1, CLIENTS] {
            rows.extend(lookups(&books, size, clients, plan).await?);
        }
        rows.extend(searches(&books, size, plan).await?);
        rows.extend(adds(&books, size, plan).await?);
        for book in &books {
            let mut footprint = book.server.footprint()?;
            footprint.server = format!("{} ({size} entries)", book.system);
            report.footprints.push(footprint);
        }
    }
    if let Ok(postgres) = postgres {
        tokio::task::spawn_blocking(move || postgres.stop())
            .await
            .context("stop PostgreSQL")??;
    }
    Ok(report)
}

/// Starts a throwaway PostgreSQL, or says why it could not (the SQLite rows are measured all
/// the same).
async fn start_postgres(report: &mut Report) -> Result<Postgres, String> {
    let package = township_references::POSTGRES_PACKAGE;
    let started = async {
        let Some(version) = township_references::postgres_version()? else {
            anyhow::bail!("not installed: apt-get install {package}");
        };
        report.references.push(Reference {
            name: "PostgreSQL (phone book's database)".into(),
            version,
        });
        tokio::task::spawn_blocking(Postgres::start)
            .await
            .context("start PostgreSQL")?
    };
    started.await.map_err(|err: anyhow::Error| {
        let why = format!("{err:#}");
        eprintln!("township-bench: the phone book on PostgreSQL is not measured: {why}");
        why
    })
}

/// Entry `i` of the loaded book: distinct names, numbers spread over one exchange.
fn entry(i: usize) -> AddEntryRequest {
    AddEntryRequest {
        name: format!("Person {i:07}"),
        number: format!("+1 201 555 {:04}", i % 10_000),
        label: String::new(),
    }
}

/// Loads `size` entries with BatchAddEntries; the row's rate is entries per second and its
/// latencies are per batch.
async fn load_book(book: &Book, size: usize) -> anyhow::Result<Row> {
    let next = Rc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..LOADERS {
        let mut rpc = Client::new(book.channel.clone());
        let next = next.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut histogram = Histogram::<u64>::new(3).context("histogram")?;
            loop {
                let from = next.fetch_add(BATCH, Ordering::Relaxed);
                if from >= size {
                    return Ok(histogram);
                }
                let requests = (from..(from + BATCH).min(size)).map(entry).collect();
                let began = Instant::now();
                let results = rpc
                    .batch_add_entries(BatchAddEntriesRequest { requests })
                    .await
                    .context("batch add")?
                    .into_inner()
                    .results;
                histogram.record(began.elapsed().as_micros() as u64)?;
                if let Some(rejected) = results.iter().find_map(|r| match &r.outcome {
                    Some(Outcome::Rejected(rejected)) => Some(rejected),
                    _ => None,
                }) {
                    bail!("the loader's entry was rejected: {rejected:?}");
                }
            }
        }));
    }
    let histogram = load::merge(tasks).await?;
    let elapsed = started.elapsed();
    let mut figures = Figures::of(&histogram, elapsed);
    figures.per_second = size as f64 / elapsed.as_secs_f64();
    let mut load = Rounds::default();
    load.add_figures(figures, histogram)?;
    let mut row = load.row(
        format!("phonebook: bulk load, batches of {BATCH}, {size} entries (once)"),
        book.system,
        book.durable.clone(),
    )?;
    row.count = size as u64;
    Ok(row)
}

/// Lookups of random existing names.
async fn lookups(
    books: &[Book],
    size: usize,
    clients: usize,
    plan: &Plan,
) -> anyhow::Result<Vec<Row>> {
    let measured = plan.alternate(books, async |book, window| {
        let mut tasks = Vec::new();
        for client in 0..clients {
            let mut rpc = Client::new(book.channel.clone());
            let mut random = xorshift(client as u64 + 1);
            tasks.push(tokio::task::spawn_local(async move {
                load::closed_loop(window, async || {
                    let name = format!("person {:07}", random() as usize % size);
                    let found = rpc
                        .lookup(LookupRequest { name })
                        .await
                        .context("lookup")?
                        .into_inner()
                        .entries;
                    if found.len() != 1 {
                        bail!("lookup found {} entries, not 1", found.len());
                    }
                    Ok(())
                })
                .await
            }));
        }
        load::merge(tasks).await
    });
    rows(
        books,
        measured.await?,
        &format!("phonebook: lookup, {size} entries, {clients} client(s)"),
    )
}

/// First pages (50 entries) of searches for a name fragment that matches 100 entries as a prefix
/// and more inside other names.
async fn searches(books: &[Book], size: usize, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let measured = plan.alternate(books, async |book, window| {
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let mut rpc = Client::new(book.channel.clone());
            let mut random = xorshift(client as u64 + 101);
            tasks.push(tokio::task::spawn_local(async move {
                load::closed_loop(window, async || {
                    let hundred = random() as usize % (size / 100).max(1);
                    let query = format!("person {hundred:05}");
                    let found = rpc
                        .search(SearchRequest {
                            query,
                            page_size: 50,
                            page_token: String::new(),
                        })
                        .await
                        .context("search")?
                        .into_inner()
                        .entries;
                    if found.is_empty() {
                        bail!("search found nothing");
                    }
                    Ok(())
                })
                .await
            }));
        }
        load::merge(tasks).await
    });
    rows(
        books,
        measured.await?,
        &format!("phonebook: search, first page of 50, {size} entries, {CLIENTS} clients"),
    )
}

/// Durable single-entry adds (each acknowledged only after its commit reached the disk).
async fn adds(books: &[Book], size: usize, plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let mut round = 0u32;
    let measured = plan.alternate(books, async |book, window| {
        round += 1;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let mut rpc = Client::new(book.channel.clone());
            let mut n = 0u64;
            tasks.push(tokio::task::spawn_local(async move {
                load::closed_loop(window, async || {
                    n += 1;
                    let request = AddEntryRequest {
                        name: format!("Newcomer {round}-{client}-{n}"),
                        number: "+1 201 555 0100".into(),
                        label: "bench".into(),
                    };
                    rpc.add_entry(request).await.context("add")?;
                    Ok(())
                })
                .await
            }));
        }
        load::merge(tasks).await
    });
    rows(
        books,
        measured.await?,
        &format!("phonebook: add, {size} entries, {CLIENTS} clients"),
    )
}

/// One row of `scenario` per book, from its rounds.
fn rows(books: &[Book], measured: Vec<Rounds>, scenario: &str) -> anyhow::Result<Vec<Row>> {
    books
        .iter()
        .zip(measured)
        .map(|(book, rounds)| rounds.row(scenario, book.system, book.durable.clone()))
        .collect()
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
