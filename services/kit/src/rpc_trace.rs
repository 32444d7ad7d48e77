//! One tracing span per RPC: method and peer address when the call arrives; status code and latency
//! when it ends — at the trailers for a streaming or unary reply, at once for a trailers-only error,
//! or as `CANCELLED` when the client goes away mid-stream. The classic server's "... connected from"
//! line, done properly.

use std::{
    fmt,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::{
    Code,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower::{Layer, Service};
use tracing::{Instrument, Span, field};

/// The tower layer that adds [`RpcTrace`] around every route.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RpcTraceLayer;

impl<S> Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTrace { inner }
    }
}

/// Wraps a service so each call runs inside an `rpc` span and logs how it ended.
#[derive(Clone, Debug)]
pub(crate) struct RpcTrace<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<tracing::instrument::Instrumented<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The field values are evaluated only when the span is enabled: with `rpc` filtered out
        // (RUST_LOG=warn) nothing below formats, allocates or reads the clock.
        let span = tracing::info_span!(
            "rpc",
            method = %request.uri().path(),
            peer = %Peer::of(&request),
            code = field::Empty,
            latency = field::Empty,
        );
        tracing::debug!(parent: &span, "call started");
        let start = (!span.is_disabled()).then(Instant::now);
        ResponseFuture {
            inner: self.inner.call(request).instrument(span.clone()),
            span: Some(span),
            start,
        }
    }
}

/// The caller's address as the `peer` field shows it (empty when the transport gives none),
/// written straight into the log line.
struct Peer(Option<SocketAddr>);

impl Peer {
    fn of<B>(request: &http::Request<B>) -> Self {
        let extensions = request.extensions();
        let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        });
        Self(tcp.and_then(TcpConnectInfo::remote_addr))
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => Ok(()),
        }
    }
}

pin_project! {
    /// Waits for the response head; logs at once when it already carries the status.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
        // When the call started; `None` when the span is disabled (no latency to record).
        start: Option<Instant>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<TracedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx));
        let span = this.span.take().unwrap_or_else(Span::none);
        let start = *this.start;
        Poll::Ready(response.map(|response| {
            // A trailers-only response (an error answered before any message) has the status in
            // its headers; anything else has it in the trailers at the end of the body.
            let finished = match grpc_code(response.headers()) {
                Some(code) => {
                    finish(&span, start, code);
                    true
                }
                None => false,
            };
            response.map(|inner| TracedBody {
                inner,
                span,
                start,
                finished,
            })
        }))
    }
}

pin_project! {
    /// The response body, watched for the trailers that carry the call's status.
    pub(crate) struct TracedBody<B> {
        #[pin]
        inner: B,
        span: Span,
        start: Option<Instant>,
        finished: bool,
    }

    impl<B> PinnedDrop for TracedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.finished {
                // Dropped before the trailers went out: the client went away or the server stopped.
                finish(this.span, *this.start, Code::Cancelled);
            }
        }
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !*this.finished {
            let code = match &frame {
                Some(Ok(frame)) => frame
                    .trailers_ref()
                    .map(|t| grpc_code(t).unwrap_or(Code::Unknown)),
                Some(Err(_)) => Some(Code::Internal),
                None => Some(Code::Unknown),
            };
            if let Some(code) = code {
                *this.finished = true;
                finish(this.span, *this.start, code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The header (or trailer) that carries a call's status; a constant, so a lookup does not parse
/// the name first.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

fn grpc_code(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get(GRPC_STATUS)
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// Records the call's end on its span and logs it: `call finished` and `call refused` at INFO,
/// `call failed` at WARN (logged even when the INFO span is filtered out, then without it).
fn finish(span: &Span, start: Option<Instant>, code: Code) {
    span.record("code", field::debug(code));
    if let Some(start) = start {
        span.record("latency", field::debug(start.elapsed()));
    }
    match code {
        Code::Ok | Code::Cancelled => tracing::info!(parent: span, "call finished"),
        Code::Unknown | Code::Internal | Code::DataLoss | Code::Unavailable => {
            tracing::warn!(parent: span, "call failed")
        }
        _ => tracing::info!(parent: span, "call refused"),
    }
}
