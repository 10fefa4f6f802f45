//! The HTTP servers of the `--http` address: the page, the JSON API and the SSE stream.
//!
//! [`server`] reads requests and writes responses with explicit limits; [`h2`] serves the same
//! routes over HTTP/2; [`routes`] maps a request to a response (exact path matching, one
//! function per endpoint); [`sse`] streams live events when a route answers with a stream.

pub mod h2;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use futures_lite::{AsyncRead, AsyncWrite, FutureExt};

use crate::Ctx;
use crate::api::routes;
use crate::fanout::sse;
use crate::net::budget::Admitted;
use server::{Body, ReadError, Request, Response};

/// Accepts HTTP connections until shutdown; each connection runs in its own task.
pub async fn serve(listener: smol::net::TcpListener, ctx: Ctx, active: Arc<AtomicUsize>) {
    let handle = |stream: crate::net::tls::Stream, addr, ctx, admitted| async move {
        if h2::negotiated(&stream) {
            h2::serve(stream, addr, ctx, admitted).await;
        } else {
            serve_connection(stream, addr, ctx, admitted).await;
        }
    };
    crate::net::listener::accept_loop("http", listener, ctx, active, handle).await;
}

/// Answers a request the same way over HTTP/1.1 and HTTP/2: the route's response, gzip when
/// the client takes it, and the headers every response carries.
pub async fn respond(request: &Request, ctx: &Ctx) -> routes::Reply {
    let mut response = routes::compress(request, routes::handle(request, ctx).await);
    response.headers.extend(routes::common_headers());
    response
}

/// Serves requests on one connection until it closes, breaks a limit or turns into a stream.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    addr: SocketAddr,
    ctx: Ctx,
    mut admitted: Admitted,
) {
    let limits = ctx.limits.http.clone();
    let mut buffer = Vec::new();
    // A new connection gets the head deadline to start its first request; only a kept-alive
    // one that already served a request may wait the idle timeout.
    let mut wait = limits.head_timeout;
    let mut first = true;
    loop {
        // A connection that has sent no request yet may be closed to make room for a newer one.
        let read = async {
            let head = server::read_head(&mut stream, &mut buffer, addr, &limits, wait);
            Some(admitted.unless_evicted(head).await)
        };
        let stop = async {
            // At shutdown an idle kept-alive connection is closed rather than waited for.
            let _ = ctx.shutdown.recv().await;
            None::<Option<_>>
        };
        let Some(Some(read)) = read.or(stop).await else { return };
        let read = match read {
            Ok(head) => {
                first = false;
                admitted.authenticated();
                wait = limits.idle_timeout;
                if head.wants_continue(&buffer)
                    && let Err(err) =
                        server::write_all(&mut stream, server::CONTINUE, limits.write_timeout).await
                {
                    log::debug!("http: {addr}: writing 100 Continue failed: {err}");
                    return;
                }
                server::read_body(&mut stream, &mut buffer, head, &limits).await
            }
            Err(err) => Err(err),
        };
        let request = match read {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Refuse(..)) if first && buffer.starts_with(h2::PREFACE) => {
                // Cleartext HTTP/2 with prior knowledge: the preface is read again by hyper.
                let stream =
                    crate::ingest::upgrade::Prefixed::new(std::mem::take(&mut buffer), stream);
                Box::pin(h2::serve(stream, addr, ctx, admitted)).await;
                return;
            }
            Err(ReadError::Refuse(status, message)) => {
                log::debug!("http: {addr}: {status} {message}");
                let response: Response<()> = Response::error(status, message);
                // The connection closes next either way.
                let _ = server::write_response(&mut stream, &response, false, false, &limits).await;
                return;
            }
        };
        if crate::ingest::upgrade::wants_upgrade(&request) {
            // `/ingest` and `/live` on this port too; bytes read past the head go along. In a
            // task of its own, on the executor of its route (an agent's on the ingest one), so
            // this HTTP connection's state (tens of KiB) is not kept for the WebSocket's life.
            let stream = crate::ingest::upgrade::Prefixed::new(std::mem::take(&mut buffer), stream);
            crate::ingest::upgrade::spawn_http_upgrade(stream, request, addr, ctx, admitted);
            return;
        }
        let keep_alive = server::keep_alive(&request);
        let head_only = request.method == "HEAD";
        let response = respond(&request, &ctx).await;
        let streaming = matches!(response.body, Body::Stream(_));
        if let Err(err) = server::write_response(
            &mut stream,
            &response,
            keep_alive && !streaming,
            head_only,
            &limits,
        )
        .await
        {
            log::debug!("http: {addr}: writing the response failed: {err}");
            return;
        }
        if let Body::Stream(subscribe) = response.body {
            if !head_only {
                let (reader, mut writer) = futures_lite::io::split(stream);
                sse::stream(&mut writer, reader, &ctx, subscribe).await;
            }
            return;
        }
        if !keep_alive {
            return;
        }
    }
}
