//! The runtime pieces the agent shares with the collector, which reaches the agent crate only
//! through this module and, for self-monitoring, [`crate::sampler`]: the stderr logger with
//! journald priorities ([`logging`]), systemd notifications ([`systemd`]), layered settings
//! (flags > env > TOML > defaults, [`settings`], and [`read_secret`] for secret files), the
//! plain-or-TLS stream type and the rustls client ([`MaybeTls`], [`tls_connector`]), the
//! WebSocket limits ([`websocket_config`]), the wall clock ([`now_ms`]) and the bounded wait
//! every peer I/O goes through ([`within`]).
//!
//! `logging` and `systemd` live here; the rest is defined beside the agent code that grew it
//! (`settings.rs`, `config.rs`, `net.rs`, `lib.rs`) and re-exported, so both sides name one
//! module for what they share.

pub mod logging;
pub mod systemd;

pub use crate::config::read_secret;
pub use crate::net::{MaybeTls, tls_connector, websocket_config};
pub use crate::settings;
pub use crate::{now_ms, within};
