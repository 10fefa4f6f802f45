//! One measurement of a host: the metric set the agent collects every interval.
//!
//! Counters (CPU time, bytes, packets, errors) are cumulative since boot, so a lost or late sample
//! never corrupts a rate: the collector derives rates from any two samples. Every area is
//! optional (an `Option` or a possibly empty list): an area the host cannot provide is left out
//! without losing the rest of the sample.

use serde::{Deserialize, Serialize};

/// Units of [`CpuTimes`]: Linux reports CPU time in `USER_HZ` ticks, always 100 per second.
pub const CPU_TICKS_PER_SECOND: u32 = 100;

/// A host's measurement at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sample {
    /// Per-host sequence number: strictly increasing, surviving agent restarts.
    pub seq: u64,
    /// When the sample was taken, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// CPU time of all CPUs together.
    pub cpu: Option<CpuTimes>,
    /// CPU time per logical CPU, in CPU order.
    pub cores: Vec<CpuTimes>,
    /// Load averages.
    pub load: Option<LoadAverage>,
    /// Physical memory.
    pub memory: Option<Memory>,
    /// Swap space.
    pub swap: Option<Swap>,
    /// Network interfaces (loopback excluded).
    pub networks: Vec<NetworkInterface>,
    /// Mounted filesystems backed by storage.
    pub filesystems: Vec<Filesystem>,
    /// Block devices' cumulative I/O.
    pub disks: Vec<DiskIo>,
    /// Seconds since boot.
    pub uptime_seconds: Option<u64>,
    /// Number of processes.
    pub process_count: Option<u32>,
    /// Temperature sensors, where the host has any.
    pub temperatures: Vec<Temperature>,
}

/// Cumulative CPU time by mode, in ticks of 1/[`CPU_TICKS_PER_SECOND`] s (as in `/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CpuTimes {
    /// Time in user mode (including guest time).
    pub user_ticks: u64,
    /// Time in user mode at low priority.
    pub nice_ticks: u64,
    /// Time in kernel mode.
    pub system_ticks: u64,
    /// Idle time.
    pub idle_ticks: u64,
    /// Idle time while waiting for I/O.
    pub iowait_ticks: u64,
    /// Time servicing hardware interrupts.
    pub irq_ticks: u64,
    /// Time servicing soft interrupts.
    pub softirq_ticks: u64,
    /// Time stolen by the hypervisor.
    pub steal_ticks: u64,
}

impl CpuTimes {
    /// All ticks, busy or not. Saturates rather than overflowing on absurd input.
    pub fn total_ticks(&self) -> u64 {
        self.busy_ticks().saturating_add(self.idle_ticks).saturating_add(self.iowait_ticks)
    }

    /// Ticks spent doing work (everything but idle and iowait). Saturates rather than
    /// overflowing on absurd input.
    pub fn busy_ticks(&self) -> u64 {
        [self.nice_ticks, self.system_ticks, self.irq_ticks, self.softirq_ticks, self.steal_ticks]
            .iter()
            .fold(self.user_ticks, |sum, ticks| sum.saturating_add(*ticks))
    }
}

/// Load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LoadAverage {
    /// One-minute load average.
    pub one: f32,
    /// Five-minute load average.
    pub five: f32,
    /// Fifteen-minute load average.
    pub fifteen: f32,
}

/// Physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Memory {
    /// Installed memory.
    pub total_bytes: u64,
    /// Memory in use (total minus available).
    pub used_bytes: u64,
    /// Memory available for new work without swapping (`MemAvailable`).
    pub available_bytes: u64,
    /// Memory not used at all (`MemFree`); `None` from agents of protocol version 1.
    pub free_bytes: Option<u64>,
    /// Kernel buffers (`Buffers`); `None` from agents of protocol version 1.
    pub buffers_bytes: Option<u64>,
    /// Page cache (`Cached`); `None` from agents of protocol version 1.
    pub cached_bytes: Option<u64>,
}

/// Swap space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Swap {
    /// Configured swap.
    pub total_bytes: u64,
    /// Swap in use.
    pub used_bytes: u64,
}

/// One network interface's cumulative counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkInterface {
    /// Interface name, such as `eth0`.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// One mounted filesystem's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Filesystem {
    /// Where it is mounted, such as `/`.
    pub mount_point: String,
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// Space available to unprivileged users (`f_bavail`, what `df` calls Avail).
    pub available_bytes: u64,
    /// The mounted device or dataset, such as `/dev/sda1` (empty from protocol version 1).
    pub device: String,
    /// Filesystem type, such as `ext4` (empty from protocol version 1).
    pub fs_type: String,
    /// Free space including the blocks reserved for root (`f_bfree`); `None` from agents of
    /// protocol version 1. Used space is `total_bytes - free_bytes`, as `df` counts it.
    pub free_bytes: Option<u64>,
}

/// One block device's cumulative I/O.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DiskIo {
    /// Device name, such as `sda` or `nvme0n1`.
    pub device: String,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Reads completed; `None` from agents of protocol version 1.
    pub reads_completed: Option<u64>,
    /// Writes completed; `None` from agents of protocol version 1.
    pub writes_completed: Option<u64>,
    /// Milliseconds the device was busy with I/O (its busy % is this counter's rate / 10);
    /// `None` from agents of protocol version 1.
    pub io_time_ms: Option<u64>,
}

/// One temperature sensor's reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Temperature {
    /// Sensor label, such as `coretemp Package id 0`.
    pub label: String,
    /// Degrees Celsius.
    pub celsius: f32,
}
