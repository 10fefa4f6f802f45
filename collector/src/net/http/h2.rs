//! HTTP/2 on hyper: negotiated by ALPN (`h2`) over TLS on the `--http` listener, or spoken in
//! cleartext with prior knowledge (the connection preface instead of an HTTP/1.1 request line).
//! One connection carries many streams, so a browser's tabs share it and no tab's SSE waits for
//! one of HTTP/1.1's six connections per host. Requests are answered by the same
//! [`respond`](crate::net::http::respond) as HTTP/1.1; an SSE answer is a body fed by a channel.
//!
//! Limits: the header list size ([`HttpLimits::max_head_bytes`]), the body size (413), at most
//! [`MAX_STREAMS`] concurrent streams, keep-alive pings that close a dead peer, the write
//! timeout on each SSE write, and graceful shutdown (GOAWAY, then the streams' last events).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite, FutureExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};

use crate::Ctx;
use crate::fanout::events::LiveEvent;
use crate::fanout::sse;
use crate::fanout::subscribe::{self, EventSink, LiveStream};
use crate::net::budget::Admitted;
use crate::net::http::server::{Body, HttpLimits, Request};

/// The start of the HTTP/2 connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Most concurrent streams on one connection.
pub const MAX_STREAMS: u32 = 128;

/// Whether TLS negotiated HTTP/2.
pub fn negotiated(stream: &crate::net::tls::Stream) -> bool {
    match stream {
        agent::runtime::MaybeTls::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        agent::runtime::MaybeTls::Plain(_) => false,
    }
}

#[derive(Clone, Copy)]
struct Exec;

impl<F: std::future::Future + Send + 'static> hyper::rt::Executor<F> for Exec
where
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        crate::spawn(future).detach();
    }
}

type Answer = hyper::Response<BoxBody<Bytes, Infallible>>;

/// Serves one HTTP/2 connection until the peer leaves, stops answering pings or the collector
/// shuts down.
pub async fn serve<S>(stream: S, addr: SocketAddr, ctx: Ctx, mut admitted: Admitted)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The preface (or the ALPN choice) counts as a request: this connection is not evicted.
    admitted.authenticated();
    let limits = ctx.limits.http.clone();
    let mut builder = hyper::server::conn::http2::Builder::new(Exec);
    builder
        .timer(smol_hyper::rt::SmolTimer::new())
        .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_STREAMS)
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.write_timeout);
    let service_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let ctx = service_ctx.clone();
        async move { Ok::<_, Infallible>(answer(request, addr, ctx).await) }
    });
    let conn = builder.serve_connection(smol_hyper::rt::FuturesIo::new(stream), service);
    let mut conn = Box::pin(conn);
    let run = async { Some((&mut conn).await) };
    let stop = async {
        let _ = ctx.shutdown.recv().await;
        None
    };
    let result = match run.or(stop).await {
        Some(result) => result,
        None => {
            // GOAWAY; open streams (SSE) end with their `shutdown` event, then the connection.
            conn.as_mut().graceful_shutdown();
            match agent::runtime::within(limits.write_timeout, &mut conn).await {
                Some(result) => result,
                None => return,
            }
        }
    };
    if let Err(err) = result {
        log::debug!("http2: {addr}: {err}");
    }
}

fn bytes_body(bytes: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    Full::new(bytes.into()).boxed()
}

fn plain(status: u16, message: &str) -> Answer {
    let mut answer = hyper::Response::new(bytes_body(format!("{message}\n")));
    *answer.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    answer
        .headers_mut()
        .insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
    answer
}

async fn answer(request: hyper::Request<Incoming>, remote: SocketAddr, ctx: Ctx) -> Answer {
    let limits: &HttpLimits = &ctx.limits.http;
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, limits.max_body_bytes).collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(err) => {
            if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return plain(413, "request body too large");
            }
            return plain(400, "the request body broke off");
        }
    };
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    // Routes read the origin from Host, as in HTTP/1.1.
    if let Some(authority) = parts.uri.authority()
        && !headers.iter().any(|(name, _)| name == "host")
    {
        headers.push(("host".to_owned(), authority.as_str().to_owned()));
    }
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers,
        body,
        remote,
    };
    let head_only = request.method == "HEAD";
    let response = crate::net::http::respond(&request, &ctx).await;
    let body = match response.body {
        Body::Bytes(_) if head_only => bytes_body(Bytes::new()),
        Body::Bytes(bytes) => bytes_body(bytes.into_owned()),
        Body::Stream(_) if head_only => bytes_body(Bytes::new()),
        Body::Stream(live) => sse_body(ctx.clone(), live),
    };
    let mut answer = hyper::Response::new(body);
    *answer.status_mut() = hyper::StatusCode::from_u16(response.status).unwrap_or_default();
    for (name, value) in response.headers {
        // Connection-specific headers are not allowed in HTTP/2.
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            answer.headers_mut().append(name, value);
        }
    }
    answer
}

/// Frames in flight between the SSE pump and the connection: a client that stops reading fills
/// it and then the pump's write timeout ends the stream.
const SSE_QUEUE: usize = 16;

struct ChannelSink {
    tx: async_channel::Sender<Bytes>,
    timeout: Duration,
    /// This collector's event id tag (`--redis`).
    tag: Option<String>,
}

impl ChannelSink {
    async fn push(&self, bytes: Vec<u8>) -> Result<(), String> {
        match agent::runtime::within(self.timeout, self.tx.send(Bytes::from(bytes))).await {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err("the stream was closed".to_owned()),
            None => Err("the client stopped reading".to_owned()),
        }
    }
}

impl EventSink for ChannelSink {
    async fn send(&mut self, events: &[&LiveEvent]) -> Result<(), String> {
        let mut frames = String::with_capacity(events.len() * 800);
        for event in events {
            event.write_sse_frame_tagged(&mut frames, self.tag.as_deref());
        }
        self.push(frames.into_bytes()).await
    }

    async fn heartbeat(&mut self) -> Result<(), String> {
        self.push(b": keepalive\n\n".to_vec()).await
    }
}

/// An SSE body fed by its own task; the stream's end (reset, closed connection) ends the task.
fn sse_body(ctx: Ctx, live: LiveStream) -> BoxBody<Bytes, Infallible> {
    let (tx, rx) = async_channel::bounded::<Bytes>(SSE_QUEUE);
    let (alive, gone) = async_channel::bounded::<()>(1);
    crate::spawn(async move {
        let LiveStream { request, slot: _slot } = live;
        let addr = request.addr.clone();
        let timeout = ctx.limits.subscriber_stall_timeout;
        let mut sink = ChannelSink { tx, timeout, tag: ctx.event_tag().map(str::to_owned) };
        if sink.push(format!("retry: {}\n\n", sse::RETRY_MS).into_bytes()).await.is_err() {
            return;
        }
        let client_gone = async {
            // Closes when the body is dropped.
            let _ = gone.recv().await;
            "the client closed the stream".to_owned()
        };
        let end = subscribe::pump(&ctx, request, &mut sink, client_gone).await;
        if let Some(event) = sse::last_words(&end, ctx.event_tag()) {
            // The client may be the reason we stop; telling it why is best effort.
            let _ = sink.send(&[&event]).await;
        }
        log::debug!("sse (http2): {addr}: stream ended: {end:?}");
    })
    .detach();
    let frames = rx.map(move |bytes| {
        let _alive = &alive;
        Ok::<_, Infallible>(Frame::data(bytes))
    });
    BodyExt::boxed(StreamBody::new(frames))
}
