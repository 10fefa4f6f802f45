//! Messages exchanged on an ingest connection, in both directions.
//!
//! Agent → collector: [`AgentMessage::Hello`] once, then [`AgentMessage::Batch`]es.
//! Collector → agent: [`CollectorMessage::Welcome`] in answer to the hello, then an
//! [`CollectorMessage::Ack`] per stored batch, or a [`CollectorMessage::Refused`] just before the
//! collector closes the connection.

use serde::{Deserialize, Serialize};

use crate::Sample;

/// A message from an agent to the collector.
///
/// Variants are only ever appended: their index is the first byte on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    /// First message of every connection. Must stay variant 0 with the version as first field.
    Hello(Hello),
    /// Samples to store, in increasing sequence order.
    Batch(Batch),
}

/// Who the agent is and what it runs on. Sent once per connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Hello {
    /// Protocol version the agent speaks. Must stay the first field.
    pub protocol_version: u16,
    /// The agent's own release version, for display (`CARGO_PKG_VERSION`).
    pub agent_version: String,
    /// Stable identity of the host (default `/etc/machine-id`); the key of all its data.
    pub host_id: String,
    /// Host name, for display.
    pub hostname: String,
    /// Operating system name and version, for display.
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU architecture, such as `x86_64`.
    pub arch: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Number of logical CPUs.
    pub cpu_cores: u16,
    /// Physical memory in bytes.
    pub memory_total_bytes: u64,
    /// Boot time, seconds since the Unix epoch.
    pub boot_time_seconds: u64,
    /// How often the agent samples, so the collector can tell a stale host from a slow one.
    pub interval_ms: u32,
    /// Random identity of this agent's state (its spool directory), chosen when the state is
    /// first created and kept across restarts. A new instance id tells the collector that the
    /// agent's sequence numbers start afresh (a reinstalled agent), so its resume point and the
    /// sequence window belong to this instance alone; 0 for agents of protocol version 1.
    /// Since version 2.
    pub instance_id: u64,
    /// The kernel's build string (`uname -v`), for display and `node_uname_info`. Since
    /// version 2.
    pub kernel_build: String,
}

/// A batch of samples, sent after the hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Samples the agent's spool has discarded since it was first installed (cumulative), because
    /// it overflowed during an outage. The collector shows it per host.
    pub dropped_total: u64,
    /// Samples in strictly increasing sequence order, at most [`crate::Limits::MAX_SAMPLES_PER_BATCH`].
    pub samples: Vec<Sample>,
}

/// A message from the collector to an agent.
///
/// Variants are only ever appended: their index is the first byte on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CollectorMessage {
    /// The hello was accepted.
    Welcome(Welcome),
    /// Everything up to a sequence number is durably stored.
    Ack(Ack),
    /// The collector refuses the connection and is about to close it.
    Refused(Refusal),
}

/// Answer to an accepted hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version the collector will speak on this connection.
    pub protocol_version: u16,
    /// The highest sequence number already stored for this host, if any: the agent resumes after
    /// it and may forget every spooled sample up to it.
    pub last_seq: Option<u64>,
}

/// Acknowledgement that every sample of this host with a sequence number up to and including
/// `seq` is committed to the collector's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest durably stored sequence number.
    pub seq: u64,
}

/// Why the collector refuses an agent. Sent just before a close frame with the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What kind of refusal this is, so the agent can decide how soon to retry.
    pub reason: RefusalReason,
    /// A human-readable explanation for the agent's log.
    pub message: String,
}

/// The kinds of refusal. Variants are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// The token was wrong or missing (normally refused at the HTTP upgrade already).
    BadToken,
    /// The agent's protocol version is not supported by this collector.
    UnsupportedVersion,
    /// A message broke one of the protocol limits.
    OverLimit,
    /// A message could not be decoded or came out of order.
    Malformed,
    /// Another connection for the same host id replaced this one.
    Replaced,
    /// The collector is shutting down; reconnect later.
    ShuttingDown,
    /// The collector cannot store samples now (its disk is full, say); keep them and retry
    /// later, backing off. Since protocol version 2 (a version-1 agent cannot decode it and
    /// retries with backoff all the same).
    Unavailable,
}

impl RefusalReason {
    /// Whether an agent should retry only slowly after this refusal, because retrying quickly
    /// cannot succeed until an operator changes something.
    pub fn needs_operator(self) -> bool {
        matches!(
            self,
            Self::BadToken | Self::UnsupportedVersion | Self::OverLimit | Self::Malformed
        )
    }
}
