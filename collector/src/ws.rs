//! The WebSocket listener (`--ws`): accepts connections, performs the upgrade with a time limit,
//! authenticates at the upgrade (HTTP 401 before any WebSocket exists), and routes by exact path:
//! agents to [`crate::ingest`] at `/ingest`, browsers to [`crate::live`] at `/live`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{self, StatusCode};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_lite::{AsyncRead, AsyncWrite};

use crate::Ctx;
use crate::auth::{AgentCheck, AgentCredential};
use crate::events::Filter;
use crate::hub::SubscribeRequest;
use crate::subscribe::{LiveStream, SubscriberSlot};

/// Where an upgrade request goes.
enum Route {
    Ingest(AgentCredential),
    Live(LiveStream),
}

/// Accepts WebSocket connections until shutdown.
pub async fn serve(listener: smol::net::TcpListener, ctx: Ctx, active: Arc<AtomicUsize>) {
    let max = ctx.limits.max_ws_connections;
    crate::listener::accept_loop("ws", listener, ctx, max, active, handle).await;
}

// The upgrade callback's error type is tungstenite's `ErrorResponse`, an HTTP response.
#[allow(clippy::result_large_err)]
async fn handle<S: AsyncRead + AsyncWrite + Unpin>(stream: S, addr: SocketAddr, ctx: Ctx) {
    let mut route = None;
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let (decided, result) = decide(request, response, &ctx, addr);
        route = decided;
        result
    };
    // The protocol's limits are in force from the first frame, whatever the route.
    let handshake =
        async_tungstenite::accept_hdr_async_with_config(stream, callback, Some(protocol_config()));
    // Each phase is boxed, so a connection's task holds only the phase it is in: an idle agent's
    // connection is not also charged for the upgrade's state (the task was 6.9 KiB unboxed).
    let socket = match Box::pin(agent::within(ctx.limits.handshake_timeout, handshake)).await {
        Some(Ok(socket)) => socket,
        None => {
            log::debug!("ws: {addr}: upgrade not completed in time");
            return;
        }
        Some(Err(err)) => {
            log::debug!("ws: {addr}: upgrade failed: {err}");
            return;
        }
    };
    match route {
        Some(Route::Ingest(credential)) => {
            Box::pin(crate::ingest::serve(socket, addr, credential, ctx)).await
        }
        Some(Route::Live(LiveStream { request, slot })) => {
            Box::pin(crate::live::serve(socket, ctx.clone(), request)).await;
            // The place under the subscriber limit is given back only when the stream ends.
            drop(slot);
        }
        None => {}
    }
}

/// WebSocket limits: the protocol's maximum message and frame sizes, not tungstenite's 64 MiB.
fn protocol_config() -> WebSocketConfig {
    agent::net::websocket_config()
}

fn reject(status: StatusCode, message: &str) -> ErrorResponse {
    let mut response = http::Response::new(Some(format!("{message}\n")));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"hostwatch\""),
        );
    }
    response
}

/// Decides where an upgrade goes, or refuses it with a status.
#[allow(clippy::result_large_err)]
fn decide(
    request: &Request,
    response: Response,
    ctx: &Ctx,
    addr: SocketAddr,
) -> (Option<Route>, Result<Response, ErrorResponse>) {
    let uri = request.uri();
    let header =
        |name: http::header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
    match uri.path() {
        "/ingest" => match ctx.agent_auth().check(header(http::header::AUTHORIZATION)) {
            AgentCheck::Accepted(credential) => (Some(Route::Ingest(credential)), Ok(response)),
            AgentCheck::Revoked => {
                log::warn!("ws: {addr}: agent refused at the upgrade: its token was revoked");
                (None, Err(reject(StatusCode::FORBIDDEN, "agent token revoked")))
            }
            AgentCheck::Rejected => {
                log::warn!("ws: {addr}: agent refused at the upgrade: invalid or missing token");
                (None, Err(reject(StatusCode::UNAUTHORIZED, "invalid or missing agent token")))
            }
        },
        "/live" => {
            if !ctx.access.origin_allowed(header(http::header::ORIGIN), header(http::header::HOST))
            {
                log::warn!(
                    "ws: {addr}: /live refused: origin {:?} not allowed",
                    header(http::header::ORIGIN)
                );
                return (None, Err(reject(StatusCode::FORBIDDEN, "origin not allowed")));
            }
            if !ctx
                .access
                .may_view(header(http::header::AUTHORIZATION), header(http::header::COOKIE))
            {
                return (None, Err(reject(StatusCode::UNAUTHORIZED, "viewer token required")));
            }
            let Some(slot) = SubscriberSlot::try_take(ctx) else {
                return (
                    None,
                    Err(reject(StatusCode::SERVICE_UNAVAILABLE, "too many live subscribers")),
                );
            };
            let pairs: Vec<(String, String)> =
                form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
            let since = match pairs.iter().find(|(k, _)| k == "since") {
                None => None,
                Some((_, v)) => match v.parse::<u64>() {
                    Ok(id) => Some(id),
                    Err(_) => {
                        return (
                            None,
                            Err(reject(StatusCode::BAD_REQUEST, "since must be an event id")),
                        );
                    }
                },
            };
            let request = SubscribeRequest {
                filter: Filter::from_query(&pairs),
                since,
                transport: "websocket",
                addr: addr.to_string(),
            };
            (Some(Route::Live(LiveStream { request, slot })), Ok(response))
        }
        _ => (None, Err(reject(StatusCode::NOT_FOUND, "no such endpoint (use /ingest or /live)"))),
    }
}
