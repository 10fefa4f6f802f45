//! One agent's connection: hello → version check → registration → welcome, then batches stored
//! and acknowledged after their commit, until the agent leaves, breaks a rule, goes idle, is
//! replaced by a newer connection of its host, or the collector shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{self, Message};
use futures_lite::{AsyncRead, AsyncWrite, FutureExt, StreamExt};
use protocol::{
    AgentMessage, CollectorMessage, DecodeError, Hello, Refusal, RefusalReason, Welcome,
};

use agent::runtime::within;

use crate::Ctx;
use crate::fanout::hub::{self, CloseReason};
use crate::ingest::auth::AgentCredential;
use crate::storage::StoreError;
use crate::untrusted::{escaped, has_control};

/// Why the connection ends, with the close frame to send.
struct Ending {
    code: CloseCode,
    reason: String,
    refusal: Option<RefusalReason>,
}

impl Ending {
    fn refuse(reason: RefusalReason, message: impl Into<String>) -> Self {
        let code = match reason {
            RefusalReason::Malformed => CloseCode::Protocol,
            RefusalReason::ShuttingDown => CloseCode::Away,
            RefusalReason::Unavailable => CloseCode::Again,
            RefusalReason::BadToken
            | RefusalReason::UnsupportedVersion
            | RefusalReason::OverLimit
            | RefusalReason::Replaced => CloseCode::Policy,
        };
        Self { code, reason: message.into(), refusal: Some(reason) }
    }

    fn quiet(reason: impl Into<String>) -> Self {
        Self { code: CloseCode::Normal, reason: reason.into(), refusal: None }
    }
}

/// Serves one agent until its connection ends, in a task of its own on the ingest executor
/// ([`crate::spawn_ingest`]): for an upgrade read on another executor (the `--http` port's).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    socket: WebSocketStream<S>,
    addr: SocketAddr,
    credential: AgentCredential,
    ctx: Ctx,
) {
    crate::spawn_ingest(serve_here(socket, addr, credential, ctx)).await
}

/// Serves one agent until its connection ends, in the calling task: for a task on the ingest
/// executor already (the `--ws` port's).
///
/// A plain `fn` returning an `async move` block, not an `async fn`: an `async fn` keeps its
/// arguments twice in its future (as passed, and moved into its body's locals), and this
/// future lives as long as the agent; the block uses what it captured in place.
// Not an `async fn` on purpose (see above): clippy cannot tell the two layouts apart.
#[allow(clippy::manual_async_fn)]
pub fn serve_here<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: WebSocketStream<S>,
    addr: SocketAddr,
    credential: AgentCredential,
    ctx: Ctx,
) -> impl std::future::Future<Output = ()> {
    async move {
        let hello = match read_hello(&mut socket, &ctx).await {
            Ok(hello) => match &credential {
                AgentCredential::Host(owner) if *owner != hello.host_id => {
                    let message =
                        format!("this token belongs to host {owner}, not {}", hello.host_id);
                    log::warn!("ingest: {addr}: refused: {}", escaped(&message));
                    finish(&mut socket, Ending::refuse(RefusalReason::BadToken, message)).await;
                    return;
                }
                AgentCredential::Shared if ctx.agent_auth().has_own_token(&hello.host_id) => {
                    let message = format!(
                        "host {} has its own token in the tokens file; the shared token cannot claim it",
                        hello.host_id
                    );
                    log::warn!("ingest: {addr}: refused: {}", escaped(&message));
                    finish(&mut socket, Ending::refuse(RefusalReason::BadToken, message)).await;
                    return;
                }
                _ => hello,
            },
            Err(ending) => {
                log::warn!(
                    "ingest: {addr}: refused before the welcome: {}",
                    escaped(&ending.reason)
                );
                finish(&mut socket, ending).await;
                return;
            }
        };
        let limited = credential == AgentCredential::Shared;
        if let Some(replica) = &ctx.replica {
            // The resume point must count what other collectors stored of this host (its agent
            // may come from one that just died): the consumer first reaches the stream's end.
            replica.catch_up().await;
        }
        let registration = match ctx.storage.register(hello.clone(), limited).await {
            Ok(registration) => registration,
            Err(err) => {
                let ending = match err {
                    // The storage logs its failures itself, once per run of them.
                    StoreError::Unavailable(_) => unavailable(),
                    StoreError::Busy(why) => Ending::refuse(RefusalReason::Unavailable, why),
                    StoreError::Refused(why) => Ending::refuse(RefusalReason::OverLimit, why),
                };
                static LOG: crate::net::budget::RefusalLog = crate::net::budget::RefusalLog::new();
                LOG.log(|count| {
                    log::warn!(
                        "ingest: {addr}: host {} not registered: {} ({count} since the last line)",
                        escaped(&hello.host_id),
                        escaped(&ending.reason)
                    )
                });
                finish(&mut socket, ending).await;
                return;
            }
        };
        let conn = ctx.next_connection();
        let host_id = hello.host_id.clone();
        let version = hello.protocol_version;
        // With replication on, each stored batch goes to the outbox with this hello.
        let source =
            crate::storage::Source::Local(ctx.replica.as_ref().map(|_| Arc::new(hello.clone())));
        let interval = Duration::from_millis(u64::from(hello.interval_ms.max(100)));
        let (close_tx, close_rx) = async_channel::bounded(1);
        // Before the hub hears of it: another collector's claim read from then on is ordered
        // against this one.
        let claim = match &ctx.replica {
            Some(replica) => replica.claim(&hello).await,
            None => None,
        };
        let connected = hub::Event::AgentConnected {
            conn,
            hello,
            credential,
            addr: addr.to_string(),
            close: close_tx,
            claim,
        };
        if ctx.hub.send(connected).await.is_err() {
            finish(
                &mut socket,
                Ending::refuse(RefusalReason::ShuttingDown, "collector shutting down"),
            )
            .await;
            return;
        }
        // The collector speaks the agent's version back: every version it accepts shares the
        // collector's messages, and the agent's batches are decoded in the agent's layout.
        let welcome = CollectorMessage::Welcome(Welcome {
            protocol_version: version,
            last_seq: registration.last_seq,
        });
        let ending = match send(&mut socket, &welcome, &ctx).await {
            Ok(()) => {
                let connection =
                    Connection { host_key: registration.host_key, version, interval, source };
                receive_batches(&mut socket, &ctx, &connection, &close_rx).await
            }
            Err(err) => Ending::quiet(format!("cannot send the welcome: {err}")),
        };
        let reason = ending.reason.clone();
        finish(&mut socket, ending).await;
        // At shutdown the hub may be gone already; then nobody needs to hear of this.
        let _ = ctx.hub.send(hub::Event::AgentDisconnected { conn, host_id, reason }).await;
    }
}

async fn read_hello<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    ctx: &Ctx,
) -> Result<Hello, Ending> {
    let first = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    return Err(Ending::refuse(
                        RefusalReason::Malformed,
                        "expected a binary hello",
                    ));
                }
                Some(Ok(Message::Close(_))) => {
                    crate::fanout::live::send_close_echo(socket).await;
                    return Err(Ending::quiet("closed before the hello"));
                }
                Some(Ok(_)) | None => return Err(Ending::quiet("closed before the hello")),
                Some(Err(err)) => return Err(read_error(err)),
            }
        }
    };
    let bytes = within(ctx.limits.handshake_timeout, first)
        .await
        .unwrap_or_else(|| Err(Ending::refuse(RefusalReason::Malformed, "no hello in time")))?;
    let version = match protocol::peek_hello_version(&bytes) {
        None => {
            return Err(Ending::refuse(
                RefusalReason::Malformed,
                "the first message must be a hello",
            ));
        }
        Some(version)
            if !(protocol::MIN_SUPPORTED_VERSION..=protocol::PROTOCOL_VERSION)
                .contains(&version) =>
        {
            return Err(Ending::refuse(
                RefusalReason::UnsupportedVersion,
                format!(
                    "protocol version {version} is not supported (this collector speaks {} to {})",
                    protocol::MIN_SUPPORTED_VERSION,
                    protocol::PROTOCOL_VERSION
                ),
            ));
        }
        Some(version) => version,
    };
    match protocol::decode_agent_message_of(&bytes, version) {
        Ok(AgentMessage::Hello(hello)) if hello.host_id.trim().is_empty() => {
            Err(Ending::refuse(RefusalReason::Malformed, "empty host id"))
        }
        Ok(AgentMessage::Hello(hello)) if has_control(&hello.host_id) => Err(Ending::refuse(
            RefusalReason::Malformed,
            "the host id has control characters (CR, LF, ESC, NUL…); use plain text",
        )),
        Ok(AgentMessage::Hello(hello)) => Ok(hello),
        Ok(_) => Err(Ending::refuse(RefusalReason::Malformed, "the first message must be a hello")),
        Err(err) => Err(decode_error(err)),
    }
}

/// What a registered agent's connection knows of it.
struct Connection {
    /// The host's key in the database.
    host_key: i64,
    /// The protocol version of its hello, in whose layout its batches come.
    version: u16,
    /// Its sampling interval.
    interval: Duration,
    /// Where its batches come from, for the storage (and the replication outbox).
    source: crate::storage::Source,
}

async fn receive_batches<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    ctx: &Ctx,
    connection: &Connection,
    close: &async_channel::Receiver<CloseReason>,
) -> Ending {
    // An agent sends at least a sample or a ping every few intervals.
    let idle = (connection.interval * 10).max(ctx.limits.agent_idle_timeout);
    loop {
        let incoming = async { Ok(socket.next().await) };
        let closed = async {
            Err(match close.recv().await {
                Ok(CloseReason::Replaced) => Ending::refuse(
                    RefusalReason::Replaced,
                    "replaced by a newer connection of the same host",
                ),
                Ok(CloseReason::Revoked) => {
                    Ending::refuse(RefusalReason::BadToken, "the agent token was revoked")
                }
                Ok(CloseReason::ShuttingDown) | Err(_) => {
                    Ending::refuse(RefusalReason::ShuttingDown, "collector shutting down")
                }
            })
        };
        let quiet = async {
            smol::Timer::after(idle).await;
            Err(Ending {
                code: CloseCode::Away,
                reason: format!("idle for {idle:?}"),
                refusal: None,
            })
        };
        let message = match incoming.or(closed).or(quiet).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(err))) => return read_error(err),
            Ok(None) => return Ending::quiet("connection closed"),
            Err(ending) => return ending,
        };
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(frame) => {
                crate::fanout::live::send_close_echo(socket).await;
                return Ending::quiet(frame.map_or_else(
                    || "agent closed".to_owned(),
                    |f| format!("agent closed: {}", f.reason),
                ));
            }
            Message::Text(_) => {
                return Ending::refuse(
                    RefusalReason::Malformed,
                    "text messages are not part of the protocol",
                );
            }
        };
        ctx.metrics.ingest_bytes(bytes.len());
        let batch = match protocol::decode_agent_message_of(&bytes, connection.version) {
            Ok(AgentMessage::Batch(batch)) => batch,
            Ok(AgentMessage::Hello(_)) => {
                return Ending::refuse(RefusalReason::Malformed, "a second hello");
            }
            Err(err) => return decode_error(err),
        };
        if let Some(ending) = implausible_time(&batch) {
            return ending;
        }
        match ctx.storage.store_from(connection.host_key, batch, connection.source.clone()).await {
            Ok(result) => {
                if let (Some(replica), Some(id)) = (&ctx.replica, result.outbox_id) {
                    // The ack promises the sample to every collector: it waits for the stream
                    // while Redis is up (the outbox covers a Redis outage).
                    replica.published(id).await;
                }
                if let Some(seq) = result.acked_seq {
                    let ack = CollectorMessage::Ack(protocol::Ack { seq });
                    if let Err(err) = send(socket, &ack, ctx).await {
                        return Ending::quiet(format!("cannot send an ack: {err}"));
                    }
                }
            }
            // The storage logs its failures itself, once per run of them.
            Err(StoreError::Unavailable(_)) => return unavailable(),
            Err(StoreError::Refused(err)) => return Ending::refuse(RefusalReason::Malformed, err),
            Err(StoreError::Busy(err)) => return Ending::refuse(RefusalReason::Unavailable, err),
        }
    }
}

/// The ending for an agent while the storage cannot commit: a refusal that tells it to keep its
/// samples and retry later with backoff (close code 1013, "try again later").
fn unavailable() -> Ending {
    Ending::refuse(
        RefusalReason::Unavailable,
        "the collector cannot store samples now (see its /readyz); keep them and retry later",
    )
}

/// How far ahead of the collector's clock a sample may be dated.
const MAX_CLOCK_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// Refuses a batch with a sample dated more than a day ahead: storing it would put rows where
/// retention never reaches and make every chart's time axis useless. The agent's clock is wrong.
fn implausible_time(batch: &protocol::Batch) -> Option<Ending> {
    let now = crate::now_ms();
    let sample = dated_ahead(&batch.samples, now)?;
    Some(Ending::refuse(
        RefusalReason::Malformed,
        format!(
            "sample {} is dated {} s ahead of the collector's clock; fix the agent's clock",
            sample.seq,
            (sample.ts_ms - now) / 1000
        ),
    ))
}

/// The first sample dated more than a day ahead of `now_ms`, if any (also checked on batches
/// from the stream, `--redis`).
pub(crate) fn dated_ahead(samples: &[protocol::Sample], now_ms: u64) -> Option<&protocol::Sample> {
    samples.iter().find(|s| s.ts_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS))
}

fn decode_error(err: DecodeError) -> Ending {
    match err {
        DecodeError::TooLarge { .. } => Ending {
            code: CloseCode::Size,
            reason: err.to_string(),
            refusal: Some(RefusalReason::OverLimit),
        },
        DecodeError::OverLimit(_) => Ending::refuse(RefusalReason::OverLimit, err.to_string()),
        DecodeError::Malformed(_) => Ending::refuse(RefusalReason::Malformed, err.to_string()),
    }
}

fn read_error(err: tungstenite::Error) -> Ending {
    match err {
        tungstenite::Error::Capacity(e) => Ending {
            code: CloseCode::Size,
            reason: format!("over the protocol limits: {e}"),
            refusal: Some(RefusalReason::OverLimit),
        },
        tungstenite::Error::Protocol(e) => {
            Ending::refuse(RefusalReason::Malformed, format!("WebSocket protocol error: {e}"))
        }
        other => Ending::quiet(format!("connection lost: {other}")),
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    message: &CollectorMessage,
    ctx: &Ctx,
) -> Result<(), String> {
    let bytes = protocol::encode_collector_message(message);
    let write = async { socket.send(Message::binary(bytes)).await.map_err(|e| e.to_string()) };
    within(ctx.limits.http.write_timeout, write)
        .await
        .unwrap_or_else(|| Err("the agent did not read in time".to_owned()))
}

/// Sends the refusal (if any) and a close frame, without waiting long for a departing peer.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    ending: Ending,
) {
    let close = async {
        if let Some(reason) = ending.refusal {
            let refusal =
                CollectorMessage::Refused(Refusal { reason, message: ending.reason.clone() });
            // The agent may be gone already; the close below is then moot too.
            let _ =
                socket.send(Message::binary(protocol::encode_collector_message(&refusal))).await;
        }
        let frame =
            CloseFrame { code: ending.code, reason: truncate_reason(&ending.reason).into() };
        let _ = socket.close(Some(frame)).await;
    };
    // A departing agent gets one second to hear why; after that it is simply dropped.
    let _ = within(Duration::from_secs(1), close).await;
}

/// Close reasons are limited to 123 bytes.
pub fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
