//! The read side: queries on read-only connections, used by the HTTP API and by subscribers
//! resuming from the database. WAL lets them run while the writer commits.

use std::path::Path;

use anyhow::Context;
use protocol::Hello;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use std::collections::BTreeMap;

use super::removal::NOT_REMOVED;
use super::{HostRecord, Point, rows};

/// Columns of `samples` that make a [`Point`], in the order [`point_from_row`] reads them.
const POINT_COLUMNS: &str = "ts_ms, cpu_percent, cores, mem_used, mem_total, mem_available, swap_used, swap_total, \
     load1, load5, load15, net_rx_bps, net_tx_bps, disk_read_bps, disk_write_bps, fs_used, fs_total, processes, \
     uptime, temp_max, fs_free, fs_avail, fs_used_pct";

/// How long after a minute has closed its rollup may still be missing: maintenance rolls
/// closed minutes up every few seconds, so history reads the last two minutes (and the rest of
/// the rollup bucket they are in) from raw samples.
const ROLLUP_LAG_MS: u64 = 2 * 60_000;

/// Every host series, in the order of the history's fields and the rollup tables' column
/// groups: the catalog's host table (its `json`, `column` and `integer` are what this module
/// reads).
pub const METRICS: &[crate::catalog::Series] = crate::catalog::HOST;

/// Opens a read-only connection.
pub fn open_read_only(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .with_context(|| format!("cannot open {} for reading", path.display()))?;
    super::schema::configure(&conn)?;
    Ok(conn)
}

fn opt_u64(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<u64>> {
    Ok(row.get::<_, Option<i64>>(index)?.map(|v| v.max(0) as u64))
}

/// Reads a [`Point`] from a row whose first columns are [`POINT_COLUMNS`].
fn point_from_row(row: &Row<'_>) -> rusqlite::Result<Point> {
    point_from_row_at(row, 0)
}

/// Reads a [`Point`] from [`POINT_COLUMNS`] starting at column `at`.
fn point_from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Point> {
    let cores: Option<Vec<u8>> = row.get(at + 2)?;
    Ok(Point {
        ts: row.get::<_, i64>(at)?.max(0) as u64,
        cpu_percent: row.get(at + 1)?,
        cpu_cores_percent: cores.unwrap_or_default().into_iter().map(f64::from).collect(),
        memory_used_bytes: opt_u64(row, at + 3)?,
        memory_total_bytes: opt_u64(row, at + 4)?,
        memory_available_bytes: opt_u64(row, at + 5)?,
        swap_used_bytes: opt_u64(row, at + 6)?,
        swap_total_bytes: opt_u64(row, at + 7)?,
        load1: row.get(at + 8)?,
        load5: row.get(at + 9)?,
        load15: row.get(at + 10)?,
        net_rx_bytes_per_second: row.get(at + 11)?,
        net_tx_bytes_per_second: row.get(at + 12)?,
        disk_read_bytes_per_second: row.get(at + 13)?,
        disk_write_bytes_per_second: row.get(at + 14)?,
        fs_used_bytes: opt_u64(row, at + 15)?,
        fs_total_bytes: opt_u64(row, at + 16)?,
        processes: row
            .get::<_, Option<i64>>(at + 17)?
            .map(|v| v.clamp(0, i64::from(u32::MAX)) as u32),
        uptime_seconds: opt_u64(row, at + 18)?,
        temperature_celsius: row.get(at + 19)?,
        fs_free_bytes: opt_u64(row, at + 20)?,
        fs_avail_bytes: opt_u64(row, at + 21)?,
        fs_used_percent: row.get(at + 22)?,
    })
}

/// Every stored host with its newest point.
pub fn load_hosts(conn: &Connection) -> anyhow::Result<Vec<HostRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT id, host_id, hostname, os, kernel, arch, cpu_model, cpu_cores, memory_total_bytes,
                boot_time_seconds, agent_version, interval_ms, last_seen_ms, dropped_total, last_sample
         FROM hosts WHERE {NOT_REMOVED} ORDER BY hostname"
    ))?;
    let mut latest = conn.prepare(&format!(
        "SELECT {POINT_COLUMNS} FROM samples WHERE host = ?1 ORDER BY ts_ms DESC LIMIT 1"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Hello {
                protocol_version: protocol::PROTOCOL_VERSION,
                host_id: r.get(1)?,
                hostname: r.get(2)?,
                os: r.get(3)?,
                kernel: r.get(4)?,
                arch: r.get(5)?,
                cpu_model: r.get(6)?,
                cpu_cores: r.get(7)?,
                memory_total_bytes: r.get::<_, i64>(8)?.max(0) as u64,
                boot_time_seconds: r.get::<_, i64>(9)?.max(0) as u64,
                agent_version: r.get(10)?,
                interval_ms: r.get(11)?,
                ..Default::default()
            },
            opt_u64(r, 12)?,
            r.get::<_, i64>(13)?.max(0) as u64,
            r.get::<_, Option<Vec<u8>>>(14)?,
        ))
    })?;
    let mut hosts = Vec::new();
    for row in rows {
        let (key, hello, last_seen_ms, dropped_total, last_sample) = row?;
        let mut point = latest.query_row([key], point_from_row).optional()?;
        if point.is_none() {
            point = newest_block_point(conn, key)?;
        }
        hosts.push(HostRecord {
            hello,
            last_seen_ms,
            dropped_total,
            latest: point,
            latest_sample: last_sample
                .and_then(|bytes| postcard::from_bytes::<protocol::Sample>(&bytes).ok())
                .map(std::sync::Arc::new),
        });
    }
    Ok(hosts)
}

/// The newest point of a host's blocks, for a host whose plain rows are all compacted.
fn newest_block_point(conn: &Connection, host: i64) -> anyhow::Result<Option<Point>> {
    let data: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM blocks WHERE host = ?1 ORDER BY minute_ms DESC LIMIT 1")?
        .query_row([host], |r| r.get(0))
        .optional()?;
    let Some(data) = data else { return Ok(None) };
    let rows = super::block::decode(&data)?;
    Ok(rows.iter().max_by_key(|r| (r.ts, r.seq)).map(rows::point_of))
}

/// `(seq, ts_ms)` of every stored sample of a host (plain rows and blocks), in sequence order;
/// a sample stored twice would be listed twice. For tests that check what was kept.
pub fn stored_samples(conn: &Connection, host_id: &str) -> anyhow::Result<Vec<(u64, u64)>> {
    let key: Option<i64> = conn
        .prepare("SELECT id FROM hosts WHERE host_id = ?1")?
        .query_row([host_id], |r| r.get(0))
        .optional()?;
    let Some(key) = key else { return Ok(Vec::new()) };
    let tx = conn.unchecked_transaction()?;
    let mut samples: Vec<(u64, u64)> =
        rows::rows(&tx, key, 0, i64::MAX as u64)?.iter().map(|r| (r.seq, r.ts)).collect();
    samples.sort_unstable();
    Ok(samples)
}

/// A read-only connection for API queries.
pub struct Reader {
    conn: Connection,
    /// How long raw samples are kept (`--retention-raw`).
    raw_retention_ms: u64,
}

/// Which rollup table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollup {
    /// 1-minute buckets.
    Minute,
    /// 1-hour buckets.
    Hour,
}

/// One host's downsampled history over a range, oldest bucket first.
#[derive(Debug)]
pub struct History {
    /// The buckets.
    pub points: Vec<Bucket>,
    /// Each device's buckets (those it was present in).
    pub devices: rows::DeviceHistory,
}

/// One host's raw history: its rows and its devices' names.
pub struct RawHistory {
    /// Stored rows in time order.
    pub rows: Vec<super::block::Row>,
    /// Names of the rows' devices.
    pub names: rows::DeviceNames,
}

/// One bucket of a downsampled history.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Start of the bucket (unix ms).
    pub ts: u64,
    /// Raw samples in the bucket.
    pub samples: u64,
    /// Per metric of [`METRICS`]: average, minimum and maximum.
    pub values: Vec<[Option<f64>; 3]>,
}

impl Bucket {
    /// Names of the values, in [`Bucket::cells`] order: `ts`, `samples`, then each metric's
    /// average, `_min` and `_max`.
    pub fn columns() -> Vec<String> {
        let mut columns = vec!["ts".to_owned(), "samples".to_owned()];
        for m in METRICS {
            columns.extend([
                m.json.to_owned(),
                format!("{}_min", m.json),
                format!("{}_max", m.json),
            ]);
        }
        columns
    }

    /// The values as text, in [`Bucket::columns`] order; empty for a missing value.
    pub fn cells(&self) -> Vec<String> {
        let mut cells = vec![self.ts.to_string(), self.samples.to_string()];
        for (m, values) in METRICS.iter().zip(&self.values) {
            cells.extend(values.iter().map(|v| {
                v.filter(|v| v.is_finite()).map(|v| format_number(v, m.integer)).unwrap_or_default()
            }));
        }
        cells
    }

    /// Appends the bucket as a JSON object, written directly: a history of 1,500 buckets is
    /// 80,000 values, too many to build a map for each.
    pub fn write_json(&self, out: &mut String) {
        self.write_json_selected(out, &[true; METRICS.len()]);
    }

    /// Like [`Bucket::write_json`], with only the metrics whose entry of `wanted` is true.
    pub fn write_json_selected(&self, out: &mut String, wanted: &[bool]) {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = write!(out, "{{\"ts\":{},\"samples\":{}", self.ts, self.samples);
        for ((m, [avg, min, max]), _) in
            METRICS.iter().zip(&self.values).zip(wanted).filter(|(_, w)| **w)
        {
            for (suffix, value) in [("", avg), ("_min", min), ("_max", max)] {
                out.push_str(",\"");
                out.push_str(m.json);
                out.push_str(suffix);
                out.push_str("\":");
                match value {
                    Some(v) if v.is_finite() => write_number(out, *v, m.integer),
                    _ => out.push_str("null"),
                }
            }
        }
        out.push('}');
    }
}

/// A number as JSON and CSV write it: whole for integer metrics.
pub fn format_number(value: f64, integer: bool) -> String {
    let mut out = String::new();
    write_number(&mut out, value, integer);
    out
}

/// Writes a number as [`format_number`] does.
pub fn write_number(out: &mut String, value: f64, integer: bool) {
    use std::fmt::Write;
    // Callers write only finite values (`derive` stores no others); rounding keeps bytes
    // whole. Writing to a String cannot fail.
    // Whole numbers, most of a history, go through itoa: a day of buckets with every series is
    // 300,000 numbers, and `write!` spent more on formatting machinery than on digits.
    let mut digits = itoa::Buffer::new();
    if integer {
        out.push_str(digits.format(value.round() as i64));
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        // As serde_json writes floats elsewhere in the API: 99.0, not 99. (-0.0 stays -0.0.)
        if value == 0.0 && value.is_sign_negative() {
            out.push('-');
        }
        out.push_str(digits.format(value as i64));
        out.push_str(".0");
    } else {
        let _ = write!(out, "{value}");
    }
}

impl Reader {
    /// Past alert events, newest first (see [`super::alerts::recent`]).
    pub fn alert_events(
        &self,
        since_ms: u64,
        until_ms: u64,
        before: Option<u64>,
        limit: usize,
    ) -> anyhow::Result<Vec<super::alerts::AlertEvent>> {
        super::alerts::recent(&self.conn, since_ms, until_ms, before, limit)
    }

    /// Every stored silence, newest first.
    pub fn silences(&self) -> anyhow::Result<Vec<super::alerts::Silence>> {
        Ok(super::alerts::load_silences(&self.conn)?)
    }

    /// Opens a reader on the database at `path`.
    pub fn open(path: &Path, raw_retention: std::time::Duration) -> anyhow::Result<Self> {
        let raw_retention_ms = u64::try_from(raw_retention.as_millis()).unwrap_or(u64::MAX);
        Ok(Self { conn: open_read_only(path)?, raw_retention_ms })
    }

    /// The database key of a host id, if the host is known (and not removed).
    pub fn host_key(&self, host_id: &str) -> anyhow::Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT id FROM hosts WHERE host_id = ?1 AND {NOT_REMOVED}"))?
            .query_row([host_id], |r| r.get(0))
            .optional()?)
    }

    /// Raw rows of a host with `from <= ts < to`, at most `limit`, read in one snapshot (the
    /// writer may fold rows into a block meanwhile).
    pub fn raw_rows(
        &self,
        host_key: i64,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> anyhow::Result<RawHistory> {
        let tx = self.conn.unchecked_transaction()?;
        let mut rows = rows::rows(&tx, host_key, from_ms, to_ms)?;
        rows.truncate(limit);
        let names = rows::DeviceNames::load(&tx, host_key)?;
        Ok(RawHistory { rows, names })
    }

    /// Raw points of a host with `from <= ts < to`, at most `limit`.
    pub fn raw_points(
        &self,
        host_key: i64,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<Point>> {
        let raw = self.raw_rows(host_key, from_ms, to_ms, limit)?;
        Ok(raw.rows.iter().map(rows::point_of).collect())
    }

    /// Points of a host averaged over `step_ms` buckets (aligned to multiples of the step), with
    /// the minimum and maximum of each bucket as `NAME_min` and `NAME_max`.
    pub fn bucketed(
        &self,
        host_key: i64,
        from_ms: u64,
        to_ms: u64,
        step_ms: u64,
    ) -> anyhow::Result<History> {
        let tx = self.conn.unchecked_transaction()?;
        let mut buckets = BTreeMap::new();
        let stored = rows::rows(&tx, host_key, from_ms, to_ms)?;
        rows::bucket_rows(stored.iter(), step_ms, &mut buckets);
        let names = rows::DeviceNames::load(&tx, host_key)?;
        Ok(history(&buckets, &names))
    }

    /// Like [`Reader::bucketed`], from the 1-minute or 1-hour rollups, whose buckets must divide
    /// `step_ms`; the range is rounded out to whole rollup buckets. Averages are exact: each
    /// rollup keeps the sum and count of its values.
    pub fn rollup_bucketed(
        &self,
        rollup: Rollup,
        host_key: i64,
        from_ms: u64,
        to_ms: u64,
        step_ms: u64,
    ) -> anyhow::Result<History> {
        let (table, devices_table, unit) = match rollup {
            Rollup::Minute => ("rollup_1m", "device_rollup_1m", 60_000),
            Rollup::Hour => ("rollup_1h", "device_rollup_1h", 3_600_000),
        };
        // A rollup bucket is whole or absent: the range is rounded out to whole buckets.
        let (from_ms, to_ms) = (from_ms / unit * unit, to_ms.div_ceil(unit) * unit);
        // Recent buckets come from raw samples: a minute is rolled up only after it closed. Not
        // from before raw samples are kept, though (a short `--retention-raw`): then the
        // rollups serve what they have, without the minutes not rolled up yet.
        let now = crate::now_ms();
        let raw_kept_from = now.saturating_sub(self.raw_retention_ms).div_ceil(unit) * unit;
        let fresh = (now.saturating_sub(ROLLUP_LAG_MS) / unit * unit)
            .max(raw_kept_from)
            .clamp(from_ms, to_ms);
        let tx = self.conn.unchecked_transaction()?;
        let mut buckets: BTreeMap<u64, rows::BucketAcc> = BTreeMap::new();
        let mut select = String::from("SELECT bucket_ms, samples");
        for m in METRICS {
            let c = m.column;
            select.push_str(&format!(", {c}_n, {c}_sum, {c}_min, {c}_max"));
        }
        select.push_str(&format!(
            " FROM {table} WHERE host = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3 ORDER BY bucket_ms"
        ));
        {
            let mut stmt = tx.prepare_cached(&select)?;
            let mut found =
                stmt.query(rusqlite::params![host_key, from_ms as i64, fresh as i64])?;
            while let Some(row) = found.next()? {
                let bucket = row.get::<_, i64>(0)?.max(0) as u64;
                let acc = buckets.entry(bucket / step_ms * step_ms).or_default();
                acc.samples += row.get::<_, i64>(1)?.max(0) as u64;
                for (i, metric) in acc.host.iter_mut().enumerate() {
                    let base = 2 + i * 4;
                    let n = row.get::<_, Option<i64>>(base)?.unwrap_or(0).max(0) as u64;
                    let sum = row.get::<_, Option<f64>>(base + 1)?.unwrap_or(0.0);
                    let min = row.get::<_, Option<f64>>(base + 2)?;
                    let max = row.get::<_, Option<f64>>(base + 3)?;
                    if let (Some(min), Some(max)) = (min, max) {
                        metric.add_bucket(n, sum, min, max);
                    }
                }
            }
        }
        {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT bucket_ms, data FROM {devices_table} WHERE host = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3"
            ))?;
            let mut found =
                stmt.query(rusqlite::params![host_key, from_ms as i64, fresh as i64])?;
            while let Some(row) = found.next()? {
                let bucket = row.get::<_, i64>(0)?.max(0) as u64;
                let rollup = super::block::decode_rollup(&row.get::<_, Vec<u8>>(1)?)?;
                buckets.entry(bucket / step_ms * step_ms).or_default().add_devices(rollup);
            }
        }
        if fresh < to_ms {
            let stored = rows::rows(&tx, host_key, fresh, to_ms)?;
            rows::bucket_rows(stored.iter(), step_ms, &mut buckets);
        }
        let names = rows::DeviceNames::load(&tx, host_key)?;
        Ok(history(&buckets, &names))
    }
}

/// Buckets as the API shows them.
fn history(buckets: &BTreeMap<u64, rows::BucketAcc>, names: &rows::DeviceNames) -> History {
    let points = buckets
        .iter()
        .map(|(ts, acc)| Bucket {
            ts: *ts,
            samples: acc.samples,
            values: acc.host.iter().map(rows::HostAcc::summary).collect(),
        })
        .collect();
    History { points, devices: rows::bucket_devices(buckets, names) }
}

/// Size of the database file and its WAL, in bytes.
pub fn database_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(Path::new(&wal))
}

impl Reader {
    /// Stored events (samples and activity) with an id above `after`, oldest first, at most
    /// `limit`: how a subscriber resumes after the hub's ring of recent events.
    pub fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<crate::fanout::events::LiveEvent>> {
        use crate::fanout::events::LiveEvent;
        // One snapshot for the plain rows, the blocks and the activity: a minute compacted
        // meanwhile is seen once (duplicates by id are dropped below anyway).
        let _snapshot = self.conn.unchecked_transaction()?;
        let mut samples = self.conn.prepare_cached(&format!(
            "SELECT eid, hosts.host_id, hosts.hostname, {POINT_COLUMNS}
             FROM samples JOIN hosts ON hosts.id = samples.host
             WHERE eid > ?1 AND {NOT_REMOVED} ORDER BY eid LIMIT ?2"
        ))?;
        let sample_rows =
            samples.query_map(rusqlite::params![after as i64, limit as i64], |row| {
                let eid = row.get::<_, i64>(0)? as u64;
                let host_id: String = row.get(1)?;
                let hostname: String = row.get(2)?;
                let point = point_from_row_at(row, 3)?;
                Ok(LiveEvent::sample(
                    eid,
                    std::sync::Arc::from(host_id),
                    std::sync::Arc::from(hostname),
                    std::sync::Arc::new(point),
                ))
            })?;
        let mut events: Vec<LiveEvent> = sample_rows.collect::<Result<_, _>>()?;
        // Compacted minutes: blocks holding an id above `after`, oldest first, until `limit`
        // events are certain (a block starting above the limit-th id cannot add an earlier one).
        // Candidates come a page at a time, so an old resume id costs time, not memory.
        const PAGE: i64 = 4096;
        let mut blocks = self.conn.prepare_cached(&format!(
            "SELECT blocks.rowid, first_eid FROM blocks JOIN hosts ON hosts.id = blocks.host
             WHERE last_eid > ?1 AND {NOT_REMOVED}
             ORDER BY first_eid, blocks.rowid LIMIT ?2 OFFSET ?3"
        ))?;
        let mut block = self.conn.prepare_cached(
            "SELECT data, hosts.host_id, hosts.hostname FROM blocks JOIN hosts ON hosts.id = blocks.host
             WHERE blocks.rowid = ?1",
        )?;
        let mut offset = 0;
        'pages: loop {
            let candidates: Vec<(i64, i64)> = blocks
                .query_map(rusqlite::params![after as i64, PAGE, offset], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            let full = candidates.len() as i64 == PAGE;
            offset += PAGE;
            for (rowid, first_eid) in candidates {
                if events.len() >= limit {
                    events.sort_by_key(|e| e.id);
                    if (first_eid as u64) > events[limit - 1].id {
                        break 'pages;
                    }
                }
                let (data, host_id, hostname): (Vec<u8>, String, String) =
                    block.query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                let (host_id, hostname) =
                    (std::sync::Arc::<str>::from(host_id), std::sync::Arc::<str>::from(hostname));
                for row in super::block::decode(&data)? {
                    if row.eid > after {
                        events.push(LiveEvent::sample(
                            row.eid,
                            host_id.clone(),
                            hostname.clone(),
                            std::sync::Arc::new(rows::point_of(&row)),
                        ));
                    }
                }
            }
            if !full {
                break;
            }
        }
        let mut activity = self.conn.prepare_cached(
            "SELECT eid, ts_ms, kind, host, json FROM activity WHERE eid > ?1 ORDER BY eid LIMIT ?2",
        )?;
        let activity_rows =
            activity.query_map(rusqlite::params![after as i64, limit as i64], activity_event)?;
        for event in activity_rows {
            events.push(event?);
        }
        events.sort_by_key(|e| e.id);
        // A row folded into a block between the two reads is seen in both.
        events.dedup_by_key(|e| e.id);
        events.truncate(limit);
        Ok(events)
    }

    /// The activity log newest first: up to `limit` events with an id below `before` (all when
    /// `None`) that pass `filter`, and whether older ones are left.
    pub fn activity_before(
        &self,
        before: Option<u64>,
        limit: usize,
        filter: &crate::fanout::events::Filter,
    ) -> anyhow::Result<(Vec<crate::fanout::events::LiveEvent>, bool)> {
        use rusqlite::types::Value as Sql;
        let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
        let mut sql =
            String::from("SELECT eid, ts_ms, kind, host, json FROM activity WHERE eid < ?");
        let mut values = vec![Sql::Integer(before)];
        let placeholders = |n: usize| vec!["?"; n].join(", ");
        if let Some(kinds) = &filter.kinds {
            sql.push_str(&format!(" AND kind IN ({})", placeholders(kinds.len())));
            values.extend(kinds.iter().map(|k| Sql::Text(k.clone())));
        }
        if let Some(hosts) = &filter.hosts {
            // As in live streams: events about no host in particular always pass.
            sql.push_str(&format!(
                " AND (host IS NULL OR host IN ({}))",
                placeholders(hosts.len())
            ));
            values.extend(hosts.iter().map(|h| Sql::Text(h.clone())));
        }
        sql.push_str(" ORDER BY eid DESC LIMIT ?");
        values.push(Sql::Integer(limit.saturating_add(1).min(i64::MAX as usize) as i64));
        let mut stmt = self.conn.prepare(&sql)?;
        let mut events: Vec<crate::fanout::events::LiveEvent> = stmt
            .query_map(rusqlite::params_from_iter(values), activity_event)?
            .collect::<Result<_, _>>()?;
        let more = events.len() > limit;
        events.truncate(limit);
        Ok((events, more))
    }
}

/// An activity row (`eid, ts_ms, kind, host, json`) as the live event it was.
fn activity_event(row: &Row<'_>) -> rusqlite::Result<crate::fanout::events::LiveEvent> {
    let record = crate::activity::Record {
        ts_ms: row.get::<_, i64>(1)?.max(0) as u64,
        host: row.get::<_, Option<String>>(3)?.map(std::sync::Arc::from),
        activity: crate::activity::Activity::from_row(
            &row.get::<_, String>(2)?,
            &row.get::<_, String>(4)?,
        ),
    };
    Ok(crate::fanout::events::LiveEvent::activity(row.get::<_, i64>(0)? as u64, &record))
}
