//! The API's view types: snapshots of the hub's state as `/api/hosts`, `/api/stats`,
//! `/api/clients` and `/metrics` serialize them. The hub builds them when asked
//! ([`crate::fanout::hub::Query`]); nothing in them refers back to the hub.

use std::sync::Arc;

use protocol::Sample;
use serde::Serialize;

use crate::storage::Point;

/// A host as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    /// Stable host id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// `online`, `stale` or `offline`.
    pub status: &'static str,
    /// Time of the newest stored sample (unix ms).
    pub last_seen: Option<u64>,
    /// When the current connection started (unix ms).
    pub connected_since: Option<u64>,
    /// Operating system.
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU architecture.
    pub arch: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpu_cores: u16,
    /// Installed memory.
    pub memory_total_bytes: u64,
    /// Agent release.
    pub agent_version: String,
    /// Sampling interval.
    pub interval_ms: u32,
    /// Samples the agent's spool dropped during outages.
    pub dropped_samples: u64,
    /// Whether this is the collector's own host.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Newest values.
    pub latest: Option<Arc<Point>>,
    /// Each mounted filesystem in the newest sample, as `df` shows it.
    pub filesystems: Vec<FilesystemView>,
}

/// One mounted filesystem as the API shows it: `df`'s figures.
#[derive(Debug, Clone, Serialize)]
pub struct FilesystemView {
    /// Where it is mounted.
    pub mount_point: String,
    /// The mounted device (empty from agents of protocol version 1).
    pub device: String,
    /// Filesystem type (empty from agents of protocol version 1).
    pub fs_type: String,
    /// Size.
    pub total_bytes: u64,
    /// Used: size minus free blocks (`df`'s Used).
    pub used_bytes: u64,
    /// Free blocks, root's reserve included; `None` from agents of protocol version 1.
    pub free_bytes: Option<u64>,
    /// Available to unprivileged users (`df`'s Avail).
    pub avail_bytes: u64,
    /// used / (used + avail) in percent (`df`'s Use%, which rounds it up).
    pub used_percent: Option<f64>,
}

impl FilesystemView {
    pub(crate) fn of(filesystem: &protocol::Filesystem) -> Self {
        let total = filesystem.total_bytes;
        let avail = filesystem.available_bytes.min(total);
        // An agent of protocol version 1 sent no free blocks: what users cannot have is used.
        let free = filesystem.free_bytes.map(|f| f.min(total));
        let used = total.saturating_sub(free.unwrap_or(avail));
        Self {
            mount_point: filesystem.mount_point.clone(),
            device: filesystem.device.clone(),
            fs_type: filesystem.fs_type.clone(),
            total_bytes: total,
            used_bytes: used,
            free_bytes: free,
            avail_bytes: avail,
            used_percent: crate::storage::derive::used_percent(used, avail)
                .map(|p| (p * 100.0).round() / 100.0),
        }
    }
}

/// The collector's counters as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    /// Agents connected now (the collector's own monitoring included).
    pub agents_connected: usize,
    /// Live subscribers now.
    pub subscribers: usize,
    /// Samples stored since the collector started.
    pub samples_total: u64,
    /// Samples stored per second, over the last ten seconds.
    pub samples_per_second: f64,
    /// Known hosts.
    pub hosts: usize,
    /// Subscribers dropped for being too slow, since start.
    pub subscribers_lagged_total: u64,
    /// Seconds since the collector started.
    pub uptime_seconds: u64,
    /// Alerts firing now.
    pub alerts_firing: usize,
}

/// What `/metrics` exports: every host's newest sample and the collector's counters.
#[derive(Debug, Clone)]
pub struct MetricsView {
    /// One entry per known host.
    pub hosts: Vec<HostMetrics>,
    /// The collector's counters.
    pub stats: StatsView,
}

/// One host for `/metrics`.
#[derive(Debug, Clone)]
pub struct HostMetrics {
    /// Stable host id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// `online`, `stale` or `offline`.
    pub status: &'static str,
    /// Time of the newest sample (unix ms).
    pub last_seen_ms: Option<u64>,
    /// Boot time (unix seconds).
    pub boot_time_seconds: u64,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Kernel build (`uname -v`); empty from agents of protocol version 1.
    pub kernel_build: String,
    /// CPU architecture (`uname -m`).
    pub arch: String,
    /// Samples the agent dropped.
    pub dropped_samples: u64,
    /// The newest sample as sent (cumulative counters).
    pub sample: Option<Arc<Sample>>,
    /// The newest derived values.
    pub point: Option<Arc<Point>>,
}

/// Connected clients as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct ClientsView {
    /// Connected agents.
    pub agents: Vec<ClientView>,
    /// Live subscribers.
    pub subscribers: Vec<ClientView>,
}

/// One connected client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    /// Peer address.
    pub addr: String,
    /// Connected since (unix ms).
    pub since: u64,
    /// Host id, for agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `websocket`, `sse` or `in-process`.
    pub transport: &'static str,
    /// Events sent (subscribers) or samples stored (agents).
    pub count: u64,
}
