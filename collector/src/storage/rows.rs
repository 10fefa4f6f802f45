//! Stored rows, wherever they are: the newest as plain rows of `samples` (hot), closed minutes
//! as blocks. Used by the writer (rollups, compaction) and the readers (history, resuming
//! subscribers) alike, so both see one set of rows. Also the aggregation of rows into buckets,
//! with SQLite's own summation (exact integer sums, Kahan-Babuska-Neumaier for floats), so a
//! bucket computed here equals the one SQL computed before storage v2.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::Point;
use super::block::{self, Aggregate, DeviceRollup, HOST_DEVICE, Row};
use crate::catalog::{self, DeviceKind, HOST};

/// Columns of `samples` read into a [`Row`], in [`hot_row`] order.
pub const HOT_COLUMNS: &str = "eid, seq, ts_ms, cpu_percent, cores, mem_used, mem_total, mem_available, \
     swap_used, swap_total, load1, load5, load15, net_rx_bps, net_tx_bps, disk_read_bps, disk_write_bps, \
     fs_used, fs_total, processes, uptime, temp_max, devices, fs_free, fs_avail, fs_used_pct";

/// The host totals of a point in [`catalog::HOST`] order, stored form.
pub fn host_values(p: &Point) -> Vec<Option<i64>> {
    let int = |v: Option<u64>| v.map(|v| v.min(i64::MAX as u64) as i64);
    let real = |index: usize, v: Option<f64>| v.and_then(|v| HOST[index].to_stored(v));
    vec![
        real(0, p.cpu_percent),
        int(p.memory_used_bytes),
        int(p.memory_total_bytes),
        int(p.memory_available_bytes),
        int(p.swap_used_bytes),
        int(p.swap_total_bytes),
        real(6, p.load1),
        real(7, p.load5),
        real(8, p.load15),
        real(9, p.net_rx_bytes_per_second),
        real(10, p.net_tx_bytes_per_second),
        real(11, p.disk_read_bytes_per_second),
        real(12, p.disk_write_bytes_per_second),
        int(p.fs_used_bytes),
        int(p.fs_total_bytes),
        int(p.processes.map(u64::from)),
        int(p.uptime_seconds),
        real(17, p.temperature_celsius),
        int(p.fs_free_bytes),
        int(p.fs_avail_bytes),
        real(20, p.fs_used_percent),
    ]
}

/// The point a row shows: the inverse of [`host_values`].
pub fn point_of(row: &Row) -> Point {
    let v = |index: usize| row.host.get(index).copied().flatten();
    let int = |index: usize| v(index).map(|v| v.max(0) as u64);
    let real = |index: usize| v(index).map(|v| HOST[index].from_stored(v));
    Point {
        ts: row.ts,
        cpu_percent: real(0),
        cpu_cores_percent: row.cores.iter().map(|c| *c as f64).collect(),
        memory_used_bytes: int(1),
        memory_total_bytes: int(2),
        memory_available_bytes: int(3),
        swap_used_bytes: int(4),
        swap_total_bytes: int(5),
        load1: real(6),
        load5: real(7),
        load15: real(8),
        net_rx_bytes_per_second: real(9),
        net_tx_bytes_per_second: real(10),
        disk_read_bytes_per_second: real(11),
        disk_write_bytes_per_second: real(12),
        fs_used_bytes: int(13),
        fs_total_bytes: int(14),
        processes: int(15).map(|v| v.min(u64::from(u32::MAX)) as u32),
        uptime_seconds: int(16),
        temperature_celsius: real(17),
        fs_free_bytes: int(18),
        fs_avail_bytes: int(19),
        fs_used_percent: real(20),
    }
}

/// Reads a row of `samples` selected with [`HOT_COLUMNS`].
pub fn hot_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let int = |i: usize| -> rusqlite::Result<Option<i64>> { r.get::<_, Option<i64>>(i) };
    let real = |i: usize, series: usize| -> rusqlite::Result<Option<i64>> {
        Ok(r.get::<_, Option<f64>>(i)?.and_then(|v| HOST[series].to_stored(v)))
    };
    let cores: Option<Vec<u8>> = r.get(4)?;
    let devices: Option<Vec<u8>> = r.get(22)?;
    Ok(Row {
        eid: r.get::<_, i64>(0)?.max(0) as u64,
        seq: r.get::<_, i64>(1)?.max(0) as u64,
        ts: r.get::<_, i64>(2)?.max(0) as u64,
        host: vec![
            real(3, 0)?,
            int(5)?,
            int(6)?,
            int(7)?,
            int(8)?,
            int(9)?,
            real(10, 6)?,
            real(11, 7)?,
            real(12, 8)?,
            real(13, 9)?,
            real(14, 10)?,
            real(15, 11)?,
            real(16, 12)?,
            int(17)?,
            int(18)?,
            int(19)?,
            int(20)?,
            real(21, 17)?,
            int(23)?,
            int(24)?,
            real(25, 20)?,
        ],
        cores: cores.unwrap_or_default().into_iter().map(i64::from).collect(),
        // A row whose device values cannot be read still has its host totals.
        devices: devices.and_then(|b| block::decode_devices(&b).ok()).unwrap_or_default(),
    })
}

/// Hot rows of a host with `from <= ts < to`, in time order.
pub fn hot_rows(conn: &Connection, host: i64, from: u64, to: u64) -> anyhow::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {HOT_COLUMNS} FROM samples WHERE host = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 ORDER BY ts_ms"
    ))?;
    let rows = stmt.query_map(params![host, from as i64, to as i64], hot_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Rows of a host's blocks that hold `from <= ts < to`, in time order.
pub fn block_rows(conn: &Connection, host: i64, from: u64, to: u64) -> anyhow::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT data FROM blocks WHERE host = ?1 AND minute_ms >= ?2 AND minute_ms < ?3 ORDER BY minute_ms",
    )?;
    let first_minute = from / 60_000 * 60_000;
    let mut rows = stmt.query(params![host, first_minute as i64, to as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let data: Vec<u8> = r.get(0)?;
        out.extend(block::decode(&data)?.into_iter().filter(|row| row.ts >= from && row.ts < to));
    }
    Ok(out)
}

/// Every stored row of a host with `from <= ts < to`, blocks and hot rows, in time order.
pub fn rows(conn: &Connection, host: i64, from: u64, to: u64) -> anyhow::Result<Vec<Row>> {
    let mut out = block_rows(conn, host, from, to)?;
    let hot = hot_rows(conn, host, from, to)?;
    let sorted = out.last().zip(hot.first()).is_none_or(|(a, b)| a.ts <= b.ts);
    out.extend(hot);
    if !sorted {
        // Late rows of an already compacted minute, not folded in yet.
        out.sort_by_key(|r| (r.ts, r.seq));
    }
    Ok(out)
}

/// SQLite's sum: exact while every value is an integer, then Kahan-Babuska-Neumaier
/// compensated (sqlite3's `sumStep`), so averages equal those SQL computed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum {
    integer: i128,
    approx: bool,
    sum: f64,
    err: f64,
}

impl Sum {
    /// Adds an integer value.
    pub fn add_int(&mut self, v: i64) {
        if self.approx {
            self.step(v as f64);
        } else {
            self.integer += i128::from(v);
        }
    }

    /// Adds a float value.
    pub fn add_real(&mut self, v: f64) {
        if !self.approx {
            self.approx = true;
            self.sum = self.integer as f64;
            self.err = 0.0;
        }
        self.step(v);
    }

    fn step(&mut self, r: f64) {
        let s = self.sum;
        let t = s + r;
        if s.abs() > r.abs() {
            self.err += (s - t) + r;
        } else {
            self.err += (r - t) + s;
        }
        self.sum = t;
    }

    /// The sum.
    pub fn total(&self) -> f64 {
        if !self.approx {
            return self.integer as f64;
        }
        if self.err.is_nan() { self.sum } else { self.sum + self.err }
    }
}

/// Min, max, sum and count of one host series over a bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostAcc {
    /// Values counted.
    pub n: u64,
    /// Smallest.
    pub min: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
    /// Their sum.
    pub sum: Sum,
}

impl HostAcc {
    /// Counts a raw value of series `index`.
    pub fn add_value(&mut self, index: usize, stored: i64) {
        let series = &HOST[index];
        let value = series.from_stored(stored);
        if series.integer {
            self.sum.add_int(stored);
        } else {
            self.sum.add_real(value);
        }
        self.widen(1, value, value);
    }

    /// Counts a finer bucket (a rollup row).
    pub fn add_bucket(&mut self, n: u64, sum: f64, min: f64, max: f64) {
        if n == 0 {
            return;
        }
        self.sum.add_real(sum);
        self.widen(n, min, max);
    }

    fn widen(&mut self, n: u64, min: f64, max: f64) {
        self.n += n;
        self.min = Some(self.min.map_or(min, |m| m.min(min)));
        self.max = Some(self.max.map_or(max, |m| m.max(max)));
    }

    /// Average, minimum, maximum (all `None` if nothing was counted).
    pub fn summary(&self) -> [Option<f64>; 3] {
        if self.n == 0 {
            return [None; 3];
        }
        [Some(self.sum.total() / self.n as f64), self.min, self.max]
    }
}

/// One bucket being filled: sample count, host series, and device rollup.
#[derive(Debug, Clone)]
pub struct BucketAcc {
    /// Raw samples in it.
    pub samples: u64,
    /// Per [`catalog::HOST`] series.
    pub host: Vec<HostAcc>,
    /// Per (device, field), cores included.
    pub devices: DeviceRollup,
}

impl Default for BucketAcc {
    fn default() -> Self {
        Self::new()
    }
}

impl BucketAcc {
    /// An empty bucket.
    pub fn new() -> Self {
        Self {
            samples: 0,
            host: vec![HostAcc::default(); HOST.len()],
            devices: DeviceRollup::new(),
        }
    }

    /// Counts a raw row.
    pub fn add_row(&mut self, row: &Row) {
        self.samples += 1;
        for (index, value) in row.host.iter().enumerate() {
            if let (Some(value), Some(acc)) = (value, self.host.get_mut(index)) {
                acc.add_value(index, *value);
            }
        }
        block::roll_row(&mut self.devices, row);
    }

    /// Adds a finer bucket's device rollup.
    pub fn add_devices(&mut self, rollup: DeviceRollup) {
        if self.devices.is_empty() {
            // The usual case (a step equal to the rollup's): nothing to merge.
            self.devices = rollup;
            return;
        }
        for (key, aggregate) in &rollup {
            self.devices.entry(*key).and_modify(|a| a.merge(aggregate)).or_insert(*aggregate);
        }
    }
}

/// Rows grouped into `step`-wide buckets aligned to multiples of the step, oldest first.
pub fn bucket_rows<'a>(
    rows: impl Iterator<Item = &'a Row>,
    step: u64,
    into: &mut BTreeMap<u64, BucketAcc>,
) {
    for row in rows {
        into.entry(row.ts / step * step).or_default().add_row(row);
    }
}

/// A device of a host as the history names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceName {
    /// Its kind.
    pub kind: DeviceKind,
    /// Order within the kind: the core number for cores, 0 for others (then by name).
    pub order: u32,
    /// Its name.
    pub name: String,
}

/// Names of the (device, field) column keys of blocks and rollups: what [`HOST_DEVICE`]'s core
/// fields and the `devices` table's rows are.
pub struct DeviceNames(BTreeMap<u32, DeviceName>);

impl DeviceNames {
    /// The devices of a host, from the `devices` table.
    pub fn load(conn: &Connection, host: i64) -> anyhow::Result<Self> {
        let mut stmt = conn.prepare_cached("SELECT id, kind, name FROM devices WHERE host = ?1")?;
        let rows = stmt.query_map([host], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
        })?;
        let mut names = BTreeMap::new();
        for row in rows {
            let (id, kind, name) = row?;
            if let (Some(kind), Ok(id)) = (DeviceKind::from_code(kind), u32::try_from(id)) {
                names.insert(id, DeviceName { kind, order: 0, name });
            }
        }
        Ok(Self(names))
    }

    /// The device and field index a column key stands for (`None` for host totals and unknown
    /// devices).
    pub fn resolve(&self, (device, field): (u32, u32)) -> Option<(DeviceName, usize)> {
        if device == HOST_DEVICE {
            let core = (field as usize).checked_sub(HOST.len())?;
            return Some((
                DeviceName {
                    kind: DeviceKind::Cpu,
                    order: core as u32,
                    name: super::device::core_name(core),
                },
                0,
            ));
        }
        let name = self.0.get(&device)?;
        ((field as usize) < name.kind.table().fields.len()).then(|| (name.clone(), field as usize))
    }
}

/// One device's values in a history: raw (`samples` is `None`, the value is the first of the
/// triple) or bucketed (average, minimum, maximum).
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePoint {
    /// Point time, or bucket start (unix ms).
    pub ts: u64,
    /// Samples the device was in, for a bucket.
    pub samples: Option<u64>,
    /// Per field of its kind.
    pub values: Vec<[Option<f64>; 3]>,
}

/// Per device, its points in time order.
pub type DeviceHistory = BTreeMap<DeviceName, Vec<DevicePoint>>;

/// The devices of raw rows, each with the points it was present in.
pub fn raw_devices(rows: &[Row], names: &DeviceNames) -> DeviceHistory {
    let mut out = DeviceHistory::new();
    for row in rows {
        let mut here: BTreeMap<DeviceName, Vec<[Option<f64>; 3]>> = BTreeMap::new();
        for (core, value) in row.cores.iter().enumerate() {
            if let Some((name, field)) = names.resolve((HOST_DEVICE, (HOST.len() + core) as u32)) {
                set(&mut here, name, field, Some(*value));
            }
        }
        for (device, values) in &row.devices {
            // Present with no value at all (a new interface has no rates yet) still counts.
            if let Some((name, _)) = names.resolve((*device, 0)) {
                set(&mut here, name, 0, values.first().copied().flatten());
            }
            for (field, value) in values.iter().enumerate() {
                if let Some((name, field)) = names.resolve((*device, field as u32)) {
                    set(&mut here, name, field, *value);
                }
            }
        }
        for (name, values) in here {
            out.entry(name).or_default().push(DevicePoint { ts: row.ts, samples: None, values });
        }
    }
    out
}

fn set(
    here: &mut BTreeMap<DeviceName, Vec<[Option<f64>; 3]>>,
    name: DeviceName,
    field: usize,
    value: Option<i64>,
) {
    let kind = name.kind;
    let fields = kind.table().fields.len();
    let values = here.entry(name).or_insert_with(|| vec![[None; 3]; fields]);
    if let Some(slot) = values.get_mut(field) {
        slot[0] = value.and_then(|v| super::device::shown(kind, field, v));
    }
}

/// A device's sample count and per-field summaries in one bucket.
type DeviceBucket = (u64, Vec<[Option<f64>; 3]>);

/// The devices of buckets, each with the buckets it was present in.
pub fn bucket_devices(buckets: &BTreeMap<u64, BucketAcc>, names: &DeviceNames) -> DeviceHistory {
    let mut out = DeviceHistory::new();
    for (ts, bucket) in buckets {
        let mut here: BTreeMap<DeviceName, DeviceBucket> = BTreeMap::new();
        for (key, aggregate) in &bucket.devices {
            let Some((name, field)) = names.resolve(*key) else { continue };
            let kind = name.kind;
            let series = &kind.table().fields[field];
            let fields = kind.table().fields.len();
            let entry = here.entry(name).or_insert_with(|| (0, vec![[None; 3]; fields]));
            entry.0 = entry.0.max(aggregate.n);
            entry.1[field] = summary(series, aggregate);
        }
        for (name, (samples, values)) in here {
            out.entry(name).or_default().push(DevicePoint {
                ts: *ts,
                samples: Some(samples),
                values,
            });
        }
    }
    out
}

/// Average, minimum and maximum of an aggregate, as the API shows them.
fn summary(series: &catalog::Series, a: &Aggregate) -> [Option<f64>; 3] {
    if a.n == 0 {
        return [None; 3];
    }
    let scale = series.scale();
    [
        Some(a.sum as f64 / a.n as f64 / scale),
        Some(series.from_stored(a.min)),
        Some(series.from_stored(a.max)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_survives_its_stored_form() {
        let point = Point {
            ts: 5,
            cpu_percent: Some(33.33),
            cpu_cores_percent: vec![1.0, 99.0],
            memory_used_bytes: Some(1),
            memory_total_bytes: Some(2),
            memory_available_bytes: Some(3),
            swap_used_bytes: Some(4),
            swap_total_bytes: Some(5),
            load1: Some(0.01),
            load5: Some(0.05),
            load15: None,
            net_rx_bytes_per_second: Some(1234.5),
            net_tx_bytes_per_second: Some(0.1),
            disk_read_bytes_per_second: Some(9.0),
            disk_write_bytes_per_second: Some(10.0),
            fs_used_bytes: Some(11),
            fs_total_bytes: Some(12),
            processes: Some(13),
            uptime_seconds: Some(14),
            temperature_celsius: Some(45.5),
            fs_free_bytes: Some(15),
            fs_avail_bytes: Some(16),
            fs_used_percent: Some(43.21),
        };
        let row = Row { ts: 5, host: host_values(&point), cores: vec![1, 99], ..Row::default() };
        assert_eq!(point_of(&row), point);
        for (series, value) in HOST.iter().zip(&row.host) {
            // Every series maps to its own field: no two stored the same value.
            assert!(value.is_some() || series.json == "load15");
        }
    }

    #[test]
    fn sums_are_sqlites() {
        let mut sum = Sum::default();
        for v in [1, 2, 3] {
            sum.add_int(v);
        }
        assert_eq!(sum.total(), 6.0);
        let mut real = Sum::default();
        for v in [0.1, 0.2, 0.3] {
            real.add_real(v);
        }
        assert_eq!(real.total(), 0.6);
    }
}
