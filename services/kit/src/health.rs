//! The standard `grpc.health.v1.Health` service, with two things tonic-health lacks: `Watch`
//! streams end when shutdown begins (after telling the watcher NOT_SERVING), so they never hold up
//! a graceful stop; and `Watch` on an unknown service answers SERVICE_UNKNOWN as the protocol says.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
pub use tonic_health::ServingStatus;
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response, health_server::Health,
};

use crate::Shutdown;

type Statuses = HashMap<String, watch::Sender<ServingStatus>>;

/// Serving status per service name ("" is the whole server). Cheap to clone; all clones share state.
#[derive(Clone, Debug)]
pub struct HealthRegistry {
    statuses: Arc<Mutex<Statuses>>,
    shutdown: Shutdown,
}

impl HealthRegistry {
    /// A registry whose only entry is the whole server (""), NOT_SERVING until [`Self::set`].
    pub fn new(shutdown: Shutdown) -> Self {
        let registry = Self {
            statuses: Arc::default(),
            shutdown,
        };
        registry.set("", ServingStatus::NotServing);
        registry
    }

    /// Sets the status of `service` (registering it if new) and tells its watchers.
    pub fn set(&self, service: &str, status: ServingStatus) {
        let mut statuses = self.lock();
        match statuses.get(service) {
            Some(tx) => {
                tx.send_replace(status);
            }
            None => {
                statuses.insert(service.to_owned(), watch::channel(status).0);
            }
        }
    }

    /// Sets every registered service, and the server as a whole, to `status`.
    pub fn set_all(&self, status: ServingStatus) {
        for tx in self.lock().values() {
            tx.send_replace(status);
        }
    }

    /// The current status of `service`, if registered.
    pub fn get(&self, service: &str) -> Option<ServingStatus> {
        self.lock().get(service).map(|tx| *tx.borrow())
    }

    fn subscribe(&self, service: &str) -> Option<watch::Receiver<ServingStatus>> {
        self.lock().get(service).map(watch::Sender::subscribe)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Statuses> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // sends), so a poisoned lock is still safe to use.
        self.statuses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn reply(status: ServingStatus) -> HealthCheckResponse {
    let status = match status {
        ServingStatus::Unknown => health_check_response::ServingStatus::Unknown,
        ServingStatus::Serving => health_check_response::ServingStatus::Serving,
        ServingStatus::NotServing => health_check_response::ServingStatus::NotServing,
    };
    HealthCheckResponse {
        status: status.into(),
    }
}

#[tonic::async_trait]
impl Health for HealthRegistry {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        match self.get(service) {
            Some(status) => Ok(Response::new(reply(status))),
            None => Err(Status::not_found(format!(
                "service: unknown service {service:?}"
            ))),
        }
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let shutdown = self.shutdown.clone();
        match self.subscribe(&request.get_ref().service) {
            Some(statuses) => {
                tokio::spawn(watch_status(statuses, tx, shutdown));
            }
            None => {
                tokio::spawn(async move {
                    let unknown = HealthCheckResponse {
                        status: health_check_response::ServingStatus::ServiceUnknown.into(),
                    };
                    if tx.send(Ok(unknown)).await.is_ok() {
                        tokio::select! {
                            () = shutdown.cancelled() => {}
                            () = tx.closed() => {}
                        }
                    }
                });
            }
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Feeds one Watch stream: the current status, then every change, until the watcher goes away or
/// shutdown begins; in the latter case the last message is NOT_SERVING and the stream ends.
async fn watch_status(
    mut statuses: watch::Receiver<ServingStatus>,
    tx: mpsc::Sender<Result<HealthCheckResponse, Status>>,
    shutdown: Shutdown,
) {
    let mut last = None;
    loop {
        let status = *statuses.borrow_and_update();
        if last != Some(status) {
            if tx.send(Ok(reply(status))).await.is_err() {
                return; // the watcher went away
            }
            last = Some(status);
        }
        tokio::select! {
            changed = statuses.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
            () = tx.closed() => return,
        }
    }
    if last != Some(ServingStatus::NotServing) {
        let _ = tx.send(Ok(reply(ServingStatus::NotServing))).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    fn status_of(item: Option<Result<HealthCheckResponse, Status>>) -> i32 {
        item.expect("stream ended early")
            .expect("error in stream")
            .status
    }

    #[tokio::test]
    async fn watch_reports_changes_then_not_serving_and_ends_on_shutdown() {
        let shutdown = Shutdown::new();
        let health = HealthRegistry::new(shutdown.clone());
        health.set("svc", ServingStatus::Serving);
        let mut stream = health
            .watch(Request::new(HealthCheckRequest {
                service: "svc".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        let serving = health_check_response::ServingStatus::Serving as i32;
        let not_serving = health_check_response::ServingStatus::NotServing as i32;
        assert_eq!(status_of(stream.next().await), serving);
        shutdown.cancel();
        assert_eq!(status_of(stream.next().await), not_serving);
        assert!(
            stream.next().await.is_none(),
            "the stream must end on shutdown"
        );
    }

    #[tokio::test]
    async fn unknown_services_are_not_found_for_check_and_unknown_for_watch() {
        let health = HealthRegistry::new(Shutdown::new());
        let err = health
            .check(Request::new(HealthCheckRequest {
                service: "nope".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let mut stream = health
            .watch(Request::new(HealthCheckRequest {
                service: "nope".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        let unknown = health_check_response::ServingStatus::ServiceUnknown as i32;
        assert_eq!(status_of(stream.next().await), unknown);
    }
}
