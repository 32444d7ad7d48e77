//! Lock service: acquire+release cycles per second and their latency, for 1 client, 16 clients on
//! distinct resources, and 16 clients on one resource (every cycle a hand-off).

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};
use township_proto::lock::v1::{
    AcquireRequest, LockTarget, Mode, ReleaseRequest, lock_service_client::LockServiceClient,
};

use crate::{
    load::{self, Window},
    report::Row,
    server,
};

/// Runs the three lock scenarios against one fresh lock-server.
pub async fn run(duration: Duration, warmup: Duration) -> anyhow::Result<Vec<Row>> {
    let data = tempfile::tempdir().context("cannot create a temporary data dir")?;
    let server = server::start("lock-server", data.path(), &[]).await?;
    let uri = format!("http://{}", server.addr);
    let scenarios: [(&str, usize, bool); 3] = [
        ("lock: 1 client", 1, false),
        ("lock: 16 clients, distinct resources", 16, false),
        ("lock: 16 clients, one resource", 16, true),
    ];
    let mut rows = Vec::new();
    for (name, clients, shared) in scenarios {
        rows.push(measure(name, &uri, clients, shared, duration, warmup).await?);
    }
    Ok(rows)
}

async fn measure(
    name: &str,
    uri: &str,
    clients: usize,
    shared: bool,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Row> {
    let mut tasks = Vec::new();
    let window = Window::starting_now(warmup, duration);
    for i in 0..clients {
        let channel = Endpoint::from_shared(uri.to_owned())?
            .connect()
            .await
            .context("connect")?;
        let resource = if shared {
            "bench/shared".to_owned()
        } else {
            format!("bench/{i}")
        };
        tasks.push(tokio::task::spawn_local(cycles(channel, resource, window)));
    }
    let histogram = load::merge(tasks).await?;
    Ok(Row::from_histogram(name, &histogram, duration))
}

/// One closed-loop client: acquire (write) then release, again and again.
async fn cycles(
    channel: Channel,
    resource: String,
    window: Window,
) -> anyhow::Result<Histogram<u64>> {
    let mut client = LockServiceClient::new(channel);
    let request = AcquireRequest {
        targets: vec![LockTarget {
            resource,
            mode: Mode::Write.into(),
        }],
        ttl: Some(prost_types::Duration {
            seconds: 10,
            nanos: 0,
        }),
        wait_timeout: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        owner: "bench".into(),
    };
    load::closed_loop(window, async || {
        let lease = client
            .acquire(request.clone())
            .await
            .context("acquire")?
            .into_inner();
        client
            .release(ReleaseRequest {
                lease_id: lease.lease_id,
            })
            .await
            .context("release")?;
        Ok(())
    })
    .await
}
