//! The runtime pieces the agent shares with the collector, which reaches the agent crate only
//! through this module and, for self-monitoring, [`crate::sampler`]: the stderr logger with
//! journald priorities ([`logging`]), systemd notifications ([`systemd`]), layered settings
//! (flags > env > TOML > defaults, [`settings`], with [`read_secret`] for secrets given inline or
//! in a file), the plain-or-TLS stream type and the rustls client ([`tls`]: [`MaybeTls`],
//! [`tls_connector`]), the WebSocket limits ([`websocket_config`]), the wall clock ([`now_ms`])
//! and the bounded wait every peer I/O goes through ([`within`]).
//!
//! Nothing here knows the agent's transport (`net.rs`, `transport.rs`, the spool): the collector
//! depends on what both daemons need, not on how the agent connects.

pub mod logging;
pub mod settings;
pub mod systemd;
pub mod tls;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_tungstenite::tungstenite;
use protocol::Limits;

pub use settings::read_secret;
pub use tls::{MaybeTls, tls_connector};

/// WebSocket limits for ingest, on both ends: the protocol's, not tungstenite's 64 MiB defaults.
pub fn websocket_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(Limits::MAX_MESSAGE_BYTES))
        .max_frame_size(Some(Limits::MAX_FRAME_BYTES))
        .max_write_buffer_size(4 * Limits::MAX_MESSAGE_BYTES)
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
}

/// Runs `future` for at most `limit`: `None` if it did not finish in time (it is then dropped).
/// Every wait on a peer goes through this, so none of them can hang forever.
pub async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    use futures_lite::FutureExt;
    let finished = async { Some(future.await) };
    let expired = async {
        smol::Timer::after(limit).await;
        None
    };
    finished.or(expired).await
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
