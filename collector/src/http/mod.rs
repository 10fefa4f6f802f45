//! The HTTP side of the collector: the page, the JSON API and the SSE stream, on the `--http`
//! address.
//!
//! [`server`] reads requests and writes responses with explicit limits; [`routes`] maps a
//! request to a response (exact path matching, one function per endpoint); [`sse`] streams live
//! events when a route answers with a stream.

pub mod assets;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_lite::{AsyncRead, AsyncWrite, FutureExt};

use crate::Ctx;
use server::{Body, ReadError, Response};

/// Accepts HTTP connections until shutdown; each connection runs in its own task.
pub async fn serve(listener: smol::net::TcpListener, ctx: Ctx, active: Arc<AtomicUsize>) {
    loop {
        let accept = async { Some(listener.accept().await) };
        let stop = async {
            // Resolves when the shutdown channel closes.
            let _ = ctx.shutdown.recv().await;
            None
        };
        let Some(accepted) = accept.or(stop).await else {
            return;
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("http: accept failed: {err}");
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= ctx.limits.max_http_connections {
            log::warn!(
                "http: refusing {addr}: {} connections open",
                ctx.limits.max_http_connections
            );
            smol::spawn(refuse_busy(stream, ctx.clone())).detach();
            continue;
        }
        // Small responses and live events: latency matters more than packet count.
        if let Err(err) = stream.set_nodelay(true) {
            log::debug!("http: set_nodelay for {addr}: {err}");
        }
        let guard = ActiveGuard::new(active.clone());
        let ctx = ctx.clone();
        // Each connection ends on its own (limits and timeouts); nothing needs to join it.
        smol::spawn(async move {
            let _guard = guard;
            match crate::tls::accept(stream, ctx.tls.as_ref(), ctx.limits.handshake_timeout).await {
                Ok(stream) => serve_connection(stream, addr, ctx).await,
                Err(err) => log::debug!("http: {addr}: TLS handshake failed: {err}"),
            }
        })
        .detach();
    }
}

/// Counts a connection while it lives.
pub struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    /// Counts one more connection.
    pub fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn refuse_busy<S: AsyncWrite + Unpin>(mut stream: S, ctx: Ctx) {
    let response: Response<()> =
        Response::error(503, "too many connections").with_header("Retry-After", "5");
    // The client is being turned away; whether it hears why is best effort.
    let _ = server::write_response(&mut stream, &response, false, false, &ctx.limits.http).await;
}

/// Serves requests on one connection until it closes, breaks a limit or turns into a stream.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    ctx: Ctx,
) {
    let limits = ctx.limits.http.clone();
    let mut buffer = Vec::new();
    loop {
        let read =
            async { Some(server::read_request(&mut stream, &mut buffer, addr, &limits).await) };
        let stop = async {
            // At shutdown an idle kept-alive connection is closed rather than waited for.
            let _ = ctx.shutdown.recv().await;
            None
        };
        let Some(read) = read.or(stop).await else { return };
        let request = match read {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Refuse(status, message)) => {
                log::debug!("http: {addr}: {status} {message}");
                let response: Response<()> = Response::error(status, message);
                // The connection closes next either way.
                let _ = server::write_response(&mut stream, &response, false, false, &limits).await;
                return;
            }
        };
        let keep_alive = server::keep_alive(&request);
        let head_only = request.method == "HEAD";
        let mut response = routes::handle(&request, &ctx).await;
        response.headers.extend(routes::common_headers());
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
