//! Explicit protocol limits. Anything over a limit is refused with a clear reason, so a buggy or
//! hostile peer can never make the other side allocate without bound.

use std::fmt;

use crate::{AgentMessage, Batch, Hello, Sample};

/// The protocol's size limits. Both sides enforce them; see each constant for what it bounds.
#[derive(Debug)]
pub struct Limits;

impl Limits {
    /// Largest encoded message, in bytes (also the WebSocket message limit on ingest).
    pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
    /// Largest WebSocket frame, in bytes, on ingest connections.
    pub const MAX_FRAME_BYTES: usize = 256 * 1024;
    /// Most samples in one [`Batch`].
    pub const MAX_SAMPLES_PER_BATCH: usize = 256;
    /// Most per-core entries in one sample.
    pub const MAX_CORES: usize = 1024;
    /// Most network interfaces in one sample.
    pub const MAX_INTERFACES: usize = 256;
    /// Most filesystems in one sample.
    pub const MAX_FILESYSTEMS: usize = 256;
    /// Most block devices in one sample.
    pub const MAX_DISKS: usize = 256;
    /// Most temperature sensors in one sample.
    pub const MAX_TEMPERATURES: usize = 256;
    /// Longest name (interface, mount point, device, sensor label, hello field), in bytes.
    pub const MAX_NAME_BYTES: usize = 255;
}

/// A message broke one of the [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    /// What was over the limit, such as `"samples per batch"`.
    pub what: &'static str,
    /// The limit.
    pub limit: usize,
    /// What the message had.
    pub actual: usize,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}, over the limit of {}", self.what, self.actual, self.limit)
    }
}

impl std::error::Error for LimitError {}

fn check(what: &'static str, actual: usize, limit: usize) -> Result<(), LimitError> {
    if actual > limit { Err(LimitError { what, limit, actual }) } else { Ok(()) }
}

fn check_name(what: &'static str, name: &str) -> Result<(), LimitError> {
    check(what, name.len(), Limits::MAX_NAME_BYTES)
}

impl AgentMessage {
    /// Checks every limit of the message.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            AgentMessage::Hello(hello) => hello.check_limits(),
            AgentMessage::Batch(batch) => batch.check_limits(),
        }
    }
}

impl Hello {
    /// Checks the length of every string field.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        check_name("agent version length", &self.agent_version)?;
        check_name("host id length", &self.host_id)?;
        check_name("hostname length", &self.hostname)?;
        check_name("os length", &self.os)?;
        check_name("kernel length", &self.kernel)?;
        check_name("arch length", &self.arch)?;
        check_name("cpu model length", &self.cpu_model)?;
        check_name("kernel build length", &self.kernel_build)
    }
}

impl Batch {
    /// Checks the batch size and every sample in it.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        check("samples per batch", self.samples.len(), Limits::MAX_SAMPLES_PER_BATCH)?;
        self.samples.iter().try_for_each(Sample::check_limits)
    }
}

impl Sample {
    /// Checks the number of entries in every area and the length of every name.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        check("cores per sample", self.cores.len(), Limits::MAX_CORES)?;
        check("interfaces per sample", self.networks.len(), Limits::MAX_INTERFACES)?;
        check("filesystems per sample", self.filesystems.len(), Limits::MAX_FILESYSTEMS)?;
        check("disks per sample", self.disks.len(), Limits::MAX_DISKS)?;
        check("temperatures per sample", self.temperatures.len(), Limits::MAX_TEMPERATURES)?;
        self.networks.iter().try_for_each(|n| check_name("interface name length", &n.name))?;
        self.filesystems
            .iter()
            .try_for_each(|f| check_name("mount point length", &f.mount_point))?;
        self.filesystems.iter().try_for_each(|f| check_name("device length", &f.device))?;
        self.filesystems.iter().try_for_each(|f| check_name("fs type length", &f.fs_type))?;
        self.disks.iter().try_for_each(|d| check_name("device name length", &d.device))?;
        self.temperatures.iter().try_for_each(|t| check_name("sensor label length", &t.label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NetworkInterface;

    #[test]
    fn batch_over_sample_limit_is_refused() {
        let batch = Batch {
            dropped_total: 0,
            samples: vec![Sample::default(); Limits::MAX_SAMPLES_PER_BATCH + 1],
        };
        let err = batch.check_limits().unwrap_err();
        assert_eq!(err.what, "samples per batch");
        assert_eq!(err.actual, Limits::MAX_SAMPLES_PER_BATCH + 1);
        assert_eq!(err.to_string(), "samples per batch is 257, over the limit of 256");
    }

    #[test]
    fn long_interface_name_is_refused() {
        let sample = Sample {
            networks: vec![NetworkInterface { name: "x".repeat(256), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(sample.check_limits().unwrap_err().what, "interface name length");
    }

    #[test]
    fn full_batch_at_the_limit_is_accepted() {
        let batch = Batch {
            dropped_total: 0,
            samples: vec![Sample::default(); Limits::MAX_SAMPLES_PER_BATCH],
        };
        assert_eq!(batch.check_limits(), Ok(()));
    }
}
