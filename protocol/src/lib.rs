//! The hostwatch wire protocol: the only place that defines what crosses the network between
//! `hostwatch-agent` and `hostwatch-collector`.
//!
//! Every WebSocket connection carries binary messages encoded with [postcard]. postcard is not
//! self-describing, so the first message an agent sends is always [`AgentMessage::Hello`], whose
//! first field is the protocol version: a collector can read the version of any agent, past or
//! future, with [`peek_hello_version`] before it tries to decode the rest.
//!
//! Compatibility rules, pinned by the golden-bytes test in `tests/golden.rs`:
//! - enum variants are only ever appended, never reordered or removed;
//! - a change to any existing struct's layout bumps [`PROTOCOL_VERSION`].
//!
//! This crate does no I/O; it is pure data, limits and encode/decode.

mod codec;
mod limits;
mod message;
mod sample;
pub mod v1;

pub use codec::{
    DecodeError, decode_agent_message, decode_agent_message_of, decode_collector_message,
    encode_agent_message, encode_collector_message, peek_hello_version,
};
pub use limits::{LimitError, Limits};
pub use message::{
    Ack, AgentMessage, Batch, CollectorMessage, Hello, Refusal, RefusalReason, Welcome,
};
pub use sample::{
    CPU_TICKS_PER_SECOND, CpuTimes, DiskIo, Filesystem, LoadAverage, Memory, NetworkInterface,
    Sample, Swap, Temperature,
};

/// The protocol version this build speaks. Bumped whenever an existing message changes layout.
///
/// Version 2 added the hello's instance id and kernel build, memory's free, buffers and cached
/// figures, each filesystem's device, type and free blocks, and each disk's completed reads and
/// writes and busy time. Version-1 messages are still decoded ([`v1`]).
pub const PROTOCOL_VERSION: u16 = 2;

/// The oldest agent protocol version a collector of this build still accepts.
pub const MIN_SUPPORTED_VERSION: u16 = 1;
