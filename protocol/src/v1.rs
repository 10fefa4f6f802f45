//! Protocol version 1, frozen: the layouts agents of the first release send, so a collector of
//! this build still decodes them. Only the types whose layout changed in version 2 are here;
//! the others ([`crate::CpuTimes`], [`crate::LoadAverage`], [`crate::Swap`],
//! [`crate::NetworkInterface`], [`crate::Temperature`]) are shared by both versions.
//!
//! Each type converts into its current form, with the fields version 1 did not have left at
//! their defaults (zero, empty). Nothing here may ever change: the golden-bytes test pins it.

use serde::{Deserialize, Serialize};

use crate::{CpuTimes, LoadAverage, NetworkInterface, Swap, Temperature};

/// A version-1 message from an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    /// First message of every connection.
    Hello(Hello),
    /// Samples to store.
    Batch(Batch),
}

/// A version-1 hello: [`crate::Hello`] without the instance id and the kernel build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[allow(missing_docs)] // The fields are those of `crate::Hello`.
pub struct Hello {
    pub protocol_version: u16,
    pub agent_version: String,
    pub host_id: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_model: String,
    pub cpu_cores: u16,
    pub memory_total_bytes: u64,
    pub boot_time_seconds: u64,
    pub interval_ms: u32,
}

/// A version-1 batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // The fields are those of `crate::Batch`.
pub struct Batch {
    pub dropped_total: u64,
    pub samples: Vec<Sample>,
}

/// A version-1 sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[allow(missing_docs)] // The fields are those of `crate::Sample`.
pub struct Sample {
    pub seq: u64,
    pub ts_ms: u64,
    pub cpu: Option<CpuTimes>,
    pub cores: Vec<CpuTimes>,
    pub load: Option<LoadAverage>,
    pub memory: Option<Memory>,
    pub swap: Option<Swap>,
    pub networks: Vec<NetworkInterface>,
    pub filesystems: Vec<Filesystem>,
    pub disks: Vec<DiskIo>,
    pub uptime_seconds: Option<u64>,
    pub process_count: Option<u32>,
    pub temperatures: Vec<Temperature>,
}

/// Version-1 memory: no free, buffers or cached figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[allow(missing_docs)] // The fields are those of `crate::Memory`.
pub struct Memory {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

/// A version-1 filesystem: no device, type or free blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[allow(missing_docs)] // The fields are those of `crate::Filesystem`.
pub struct Filesystem {
    pub mount_point: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// A version-1 disk: bytes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[allow(missing_docs)] // The fields are those of `crate::DiskIo`.
pub struct DiskIo {
    pub device: String,
    pub read_bytes: u64,
    pub written_bytes: u64,
}

impl From<AgentMessage> for crate::AgentMessage {
    fn from(message: AgentMessage) -> Self {
        match message {
            AgentMessage::Hello(hello) => Self::Hello(hello.into()),
            AgentMessage::Batch(batch) => Self::Batch(crate::Batch {
                dropped_total: batch.dropped_total,
                samples: batch.samples.into_iter().map(Into::into).collect(),
            }),
        }
    }
}

impl From<Hello> for crate::Hello {
    fn from(h: Hello) -> Self {
        Self {
            protocol_version: h.protocol_version,
            agent_version: h.agent_version,
            host_id: h.host_id,
            hostname: h.hostname,
            os: h.os,
            kernel: h.kernel,
            arch: h.arch,
            cpu_model: h.cpu_model,
            cpu_cores: h.cpu_cores,
            memory_total_bytes: h.memory_total_bytes,
            boot_time_seconds: h.boot_time_seconds,
            interval_ms: h.interval_ms,
            // Version 1 had no instance id: every version-1 agent of a host is instance 0.
            instance_id: 0,
            kernel_build: String::new(),
        }
    }
}

impl From<Sample> for crate::Sample {
    fn from(s: Sample) -> Self {
        Self {
            seq: s.seq,
            ts_ms: s.ts_ms,
            cpu: s.cpu,
            cores: s.cores,
            load: s.load,
            memory: s.memory.map(|m| crate::Memory {
                total_bytes: m.total_bytes,
                used_bytes: m.used_bytes,
                available_bytes: m.available_bytes,
                ..Default::default()
            }),
            swap: s.swap,
            networks: s.networks,
            filesystems: s
                .filesystems
                .into_iter()
                .map(|f| crate::Filesystem {
                    mount_point: f.mount_point,
                    total_bytes: f.total_bytes,
                    available_bytes: f.available_bytes,
                    // Device, type and free blocks were not sent in version 1.
                    ..Default::default()
                })
                .collect(),
            disks: s
                .disks
                .into_iter()
                .map(|d| crate::DiskIo {
                    device: d.device,
                    read_bytes: d.read_bytes,
                    written_bytes: d.written_bytes,
                    ..Default::default()
                })
                .collect(),
            uptime_seconds: s.uptime_seconds,
            process_count: s.process_count,
            temperatures: s.temperatures,
        }
    }
}
