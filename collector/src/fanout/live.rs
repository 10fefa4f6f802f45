//! A browser's WebSocket on `/live`: the same events as `/events`, as text messages. The read
//! half stays polled for the whole connection, so pings are answered and a close is noticed.

use std::sync::OnceLock;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{self, Message};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};

use crate::Ctx;
use crate::fanout::events::{LiveEvent, format_event_id};
use crate::fanout::hub::SubscribeRequest;
use crate::fanout::subscribe::{self, End, EventSink};

struct WsSink<S> {
    sender: async_tungstenite::WebSocketSender<S>,
    timeout: Duration,
    /// This collector's event id tag (`--redis`), in each event's `collector` field.
    tag: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsSink<S> {
    async fn send_message(&mut self, message: Message) -> Result<(), String> {
        let send = async { self.sender.send(message).await.map_err(|e| e.to_string()) };
        agent::runtime::within(self.timeout, send)
            .await
            .unwrap_or_else(|| Err("subscriber did not read in time".to_owned()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> EventSink for WsSink<S> {
    async fn send(&mut self, events: &[&LiveEvent]) -> Result<(), String> {
        for event in events {
            let mut text = String::with_capacity(event.json().len() + 32);
            event.write_json_tagged(&mut text, self.tag.as_deref());
            self.send_message(Message::text(text)).await?;
        }
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), String> {
        self.send_message(Message::Ping(Vec::new().into())).await
    }
}

/// Streams events to one WebSocket subscriber until it leaves, lags or the collector stops.
///
/// Every ending sends a close frame before the TCP connection closes (RFC 6455 §5.5.1): a
/// client's own close is echoed, a client that sends data gets 1003, invalid UTF-8 gets 1007, a
/// lagging one 1008 and a collector shutting down 1001. Without it, clients report 1006
/// (abnormal closure) for every close they start themselves.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    socket: WebSocketStream<S>,
    ctx: Ctx,
    request: SubscribeRequest,
) {
    let addr = request.addr.clone();
    let (sender, mut receiver) = socket.split();
    let timeout = ctx.limits.subscriber_stall_timeout;
    let mut sink = WsSink { sender, timeout, tag: ctx.event_tag().map(str::to_owned) };
    // The close frame the client's own messages call for, set once by `client_gone` (a
    // `OnceLock`, not a `Cell`, so the connection's future stays `Send`).
    let mut answer: OnceLock<CloseFrame> = OnceLock::new();
    let client_gone = async {
        loop {
            match receiver.next().await {
                Some(Ok(Message::Close(_))) => {
                    send_close_echo(&mut receiver).await;
                    return "subscriber closed".to_owned();
                }
                None => return "subscriber closed".to_owned(),
                // Pings are answered by tungstenite; a subscriber has nothing to say beyond that.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    // Set only here and below, just before returning: it cannot be set already.
                    let _ = answer.set(CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "/live is one-way: send nothing but pings and close".into(),
                    });
                    return "subscriber sent data; /live is one-way".to_owned();
                }
                Some(Err(tungstenite::Error::Utf8(err))) => {
                    let _ = answer.set(CloseFrame {
                        code: CloseCode::Invalid,
                        reason: "a text message was not valid UTF-8".into(),
                    });
                    return format!("subscriber sent invalid UTF-8: {err}");
                }
                Some(Err(err)) => return format!("read failed: {err}"),
            }
        }
    };
    let end = subscribe::pump(&ctx, request, &mut sink, client_gone).await;
    let frame = match &end {
        End::Lagged { last_id } => Some(CloseFrame {
            code: CloseCode::Policy,
            reason: format!(
                "lagged: too slow; reconnect with since={}",
                format_event_id(*last_id, ctx.event_tag())
            )
            .into(),
        }),
        End::ShuttingDown => {
            Some(CloseFrame { code: CloseCode::Away, reason: "collector shutting down".into() })
        }
        // After the client's close the echo went out already and this fails at once, as it
        // does after a failed write.
        End::Gone(_) => answer.take(),
    };
    // The subscriber may be gone or silent already; then there is nobody to tell.
    let _ = agent::runtime::within(Duration::from_secs(1), sink.sender.close(frame)).await;
    log::debug!("live: {addr}: ended: {end:?}");
}

/// Sends the echo of a peer's close frame (RFC 6455 §5.5.1), within a second. tungstenite
/// queues the echo when it reads the close but writes it only on the next read or flush, and
/// refuses any later send; a server's next read writes it and then ends the stream, so the
/// connection can be dropped right after.
pub(crate) async fn send_close_echo<S>(socket: &mut S)
where
    S: futures_lite::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    // Whatever the read returns (the end of the stream, normally), the echo was written or the
    // peer is gone; waiting longer would help neither.
    let _ = agent::runtime::within(Duration::from_secs(1), socket.next()).await;
}
