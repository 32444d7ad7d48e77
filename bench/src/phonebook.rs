//! Phone book: a book of 100,000 and of 1,000,000 entries, loaded in batches; then Lookup latency
//! by name (16 clients) and durable AddEntry throughput (16 clients, group-committed) against it.

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

use crate::{
    load::{self, Plan, Window},
    report::Report,
    row::{Durable, Figures, Rounds, Row},
    server,
};

/// Every add is committed with SQLite's `synchronous = FULL` before it is answered.
const DURABLE: Durable = Durable::Yes("SQLite WAL, synchronous=FULL");

/// Concurrent closed-loop clients.
const CLIENTS: usize = 16;
/// Entries per BatchAddEntries call while loading the book (the API's maximum).
const BATCH: usize = 1000;
/// Batches in flight while loading.
const LOADERS: usize = 4;

type Client = PhoneBookServiceClient<Channel>;

/// Runs the phone book scenarios at each book size, each against a fresh server.
pub async fn run(plan: &Plan, smoke: bool) -> anyhow::Result<Report> {
    let sizes: &[usize] = if smoke {
        &[2_000]
    } else {
        &[100_000, 1_000_000]
    };
    let mut report = Report::default();
    for &size in sizes {
        let rows = &mut report.rows;
        let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
        let server = server::start("phonebook-server", data.path(), &[]).await?;
        let channel = server::dial(&server.addr.to_string())
            .await
            .context("connect to the phone book")?;
        rows.push(load_book(&channel, size).await?);
        for clients in [1, CLIENTS] {
            rows.push(lookups(&channel, size, clients, plan).await?);
        }
        rows.push(searches(&channel, size, plan).await?);
        rows.push(adds(&channel, size, plan).await?);
        let mut footprint = server.footprint()?;
        footprint.server = format!("phonebook-server ({size} entries)");
        report.footprints.push(footprint);
    }
    Ok(report)
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
async fn load_book(channel: &Channel, size: usize) -> anyhow::Result<Row> {
    let next = Rc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..LOADERS {
        let mut rpc = Client::new(channel.clone());
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
        "phonebook-server",
        DURABLE,
    )?;
    row.count = size as u64;
    Ok(row)
}

/// Lookups of random existing names.
async fn lookups(
    channel: &Channel,
    size: usize,
    clients: usize,
    plan: &Plan,
) -> anyhow::Result<Row> {
    one_system(plan, async |window| {
        let mut tasks = Vec::new();
        for client in 0..clients {
            let mut rpc = Client::new(channel.clone());
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
    })
    .await?
    .row(
        format!("phonebook: lookup, {size} entries, {clients} client(s)"),
        "phonebook-server",
        DURABLE,
    )
}

/// First pages (50 entries) of searches for a name fragment that matches 100 entries as a prefix
/// and more inside other names.
async fn searches(channel: &Channel, size: usize, plan: &Plan) -> anyhow::Result<Row> {
    one_system(plan, async |window| {
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let mut rpc = Client::new(channel.clone());
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
    })
    .await?
    .row(
        format!("phonebook: search, first page of 50, {size} entries, {CLIENTS} clients"),
        "phonebook-server",
        DURABLE,
    )
}

/// Durable single-entry adds (each acknowledged only after its commit reached the disk).
async fn adds(channel: &Channel, size: usize, plan: &Plan) -> anyhow::Result<Row> {
    let mut round = 0u32;
    one_system(plan, async |window| {
        round += 1;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let mut rpc = Client::new(channel.clone());
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
    })
    .await?
    .row(
        format!("phonebook: add, {size} entries, {CLIENTS} clients"),
        "phonebook-server",
        DURABLE,
    )
}

/// The phone book alone, in [`Plan::rounds`] rounds of `round`.
async fn one_system(
    plan: &Plan,
    mut round: impl AsyncFnMut(Window) -> anyhow::Result<Histogram<u64>>,
) -> anyhow::Result<Rounds> {
    let mut measured = plan
        .alternate(&[()], async |_, window| round(window).await)
        .await?;
    measured.pop().context("no round")
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
