//! The WebSocket listener (`--ws`): accepts connections, performs the upgrade with a time limit,
//! authenticates at the upgrade (HTTP 401 before any WebSocket exists), and routes by exact path:
//! agents to [`crate::ingest::connection`] at `/ingest`, browsers to [`crate::fanout::live`] at `/live`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{self, StatusCode};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::Ctx;
use crate::fanout::events::Filter;
use crate::fanout::hub::SubscribeRequest;
use crate::fanout::subscribe::{LiveStream, SubscriberSlot};
use crate::ingest::auth::{AgentCheck, AgentCredential};
use crate::net::budget::{Admitted, Slot};

/// Where an upgrade request goes.
enum Route {
    Ingest(AgentCredential, Slot),
    Live(LiveStream),
}

/// What the first request on the port turned out to be.
enum Head<S> {
    /// An upgrade: the stream, with the head still to be read by the handshake.
    Upgrade(Prefixed<S>),
    /// Anything else.
    Plain(S),
}

/// Reads the first request head (at most the HTTP head limit) to tell an upgrade from a plain
/// request; the bytes read are replayed to the WebSocket handshake.
async fn upgrade_head<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
) -> std::io::Result<Head<S>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let upgrade = request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("upgrade")
                        && String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("websocket")
                });
                return Ok(if upgrade {
                    Head::Upgrade(Prefixed { prefix: head, read: 0, inner: stream })
                } else {
                    Head::Plain(stream)
                });
            }
            // Let the handshake refuse what it cannot parse, with its own error.
            Ok(httparse::Status::Partial) if head.len() < 16 * 1024 => {}
            _ => return Ok(Head::Upgrade(Prefixed { prefix: head, read: 0, inner: stream })),
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    read: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read before anything still on it.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self { prefix, read: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let n = buf.len().min(this.prefix.len() - this.read);
            buf[..n].copy_from_slice(&this.prefix[this.read..this.read + n]);
            this.read += n;
            if this.read == this.prefix.len() {
                // An idle connection keeps no copy of its request head.
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// Accepts WebSocket connections until shutdown.
pub async fn serve(listener: smol::net::TcpListener, ctx: Ctx, active: Arc<AtomicUsize>) {
    crate::net::listener::accept_loop("ws", listener, ctx, active, handle).await;
}

// The upgrade callback's error type is tungstenite's `ErrorResponse`, an HTTP response.
#[allow(clippy::result_large_err)]
async fn handle<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    addr: SocketAddr,
    ctx: Ctx,
    mut admitted: Admitted,
) {
    // tungstenite closes a request that is no upgrade without a word; such a client (a
    // browser or curl pointed at this port) gets a 426 that says where to go instead.
    let head = agent::runtime::within(ctx.limits.handshake_timeout, upgrade_head(stream));
    let stream = match Box::pin(admitted.unless_evicted(head)).await {
        None => {
            log::debug!("ws: {addr}: closed before its request, to make room for a newer one");
            return;
        }
        Some(head) => match head {
            Some(Ok(Head::Upgrade(stream))) => stream,
            Some(Ok(Head::Plain(mut stream))) => {
                let body = "this port serves WebSocket upgrades only (agents at /ingest, browsers \
                        at /live); the page and API are on the collector's --http address\n";
                let response = format!(
                    "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: close\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let write = crate::net::http::server::write_all(
                    &mut stream,
                    response.as_bytes(),
                    ctx.limits.http.write_timeout,
                );
                // The client may be gone already; the connection closes either way.
                let _ = write.await;
                return;
            }
            Some(Err(err)) => {
                log::debug!("ws: {addr}: no request head: {err}");
                return;
            }
            None => {
                log::debug!("ws: {addr}: no request head in time");
                return;
            }
        },
    };
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
    let handshake =
        admitted.unless_evicted(agent::runtime::within(ctx.limits.handshake_timeout, handshake));
    let socket = match Box::pin(handshake).await.flatten() {
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
    admitted.authenticated();
    if let Some(routed) = routed(socket, route, addr, ctx, Executor::Ingest) {
        routed.work.await;
    }
}

/// The executor a connection's task runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Executor {
    /// The ingest executor: the `--ws` listener's connections.
    Ingest,
    /// The fan-out executor: the `--http` listener's connections.
    Fanout,
}

/// An upgraded connection's work on its route, boxed, and its place in a budget, given back
/// when the work ends (with it).
struct Routed {
    work: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// Among the agents (`--max-connections`).
    _agent: Option<Slot>,
    /// Under `--max-subscribers`.
    _viewer: Option<SubscriberSlot>,
}

/// The work of an upgraded connection on its route, on either listener: an agent on the ingest
/// executor, a `/live` viewer on the fan-out one. A connection already on the right executor
/// is served in its own task; only one on the other executor gets a task there, awaited by
/// this one. Built here, not in an `async fn` awaited by the connection's task: the socket
/// goes straight into the boxed work, so the task does not also keep room for it (an idle
/// agent on `--ws` paid 1.3 KiB for a second task and that room).
fn routed<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    socket: async_tungstenite::WebSocketStream<S>,
    route: Option<Route>,
    addr: SocketAddr,
    ctx: Ctx,
    on: Executor,
) -> Option<Routed> {
    use crate::ingest::connection;
    Some(match route? {
        Route::Ingest(credential, slot) => Routed {
            work: match on {
                Executor::Ingest => Box::pin(connection::serve_here(socket, addr, credential, ctx)),
                Executor::Fanout => Box::pin(connection::serve(socket, addr, credential, ctx)),
            },
            _agent: Some(slot),
            _viewer: None,
        },
        Route::Live(LiveStream { request, slot }) => Routed {
            work: match on {
                Executor::Fanout => Box::pin(crate::fanout::live::serve(socket, ctx, request)),
                // Fan-out work, on the fan-out executor wherever the upgrade was read.
                Executor::Ingest => {
                    Box::pin(crate::spawn(crate::fanout::live::serve(socket, ctx, request)))
                }
            },
            _agent: None,
            _viewer: Some(slot),
        },
    })
}

/// WebSocket limits: the protocol's maximum message and frame sizes, not tungstenite's 64 MiB.
fn protocol_config() -> WebSocketConfig {
    agent::runtime::websocket_config()
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

/// Logs an agent refused for its token: the first at once, then at most one line every ten
/// seconds with a count, so guessing tokens cannot flood the log.
fn refused_token(addr: SocketAddr, why: &str) {
    static LOG: crate::net::budget::RefusalLog = crate::net::budget::RefusalLog::new();
    LOG.log(|count| {
        log::warn!(
            "ws: {addr}: agent refused at the upgrade: {why} ({count} refused since the last line)"
        )
    });
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
            AgentCheck::Accepted(credential) => match ctx.budget.agent() {
                Some(slot) => (Some(Route::Ingest(credential, slot)), Ok(response)),
                None => {
                    let why = format!(
                        "{} agents connected, the most --max-connections allows",
                        ctx.budget.max_agents()
                    );
                    ctx.budget.log_refused("ws", &why);
                    (None, Err(reject(StatusCode::SERVICE_UNAVAILABLE, &why)))
                }
            },
            AgentCheck::Revoked => {
                refused_token(addr, "its token was revoked");
                (None, Err(reject(StatusCode::FORBIDDEN, "agent token revoked")))
            }
            AgentCheck::Rejected => {
                refused_token(addr, "invalid or missing token");
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
            let since = pairs.iter().find(|(k, _)| k == "since").map(|(_, v)| v.as_str());
            let since = match crate::fanout::events::parse_resume(since, ctx.event_tag()) {
                Ok(since) => since,
                Err(_) => {
                    return (
                        None,
                        Err(reject(StatusCode::BAD_REQUEST, "since must be an event id")),
                    );
                }
            };
            let request = SubscribeRequest {
                filter: Filter::from_query(&pairs),
                since: since.after(),
                since_elsewhere: since == crate::fanout::events::Resume::Elsewhere,
                transport: "websocket",
                addr: addr.to_string(),
            };
            (Some(Route::Live(LiveStream { request, slot })), Ok(response))
        }
        _ => (None, Err(reject(StatusCode::NOT_FOUND, "no such endpoint (use /ingest or /live)"))),
    }
}

/// Whether an HTTP request is for a WebSocket endpoint: `/ingest` and `/live` are served on the
/// `--http` address exactly as on `--ws`.
pub fn wants_upgrade(request: &crate::net::http::server::Request) -> bool {
    matches!(request.path.as_str(), "/ingest" | "/live")
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Runs an upgrade asked for on the HTTP listener in a task of its own, on the executor of its
/// route: an agent's (`/ingest`) on the ingest executor, where it is then served, a viewer's
/// on the fan-out one.
pub fn spawn_http_upgrade<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    request: crate::net::http::server::Request,
    addr: SocketAddr,
    ctx: Ctx,
    admitted: Admitted,
) {
    let agent = request.path == "/ingest";
    let upgrade = serve_http_upgrade(stream, request, addr, ctx, admitted, agent);
    match agent {
        true => crate::spawn_ingest(upgrade).detach(),
        false => crate::spawn(upgrade).detach(),
    }
}

/// Completes a WebSocket upgrade asked for on the HTTP listener, whose head the HTTP server
/// already read (`stream` replays what came after it), with the `--ws` listener's checks:
/// token, origin, budgets, limits; then serves the route. A refused upgrade gets the same status
/// and text as on `--ws`, and the connection closes. `on_ingest`: it runs in a task on the
/// ingest executor (an agent's `/ingest`), so an agent is served in this task.
async fn serve_http_upgrade<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    request: crate::net::http::server::Request,
    addr: SocketAddr,
    ctx: Ctx,
    mut admitted: Admitted,
    on_ingest: bool,
) {
    let refused = |status: u16, message: &str, extra: Vec<(String, String)>| {
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\n",
            crate::net::http::server::reason(status)
        );
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = format!("{message}\n");
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        head
    };
    let key = request.header("sec-websocket-key").map(str::to_owned);
    let upgrade = request.method == "GET"
        && request.header("upgrade").is_some_and(|value| has_token(value, "websocket"));
    let answer = if !upgrade {
        Err(refused(
            426,
            "this endpoint serves WebSocket upgrades only (agents at /ingest, browsers at /live)",
            vec![("Upgrade".into(), "websocket".into())],
        ))
    } else if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        Err(refused(
            426,
            "WebSocket version 13 required",
            vec![("Sec-WebSocket-Version".into(), "13".into())],
        ))
    } else if key.is_none()
        || !request.header("connection").is_some_and(|value| has_token(value, "upgrade"))
    {
        Err(refused(400, "malformed WebSocket upgrade", Vec::new()))
    } else {
        let mut builder = http::Request::builder().method("GET").uri(if request.query.is_empty() {
            request.path.clone()
        } else {
            format!("{}?{}", request.path, request.query)
        });
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        match builder.body(()) {
            Err(_) => Err(refused(400, "malformed WebSocket upgrade", Vec::new())),
            Ok(upgrade) => match decide(&upgrade, Response::new(()), &ctx, addr) {
                (route, Ok(_)) => Ok(route),
                (_, Err(error)) => {
                    let extra = error
                        .headers()
                        .iter()
                        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
                        .collect();
                    let message = error.body().as_deref().unwrap_or("").trim_end().to_owned();
                    Err(refused(error.status().as_u16(), &message, extra))
                }
            },
        }
    };
    // The request's headers are not kept for the connection's life.
    drop(request);
    let timeout = ctx.limits.http.write_timeout;
    let route = match answer {
        Ok(route) => route,
        Err(head) => {
            // The client may be gone already; the connection closes either way.
            let _ =
                crate::net::http::server::write_all(&mut stream, head.as_bytes(), timeout).await;
            return;
        }
    };
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(
        key.as_deref().unwrap_or_default().as_bytes(),
    );
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if let Err(err) =
        crate::net::http::server::write_all(&mut stream, head.as_bytes(), timeout).await
    {
        log::debug!("http: {addr}: writing the upgrade failed: {err}");
        return;
    }
    // Now an agent or a viewer: counted in their own budgets, not among HTTP connections.
    admitted.authenticated();
    admitted.leave_http();
    let socket = async_tungstenite::WebSocketStream::from_raw_socket(
        stream,
        async_tungstenite::tungstenite::protocol::Role::Server,
        Some(protocol_config()),
    )
    .await;
    let on = match on_ingest {
        true => Executor::Ingest,
        false => Executor::Fanout,
    };
    if let Some(routed) = routed(socket, route, addr, ctx, on) {
        routed.work.await;
    }
}
