//! The gRPC face of the time service: reads each request into its domain request (see
//! [`crate::types`]), asks the clock, and answers; errors leave through [`crate::Error`]'s one
//! `From<Error> for Status`.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use township_kit::Shutdown;
use township_proto::time::v1::{
    GetTimeRequest, TimeReply, WatchTimeRequest, time_service_server::TimeService,
};
use tracing::Instrument;

use crate::{
    clock::{GREETING, TimeOfDay, Zone},
    types::{TimeQuery, Watch},
};

/// Implements `township.time.v1.TimeService`.
#[derive(Clone, Debug)]
pub struct TimeApi {
    default_zone: Zone,
    shutdown: Shutdown,
}

impl TimeApi {
    /// Replies in `default_zone` when a request names none; streams end when `shutdown` fires.
    pub fn new(default_zone: Zone, shutdown: Shutdown) -> Self {
        Self {
            default_zone,
            shutdown,
        }
    }
}

fn reply(time: TimeOfDay) -> TimeReply {
    TimeReply {
        now: Some(prost_types::Timestamp {
            seconds: time.now.timestamp(),
            nanos: i32::try_from(time.now.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        ctime: time.ctime(),
        greeting: GREETING.to_owned(),
        time_zone: time.zone.name().to_owned(),
    }
}

#[tonic::async_trait]
impl TimeService for TimeApi {
    async fn get_time(
        &self,
        request: Request<GetTimeRequest>,
    ) -> Result<Response<TimeReply>, Status> {
        let TimeQuery { zone } = TimeQuery::parse(request.get_ref(), self.default_zone)?;
        Ok(Response::new(reply(TimeOfDay::now(zone))))
    }

    type WatchTimeStream = ReceiverStream<Result<TimeReply, Status>>;

    async fn watch_time(
        &self,
        request: Request<WatchTimeRequest>,
    ) -> Result<Response<Self::WatchTimeStream>, Status> {
        let watch = Watch::parse(request.get_ref(), self.default_zone)?;
        let (tx, rx) = mpsc::channel(1);
        let shutdown = self.shutdown.clone();
        tokio::spawn(tick(watch, tx, shutdown).instrument(tracing::info_span!("watch_time")));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends one reply at once and one per interval, until the client goes away (a failed send) or
/// the server shuts down (the stream then ends cleanly, with status OK).
async fn tick(watch: Watch, tx: mpsc::Sender<Result<TimeReply, Status>>, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(watch.interval.get());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => break,
            () = tx.closed() => break,
        }
        let sent = tokio::select! {
            sent = tx.send(Ok(reply(TimeOfDay::now(watch.zone)))) => sent,
            () = shutdown.cancelled() => break,
        };
        if sent.is_err() {
            break; // the client went away
        }
    }
    tracing::debug!("watch ended");
}
