//! A browser's WebSocket on `/live`: the same events as `/events`, as text messages. The read
//! half stays polled for the whole connection, so pings are answered and a close is noticed.

use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};

use crate::Ctx;
use crate::events::LiveEvent;
use crate::hub::SubscribeRequest;
use crate::subscribe::{self, End, EventSink};

struct WsSink<S> {
    sender: async_tungstenite::WebSocketSender<S>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsSink<S> {
    async fn send_message(&mut self, message: Message) -> Result<(), String> {
        let send = async { self.sender.send(message).await.map_err(|e| e.to_string()) };
        agent::within(self.timeout, send)
            .await
            .unwrap_or_else(|| Err("subscriber did not read in time".to_owned()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> EventSink for WsSink<S> {
    async fn send(&mut self, events: &[&LiveEvent]) -> Result<(), String> {
        for event in events {
            self.send_message(Message::text(event.json().to_owned())).await?;
        }
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), String> {
        self.send_message(Message::Ping(Vec::new().into())).await
    }
}

/// Streams events to one WebSocket subscriber until it leaves, lags or the collector stops.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    socket: WebSocketStream<S>,
    ctx: Ctx,
    request: SubscribeRequest,
) {
    let addr = request.addr.clone();
    let (sender, mut receiver) = socket.split();
    let mut sink = WsSink { sender, timeout: ctx.limits.subscriber_stall_timeout };
    let client_gone = async {
        loop {
            match receiver.next().await {
                Some(Ok(Message::Close(_))) | None => return "subscriber closed".to_owned(),
                // Pings are answered by tungstenite; a subscriber has nothing to say beyond that.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    return "subscriber sent data; /live is one-way".to_owned();
                }
                Some(Err(err)) => return format!("read failed: {err}"),
            }
        }
    };
    let end = subscribe::pump(&ctx, request, &mut sink, client_gone).await;
    let frame = match &end {
        End::Lagged { last_id } => Some(CloseFrame {
            code: CloseCode::Policy,
            reason: format!("lagged: too slow; reconnect with since={last_id}").into(),
        }),
        End::ShuttingDown => {
            Some(CloseFrame { code: CloseCode::Away, reason: "collector shutting down".into() })
        }
        End::Gone(_) => None,
    };
    if let Some(frame) = frame {
        // The subscriber may be gone or silent already; then there is nobody to tell.
        let _ = agent::within(Duration::from_secs(1), sink.sender.close(Some(frame))).await;
    }
    log::debug!("live: {addr}: ended: {end:?}");
}
