//! Server-Sent Events on `/events`: `retry:` first, then `id:`/`event:`/`data:` frames, a comment
//! line as heartbeat, and a final `lagged` or `shutdown` event when the collector ends the stream.

use futures_lite::AsyncWrite;

use crate::Ctx;
use crate::events::LiveEvent;
use crate::http::server;
use crate::hub::SubscribeRequest;
use crate::subscribe::{self, End, EventSink};

/// How long a browser waits before reconnecting, in milliseconds (sent as `retry:`).
pub const RETRY_MS: u64 = 2000;

struct SseSink<'a, S> {
    stream: &'a mut S,
    timeout: std::time::Duration,
}

impl<S: AsyncWrite + Unpin> EventSink for SseSink<'_, S> {
    async fn send(&mut self, event: &LiveEvent) -> Result<(), String> {
        server::write_all(self.stream, event.sse_frame().as_bytes(), self.timeout)
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
pub async fn stream<S: AsyncWrite + Unpin>(stream: &mut S, ctx: &Ctx, request: SubscribeRequest) {
    let timeout = ctx.limits.http.write_timeout;
    let addr = request.addr.clone();
    if server::write_all(stream, format!("retry: {RETRY_MS}\n\n").as_bytes(), timeout)
        .await
        .is_err()
    {
        return;
    }
    let mut sink = SseSink { stream, timeout };
    // An SSE client never sends anything after its request; it is gone when a write fails.
    let end = subscribe::pump(ctx, request, &mut sink, std::future::pending()).await;
    let last_words = match &end {
        End::Lagged { last_id } => Some(LiveEvent::notice(
            "lagged",
            &format!("too slow: events were dropped; reconnect with Last-Event-ID {last_id}"),
        )),
        End::ShuttingDown => Some(LiveEvent::notice("shutdown", "the collector is shutting down")),
        End::Gone(_) => None,
    };
    if let Some(event) = last_words {
        // The client may be the reason we stop; telling it why is best effort.
        let _ = sink.send(&event).await;
    }
    log::debug!("sse: {addr}: stream ended: {end:?}");
}
