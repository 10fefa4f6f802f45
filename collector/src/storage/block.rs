//! Compact encoding of stored points: a closed minute of one host folded into one block, and the
//! per-device rollups of a bucket in one blob. Pure functions, no SQLite.
//!
//! A [`Row`] is everything stored of one sample: its event id, sequence number, time, the host
//! totals of [`catalog::HOST`], per-core percentages, and the fields of each device. Values are
//! fixed-point integers (see [`catalog::Series::to_stored`]), so encoding is lossless.
//!
//! A block is columnar: the row count, event ids and sequence numbers as zigzag varint deltas,
//! times as delta-of-delta, then one column per (device, field) with a presence bitmap (devices
//! come and go within a minute) and the present values, each column in the smallest of three
//! forms: one constant, deltas, or deltas of deltas, after dividing by the values' greatest
//! common divisor (memory in 4 KiB pages, rates rounded to whole bytes). A steady gauge costs
//! nothing per value; a noisy one costs its delta's varint.

use std::collections::BTreeMap;

use crate::catalog;

/// Version byte of blocks and rollup blobs this build writes.
const VERSION: u8 = 1;

/// The device number of host totals and cores in a block; devices of the `devices` table have
/// their row id (1 and up).
pub const HOST_DEVICE: u32 = 0;

/// The field number of a device's presence column: which rows the device was in, also those
/// where it had no value (a new interface has no rate yet).
const PRESENT: u32 = u32::MAX;

/// Per device (row id of `devices`), its fields' stored values.
pub type DeviceValues = Vec<(u32, Vec<Option<i64>>)>;

/// Everything stored of one sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// Live event id.
    pub eid: u64,
    /// The agent's sequence number.
    pub seq: u64,
    /// Sample time (unix ms).
    pub ts: u64,
    /// Host totals, one per [`catalog::HOST`] entry.
    pub host: Vec<Option<i64>>,
    /// Whole percent busy per core, in core order (empty on a host's first sample).
    pub cores: Vec<i64>,
    /// Per device (row id of `devices`), its fields in [`catalog::DeviceTable::fields`] order.
    pub devices: DeviceValues,
}

/// A column key: (device, field). Host totals are fields `0..HOST.len()` of [`HOST_DEVICE`],
/// core `i` is its field `HOST.len() + i`.
type Key = (u32, u32);

impl Row {
    /// The row's values by column.
    fn columns(&self) -> impl Iterator<Item = (Key, Option<i64>)> + '_ {
        let host = self.host.iter().enumerate().map(|(i, v)| ((HOST_DEVICE, i as u32), *v));
        let cores = self
            .cores
            .iter()
            .enumerate()
            .map(|(i, v)| ((HOST_DEVICE, (catalog::HOST.len() + i) as u32), Some(*v)));
        let devices = self.devices.iter().flat_map(|(device, values)| {
            values.iter().enumerate().map(move |(f, v)| ((*device, f as u32), *v))
        });
        host.chain(cores).chain(devices)
    }

    /// Like [`Row::columns`], with each device's presence column.
    fn stored_columns(&self) -> impl Iterator<Item = (Key, Option<i64>)> + '_ {
        self.columns().chain(self.devices.iter().map(|(d, _)| ((*d, PRESENT), Some(1))))
    }
}

/// Why a stored blob could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "corrupt stored block: {}", self.0)
    }
}

impl std::error::Error for Corrupt {}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i(out: &mut Vec<u8>, v: i64) {
    put(out, zigzag(v));
}

fn put_i128(out: &mut Vec<u8>, v: i128) {
    let mut z = ((v << 1) ^ (v >> 127)) as u128;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A cursor over a blob.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> Result<u8, Corrupt> {
        let b = *self.bytes.get(self.at).ok_or(Corrupt("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn u(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Corrupt("varint too long"))
    }

    fn i(&mut self) -> Result<i64, Corrupt> {
        Ok(unzigzag(self.u()?))
    }

    fn i128(&mut self) -> Result<i128, Corrupt> {
        let mut z = 0u128;
        for shift in (0..128).step_by(7) {
            let b = self.byte()?;
            z |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i128) ^ -((z & 1) as i128));
            }
        }
        Err(Corrupt("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(Corrupt("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
}

/// Writes a sequence of integers in the cheapest of: constant, deltas, deltas of deltas (after
/// dividing by their common divisor). Its first byte says which.
fn put_values(out: &mut Vec<u8>, values: &[i64]) {
    let Some(&first) = values.first() else {
        out.push(0);
        return;
    };
    if values.iter().all(|v| *v == first) {
        out.push(1);
        put_i(out, first);
        return;
    }
    let divisor = values.iter().fold(0u64, |g, v| gcd(g, v.unsigned_abs())).max(1);
    let scaled: Vec<i64> = values.iter().map(|v| v / divisor as i64).collect();
    let mut deltas = Vec::with_capacity(values.len() * 2);
    let mut dods = Vec::with_capacity(values.len() * 2);
    put_i(&mut deltas, scaled[0]);
    put_i(&mut dods, scaled[0]);
    let mut previous_delta = 0i64;
    for pair in scaled.windows(2) {
        let delta = pair[1].wrapping_sub(pair[0]);
        put_i(&mut deltas, delta);
        put_i(&mut dods, delta.wrapping_sub(previous_delta));
        previous_delta = delta;
    }
    let (mode, body) = if dods.len() < deltas.len() { (3, dods) } else { (2, deltas) };
    out.push(mode);
    put(out, divisor);
    out.extend_from_slice(&body);
}

fn get_values(input: &mut Input<'_>, count: usize) -> Result<Vec<i64>, Corrupt> {
    let mode = input.byte()?;
    match mode {
        0 => Ok(Vec::new()),
        1 => Ok(vec![input.i()?; count]),
        2 | 3 => {
            let divisor = input.u()? as i64;
            let mut values = Vec::with_capacity(count);
            let mut value = input.i()?;
            values.push(value);
            let mut delta = 0i64;
            for _ in 1..count {
                let read = input.i()?;
                delta = if mode == 2 { read } else { delta.wrapping_add(read) };
                value = value.wrapping_add(delta);
                values.push(value);
            }
            Ok(values.into_iter().map(|v| v.wrapping_mul(divisor)).collect())
        }
        _ => Err(Corrupt("unknown value encoding")),
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Encodes rows (of one host, in time order) as one block.
pub fn encode(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + rows.len() * 64);
    out.push(VERSION);
    put(&mut out, rows.len() as u64);
    let eids: Vec<i64> = rows.iter().map(|r| r.eid as i64).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq as i64).collect();
    let times: Vec<i64> = rows.iter().map(|r| r.ts as i64).collect();
    for column in [&eids, &seqs, &times] {
        put_values(&mut out, column);
    }
    let mut columns: BTreeMap<Key, Vec<Option<i64>>> = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        for (key, value) in row.stored_columns() {
            let column = columns.entry(key).or_insert_with(|| vec![None; rows.len()]);
            column[index] = value;
        }
    }
    columns.retain(|_, values| values.iter().any(Option::is_some));
    put(&mut out, columns.len() as u64);
    for ((device, field), values) in &columns {
        put(&mut out, u64::from(*device));
        put(&mut out, u64::from(*field));
        if values.iter().all(Option::is_some) {
            out.push(0);
        } else {
            out.push(1);
            let mut bitmap = vec![0u8; rows.len().div_ceil(8)];
            for (i, v) in values.iter().enumerate() {
                if v.is_some() {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
            }
            out.extend_from_slice(&bitmap);
        }
        let present: Vec<i64> = values.iter().flatten().copied().collect();
        put_values(&mut out, &present);
    }
    out
}

/// Decodes a block written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Row>, Corrupt> {
    let mut input = Input { bytes, at: 0 };
    if input.byte()? != VERSION {
        return Err(Corrupt("unknown block version"));
    }
    let count = input.u()? as usize;
    if count > 1_000_000 {
        return Err(Corrupt("too many rows"));
    }
    let eids = get_values(&mut input, count)?;
    let seqs = get_values(&mut input, count)?;
    let times = get_values(&mut input, count)?;
    if eids.len() != count || seqs.len() != count || times.len() != count {
        return Err(Corrupt("row count"));
    }
    let mut rows: Vec<Row> = (0..count)
        .map(|i| Row {
            eid: eids[i] as u64,
            seq: seqs[i] as u64,
            ts: times[i] as u64,
            host: vec![None; catalog::HOST.len()],
            ..Row::default()
        })
        .collect();
    let columns = input.u()?;
    for _ in 0..columns {
        let device = u32::try_from(input.u()?).map_err(|_| Corrupt("device"))?;
        let field = u32::try_from(input.u()?).map_err(|_| Corrupt("field"))? as usize;
        let present: Vec<bool> = match input.byte()? {
            0 => vec![true; count],
            1 => {
                let bitmap = input.take(count.div_ceil(8))?;
                (0..count).map(|i| bitmap[i / 8] & (1 << (i % 8)) != 0).collect()
            }
            _ => return Err(Corrupt("presence")),
        };
        let wanted = present.iter().filter(|p| **p).count();
        let values = get_values(&mut input, wanted)?;
        if values.len() != wanted {
            return Err(Corrupt("value count"));
        }
        let mut values = values.into_iter();
        for (row, _) in rows.iter_mut().zip(&present).filter(|(_, p)| **p) {
            let value = values.next().ok_or(Corrupt("value count"))?;
            if device == HOST_DEVICE && field < catalog::HOST.len() {
                row.host[field] = Some(value);
            } else if device == HOST_DEVICE {
                let core = field - catalog::HOST.len();
                if row.cores.len() <= core {
                    row.cores.resize(core + 1, 0);
                }
                row.cores[core] = value;
            } else {
                let field = field as u32;
                let slot = match row.devices.iter().position(|(d, _)| *d == device) {
                    Some(slot) => slot,
                    None => {
                        row.devices.push((device, Vec::new()));
                        row.devices.len() - 1
                    }
                };
                if field == PRESENT {
                    continue;
                }
                let field = field as usize;
                let fields = &mut row.devices[slot].1;
                if fields.len() <= field {
                    fields.resize(field + 1, None);
                }
                fields[field] = Some(value);
            }
        }
    }
    Ok(rows)
}

/// Min, max, sum and count of one column's values over a bucket, in stored (fixed-point)
/// units, so coarser buckets combine exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    /// Values counted.
    pub n: u64,
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
    /// Sum of the values.
    pub sum: i128,
}

impl Aggregate {
    /// The aggregate of one value.
    pub fn of(value: i64) -> Self {
        Self { n: 1, min: value, max: value, sum: i128::from(value) }
    }

    /// Adds another aggregate (a value, or a finer bucket).
    pub fn merge(&mut self, other: &Aggregate) {
        self.n += other.n;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }
}

/// Per-device aggregates of one bucket: (device, field) → aggregate, plus how many samples the
/// device was present in.
pub type DeviceRollup = BTreeMap<(u32, u32), Aggregate>;

/// Folds a row's device and core values into a bucket's rollup.
pub fn roll_row(rollup: &mut DeviceRollup, row: &Row) {
    for (key, value) in row.columns() {
        if key.0 == HOST_DEVICE && (key.1 as usize) < catalog::HOST.len() {
            continue; // Host totals have their own rollup tables.
        }
        if let Some(value) = value {
            rollup
                .entry(key)
                .and_modify(|a| a.merge(&Aggregate::of(value)))
                .or_insert(Aggregate::of(value));
        }
    }
}

/// Encodes a bucket's device rollup.
pub fn encode_rollup(rollup: &DeviceRollup) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + rollup.len() * 12);
    out.push(VERSION);
    put(&mut out, rollup.len() as u64);
    for ((device, field), a) in rollup {
        put(&mut out, u64::from(*device));
        put(&mut out, u64::from(*field));
        put(&mut out, a.n);
        put_i(&mut out, a.min);
        put_i(&mut out, a.max.wrapping_sub(a.min));
        put_i128(&mut out, a.sum);
    }
    out
}

/// Decodes a blob written by [`encode_rollup`].
pub fn decode_rollup(bytes: &[u8]) -> Result<DeviceRollup, Corrupt> {
    let mut input = Input { bytes, at: 0 };
    if input.byte()? != VERSION {
        return Err(Corrupt("unknown rollup version"));
    }
    let count = input.u()?;
    // Written in key order: collected into a Vec first, the map is built in one pass.
    let mut rollup = Vec::with_capacity(count.min(4096) as usize);
    for _ in 0..count {
        let device = u32::try_from(input.u()?).map_err(|_| Corrupt("device"))?;
        let field = u32::try_from(input.u()?).map_err(|_| Corrupt("field"))?;
        let n = input.u()?;
        let min = input.i()?;
        let max = min.wrapping_add(input.i()?);
        let sum = input.i128()?;
        rollup.push(((device, field), Aggregate { n, min, max, sum }));
    }
    Ok(rollup.into_iter().collect())
}

/// Encodes the device values of one hot (not yet compacted) row.
pub fn encode_devices(devices: &[(u32, Vec<Option<i64>>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + devices.len() * 16);
    out.push(VERSION);
    put(&mut out, devices.len() as u64);
    for (device, values) in devices {
        put(&mut out, u64::from(*device));
        put(&mut out, values.len() as u64);
        for value in values {
            match value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    put_i(&mut out, *v);
                }
            }
        }
    }
    out
}

/// Decodes what [`encode_devices`] wrote.
pub fn decode_devices(bytes: &[u8]) -> Result<DeviceValues, Corrupt> {
    let mut input = Input { bytes, at: 0 };
    if input.byte()? != VERSION {
        return Err(Corrupt("unknown device values version"));
    }
    let count = input.u()?;
    let mut devices = Vec::new();
    for _ in 0..count {
        let device = u32::try_from(input.u()?).map_err(|_| Corrupt("device"))?;
        let fields = input.u()?;
        if fields > 64 {
            return Err(Corrupt("fields"));
        }
        let mut values = Vec::with_capacity(fields as usize);
        for _ in 0..fields {
            values.push(match input.byte()? {
                0 => None,
                _ => Some(input.i()?),
            });
        }
        devices.push((device, values));
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> Row {
        let mut host = vec![None; catalog::HOST.len()];
        host[0] = (i > 0).then_some((i as i64 * 37) % 10_000);
        host[1] = Some(4096 * (1_000_000 + i as i64 % 7));
        host[2] = Some(1 << 34);
        Row {
            eid: 1000 + i * 3,
            seq: 17 + i,
            ts: 1_795_996_800_000 + i * 1000 + i % 3,
            host,
            cores: if i == 0 { vec![] } else { vec![(i % 100) as i64, 3] },
            devices: vec![
                (4, vec![Some(i as i64 * 15), None, Some(0)]),
                (9, vec![Some(-5), Some(i64::MAX)]),
            ]
            .into_iter()
            .filter(|(d, _)| *d != 9 || i % 2 == 0)
            .collect(),
        }
    }

    #[test]
    fn a_block_comes_back_exactly() {
        let rows: Vec<Row> = (0..60).map(row).collect();
        let bytes = encode(&rows);
        let mut back = decode(&bytes).unwrap();
        // Device fields that were never present come back absent, which they were.
        for r in &mut back {
            for (d, values) in &mut r.devices {
                if *d == 4 {
                    values.resize(3, None);
                }
            }
        }
        assert_eq!(back, rows);
        assert!(bytes.len() < 60 * 14, "{} bytes", bytes.len());
    }

    #[test]
    fn garbage_is_refused_not_misread() {
        let bytes = encode(&(0..10).map(row).collect::<Vec<_>>());
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut]); // Must not panic.
        }
        assert!(decode(&[9, 1]).is_err());
    }

    #[test]
    fn rollups_and_hot_devices_come_back_exactly() {
        let mut rollup = DeviceRollup::new();
        for i in 0..60 {
            roll_row(&mut rollup, &row(i));
        }
        assert_eq!(rollup[&(4, 0)], Aggregate { n: 60, min: 0, max: 59 * 15, sum: 15 * 1770 });
        assert_eq!(decode_rollup(&encode_rollup(&rollup)).unwrap(), rollup);
        let devices = row(4).devices;
        assert_eq!(decode_devices(&encode_devices(&devices)).unwrap(), devices);
    }
}
