//! Storage maintenance, run by the writer thread between ingest transactions in small steps, each
//! its own short transaction, so it never stalls ingest for long:
//!
//! - **rollups**: min/max/sum/count per metric in 1-minute buckets (from raw samples) and 1-hour
//!   buckets (from the 1-minute ones), recomputed for the time ranges that received samples,
//!   host totals in `rollup_1m`/`rollup_1h` and every device in `device_rollup_1m`/`_1h`;
//! - **compaction**: a host's minute that ended [`COMPACT_AFTER`] ago and is rolled up is
//!   folded from plain `samples` rows into one block (`blocks`, see block.rs), in the same
//!   transaction that deletes the rows, so a crash leaves either the rows or the block; a
//!   minute rolled up only after that (a replayed backlog) is folded by the step that rolls it
//!   up, from the same read of its rows;
//! - **retention**: raw samples older than `--retention-raw`, rollups and activity older than
//!   `--retention-rollup`, deleted a chunk at a time;
//! - **size cap**: above `--max-db-size`, the oldest raw samples (then the oldest rollups) go
//!   first, and freed pages are returned to the file system with `incremental_vacuum`;
//! - **removed hosts**: a host removed by `DELETE /api/hosts/{id}` has its rows deleted a chunk
//!   at a time, children first, its `hosts` row last (see removal.rs), resumed after a restart.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, params};

use super::block::{self, DeviceRollup};
use super::query::METRICS;
use super::{removal, rows};

/// Retention and size policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Keep raw samples this long.
    pub retention_raw: Duration,
    /// Keep rollups and the activity log this long.
    pub retention_rollup: Duration,
    /// Keep the database under this many bytes, if set.
    pub max_bytes: Option<u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            retention_raw: Duration::from_secs(24 * 3600),
            retention_rollup: Duration::from_secs(30 * 24 * 3600),
            max_bytes: None,
        }
    }
}

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
/// Work done per call of [`Maintenance::run`], at most, before ingest gets the writer back.
/// Every batch that arrives meanwhile waits for its ack (and its live event) for the rest of
/// the step: with 25 ms steps, a minute's rollups for 2,000 new hosts kept the writer in
/// maintenance for 2 % of the time in 23 ms stretches, which was the ack p99 (BENCHMARKS.md,
/// "Tails"). Maintenance still gets every gap ingest leaves, so it keeps up all the same.
const STEP_BUDGET: Duration = Duration::from_millis(5);
/// Rows deleted per statement.
const DELETE_CHUNK: i64 = 2_000;
/// Pages returned to the file system per step.
const VACUUM_PAGES: i64 = 1_000;
const ROLLUP_EVERY: Duration = Duration::from_secs(5);
const RETENTION_EVERY: Duration = Duration::from_secs(60);
const SIZE_CHECK_EVERY: Duration = Duration::from_secs(5);
const COMPACT_EVERY: Duration = Duration::from_secs(5);
/// How long after its end a minute stays as plain rows: the newest minutes are written and
/// read most, and a late sample of a minute still open costs an insert, not a block rewrite.
pub const COMPACT_AFTER: Duration = Duration::from_secs(120);
/// How long deleting removed hosts waits after a failed step.
const REMOVAL_RETRY: Duration = Duration::from_secs(60);
/// Minutes of one host compacted per step at most.
const COMPACT_MINUTES: usize = 30;
/// Hosts due for rollups that a step puts in storage order, many more than a step's budget
/// reaches (a few to a few dozen).
const ORDERED_PER_STEP: usize = 256;

/// The maintenance state, owned by the writer thread.
pub struct Maintenance {
    policy: Policy,
    /// Per host, the range of sample times stored since its rollups were last computed.
    dirty: HashMap<i64, (u64, u64)>,
    next_rollup: Instant,
    next_retention: Instant,
    next_size_check: Instant,
    /// Hosts still to prune in the current retention pass.
    retention_queue: VecDeque<i64>,
    over_cap: bool,
    vacuum_pending: bool,
    created: Instant,
    next_compaction: Instant,
    /// Hosts still to compact in the current compaction pass.
    compaction_queue: VecDeque<i64>,
    /// Minutes folded into blocks since the start (for the log and the tests).
    compacted_minutes: u64,
    /// Per host, the start of an hour whose minutes changed while it was still going on: its
    /// 1-hour rollup is computed once, when it is over. History reads an hour that is not
    /// over from raw rows, so recomputing it every minute (60 minute rollups each time, for
    /// every host) was work nobody read.
    open_hours: HashMap<i64, u64>,
    /// Removed hosts whose rows are still to delete, by key.
    removals: VecDeque<i64>,
    /// When deleting them may go on after a failed step.
    next_removal: Instant,
}

impl Maintenance {
    /// Starts maintenance. Samples stored after the newest rollup of each host (for example
    /// before a crash) are marked for rolling up.
    pub fn new(policy: Policy, conn: &Connection) -> anyhow::Result<Self> {
        let mut dirty = HashMap::new();
        let mut stmt = conn.prepare(&format!(
            "SELECT hosts.id, (SELECT max(bucket_ms) FROM rollup_1m WHERE rollup_1m.host = hosts.id),
                    (SELECT min(ts_ms) FROM samples WHERE samples.host = hosts.id),
                    (SELECT max(ts_ms) FROM samples WHERE samples.host = hosts.id)
             FROM hosts WHERE {}",
            removal::NOT_REMOVED
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut open_hours = HashMap::new();
        let mut hours = conn.prepare(
            "SELECT (SELECT max(bucket_ms) FROM rollup_1h WHERE host = ?1) >= ?2 / 3600000 * 3600000",
        )?;
        for row in rows {
            let (host, rolled, first, last) = row?;
            if let (Some(first), Some(last)) = (first, last) {
                let from = rolled.map_or(first, |b| b.max(first));
                dirty.insert(host, (from.max(0) as u64, last.max(0) as u64));
            }
            // The hour of the newest minute rollup, if its hourly rollup was left for later.
            if let Some(rolled) = rolled {
                let done: Option<bool> = hours.query_row(params![host, rolled], |r| r.get(0))?;
                if done != Some(true) {
                    open_hours.insert(host, rolled.max(0) as u64 / HOUR_MS * HOUR_MS);
                }
            }
        }
        let now = Instant::now();
        Ok(Self {
            policy,
            dirty,
            next_rollup: now,
            next_retention: now,
            next_size_check: now,
            retention_queue: VecDeque::new(),
            over_cap: false,
            vacuum_pending: false,
            created: now,
            next_compaction: now,
            compaction_queue: VecDeque::new(),
            compacted_minutes: 0,
            open_hours,
            removals: removal::pending(conn)?.into(),
            next_removal: now,
        })
    }

    /// Starts deleting the rows of a host just removed (renamed to its tombstone): its rows are
    /// no longer rolled up, pruned or compacted, only deleted.
    pub fn removed(&mut self, host: i64) {
        self.dirty.remove(&host);
        self.open_hours.remove(&host);
        self.retention_queue.retain(|h| *h != host);
        self.compaction_queue.retain(|h| *h != host);
        if !self.removals.contains(&host) {
            self.removals.push_back(host);
        }
    }

    /// The time before which raw samples are pruned (`--retention-raw`).
    pub fn raw_cutoff(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.policy.retention_raw.as_millis() as u64)
    }

    /// Whether a host's rows are being deleted.
    pub fn is_removing(&self, host: i64) -> bool {
        self.removals.contains(&host)
    }

    /// Notes that a sample of `host` taken at `ts_ms` was stored.
    pub fn note(&mut self, host: i64, ts_ms: u64) {
        if self.removals.contains(&host) {
            // Stored in the transaction that removed it: nothing of it is rolled up any more.
            return;
        }
        // Ingest refuses samples far in the future; anything ahead of now is rolled up once its
        // time comes rather than walking empty buckets up to it.
        let ts_ms = ts_ms.min(crate::now_ms() + MINUTE_MS);
        self.widen(host, (ts_ms, ts_ms));
    }

    /// Adds `first..=last` to the range of `host` still to be rolled up.
    fn widen(&mut self, host: i64, (first, last): (u64, u64)) {
        let range = self.dirty.entry(host).or_insert((first, last));
        range.0 = range.0.min(first);
        range.1 = range.1.max(last);
    }

    /// Forgets cached state after a failed transaction and reloads it from the database, keeping
    /// the ranges still to be rolled up: the database only knows each host's newest rollup, not
    /// older minutes that late samples reopened.
    pub fn reset(&mut self, conn: &Connection) {
        match Self::new(self.policy.clone(), conn) {
            Ok(mut fresh) => {
                for (host, range) in self.dirty.drain() {
                    fresh.widen(host, range);
                }
                for (host, hour) in self.open_hours.drain() {
                    let kept = fresh.open_hours.entry(host).or_insert(hour);
                    *kept = (*kept).min(hour);
                }
                *self = fresh;
            }
            Err(err) => log::error!("storage maintenance: cannot reload its state: {err:#}"),
        }
    }

    /// When maintenance next has something to do; a time in the past when work is pending.
    pub fn next_due(&self) -> Instant {
        if self.over_cap
            || self.vacuum_pending
            || !self.retention_queue.is_empty()
            || !self.compaction_queue.is_empty()
            || (!self.removals.is_empty() && self.next_removal <= Instant::now())
        {
            // A fixed past instant, not `Instant::now()`: a caller comparing its own earlier
            // `now` against a fresh `now` would find the work never due.
            return self.created;
        }
        let removal = if self.removals.is_empty() { None } else { Some(self.next_removal) };
        self.next_rollup
            .min(removal.unwrap_or(self.next_rollup))
            .min(self.next_retention)
            .min(self.next_size_check)
            .min(self.next_compaction)
    }

    /// Does what is due, for at most a short budget.
    pub fn run(&mut self, conn: &mut Connection) -> anyhow::Result<()> {
        let started = Instant::now();
        let now = Instant::now();
        if now >= self.next_rollup {
            self.next_rollup = now + ROLLUP_EVERY;
            self.roll_up(conn, started)?;
        }
        if now >= self.next_size_check || self.over_cap || self.vacuum_pending {
            self.next_size_check = now + SIZE_CHECK_EVERY;
            self.enforce_size(conn)?;
        }
        if now >= self.next_retention && self.retention_queue.is_empty() {
            // Short retentions (tests, tiny disks) are enforced more often than once a minute.
            self.next_retention = now + RETENTION_EVERY.min(self.policy.retention_raw / 4);
            let mut stmt =
                conn.prepare(&format!("SELECT id FROM hosts WHERE {}", removal::NOT_REMOVED))?;
            self.retention_queue = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            self.prune_activity(conn)?;
        }
        while started.elapsed() < STEP_BUDGET {
            let Some(host) = self.retention_queue.front().copied() else {
                break;
            };
            if !self.prune_host(conn, host)? {
                self.retention_queue.pop_front();
            }
        }
        if now >= self.next_compaction && self.compaction_queue.is_empty() {
            self.next_compaction = now + COMPACT_EVERY;
            // In the order of their oldest plain row, which is the order the writer stored
            // the hosts' rows in (hosts sampling at neighbouring phases of the second side by
            // side): hosts folded in one step then share table pages, and a step rewrites
            // each page once for all of them rather than once per host (BENCHMARKS.md,
            // "Maintenance per host-minute"). Hosts without plain rows have nothing to fold.
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id, (SELECT min(ts_ms) FROM samples WHERE samples.host = hosts.id) AS oldest
                 FROM hosts WHERE {} AND oldest IS NOT NULL ORDER BY oldest, id",
                removal::NOT_REMOVED
            ))?;
            self.compaction_queue = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        }
        if !self.compaction_queue.is_empty() && started.elapsed() < STEP_BUDGET {
            self.compact(conn, started)?;
        }
        // At least one step a turn, so a removal goes on while the rest keeps maintenance busy.
        while let Some(host) = self.removals.front().copied().filter(|_| now >= self.next_removal) {
            let step = match removal::delete_step(conn, host, DELETE_CHUNK) {
                Ok(step) => step,
                Err(err) => {
                    // Kept apart from the other steps: a removal that keeps failing (a row that
                    // the deletion does not know of) must not hold up rollups and retention, nor
                    // mark the storage failing. The tombstone stays, so it is tried again.
                    log::warn!(
                        "storage: deleting the rows of removed host {host} failed, retrying in {REMOVAL_RETRY:?}: {err:#}"
                    );
                    self.removals.rotate_left(1);
                    self.next_removal = now + REMOVAL_RETRY;
                    break;
                }
            };
            if step.rows > 0 {
                self.vacuum_pending = true;
            }
            if step.gone {
                self.removals.pop_front();
                log::info!("storage: the rows of removed host {host} are deleted");
            }
            if started.elapsed() >= STEP_BUDGET {
                break;
            }
        }
        Ok(())
    }

    /// Folds closed, rolled-up minutes of the hosts in the queue into blocks, one transaction
    /// for the step. A host leaves the queue once nothing of it is left to fold.
    fn compact(&mut self, conn: &mut Connection, started: Instant) -> anyhow::Result<()> {
        let now = crate::now_ms();
        let closed = now.saturating_sub(COMPACT_AFTER.as_millis() as u64) / MINUTE_MS * MINUTE_MS;
        let tx = conn.transaction()?;
        let mut done = Vec::new();
        let mut folded = 0;
        for &host in &self.compaction_queue {
            if started.elapsed() >= STEP_BUDGET {
                break;
            }
            // Never fold a minute whose rollup is still to be computed: the rollup reads blocks
            // too, but retention and a restart's recovery rely on unrolled minutes being rows.
            let limit = match self.dirty.get(&host) {
                Some((first, _)) => closed.min(first / MINUTE_MS * MINUTE_MS),
                None => closed,
            };
            let mut minutes = 0;
            let mut more = false;
            loop {
                let oldest: Option<i64> = tx
                    .prepare_cached("SELECT min(ts_ms) FROM samples WHERE host = ?1")?
                    .query_row([host], |r| r.get(0))?;
                let Some(oldest) = oldest else { break };
                let minute = oldest.max(0) as u64 / MINUTE_MS * MINUTE_MS;
                if minute + MINUTE_MS > limit {
                    break;
                }
                if minutes == COMPACT_MINUTES || started.elapsed() >= STEP_BUDGET {
                    more = true;
                    break;
                }
                compact_minute(&tx, host, minute)?;
                minutes += 1;
            }
            folded += minutes;
            if !more {
                done.push(host);
            }
        }
        tx.commit().context("committing compacted minutes")?;
        self.compacted_minutes += folded as u64;
        self.compaction_queue.retain(|h| !done.contains(h));
        Ok(())
    }

    /// Minutes folded into blocks since maintenance started.
    pub fn compacted_minutes(&self) -> u64 {
        self.compacted_minutes
    }

    /// Recomputes the rollups of the closed minutes that received samples, in one transaction
    /// (one commit) per step. The current minute is rolled up once it is over, so at one sample
    /// per second each host costs one rollup a minute, not one per sample.
    fn roll_up(&mut self, conn: &mut Connection, started: Instant) -> anyhow::Result<()> {
        let now = crate::now_ms();
        let closed = now / MINUTE_MS * MINUTE_MS;
        // Hours before this one are over. History reads the hour going on from raw rows, unless
        // raw rows are kept for less than an hour: then it is rolled up every minute, as before.
        let current_hour = if self.policy.retention_raw < Duration::from_secs(3600 + 180) {
            u64::MAX
        } else {
            closed / HOUR_MS * HOUR_MS
        };
        let raw_cutoff = now.saturating_sub(self.policy.retention_raw.as_millis() as u64);
        // Minutes that ended before this are folded into blocks as they are rolled up.
        let compactable =
            now.saturating_sub(COMPACT_AFTER.as_millis() as u64) / MINUTE_MS * MINUTE_MS;
        // In the order of their oldest sample still to roll up: the writer stored the rows of
        // hosts sampling at neighbouring phases of the second side by side, so hosts taken in
        // that order share table pages, which a step then reads and rewrites once for all of
        // them rather than once per host (BENCHMARKS.md, "Maintenance per host-minute").
        let mut due: Vec<(u64, i64)> = self
            .dirty
            .iter()
            .filter(|(_, (first, _))| *first < closed)
            .map(|(host, (first, _))| (*first, *host))
            .collect();
        // A step reaches a few hosts: only the first are put in order, not all 10,000 at
        // every turn while a minute's rollups go on.
        if due.len() > ORDERED_PER_STEP {
            due.select_nth_unstable(ORDERED_PER_STEP);
        }
        let ordered = due.len().min(ORDERED_PER_STEP);
        due[..ordered].sort_unstable();
        let mut hosts: Vec<i64> = due.into_iter().map(|(_, host)| host).collect();
        hosts.extend(
            self.open_hours
                .iter()
                .filter(|(host, hour)| **hour < current_hour && !self.dirty.contains_key(host))
                .map(|(host, _)| *host),
        );
        if hosts.is_empty() {
            return Ok(());
        }
        let tx = conn.transaction()?;
        // Each host's range left to roll up after this step, applied once the step committed:
        // a failed commit leaves every range as it was.
        let mut left = Vec::with_capacity(hosts.len());
        let mut hours_left = Vec::with_capacity(hosts.len());
        let mut folded = 0;
        for host in hosts {
            if started.elapsed() >= STEP_BUDGET {
                // The rest waits for the next run, which is due at once.
                self.next_rollup = self.created;
                break;
            }
            let pending = self.open_hours.get(&host).map(|h| (*h, h + HOUR_MS));
            let Some(&(first, last)) = self.dirty.get(&host) else {
                // Only an hour that is over now.
                if let Some(hours) = pending {
                    hours_left.push((host, roll_up_hours(&tx, host, hours, current_hour)?));
                }
                continue;
            };
            // Buckets older than the raw retention cannot be recomputed from raw samples any
            // more; their rollups stay as they were.
            let mut from = first / MINUTE_MS * MINUTE_MS;
            if from < raw_cutoff {
                from = raw_cutoff.div_ceil(MINUTE_MS) * MINUTE_MS;
            }
            // Closed minutes only, and at most an hour of them per host and step, so a long
            // replay does not hold the writer.
            let to = (last / MINUTE_MS * MINUTE_MS + MINUTE_MS).min(closed).min(from + HOUR_MS);
            let rest = (last >= to.max(from)).then_some((to.max(from), last));
            if rest.is_some() && to < closed {
                // More closed minutes of this host wait: the next run is due at once.
                self.next_rollup = self.created;
            }
            left.push((host, rest));
            if to <= from {
                if let Some(hours) = pending {
                    hours_left.push((host, roll_up_hours(&tx, host, hours, current_hour)?));
                }
                continue;
            }
            folded += roll_up_minutes(&tx, host, from, to, compactable)?;
            let mut hours = (from / HOUR_MS * HOUR_MS, (to - 1) / HOUR_MS * HOUR_MS + HOUR_MS);
            if let Some((a, b)) = pending {
                hours = (hours.0.min(a), hours.1.max(b));
            }
            hours_left.push((host, roll_up_hours(&tx, host, hours, current_hour)?));
        }
        tx.commit().context("committing rollups")?;
        self.compacted_minutes += folded;
        for (host, rest) in left {
            match rest {
                Some(range) => self.dirty.insert(host, range),
                None => self.dirty.remove(&host),
            };
        }
        for (host, open) in hours_left {
            match open {
                Some(hour) => self.open_hours.insert(host, hour),
                None => self.open_hours.remove(&host),
            };
        }
        Ok(())
    }

    /// Deletes one chunk of a host's expired raw samples and rollups. Returns whether more may
    /// remain.
    fn prune_host(&mut self, conn: &mut Connection, host: i64) -> anyhow::Result<bool> {
        let now = crate::now_ms();
        let mut raw_cutoff = now.saturating_sub(self.policy.retention_raw.as_millis() as u64);
        if let Some((first, _)) = self.dirty.get(&host) {
            // Never delete raw samples whose rollup is still to be computed.
            raw_cutoff = raw_cutoff.min(*first);
        }
        let rollup_cutoff =
            now.saturating_sub(self.policy.retention_rollup.as_millis() as u64) as i64;
        let tx = conn.transaction()?;
        let deleted = tx
            .prepare_cached(
                "DELETE FROM samples WHERE eid IN
                   (SELECT eid FROM samples WHERE host = ?1 AND ts_ms < ?2 LIMIT ?3)",
            )?
            .execute(params![host, raw_cutoff as i64, DELETE_CHUNK])?;
        // Blocks whose whole minute is past the raw retention; a block is a minute of
        // samples, so fewer go per chunk.
        let blocks = tx
            .prepare_cached(
                "DELETE FROM blocks WHERE rowid IN
                   (SELECT rowid FROM blocks WHERE host = ?1 AND minute_ms + 60000 <= ?2 LIMIT ?3)",
            )?
            .execute(params![host, raw_cutoff as i64, DELETE_CHUNK / 60])?;
        for table in ["rollup_1m", "rollup_1h", "device_rollup_1m", "device_rollup_1h"] {
            tx.prepare_cached(&format!("DELETE FROM {table} WHERE host = ?1 AND bucket_ms < ?2"))?
                .execute(params![host, rollup_cutoff])?;
        }
        tx.commit()?;
        if deleted > 0 || blocks > 0 {
            self.vacuum_pending = true;
        }
        Ok(deleted as i64 == DELETE_CHUNK || blocks as i64 == DELETE_CHUNK / 60)
    }

    fn prune_activity(&mut self, conn: &Connection) -> anyhow::Result<()> {
        let cutoff =
            crate::now_ms().saturating_sub(self.policy.retention_rollup.as_millis() as u64);
        let deleted = conn
            .prepare_cached(
                "DELETE FROM activity WHERE eid IN (SELECT eid FROM activity WHERE ts_ms < ?1 LIMIT ?2)",
            )?
            .execute(params![cutoff as i64, DELETE_CHUNK])?;
        if deleted > 0 {
            self.vacuum_pending = true;
        }
        Ok(())
    }

    /// Keeps the database under the size cap: deletes the oldest data a chunk at a time, then
    /// gives freed pages back to the file system.
    fn enforce_size(&mut self, conn: &mut Connection) -> anyhow::Result<()> {
        let (file, used) = file_and_used_bytes(conn)?;
        if let Some(max) = self.policy.max_bytes {
            // Delete down to 90 % of the cap, so the cap is not hit again at once.
            let target = max / 10 * 9;
            if used > max && !self.over_cap {
                log::warn!(
                    "database holds {} MiB, over --max-db-size ({} MiB): deleting the oldest samples",
                    used >> 20,
                    max >> 20
                );
                self.over_cap = true;
            }
            if self.over_cap {
                if used <= target {
                    self.over_cap = false;
                    log::info!("database back under its size cap ({} MiB)", used >> 20);
                } else {
                    let deleted = delete_oldest(conn)?;
                    log::debug!(
                        "size cap: {used} bytes used, target {target}: deleted {deleted} rows"
                    );
                    self.vacuum_pending = true;
                    if deleted == 0 {
                        log::error!("database over its size cap with nothing left to delete");
                        self.over_cap = false;
                    }
                    return Ok(());
                }
            }
            // Under the cap in use, but the file is over it: pages freed by compaction (which
            // never asks for a vacuum, as new rows reuse them) go back to the file system.
            if file > max {
                self.vacuum_pending = true;
            }
        }
        if self.vacuum_pending {
            let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            if free > 0 {
                // The pragma frees one page per step of its statement: step it to the end.
                let mut stmt =
                    conn.prepare_cached(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
            }
            self.vacuum_pending = free > VACUUM_PAGES;
        }
        Ok(())
    }
}

/// Bytes of the database in use (free pages excluded).
pub fn used_bytes(conn: &Connection) -> anyhow::Result<u64> {
    Ok(file_and_used_bytes(conn)?.1)
}

/// Bytes of the database file's pages, and of those in use (free pages excluded).
fn file_and_used_bytes(conn: &Connection) -> anyhow::Result<(u64, u64)> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages * size).max(0) as u64, ((pages - free) * size).max(0) as u64))
}

/// Deletes a chunk of the oldest data: raw samples by storage order, or when none are left, the
/// oldest hour of rollups.
fn delete_oldest(conn: &Connection) -> anyhow::Result<usize> {
    let blocks = conn
        .prepare_cached(
            "DELETE FROM blocks WHERE rowid IN (SELECT rowid FROM blocks ORDER BY last_eid LIMIT ?1)",
        )?
        .execute([DELETE_CHUNK / 30])?;
    if blocks > 0 {
        return Ok(blocks);
    }
    let deleted = conn
        .prepare_cached(
            "DELETE FROM samples WHERE eid IN (SELECT eid FROM samples ORDER BY eid LIMIT ?1)",
        )?
        .execute([DELETE_CHUNK * 2])?;
    if deleted > 0 {
        return Ok(deleted);
    }
    let mut total = 0;
    for table in ["rollup_1m", "rollup_1h", "device_rollup_1m", "device_rollup_1h"] {
        total += conn.execute(
            &format!("DELETE FROM {table} WHERE bucket_ms < (SELECT min(bucket_ms) FROM {table}) + {HOUR_MS}"),
            [],
        )?;
        if total > 0 {
            break;
        }
    }
    Ok(total)
}

/// Folds a host's minute (its block, if any, and its plain rows) into one block and deletes
/// the rows, in the caller's transaction.
pub fn compact_minute(
    tx: &rusqlite::Transaction<'_>,
    host: i64,
    minute: u64,
) -> anyhow::Result<()> {
    let end = minute + MINUTE_MS;
    let mut all = rows::block_rows(tx, host, minute, end)?;
    let hot = rows::hot_rows(tx, host, minute, end)?;
    all.extend(hot);
    if !write_block(tx, host, minute, all)? {
        return Ok(());
    }
    delete_plain_rows(tx, host, minute, end)
}

/// Deletes a host's plain rows with `from <= ts < to`, once they are in their blocks.
fn delete_plain_rows(
    tx: &rusqlite::Transaction<'_>,
    host: i64,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    tx.prepare_cached("DELETE FROM samples WHERE host = ?1 AND ts_ms >= ?2 AND ts_ms < ?3")?
        .execute(params![host, from as i64, to as i64])?;
    Ok(())
}

/// Writes a host's minute as one block from all its rows (those of its old block first, then
/// plain rows), replacing the old block; returns whether there was anything to write. The
/// caller deletes the minute's plain rows.
fn write_block(
    tx: &rusqlite::Transaction<'_>,
    host: i64,
    minute: u64,
    mut all: Vec<block::Row>,
) -> anyhow::Result<bool> {
    all.sort_by_key(|r| (r.ts, r.seq));
    // A sequence number is stored once (the writer skips duplicates); a block rewritten after
    // a crash between two steps cannot hold a row twice either.
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    all.retain(|r| seen.insert(r.seq));
    if all.is_empty() {
        return Ok(false);
    }
    let first_eid = all.iter().map(|r| r.eid).min().unwrap_or(0);
    let last_eid = all.iter().map(|r| r.eid).max().unwrap_or(0);
    let data = block::encode(&all);
    tx.prepare_cached(
        "INSERT OR REPLACE INTO blocks (host, minute_ms, first_eid, last_eid, count, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        host,
        minute as i64,
        first_eid as i64,
        last_eid as i64,
        all.len() as i64,
        data
    ])?;
    Ok(true)
}

/// Recomputes the 1-hour rollups (host totals and devices) of a host's hours in [from, to)
/// that are over (before `current_hour`); returns the hour left for when it is over, if any.
fn roll_up_hours(
    tx: &rusqlite::Transaction<'_>,
    host: i64,
    (from, to): (u64, u64),
    current_hour: u64,
) -> anyhow::Result<Option<u64>> {
    let over = to.min(current_hour);
    if over > from {
        tx.prepare_cached(&rollup_hours_sql())?.execute(params![host, from as i64, over as i64])?;
        roll_up_device_hours(tx, host, from, over)?;
    }
    Ok((to > current_hour).then_some(current_hour.max(from)))
}

/// Recomputes the 1-minute rollups (host totals and devices) of a host's rows in [from, to).
/// Those of its minutes that ended before `compactable` (a replayed backlog, a restart's
/// catching up) are folded into their blocks too, as [`compact_minute`] would two steps later,
/// from the same read of the rows. Returns the minutes folded.
fn roll_up_minutes(
    tx: &rusqlite::Transaction<'_>,
    host: i64,
    from: u64,
    to: u64,
    compactable: u64,
) -> anyhow::Result<u64> {
    let rows = rows::rows(tx, host, from, to)?;
    let mut buckets = std::collections::BTreeMap::new();
    rows::bucket_rows(rows.iter(), MINUTE_MS, &mut buckets);
    let mut insert = tx.prepare_cached(&insert_rollup_sql())?;
    for (bucket, acc) in &buckets {
        let mut values: Vec<rusqlite::types::Value> =
            vec![host.into(), (*bucket as i64).into(), (acc.samples as i64).into()];
        for metric in &acc.host {
            let real = |v: Option<f64>| v.map_or(rusqlite::types::Value::Null, Into::into);
            values.extend([
                real(metric.min),
                real(metric.max),
                metric.sum.total().into(),
                (metric.n as i64).into(),
            ]);
        }
        insert.execute(rusqlite::params_from_iter(values))?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO device_rollup_1m (host, bucket_ms, data) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![host, *bucket as i64, block::encode_rollup(&acc.devices)])?;
    }
    let fold_to = to.min(compactable);
    if fold_to <= from {
        return Ok(0);
    }
    let mut folded = 0;
    let mut rows = rows.into_iter().take_while(|r| r.ts < fold_to).peekable();
    while let Some(first) = rows.next() {
        let minute = first.ts / MINUTE_MS * MINUTE_MS;
        let mut all = vec![first];
        while let Some(next) = rows.next_if(|r| r.ts / MINUTE_MS * MINUTE_MS == minute) {
            all.push(next);
        }
        folded += u64::from(write_block(tx, host, minute, all)?);
    }
    delete_plain_rows(tx, host, from, fold_to)?;
    Ok(folded)
}

/// Recomputes the 1-hour device rollups of a host in [from, to) from its 1-minute ones.
fn roll_up_device_hours(
    tx: &rusqlite::Transaction<'_>,
    host: i64,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let mut hours: std::collections::BTreeMap<u64, DeviceRollup> = Default::default();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT bucket_ms, data FROM device_rollup_1m WHERE host = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3",
        )?;
        let mut rows = stmt.query(params![host, from as i64, to as i64])?;
        while let Some(r) = rows.next()? {
            let bucket = r.get::<_, i64>(0)?.max(0) as u64;
            let minute = block::decode_rollup(&r.get::<_, Vec<u8>>(1)?)?;
            let hour = hours.entry(bucket / HOUR_MS * HOUR_MS).or_default();
            for (key, aggregate) in &minute {
                hour.entry(*key).and_modify(|a| a.merge(aggregate)).or_insert(*aggregate);
            }
        }
    }
    for (hour, rollup) in hours {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO device_rollup_1h (host, bucket_ms, data) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![host, hour as i64, block::encode_rollup(&rollup)])?;
    }
    Ok(())
}

/// `INSERT OR REPLACE` of one 1-minute rollup row: host, bucket, samples, then min, max, sum
/// and count of every metric.
fn insert_rollup_sql() -> String {
    let mut columns = String::from("host, bucket_ms, samples");
    let mut values = String::from("?, ?, ?");
    for c in METRICS.iter().map(|m| m.column) {
        columns.push_str(&format!(", {c}_min, {c}_max, {c}_sum, {c}_n"));
        values.push_str(", ?, ?, ?, ?");
    }
    format!("INSERT OR REPLACE INTO rollup_1m ({columns}) VALUES ({values})")
}

/// `INSERT OR REPLACE` of 1-hour rollups of host ?1 from its 1-minute rollups in [?2, ?3).
fn rollup_hours_sql() -> String {
    rollup_sql("rollup_1h", "rollup_1m", "bucket_ms", HOUR_MS, "sum(samples)", |c| {
        format!("min({c}_min), max({c}_max), total({c}_sum), sum({c}_n)")
    })
}

/// Rolls rows of `source` with `time` in [?2, ?3) of host ?1 up into `unit`-wide buckets of
/// `target`; `aggregate` gives a metric column's min, max, sum and count expressions.
fn rollup_sql(
    target: &str,
    source: &str,
    time: &str,
    unit: u64,
    count: &str,
    aggregate: impl Fn(&str) -> String,
) -> String {
    let mut columns = String::from("host, bucket_ms, samples");
    let mut values = format!("host, ({time} / {unit}) * {unit} AS bucket, {count}");
    for c in METRICS.iter().map(|m| m.column) {
        columns.push_str(&format!(", {c}_min, {c}_max, {c}_sum, {c}_n"));
        values.push_str(&format!(", {}", aggregate(c)));
    }
    format!(
        "INSERT OR REPLACE INTO {target} ({columns}) SELECT {values} FROM {source} \
         WHERE host = ?1 AND {time} >= ?2 AND {time} < ?3 GROUP BY bucket"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(name: &str) -> (std::path::PathBuf, Connection) {
        let dir = std::env::temp_dir().join(format!("hw-maint-{}-{name}", std::process::id()));
        // Leftovers of an earlier run would change the sizes.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        crate::storage::schema::migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO hosts (id, host_id, hostname, first_seen_ms) VALUES (1, 'h', 'h', 0)",
            [],
        )
        .unwrap();
        (dir, conn)
    }

    fn fill(conn: &mut Connection, rows: i64, ts: impl Fn(i64) -> i64) {
        let tx = conn.transaction().unwrap();
        for i in 0..rows {
            tx.execute(
                "INSERT INTO samples (host, seq, ts_ms, cpu_percent, mem_used) VALUES (1, ?1, ?2, 12.5, ?3)",
                params![i, ts(i), i * 1000],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    fn page_bytes(conn: &Connection) -> u64 {
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        pages as u64 * 4096
    }

    #[test]
    fn the_size_cap_deletes_the_oldest_and_gives_the_space_back() {
        let (dir, mut conn) = database("cap");
        let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(auto_vacuum, 2, "incremental auto-vacuum");
        let now = crate::now_ms() as i64;
        fill(&mut conn, 60_000, |i| now - 60_000 + i);
        let before = page_bytes(&conn);
        let cap = before / 2;
        let policy = Policy { max_bytes: Some(cap), ..Policy::default() };
        let mut maintenance = Maintenance::new(policy, &conn).unwrap();
        for _ in 0..500 {
            maintenance.run(&mut conn).unwrap();
            if !maintenance.over_cap && !maintenance.vacuum_pending {
                break;
            }
        }
        let after = page_bytes(&conn);
        assert!(after < cap, "{after} bytes left of {before}, cap {cap}");
        // The oldest went, the newest stayed.
        let (first, last): (i64, i64) = conn
            .query_row("SELECT min(seq), max(seq) FROM samples", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert!(first > 0 && last == 59_999, "kept {first}..={last}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_removed_host_is_deleted_in_steps_that_resume_after_a_restart() {
        let (dir, mut conn) = database("removal");
        let now = crate::now_ms() as i64;
        // Ten minutes of rows, not rolled up yet: a removal must not roll them up again.
        fill(&mut conn, 12_000, |i| now - 600_000 + i * 50);
        let mut maintenance = Maintenance::new(Policy::default(), &conn).unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(removal::mark(&tx, "h").unwrap(), Some(1));
        tx.commit().unwrap();
        maintenance.removed(1);
        maintenance.note(1, now as u64);
        assert!(maintenance.dirty.is_empty(), "nothing of a removed host is rolled up");
        let left = |conn: &Connection| -> i64 {
            conn.query_row(
                "SELECT (SELECT count(*) FROM samples) + (SELECT count(*) FROM rollup_1m)
                      + (SELECT count(*) FROM hosts)",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        // A step is small: a chunk of rows, each its own transaction.
        let step = removal::delete_step(&mut conn, 1, DELETE_CHUNK).unwrap();
        assert_eq!((step.rows as i64, step.gone), (DELETE_CHUNK, false));
        assert_eq!(left(&conn), 12_001 - DELETE_CHUNK);
        // A restart finds the tombstone and goes on.
        let mut maintenance = Maintenance::new(Policy::default(), &conn).unwrap();
        assert!(maintenance.is_removing(1) && maintenance.dirty.is_empty());
        for _ in 0..100 {
            if !maintenance.is_removing(1) {
                break;
            }
            maintenance.run(&mut conn).unwrap();
        }
        assert_eq!(left(&conn), 0);
        assert!(!maintenance.is_removing(1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Runs maintenance until nothing is due at once. One turn does at most `STEP_BUDGET` of
    /// work, which a loaded machine may spend before a test's little work is through, so a test
    /// that means "once maintenance has caught up" says so instead of counting turns.
    fn settle(maintenance: &mut Maintenance, conn: &mut Connection) {
        for _ in 0..1000 {
            maintenance.run(conn).unwrap();
            if maintenance.next_due() > Instant::now() {
                return;
            }
        }
        panic!("maintenance still due after 1,000 turns");
    }

    #[test]
    fn a_removal_that_keeps_failing_waits_and_holds_nothing_else_up() {
        let (dir, mut conn) = database("removal-fails");
        // A row the deletion does not know of keeps the hosts row from going.
        conn.execute_batch(
            "CREATE TABLE extra (host INTEGER NOT NULL REFERENCES hosts(id));
             INSERT INTO extra VALUES (1);",
        )
        .unwrap();
        let now = crate::now_ms() as i64;
        conn.execute(
            "INSERT INTO hosts (id, host_id, hostname, first_seen_ms) VALUES (2, 'k', 'k', 0)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO samples (host, seq, ts_ms, cpu_percent) VALUES (2, 1, ?1, 5.0)",
            [now - 180_000],
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        removal::mark(&tx, "h").unwrap();
        tx.commit().unwrap();
        let mut maintenance = Maintenance::new(Policy::default(), &conn).unwrap();
        maintenance.run(&mut conn).expect("a failed removal is no failed maintenance");
        // The other host's work may take more turns; the failed removal must not keep
        // maintenance due at once ("not at once": `settle` panics if it stays due).
        settle(&mut maintenance, &mut conn);
        assert!(maintenance.is_removing(1), "tried again later");
        assert!(maintenance.next_due() > Instant::now(), "not at once");
        let rolled: i64 = conn
            .query_row("SELECT count(*) FROM rollup_1m WHERE host = 2", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rolled, 1, "the other host is rolled up all the same");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_late_sample_reopens_an_older_minute_even_across_a_reset() {
        let (dir, mut conn) = database("late");
        let minute = (crate::now_ms() as i64 / 60_000 - 10) * 60_000;
        // Half of a minute, and half of a newer one: the newest rollup is five minutes later.
        fill(&mut conn, 60, |i| minute + (i % 30) * 1000 + (i / 30) * 300_000);
        let mut maintenance = Maintenance::new(Policy::default(), &conn).unwrap();
        let rolled = |conn: &Connection| -> i64 {
            conn.query_row("SELECT samples FROM rollup_1m WHERE bucket_ms = ?1", [minute], |r| {
                r.get(0)
            })
            .unwrap()
        };
        maintenance.run(&mut conn).unwrap();
        assert_eq!(rolled(&conn), 30);
        // A spool replay brings the rest of that minute after its rollup was written.
        conn.execute(
            "INSERT INTO samples (host, seq, ts_ms, cpu_percent) VALUES (1, 100, ?1, 50.0)",
            [minute + 45_000],
        )
        .unwrap();
        maintenance.note(1, (minute + 45_000) as u64);
        // A failed step resets maintenance from the database, which only knows each host's
        // newest rollup; the reopened older minute must survive that.
        maintenance.reset(&conn);
        maintenance.run(&mut conn).unwrap();
        assert_eq!(rolled(&conn), 31, "recomputed from the raw samples, nothing counted twice");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_sample_is_found_stored_as_a_plain_row_and_once_folded_into_its_block() {
        let (dir, mut conn) = database("found");
        let minute = (crate::now_ms() / 60_000 - 10) * 60_000;
        fill(&mut conn, 30, |i| minute as i64 + i * 1000);
        let found = |conn: &mut Connection, seq: u64, ts: u64| {
            let tx = conn.transaction().unwrap();
            super::super::already_stored(&tx, 1, seq, ts, &mut None).unwrap()
        };
        assert!(found(&mut conn, 29, minute + 29_000), "a plain row");
        assert!(!found(&mut conn, 29, minute + 28_000), "the same seq at another time");
        let mut maintenance = Maintenance::new(Policy::default(), &conn).unwrap();
        settle(&mut maintenance, &mut conn);
        let plain: i64 = conn.query_row("SELECT count(*) FROM samples", [], |r| r.get(0)).unwrap();
        assert_eq!(plain, 0, "folded into its block");
        for seq in [0, 17, 29] {
            assert!(found(&mut conn, seq, minute + seq * 1000), "seq {seq} in the block");
        }
        assert!(!found(&mut conn, 30, minute + 30_000), "not stored");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_late_row_of_a_compacted_minute_is_merged_into_its_block_once() {
        let (dir, mut conn) = database("merge");
        let minute = (crate::now_ms() as i64 / 60_000 - 10) * 60_000;
        fill(&mut conn, 30, |i| minute + i * 1000);
        let mut maintenance = Maintenance::new(Policy::default(), &conn).unwrap();
        let state = |conn: &Connection| -> (i64, i64) {
            let plain = conn.query_row("SELECT count(*) FROM samples", [], |r| r.get(0)).unwrap();
            let count = conn
                .query_row("SELECT coalesce(sum(count), 0) FROM blocks", [], |r| r.get(0))
                .unwrap();
            (plain, count)
        };
        settle(&mut maintenance, &mut conn);
        assert_eq!(state(&conn), (0, 30), "rolled up, then folded into one block");
        conn.execute(
            "INSERT INTO samples (host, seq, ts_ms, cpu_percent) VALUES (1, 100, ?1, 50.0)",
            [minute + 45_000],
        )
        .unwrap();
        maintenance.note(1, (minute + 45_000) as u64);
        // Not folded while its minute waits for its rollup again.
        maintenance.next_compaction = maintenance.created;
        settle(&mut maintenance, &mut conn);
        assert_eq!(state(&conn), (1, 30));
        // Once rolled up, the row is folded into the minute's block.
        for _ in 0..2 {
            maintenance.next_rollup = maintenance.created;
            maintenance.next_compaction = maintenance.created;
            settle(&mut maintenance, &mut conn);
        }
        assert_eq!(state(&conn), (0, 31));
        let rows = super::rows::rows(&conn, 1, minute as u64, minute as u64 + 60_000).unwrap();
        let mut seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), 31);
        let samples: i64 = conn
            .query_row("SELECT samples FROM rollup_1m WHERE bucket_ms = ?1", [minute], |r| r.get(0))
            .unwrap();
        assert_eq!(samples, 31);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_minute_is_folded_into_its_block_by_the_step_that_rolls_it_up() {
        let (dir, mut conn) = database("fold");
        let minute = (crate::now_ms() as i64 / 60_000 - 10) * 60_000;
        // Two hosts whose rows lie side by side, as the writer stores them.
        conn.execute(
            "INSERT INTO hosts (id, host_id, hostname, first_seen_ms) VALUES (2, 'k', 'k', 0)",
            [],
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..120 {
            tx.execute(
                "INSERT INTO samples (host, seq, ts_ms, cpu_percent) VALUES (?1, ?2, ?3, 10.0)",
                params![1 + i % 2, i / 2, minute + (i / 2) * 1000],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let mut maintenance = Maintenance::new(Policy::default(), &conn).unwrap();
        // Only the rollups are due: the compaction pass waits.
        maintenance.next_compaction = Instant::now() + Duration::from_secs(3600);
        settle(&mut maintenance, &mut conn);
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM samples"), 0, "no plain rows left");
        assert_eq!(count("SELECT count(*) FROM blocks"), 2, "a block per host");
        assert_eq!(count("SELECT sum(count) FROM blocks"), 120);
        assert_eq!(count("SELECT sum(samples) FROM rollup_1m"), 120);
        assert_eq!(maintenance.compacted_minutes(), 2);
        let rows = super::rows::rows(&conn, 2, minute as u64, minute as u64 + 60_000).unwrap();
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), (0..60).collect::<Vec<_>>());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_hour_is_rolled_up_once_it_is_over() {
        use rusqlite::OptionalExtension;
        let (dir, mut conn) = database("hours");
        // As maintenance sees the clock: the last closed minute, and the hour going on.
        let closed = crate::now_ms() as i64 / 60_000 * 60_000;
        let current_hour = closed / 3_600_000 * 3_600_000;
        let previous_hour = current_hour - 3_600_000;
        let last_minute = closed - 60_000;
        // Two minutes of the hour before, and one sample in the last closed minute.
        fill(&mut conn, 120, |i| previous_hour + i * 1000);
        conn.execute(
            "INSERT INTO samples (host, seq, ts_ms, cpu_percent) VALUES (1, 1000, ?1, 5.0)",
            [last_minute],
        )
        .unwrap();
        let mut maintenance = Maintenance::new(Policy::default(), &conn).unwrap();
        for _ in 0..3 {
            maintenance.next_rollup = maintenance.created;
            maintenance.run(&mut conn).unwrap();
        }
        let hour = |bucket: i64| -> Option<i64> {
            conn.query_row("SELECT samples FROM rollup_1h WHERE bucket_ms = ?1", [bucket], |r| {
                r.get(0)
            })
            .optional()
            .unwrap()
        };
        if last_minute < current_hour {
            // The hour has just begun: the last closed minute belongs to the hour that is over.
            assert_eq!(hour(previous_hour), Some(121));
        } else {
            assert_eq!(hour(previous_hour), Some(120), "an hour that is over");
            assert_eq!(hour(current_hour), None, "the hour going on waits until it is over");
            assert_eq!(maintenance.open_hours.get(&1), Some(&(current_hour as u64)));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn retention_prunes_raw_samples_after_rolling_them_up() {
        let (dir, mut conn) = database("retention");
        let now = crate::now_ms() as i64;
        // Two hours of samples at 1 s; raw retention of one hour.
        fill(&mut conn, 7_200, |i| now - 7_200_000 + i * 1000);
        let policy = Policy { retention_raw: Duration::from_secs(3600), ..Policy::default() };
        let mut maintenance = Maintenance::new(policy, &conn).unwrap();
        for _ in 0..200 {
            maintenance.run(&mut conn).unwrap();
        }
        let oldest: i64 =
            conn.query_row("SELECT min(ts_ms) FROM samples", [], |r| r.get(0)).unwrap();
        assert!(oldest >= now - 3_600_000 - 1000, "raw samples older than the retention remain");
        // The rollups reach back further than the raw samples and count every sample they saw.
        let (buckets, counted): (i64, i64) = conn
            .query_row("SELECT count(*), sum(samples) FROM rollup_1m", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        // An hour of closed minutes (the current one is rolled up once it is over).
        assert!(buckets >= 58, "{buckets} minute buckets");
        // Everything inside the raw retention was rolled up (older samples cannot be any more).
        assert!(counted >= 3_400, "{counted} samples rolled up");
        let hours: i64 =
            conn.query_row("SELECT count(*) FROM rollup_1h", [], |r| r.get(0)).unwrap();
        assert!(hours >= 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
