//! Chat fan-out: 1,000 members joined to one room, one sender sending at a fixed rate (open
//! loop); each message's delivery latency is measured from the moment its Send was due to its
//! receipt by each member, so a stall shows however the sender is doing. At each rate the
//! members join once, then the sender sends for several rounds; each round's p99 is kept, and
//! the target asks every round's to be within 20 ms.

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

use crate::{
    load::Plan,
    report::Report,
    row::{Durable, Rounds, Row},
    server,
    targets::Target,
};

/// Every message is committed (`synchronous = FULL`) before it is delivered or acknowledged.
const DURABLE: Durable = Durable::Yes("SQLite WAL, synchronous=FULL, before delivery");
/// The fan-out's delivery target, at every rate.
const P99_TARGET: Duration = Duration::from_millis(20);

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
        let row = fan_out(&uri, members, rate, plan).await?;
        report.targets.push(Target::p99_at_most(
            format!("chat fan-out p99 ≤ 20 ms, {members} members, {rate} messages/s"),
            &row,
            P99_TARGET,
        ));
        report.rows.push(row);
    }
    report.footprints.push(server.footprint()?);
    Ok(report)
}

/// Latencies (µs) of every delivery measured so far, shared by the members' tasks.
type Deliveries = Rc<RefCell<Histogram<u64>>>;

async fn fan_out(uri: &str, members: usize, rate: u32, plan: &Plan) -> anyhow::Result<Row> {
    let mut channels = Vec::new();
    for _ in 0..members.div_ceil(MEMBERS_PER_CHANNEL) {
        channels.push(server::dial(uri).await?);
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
        let mut rpc = Client::new(channels[member % channels.len()].clone());
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
    let mut sender = Client::new(channels[0].clone());
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
    rounds.row(
        format!("chat: fan-out to {members} members, {rate} messages/s (deliveries/s)"),
        "chat-server",
        DURABLE,
    )
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
