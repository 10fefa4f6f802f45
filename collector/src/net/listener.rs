//! The accept loop both listeners share: the connection budgets, the TLS handshake in each
//! connection's own task (a slow client never holds up the loop), and an end at shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_lite::FutureExt;

use crate::Ctx;
use crate::net::budget::Admitted;
use crate::net::tls::Stream;

/// Counts a connection while it lives.
#[derive(Debug)]
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

/// Accepts connections until shutdown and runs `handle` for each in its own task, with its
/// places in the connection budgets ([`crate::net::budget`]); a connection over a budget is closed
/// at once. `active` counts this listener's open connections, for the shutdown's wait.
pub async fn accept_loop<H, F>(
    name: &'static str,
    listener: smol::net::TcpListener,
    ctx: Ctx,
    active: Arc<AtomicUsize>,
    handle: H,
) where
    H: Fn(Stream, SocketAddr, Ctx, Admitted) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let refused_accept = crate::net::budget::RefusalLog::default();
    loop {
        let accept = async { Some(listener.accept().await) };
        let stop = async {
            // Resolves when the shutdown channel closes.
            let _ = ctx.shutdown.recv().await;
            None
        };
        let Some(accepted) = accept.or(stop).await else { return };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                refused_accept.log(|count| log::warn!("{name}: accept failed ({count}×): {err}"));
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut admitted = match ctx.budget.admit(name == "http") {
            Ok(admitted) => admitted,
            Err(why) => {
                ctx.budget.log_refused(name, why);
                continue; // Dropping the stream closes it.
            }
        };
        // Small messages and live events: latency matters more than packet count.
        if let Err(err) = stream.set_nodelay(true) {
            log::debug!("{name}: set_nodelay for {addr}: {err}");
        }
        // Counted while the connection lives, also when it moves to a task of its own (an
        // upgrade on the HTTP port).
        admitted.count_in(ActiveGuard::new(active.clone()));
        let (ctx, handle) = (ctx.clone(), handle.clone());
        // Each connection ends on its own (limits, timeouts, close, shutdown); nothing joins it.
        // The --ws port serves agents (and `/live`), so it runs on the ingest executor; an agent
        // upgraded on the HTTP port gets a task there of its own (`upgrade::spawn_http_upgrade`).
        let spawn = if name == "ws" { crate::spawn_ingest } else { crate::spawn };
        spawn(async move {
            // HTTP/2 is offered (ALPN) on the HTTP listener only; agents on --ws see no change.
            let acceptor = if name == "http" { ctx.tls_http.as_ref() } else { ctx.tls.as_ref() };
            let tls = crate::net::tls::accept(stream, acceptor, ctx.limits.handshake_timeout);
            // Boxed: the handshake's state is not kept for the connection's whole life.
            match Box::pin(admitted.unless_evicted(tls)).await {
                Some(Ok(stream)) => handle(stream, addr, ctx, admitted).await,
                Some(Err(err)) => log::debug!("{name}: {addr}: TLS handshake failed: {err}"),
                None => log::debug!("{name}: {addr}: closed in its TLS handshake to make room"),
            }
        })
        .detach();
    }
}
