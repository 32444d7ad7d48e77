//! Nothing unbounded: a tower layer that caps, for the whole server, the unary calls in flight
//! and the streams open, and gives unary calls a deadline when the client set none.
//!
//! Past a cap the call is refused at once with RESOURCE_EXHAUSTED and a RetryInfo, never queued:
//! a queue in front of a full server only grows. Streams (any RPC that streams either way) have
//! their own cap, so that a crowd of long-lived streams cannot starve short calls, nor the other
//! way round. A call holds its place until its response body ends or is dropped, so a stream
//! holds it for its whole life. `grpc.health.v1.Health/Check` is never capped: a probe that
//! fails because the server is busy would get it restarted, which makes things worse.
//!
//! Which RPCs stream is read from the descriptors of every service the kit can serve (Township's,
//! health's and reflection's), so a new streaming RPC is capped as a stream with no list to keep.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prost::Message;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

/// How soon a caller refused for too many calls in flight is told to retry.
pub const CALLS_RETRY: Duration = Duration::from_millis(100);

/// How soon a caller refused for too many open streams is told to retry: streams end slowly.
pub const STREAMS_RETRY: Duration = Duration::from_secs(1);

/// The server's caps (see [`crate::ServeOptions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Unary calls in flight at once, over every connection.
    pub max_calls: usize,
    /// Streams open at once, over every connection.
    pub max_streams: usize,
    /// How long a unary call without a client deadline may run before DEADLINE_EXCEEDED.
    pub call_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_calls: 1024,
            max_streams: 2048,
            call_deadline: Duration::from_secs(60),
        }
    }
}

/// The layer; its caps are shared by every connection.
#[derive(Clone, Debug)]
pub(crate) struct LimitsLayer {
    calls: Arc<Places>,
    streams: Arc<Places>,
    call_deadline: Duration,
}

impl LimitsLayer {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            calls: Places::new(limits.max_calls),
            streams: Places::new(limits.max_streams),
            call_deadline: limits.call_deadline,
        }
    }
}

/// A cap: how many places are taken, of how many. Nobody ever waits for a place, so a counter
/// is all it takes; a semaphore (tokio's) would lock its waiters' mutex on every release, once
/// per call.
#[derive(Debug)]
struct Places {
    taken: AtomicUsize,
    max: usize,
}

impl Places {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            taken: AtomicUsize::new(0),
            max,
        })
    }

    /// A place, unless all are taken; it is given back when dropped.
    fn take(self: &Arc<Self>) -> Option<Place> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |taken| {
                (taken < self.max).then_some(taken + 1)
            })
            .ok()
            .map(|_| Place(Arc::clone(self)))
    }
}

/// One taken place of a [`Places`].
#[derive(Debug)]
struct Place(Arc<Places>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limited {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Limited<S> {
    inner: S,
    layer: LimitsLayer,
}

/// The RPC paths (`/package.Service/Method`) that stream in either direction.
static STREAMING: LazyLock<HashSet<String>> = LazyLock::new(|| {
    [
        township_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .filter_map(|bytes| prost_types::FileDescriptorSet::decode(bytes).ok())
    .flat_map(|set| set.file)
    .flat_map(|file| {
        let package = file.package().to_owned();
        file.service.into_iter().flat_map(move |service| {
            let prefix = format!("/{package}.{}/", service.name());
            service
                .method
                .into_iter()
                .filter(|m| m.client_streaming() || m.server_streaming())
                .map(move |m| format!("{prefix}{}", m.name()))
        })
    })
    .collect()
});

const UNCAPPED: &str = "/grpc.health.v1.Health/Check";

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Limited<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<Held<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        if path == UNCAPPED {
            let answer = self.inner.call(request);
            return Box::pin(async move { Ok(answer.await?.map(Held::free)) });
        }
        let streaming = STREAMING.contains(path);
        let (places, retry, what) = if streaming {
            (&self.layer.streams, STREAMS_RETRY, "streams open")
        } else {
            (&self.layer.calls, CALLS_RETRY, "calls in flight")
        };
        let Some(place) = places.take() else {
            tracing::warn!(method = path, "refused: too many {what}");
            let status = Status::with_error_details(
                Code::ResourceExhausted,
                format!("the server has too many {what}; retry later"),
                ErrorDetails::with_retry_info(Some(retry)),
            );
            let refusal = status.into_http::<ResBody>().map(Held::free);
            return Box::pin(async move { Ok(refusal) });
        };
        let deadline = (!streaming && !request.headers().contains_key("grpc-timeout"))
            .then_some(self.layer.call_deadline);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = match deadline {
                None => answer.await?,
                Some(deadline) => match tokio::time::timeout(deadline, answer).await {
                    Ok(response) => response?,
                    Err(_) => Status::deadline_exceeded(format!(
                        "the call ran past the server's deadline of {} (set a deadline of your own to change it)",
                        humantime::format_duration(deadline)
                    ))
                    .into_http::<ResBody>(),
                },
            };
            Ok(response.map(|body| Held::holding(body, place)))
        })
    }
}

pin_project! {
    /// A response body that holds its call's place until it ends or is dropped.
    pub struct Held<B> {
        #[pin]
        inner: B,
        place: Option<Place>,
    }
}

impl<B> Held<B> {
    fn free(inner: B) -> Self {
        Self { inner, place: None }
    }

    fn holding(inner: B, place: Place) -> Self {
        Self {
            inner,
            place: Some(place),
        }
    }
}

impl<B: Default> Default for Held<B> {
    fn default() -> Self {
        Self::free(B::default())
    }
}

impl<B: Body> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = frame {
            this.place.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_gives_out_its_places_and_takes_them_back_when_dropped() {
        let places = Places::new(2);
        let first = places.take().expect("a first place");
        let second = places.take().expect("a second place");
        assert!(places.take().is_none(), "both are taken");
        drop(first);
        let third = places.take().expect("the place given back");
        assert!(places.take().is_none());
        drop((second, third));
        assert_eq!(places.taken.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn streaming_rpcs_are_read_from_the_descriptors() {
        for path in [
            "/township.time.v1.TimeService/WatchTime",
            "/township.chat.v1.ChatService/Join",
            "/township.doctor.v1.DoctorService/Converse",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(STREAMING.contains(path), "{path}");
        }
        for path in [
            "/township.time.v1.TimeService/GetTime",
            "/township.bank.v1.BankService/Transfer",
            UNCAPPED,
        ] {
            assert!(!STREAMING.contains(path), "{path}");
        }
    }
}
