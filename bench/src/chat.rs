//! Chat fan-out: 1,000 members joined to one room, one sender sending at a fixed rate (open
//! loop); each message's delivery latency is measured from the moment its Send was due to its
//! receipt by each member, so a stall shows however the sender is doing. At each rate the
//! members join once, then the sender sends for several rounds; each round's p99 is kept, and
//! the target asks every round's to be within 20 ms.
//!
//! Then across servers: two chat-servers on one PostgreSQL database (a throwaway cluster, fsync
//! on), the sender joined through one and the members through the other, so every message
//! reaches them through the database's notification and a read of the table; the target asks
//! every round's p99 to be within 30 ms at 10 messages/s.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use township_proto::chat::v1::{
    self as pb, JoinRequest, ListRoomsRequest, SendRequest, chat_event::Kind,
    chat_service_client::ChatServiceClient,
};

use township_references::Postgres;

use crate::{
    load::Plan,
    pgbench,
    report::{Reference, Report},
    row::{Durable, Rounds, Row},
    server,
    targets::Target,
};

/// Every message is committed (`synchronous = FULL`) before it is delivered or acknowledged.
const DURABLE: Durable = Durable::Yes("SQLite WAL, synchronous=FULL, before delivery");
/// Across servers, every message is committed by PostgreSQL before it is delivered.
const DURABLE_ACROSS: Durable =
    Durable::Yes("PostgreSQL (fsync, synchronous_commit on), before delivery");
/// The fan-out's delivery target, at every rate.
const P99_TARGET: Duration = Duration::from_millis(20);
/// The delivery target across two servers on PostgreSQL, at 10 messages/s.
const P99_ACROSS_TARGET: Duration = Duration::from_millis(30);

/// Members per connection (HTTP/2 streams share a connection, as many clients behind one proxy).
const MEMBERS_PER_CHANNEL: usize = 100;
const ROOM: &str = "fanout";

type Client = ChatServiceClient<Channel>;

/// Runs the fan-out scenario at each sending rate against one fresh server.
pub async fn run(plan: &Plan, smoke: bool) -> anyhow::Result<Report> {
    let members = if smoke { 50 } else { 1000 };
    let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
    let server = server::start("chat-server", data.path(), &[]).await?;
    let uri = format!("http://{}", server.addr);
    let mut report = Report::default();
    for rate in [10, 20, 50] {
        let scenario =
            format!("chat: fan-out to {members} members, {rate} messages/s (deliveries/s)");
        let row = fan_out([&uri, &uri], members, rate, plan, scenario, DURABLE).await?;
        report.targets.push(Target::p99_at_most(
            format!("chat fan-out p99 ≤ 20 ms, {members} members, {rate} messages/s"),
            &row,
            P99_TARGET,
        ));
        report.rows.push(row);
    }
    report.footprints.push(server.footprint()?);
    drop(server);
    across_servers(plan, members, &mut report).await?;
    Ok(report)
}

/// The fan-out with the sender on one chat-server and the members on another, both on one
/// PostgreSQL database, at 10 and 50 messages/s.
async fn across_servers(plan: &Plan, members: usize, report: &mut Report) -> anyhow::Result<()> {
    let scenario = |rate: u32| {
        format!(
            "chat: fan-out to {members} members on another server, PostgreSQL, {rate} messages/s (deliveries/s)"
        )
    };
    let postgres = match start_postgres(report).await {
        Ok(postgres) => postgres,
        Err(why) => {
            eprintln!("township-bench: chat across servers is not measured: {why}");
            for rate in [10, 50] {
                let row = Row::missing(scenario(rate), "chat-server", DURABLE_ACROSS, &why);
                report.rows.push(row);
            }
            return Ok(());
        }
    };
    let url = pgbench::new_database(&postgres, "chat_fanout").await?;
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let args = ["--database-url", url.as_str()];
    let sending = server::start("chat-server", dirs[0].path(), &args).await?;
    let receiving = server::start("chat-server", dirs[1].path(), &args).await?;
    let uris = [
        format!("http://{}", sending.addr),
        format!("http://{}", receiving.addr),
    ];
    for rate in [10, 50] {
        let (sender, others) = (&uris[0], &uris[1]);
        let row = fan_out(
            [sender, others],
            members,
            rate,
            plan,
            scenario(rate),
            DURABLE_ACROSS,
        )
        .await?;
        if rate == 10 {
            report.targets.push(Target::p99_at_most(
                format!("chat fan-out across two servers on PostgreSQL p99 ≤ 30 ms, {members} members, {rate} messages/s"),
                &row,
                P99_ACROSS_TARGET,
            ));
        }
        report.rows.push(row);
    }
    report.footprints.push(sending.footprint()?);
    report.footprints.push(receiving.footprint()?);
    Ok(())
}

/// A throwaway PostgreSQL cluster from Debian's package, named among the run's references; or
/// why there is none.
async fn start_postgres(report: &mut Report) -> Result<Postgres, String> {
    let package = township_references::POSTGRES_PACKAGE;
    let started = async {
        let Some(version) = township_references::postgres_version()? else {
            anyhow::bail!("not installed: apt-get install {package}");
        };
        let postgres = tokio::task::spawn_blocking(Postgres::start)
            .await
            .context("start PostgreSQL")??;
        report.references.push(Reference {
            name: "PostgreSQL".into(),
            version,
        });
        Ok(postgres)
    };
    started
        .await
        .map_err(|err: anyhow::Error| format!("{err:#}"))
}

/// Latencies (µs) of every delivery measured so far, shared by the members' tasks.
type Deliveries = Rc<RefCell<Histogram<u64>>>;

/// Member 0, the sender, joins through `uris[0]`, the others through `uris[1]` (the same
/// server, or another on the same database).
async fn fan_out(
    uris: [&str; 2],
    members: usize,
    rate: u32,
    plan: &Plan,
    scenario: String,
    durable: Durable,
) -> anyhow::Result<Row> {
    let sender_channel = server::dial(uris[0]).await?;
    let mut channels = Vec::new();
    for _ in 0..members.div_ceil(MEMBERS_PER_CHANNEL) {
        channels.push(server::dial(uris[1]).await?);
    }
    let epoch = Instant::now();
    let deliveries: Deliveries = Rc::new(RefCell::new(Histogram::new(3)?));
    let mut listeners = Vec::new();
    let run_id = epoch.elapsed().as_nanos();
    // Members join after the room's history: this measures delivery, not catching up.
    let (history, _) = room_state(&channels[0]).await?;
    // The newest seq each member has seen: measuring starts once all have seen every join.
    let seen = Rc::new(RefCell::new(vec![0u64; members]));
    // Deliveries count when their message was due within this window (µs since `epoch`).
    let window = Rc::new(Cell::new((u64::MAX, u64::MAX)));
    // The sender is member 0: its Send needs the member token of its Join.
    let mut sender_token = String::new();
    for member in 0..members {
        let channel = match member {
            0 => &sender_channel,
            _ => &channels[member % channels.len()],
        };
        let mut rpc = Client::new(channel.clone());
        let join = JoinRequest {
            room: ROOM.into(),
            name: format!("member-{rate}-{run_id}-{member}"),
            after_seq: history,
        };
        let mut stream = rpc.join(join).await.context("join")?.into_inner();
        match stream.message().await.context("the Join's Welcome")? {
            Some(pb::ChatEvent {
                kind: Some(Kind::Welcome(welcome)),
                ..
            }) if member == 0 => sender_token = welcome.member_token,
            Some(pb::ChatEvent {
                kind: Some(Kind::Welcome(_)),
                ..
            }) => {}
            other => bail!("a Join began with {other:?}, not a Welcome"),
        }
        let deliveries = deliveries.clone();
        let seen = seen.clone();
        let window = window.clone();
        listeners.push(tokio::task::spawn_local(async move {
            while let Ok(Some(event)) = stream.message().await {
                seen.borrow_mut()[member] = event.seq;
                let (from, until) = window.get();
                if let Some(Kind::Message(message)) = event.kind
                    && let Some(sent) = message.text.strip_prefix("t=")
                    && let Ok(sent_us) = sent.parse::<u64>()
                    && (from..until).contains(&sent_us)
                {
                    let now_us = epoch.elapsed().as_micros() as u64;
                    let _ = deliveries
                        .borrow_mut()
                        .record(now_us.saturating_sub(sent_us));
                }
            }
        }));
    }
    // The join storm (every join delivered to every member so far) settles first.
    let (joined, _) = room_state(&channels[0]).await?;
    let settled = Instant::now() + Duration::from_secs(60);
    while seen.borrow().iter().any(|seq| *seq < joined) {
        if Instant::now() > settled {
            bail!("the members did not all see the room's joins within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The sender: one message every 1/rate s, each stamped with when it was due.
    let mut sender = Client::new(sender_channel.clone());
    let name = format!("member-{rate}-{run_id}-0");
    let interval = Duration::from_secs(1) / rate;
    let mut rounds = Rounds::default();
    for _ in 0..plan.rounds {
        let measure_from = Instant::now() + plan.warmup;
        let stop = measure_from + plan.round;
        let micros = |at: Instant| at.duration_since(epoch).as_micros() as u64;
        window.set((micros(measure_from), micros(stop)));
        deliveries.borrow_mut().reset();
        let mut next = Instant::now();
        let mut sent = 0u64;
        while next < stop {
            tokio::time::sleep_until(next.into()).await;
            sender
                .send(SendRequest {
                    room: ROOM.into(),
                    name: name.clone(),
                    text: format!("t={}", micros(next)),
                    client_message_id: String::new(),
                    member_token: sender_token.clone(),
                })
                .await
                .context("send")?;
            if next >= measure_from {
                sent += 1;
            }
            next += interval;
        }
        // Let the round's last deliveries arrive (up to 5 s).
        let expected = sent * members as u64;
        let patience = Instant::now() + Duration::from_secs(5);
        while deliveries.borrow().len() < expected && Instant::now() < patience {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let histogram = deliveries.borrow().clone();
        if histogram.len() != expected {
            bail!(
                "{} of {expected} deliveries arrived: the fan-out lost messages",
                histogram.len()
            );
        }
        rounds.add(histogram, plan.round)?;
    }
    for listener in listeners {
        listener.abort();
    }
    // Wait until the server has let every member go (their Left events written).
    let gone = Instant::now() + Duration::from_secs(60);
    while room_state(&channels[0]).await?.1 > 0 && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rounds.row(scenario, "chat-server", durable)
}

/// The fan-out room's latest seq and live members.
async fn room_state(channel: &Channel) -> anyhow::Result<(u64, u32)> {
    Ok(Client::new(channel.clone())
        .list_rooms(ListRoomsRequest {})
        .await
        .context("list rooms")?
        .into_inner()
        .rooms
        .iter()
        .find(|r| r.name == ROOM)
        .map_or((0, 0), |r| (r.last_seq, r.members)))
}
