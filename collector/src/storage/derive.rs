//! Derived values: turns an agent's cumulative counters into the rates and percentages that are
//! stored, charted and exported. Pure functions of two consecutive samples of one host.
//!
//! A counter that went backwards (a reboot, a driver reset) is treated as restarted from zero,
//! so the rate over that interval counts only what the new counter shows. Devices present in
//! only one of the two samples are left out of the rate rather than guessed.

use protocol::{CpuTimes, Sample};
use serde::Serialize;

/// The values of one stored point, as the API and live events show them.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Point {
    /// When the sample was taken (unix ms).
    pub ts: u64,
    /// CPU busy percentage of the whole host.
    pub cpu_percent: Option<f64>,
    /// CPU busy percentage per core.
    pub cpu_cores_percent: Vec<f64>,
    /// Memory in use.
    pub memory_used_bytes: Option<u64>,
    /// Installed memory.
    pub memory_total_bytes: Option<u64>,
    /// Memory available.
    pub memory_available_bytes: Option<u64>,
    /// Swap in use.
    pub swap_used_bytes: Option<u64>,
    /// Swap configured.
    pub swap_total_bytes: Option<u64>,
    /// One-minute load average.
    pub load1: Option<f64>,
    /// Five-minute load average.
    pub load5: Option<f64>,
    /// Fifteen-minute load average.
    pub load15: Option<f64>,
    /// Bytes received per second, all interfaces.
    pub net_rx_bytes_per_second: Option<f64>,
    /// Bytes sent per second, all interfaces.
    pub net_tx_bytes_per_second: Option<f64>,
    /// Bytes read per second, all block devices.
    pub disk_read_bytes_per_second: Option<f64>,
    /// Bytes written per second, all block devices.
    pub disk_write_bytes_per_second: Option<f64>,
    /// Space used on all filesystems: size minus free blocks, as `df` counts it.
    pub fs_used_bytes: Option<u64>,
    /// Size of all filesystems.
    pub fs_total_bytes: Option<u64>,
    /// Free space on all filesystems, the blocks reserved for root included (`f_bfree`);
    /// `None` when an agent of protocol version 1 did not send it.
    pub fs_free_bytes: Option<u64>,
    /// Space available to unprivileged users on all filesystems (`f_bavail`, `df`'s Avail).
    pub fs_avail_bytes: Option<u64>,
    /// `df`'s Use%: used / (used + avail), in percent, so the reserve for root counts neither
    /// as used nor as available. What the `fs_used_percent` alert judges.
    pub fs_used_percent: Option<f64>,
    /// Number of processes.
    pub processes: Option<u32>,
    /// Seconds since boot.
    pub uptime_seconds: Option<u64>,
    /// The hottest sensor, degrees Celsius.
    pub temperature_celsius: Option<f64>,
}

/// Derives the point of `current`, using `previous` (the host's sample just before it, if any)
/// for rates and CPU percentages.
pub fn derive(previous: Option<&Sample>, current: &Sample) -> Point {
    let elapsed_seconds = previous
        .filter(|p| current.ts_ms > p.ts_ms)
        .map(|p| (current.ts_ms - p.ts_ms) as f64 / 1000.0);
    let rate = |sum_delta: Option<u64>| Some(round_to(sum_delta? as f64 / elapsed_seconds?, 1));
    let net = |f: fn(&protocol::NetworkInterface) -> u64| {
        let previous = previous?;
        let deltas = current.networks.iter().filter_map(|n| {
            let before = previous.networks.iter().find(|p| p.name == n.name)?;
            Some(counter_delta(f(before), f(n)))
        });
        rate(sum_if_any(deltas))
    };
    let disk = |f: fn(&protocol::DiskIo) -> u64| {
        let previous = previous?;
        let deltas = current.disks.iter().filter_map(|d| {
            let before = previous.disks.iter().find(|p| p.device == d.device)?;
            Some(counter_delta(f(before), f(d)))
        });
        rate(sum_if_any(deltas))
    };
    let cores = match previous {
        Some(p) if p.cores.len() == current.cores.len() => {
            // Whole percents: what the database keeps per core, so live and history agree.
            p.cores
                .iter()
                .zip(&current.cores)
                .filter_map(|(a, b)| cpu_percent(a, b))
                .map(f64::round)
                .collect()
        }
        _ => Vec::new(),
    };
    let (fs_used, fs_total) = if current.filesystems.is_empty() {
        (None, None)
    } else {
        let total: u64 =
            current.filesystems.iter().fold(0, |sum, f| sum.saturating_add(f.total_bytes));
        // Used as `df` and node_exporter count it: blocks minus free blocks, so the blocks
        // reserved for root are not "used". Agents of protocol version 1 sent only the space
        // available to unprivileged users, which counts the reserve as used.
        let free: u64 = current.filesystems.iter().fold(0, |sum, f| {
            sum.saturating_add(f.free_bytes.unwrap_or(f.available_bytes).min(f.total_bytes))
        });
        (Some(total.saturating_sub(free)), Some(total))
    };
    let fs_avail = (!current.filesystems.is_empty()).then(|| {
        current
            .filesystems
            .iter()
            .fold(0, |sum: u64, f| sum.saturating_add(f.available_bytes.min(f.total_bytes)))
    });
    let fs_free = if current.filesystems.is_empty() {
        None
    } else {
        current
            .filesystems
            .iter()
            .try_fold(0, |sum: u64, f| Some(sum.saturating_add(f.free_bytes?.min(f.total_bytes))))
    };
    Point {
        ts: current.ts_ms,
        cpu_percent: previous
            .and_then(|p| cpu_percent(p.cpu.as_ref()?, current.cpu.as_ref()?))
            .map(|v| round_to(v, 2)),
        cpu_cores_percent: cores,
        memory_used_bytes: current.memory.map(|m| m.used_bytes),
        memory_total_bytes: current.memory.map(|m| m.total_bytes),
        memory_available_bytes: current.memory.map(|m| m.available_bytes),
        swap_used_bytes: current.swap.map(|s| s.used_bytes),
        swap_total_bytes: current.swap.map(|s| s.total_bytes),
        // An agent's floats are taken as sent, except infinities and NaN: no JSON can carry
        // them, and one would poison every average it is part of.
        load1: current.load.and_then(|l| finite(round_to(f64::from(l.one), 2))),
        load5: current.load.and_then(|l| finite(round_to(f64::from(l.five), 2))),
        load15: current.load.and_then(|l| finite(round_to(f64::from(l.fifteen), 2))),
        net_rx_bytes_per_second: net(|n| n.rx_bytes),
        net_tx_bytes_per_second: net(|n| n.tx_bytes),
        disk_read_bytes_per_second: disk(|d| d.read_bytes),
        disk_write_bytes_per_second: disk(|d| d.written_bytes),
        fs_used_bytes: fs_used,
        fs_total_bytes: fs_total,
        fs_free_bytes: fs_free,
        fs_avail_bytes: fs_avail,
        fs_used_percent: fs_used.zip(fs_avail).and_then(|(used, avail)| {
            used_percent(used, avail).map(|percent| round_to(percent, 2))
        }),
        processes: current.process_count,
        uptime_seconds: current.uptime_seconds,
        temperature_celsius: current
            .temperatures
            .iter()
            .filter_map(|t| finite(round_to(f64::from(t.celsius), 1)))
            .reduce(f64::max),
    }
}

/// `df`'s Use% of a filesystem (or several): used / (used + available to users), in percent;
/// `None` for a filesystem with neither.
pub fn used_percent(used_bytes: u64, avail_bytes: u64) -> Option<f64> {
    let usable = used_bytes.saturating_add(avail_bytes);
    (usable > 0).then(|| used_bytes as f64 * 100.0 / usable as f64)
}

/// The value if it is a number JSON can carry (not infinite, not NaN).
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// Rounds to `decimals` places: the precision worth storing and sending (an `f32` load average
/// read as `f64` would otherwise show as 1.9700000286102295).
fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Growth of a cumulative counter; a counter that went backwards restarted from zero.
pub fn counter_delta(before: u64, after: u64) -> u64 {
    if after >= before { after - before } else { after }
}

fn sum_if_any(deltas: impl Iterator<Item = u64>) -> Option<u64> {
    deltas.fold(None, |sum, d| Some(sum.unwrap_or(0).saturating_add(d)))
}

/// Busy share of CPU time between two readings, in percent; `None` if no time passed or the
/// counters were reset.
pub fn cpu_percent(before: &CpuTimes, after: &CpuTimes) -> Option<f64> {
    let total = after.total_ticks().checked_sub(before.total_ticks())?;
    let busy = after.busy_ticks().checked_sub(before.busy_ticks())?;
    if total == 0 || busy > total {
        return None;
    }
    Some(busy as f64 * 100.0 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{DiskIo, Filesystem, Memory, NetworkInterface, Temperature};

    fn sample(ts_ms: u64, busy: u64, idle: u64, rx: u64) -> Sample {
        Sample {
            seq: ts_ms / 1000,
            ts_ms,
            cpu: Some(CpuTimes { user_ticks: busy, idle_ticks: idle, ..Default::default() }),
            cores: vec![CpuTimes { user_ticks: busy, idle_ticks: idle, ..Default::default() }],
            memory: Some(Memory {
                total_bytes: 1000,
                used_bytes: 250,
                available_bytes: 750,
                ..Default::default()
            }),
            networks: vec![NetworkInterface {
                name: "eth0".into(),
                rx_bytes: rx,
                tx_bytes: 2 * rx,
                ..Default::default()
            }],
            disks: vec![DiskIo {
                device: "sda".into(),
                read_bytes: rx,
                written_bytes: 0,
                ..Default::default()
            }],
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                total_bytes: 100,
                available_bytes: 40,
                ..Default::default()
            }],
            temperatures: vec![
                Temperature { label: "a".into(), celsius: 40.0 },
                Temperature { label: "b".into(), celsius: 55.5 },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn rates_and_percentages_from_two_samples() {
        let a = sample(10_000, 100, 900, 1_000);
        let b = sample(12_000, 150, 1_000, 5_000);
        let p = derive(Some(&a), &b);
        assert_eq!(p.ts, 12_000);
        // 50 busy ticks of 150.
        assert_eq!(p.cpu_percent, Some(33.33));
        assert_eq!(p.cpu_cores_percent.len(), 1);
        assert_eq!(p.net_rx_bytes_per_second, Some(2_000.0));
        assert_eq!(p.net_tx_bytes_per_second, Some(4_000.0));
        assert_eq!(p.disk_read_bytes_per_second, Some(2_000.0));
        assert_eq!(p.memory_used_bytes, Some(250));
        assert_eq!((p.fs_used_bytes, p.fs_total_bytes), (Some(60), Some(100)));
        assert_eq!(p.temperature_celsius, Some(55.5));
    }

    #[test]
    fn filesystem_used_leaves_out_the_root_reserve_as_df_does() {
        let mut s = sample(10_000, 100, 900, 1_000);
        // 100 blocks, 50 free of which 10 are reserved for root: df says 50 used, 40 available.
        s.filesystems[0].free_bytes = Some(50);
        let p = derive(None, &s);
        assert_eq!((p.fs_used_bytes, p.fs_total_bytes), (Some(50), Some(100)));
        assert_eq!((p.fs_free_bytes, p.fs_avail_bytes), (Some(50), Some(40)));
        // df: 50 used of the 90 users can have, 55.6 %, not 50 % of the size.
        assert_eq!(p.fs_used_percent, Some(55.56));
        // A version 1 agent sent no free blocks: what is unavailable counts as used, as before.
        s.filesystems[0].free_bytes = None;
        let p = derive(None, &s);
        assert_eq!(
            (p.fs_free_bytes, p.fs_used_bytes, p.fs_used_percent),
            (None, Some(60), Some(60.0))
        );
        assert_eq!(used_percent(0, 0), None);
    }

    #[test]
    fn the_first_sample_has_no_rates_but_has_gauges() {
        let p = derive(None, &sample(1_000, 1, 1, 1));
        assert_eq!(p.cpu_percent, None);
        assert_eq!(p.net_rx_bytes_per_second, None);
        assert!(p.cpu_cores_percent.is_empty());
        assert_eq!(p.memory_total_bytes, Some(1000));
    }

    #[test]
    fn a_counter_reset_counts_from_zero() {
        assert_eq!(counter_delta(100, 150), 50);
        assert_eq!(counter_delta(5_000, 300), 300);
        let a = sample(1_000, 100, 100, 1_000_000);
        let b = sample(2_000, 120, 180, 500);
        assert_eq!(derive(Some(&a), &b).net_rx_bytes_per_second, Some(500.0));
    }

    #[test]
    fn cpu_counters_that_went_backwards_give_no_percentage() {
        let a = sample(1_000, 500, 500, 0);
        let b = sample(2_000, 10, 10, 0);
        assert_eq!(derive(Some(&a), &b).cpu_percent, None);
    }

    #[test]
    fn out_of_order_or_equal_timestamps_give_no_rates() {
        let a = sample(2_000, 100, 100, 10);
        let b = sample(2_000, 110, 190, 20);
        assert_eq!(derive(Some(&a), &b).net_rx_bytes_per_second, None);
    }

    #[test]
    fn infinities_and_nan_from_an_agent_are_left_out() {
        let mut s = sample(1_000, 1, 1, 1);
        s.load = Some(protocol::LoadAverage { one: f32::INFINITY, five: f32::NAN, fifteen: 0.5 });
        s.temperatures[1].celsius = f32::NEG_INFINITY;
        let p = derive(None, &s);
        assert_eq!((p.load1, p.load5, p.load15), (None, None, Some(0.5)));
        assert_eq!(p.temperature_celsius, Some(40.0), "the finite sensors still count");
    }

    #[test]
    fn interfaces_missing_from_the_previous_sample_are_left_out() {
        let a = sample(1_000, 1, 1, 100);
        let mut b = sample(2_000, 2, 2, 300);
        b.networks.push(NetworkInterface {
            name: "wg0".into(),
            rx_bytes: 1 << 40,
            ..Default::default()
        });
        assert_eq!(derive(Some(&a), &b).net_rx_bytes_per_second, Some(200.0));
    }
}
