//! Per-device values: each interface's, mount's, disk's and sensor's fields of one sample, in
//! the fixed-point units of [`catalog::DEVICES`]. Pure functions of two consecutive samples of a
//! host, like `derive` (whose host totals they sit beside); per-core percentages are in the
//! host's [`super::Point`] already.
//!
//! A device present in only one of the two samples has no rates for that interval (it
//! appeared, or it was renamed), but its gauges are kept.

use protocol::Sample;

use super::derive::counter_delta;
use crate::catalog::{self, DeviceKind};

/// One device's fields in one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The kind of device.
    pub kind: DeviceKind,
    /// Its name (interface, mount point, disk or sensor label).
    pub name: String,
    /// Its fields in [`catalog::DeviceTable::fields`] order, stored form.
    pub values: Vec<Option<i64>>,
}

fn round_to(value: f64, decimals: u32) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    (value * scale).round() / scale
}

/// The stored form of field `index` of `kind` for `value`.
fn stored(kind: DeviceKind, index: usize, value: Option<f64>) -> Option<i64> {
    let series = &kind.table().fields[index];
    series.to_stored(round_to(value?, series.decimals))
}

/// Every device reading of `current`, with rates from `previous` (the host's sample before it).
pub fn readings(previous: Option<&Sample>, current: &Sample) -> Vec<Reading> {
    let elapsed_seconds = previous
        .filter(|p| current.ts_ms > p.ts_ms)
        .map(|p| (current.ts_ms - p.ts_ms) as f64 / 1000.0);
    let rate = |before: Option<u64>, after: u64| -> Option<f64> {
        Some(counter_delta(before?, after) as f64 / elapsed_seconds?)
    };
    // Counters that agents of protocol version 1 do not send.
    let optional_rate =
        |before: Option<Option<u64>>, after: Option<u64>| rate(before.flatten(), after?);
    let mut out = Vec::with_capacity(
        current.networks.len()
            + current.filesystems.len()
            + current.disks.len()
            + current.temperatures.len(),
    );
    for n in &current.networks {
        let before = previous.and_then(|p| p.networks.iter().find(|b| b.name == n.name));
        let fields: [(Option<u64>, u64); 6] = [
            (before.map(|b| b.rx_bytes), n.rx_bytes),
            (before.map(|b| b.tx_bytes), n.tx_bytes),
            (before.map(|b| b.rx_packets), n.rx_packets),
            (before.map(|b| b.tx_packets), n.tx_packets),
            (before.map(|b| b.rx_errors), n.rx_errors),
            (before.map(|b| b.tx_errors), n.tx_errors),
        ];
        let values = fields
            .iter()
            .enumerate()
            .map(|(i, (b, a))| stored(DeviceKind::Net, i, rate(*b, *a)))
            .collect();
        push_unique(&mut out, DeviceKind::Net, &n.name, values);
    }
    for f in &current.filesystems {
        // As `df` counts: used is what is not free (root's reserve included in free), and
        // used % is used / (used + available), so a full disk reads 100 %.
        let available = f.available_bytes.min(f.total_bytes);
        let free = f.free_bytes.unwrap_or(available).clamp(available, f.total_bytes);
        let used = f.total_bytes - free;
        let percent =
            (used + available > 0).then(|| used as f64 * 100.0 / (used + available) as f64);
        let values = vec![
            stored(DeviceKind::Fs, 0, Some(used as f64)),
            stored(DeviceKind::Fs, 1, Some(f.total_bytes as f64)),
            stored(DeviceKind::Fs, 2, Some(available as f64)),
            stored(DeviceKind::Fs, 3, percent),
        ];
        push_unique(&mut out, DeviceKind::Fs, &f.mount_point, values);
    }
    for d in &current.disks {
        let before = previous.and_then(|p| p.disks.iter().find(|b| b.device == d.device));
        let values = vec![
            stored(DeviceKind::Disk, 0, rate(before.map(|b| b.read_bytes), d.read_bytes)),
            stored(DeviceKind::Disk, 1, rate(before.map(|b| b.written_bytes), d.written_bytes)),
            stored(
                DeviceKind::Disk,
                2,
                optional_rate(before.map(|b| b.reads_completed), d.reads_completed),
            ),
            stored(
                DeviceKind::Disk,
                3,
                optional_rate(before.map(|b| b.writes_completed), d.writes_completed),
            ),
            // Busy milliseconds per second, as a share of the second.
            stored(
                DeviceKind::Disk,
                4,
                optional_rate(before.map(|b| b.io_time_ms), d.io_time_ms)
                    .map(|ms| (ms / 10.0).min(100.0)),
            ),
        ];
        push_unique(&mut out, DeviceKind::Disk, &d.device, values);
    }
    for t in &current.temperatures {
        let celsius = Some(f64::from(t.celsius)).filter(|c| c.is_finite());
        push_unique(
            &mut out,
            DeviceKind::Sensor,
            &t.label,
            vec![stored(DeviceKind::Sensor, 0, celsius)],
        );
    }
    out
}

/// Adds a reading unless a device of that kind and name is already in this sample (names are
/// the key; a second `eth0` in one sample would be ambiguous).
fn push_unique(out: &mut Vec<Reading>, kind: DeviceKind, name: &str, values: Vec<Option<i64>>) {
    if name.is_empty() || out.iter().any(|r| r.kind == kind && r.name == name) {
        return;
    }
    out.push(Reading { kind, name: name.to_owned(), values });
}

/// The per-core device name of core `index`, as the history shows it (`cpu0`, `cpu1`, …).
pub fn core_name(index: usize) -> String {
    format!("cpu{index}")
}

/// A field's value as the API shows it.
pub fn shown(kind: DeviceKind, field: usize, stored: i64) -> Option<f64> {
    Some(catalog::DEVICES.get(kind.code() as usize)?.fields.get(field)?.from_stored(stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{DiskIo, Filesystem, NetworkInterface, Temperature};

    fn sample(ts_ms: u64, rx: u64) -> Sample {
        Sample {
            ts_ms,
            networks: vec![NetworkInterface {
                name: "eth0".into(),
                rx_bytes: rx,
                tx_packets: rx / 100,
                ..Default::default()
            }],
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                total_bytes: 1000,
                available_bytes: 250,
                free_bytes: Some(300),
                ..Default::default()
            }],
            disks: vec![DiskIo {
                device: "sda".into(),
                read_bytes: rx * 2,
                written_bytes: 0,
                reads_completed: Some(rx / 10),
                writes_completed: None,
                io_time_ms: Some(rx / 4),
            }],
            temperatures: vec![Temperature { label: "cpu".into(), celsius: 41.25 }],
            ..Default::default()
        }
    }

    #[test]
    fn rates_per_device_gauges_and_percent() {
        let a = sample(1_000, 1_000);
        let b = sample(3_000, 5_000);
        let r = readings(Some(&a), &b);
        assert_eq!(r[0].kind, DeviceKind::Net);
        // 4000 bytes in 2 s: 2000.0 bytes/s, stored in tenths.
        assert_eq!(r[0].values[0], Some(20_000));
        assert_eq!(r[0].values[3], Some(200)); // 40 packets in 2 s.
        // Used = total - free (700), used % = 700 / (700 + 250).
        assert_eq!(r[1].values, vec![Some(700), Some(1000), Some(250), Some(7368)]);
        // 400 reads in 2 s; 1000 busy ms in 2 s is 50 %.
        assert_eq!(r[2].values, vec![Some(40_000), Some(0), Some(2000), None, Some(500)]);
        assert_eq!(r[3].values, vec![Some(413)]); // 41.25 °C rounded to a tenth.
        assert_eq!(shown(DeviceKind::Net, 0, 20_000), Some(2000.0));
    }

    #[test]
    fn a_new_device_has_gauges_but_no_rates() {
        let r = readings(None, &sample(1_000, 1_000));
        assert_eq!(r[0].values[0], None);
        assert_eq!(r[1].values[0], Some(700));
    }
}
