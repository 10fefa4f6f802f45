//! Server-Sent Events on `/events`: `retry:` first, then `id:`/`event:`/`data:` frames, a comment
//! line as heartbeat, and a final `lagged` or `shutdown` event when the collector ends the stream.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::Ctx;
use crate::fanout::events::{LiveEvent, format_event_id};
use crate::fanout::subscribe::{self, End, EventSink, LiveStream};
use crate::net::http::server;

/// How long a browser waits before reconnecting, in milliseconds (sent as `retry:`).
pub const RETRY_MS: u64 = 2000;

struct SseSink<'a, S> {
    stream: &'a mut S,
    timeout: std::time::Duration,
    /// This collector's event id tag (`--redis`).
    tag: Option<&'a str>,
}

impl<S: AsyncWrite + Unpin> EventSink for SseSink<'_, S> {
    async fn send(&mut self, events: &[&LiveEvent]) -> Result<(), String> {
        let mut frames = String::with_capacity(events.len() * 800);
        for event in events {
            event.write_sse_frame_tagged(&mut frames, self.tag);
        }
        server::write_all(self.stream, frames.as_bytes(), self.timeout)
            .await
            .map_err(|e| e.to_string())
    }

    async fn heartbeat(&mut self) -> Result<(), String> {
        server::write_all(self.stream, b": keepalive\n\n", self.timeout)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Streams events to an SSE client until it leaves, lags or the collector stops.
/// `reader` is the connection's read half: an SSE client sends nothing after its request, so
/// the end of it (or an error) means the client left, even while no event is being written.
pub async fn stream<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut reader: impl AsyncRead + Unpin,
    ctx: &Ctx,
    live: LiveStream,
) {
    // The slot stays held (counted under --max-subscribers) until this function returns.
    let LiveStream { request, slot: _slot } = live;
    let timeout = ctx.limits.subscriber_stall_timeout;
    let addr = request.addr.clone();
    if server::write_all(stream, format!("retry: {RETRY_MS}\n\n").as_bytes(), timeout)
        .await
        .is_err()
    {
        return;
    }
    let mut sink = SseSink { stream, timeout, tag: ctx.event_tag() };
    let client_gone = async {
        let mut buffer = [0u8; 512];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) => return "client closed the connection".to_owned(),
                Err(err) => return format!("read failed: {err}"),
                // Anything a client sends after its request is ignored.
                Ok(_) => {}
            }
        }
    };
    let end = subscribe::pump(ctx, request, &mut sink, client_gone).await;
    if let Some(event) = last_words(&end, ctx.event_tag()) {
        // The client may be the reason we stop; telling it why is best effort.
        let _ = sink.send(&[&event]).await;
    }
    log::debug!("sse: {addr}: stream ended: {end:?}");
}

/// The event that tells an SSE client why the collector ended its stream (over HTTP/1.1 and
/// HTTP/2 alike); none when the client left.
pub fn last_words(end: &End, tag: Option<&str>) -> Option<LiveEvent> {
    match end {
        End::Lagged { last_id } => Some(LiveEvent::notice(
            "lagged",
            &format!(
                "too slow: events were dropped; reconnect with Last-Event-ID {}",
                format_event_id(*last_id, tag)
            ),
        )),
        End::ShuttingDown => Some(LiveEvent::notice("shutdown", "the collector is shutting down")),
        End::Gone(_) => None,
    }
}
