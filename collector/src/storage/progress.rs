//! Where each host's stream stands (its last stored sequence number, the time of its newest
//! sample, its agent's dropped count and that sample itself), kept in the `hosts` row without
//! rewriting the row for every batch.
//!
//! The writer keeps this progress in memory ([`super::HostState`]). Updating the host's row in
//! every transaction cost a 4 KiB page written to the WAL (and again by the checkpoint) for each
//! host in it: at 10,000 agents, one page per sample, as much as the samples, their index and
//! everything else together. Instead each batch appends a small row to `progress` (a table
//! written only at its end, so one page takes the rows of many hosts), in the same transaction
//! as its samples, so an acknowledged sample's progress is always durable; the `hosts` rows
//! are brought up to date a slice at a time, each host at most once a [`SAVE_EVERY`], and the
//! rows of `progress` they cover are deleted when a round of them is done. After a restart or a
//! failed transaction (when the writer's memory no longer matches the database), the newest
//! `progress` row of each host is copied into its `hosts` row before anything else is stored.
//! That row has no sample: after a crash, the host's first sample's rates are computed against
//! the last sample its row was brought up to date with (up to a round, a second or so, older),
//! so they are averages over that longer interval.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, Transaction, params};

use super::HostState;

/// How often a host's row is brought up to date, at most, while its agent sends.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Host rows brought up to date by one transaction, at most: a round for 10,000 hosts is spread
/// over some forty transactions, each a millisecond or two longer.
const SAVE_PER_TRANSACTION: usize = 256;

/// The writer's record of which host rows are behind its memory.
pub struct Progress {
    /// Hosts whose progress moved since their row was last brought up to date, and not yet in
    /// a round.
    unsaved: HashSet<i64>,
    /// The current round: hosts still to bring up to date, the last one first.
    round: Vec<i64>,
    /// The newest `progress` row when the current round started: every row up to it is
    /// covered once the round is done.
    round_covers: i64,
    next_round: Instant,
    /// The database's `hosts` rows may be behind its `progress` rows and the writer's memory
    /// knows nothing of it (after a start or a failed transaction): replay before storing.
    replay: bool,
}

impl Progress {
    /// Starts with a replay of what a previous run left in `progress`; if that fails (a full
    /// disk), the first transaction replays instead.
    pub fn new(conn: &mut Connection) -> Self {
        let mut progress = Self {
            unsaved: HashSet::new(),
            round: Vec::new(),
            round_covers: 0,
            next_round: Instant::now(),
            replay: true,
        };
        let replayed = conn.transaction().map_err(anyhow::Error::from).and_then(|tx| {
            replay(&tx)?;
            tx.commit().context("committing")
        });
        match replayed {
            Ok(()) => progress.replay = false,
            Err(err) => log::warn!("storage: bringing host rows up to date: {err:#}"),
        }
        progress
    }

    /// At the start of each transaction: replays first if the rows may be behind.
    pub fn begin(&self, tx: &Transaction<'_>) -> anyhow::Result<()> {
        if self.replay { replay(tx) } else { Ok(()) }
    }

    /// At the end of each transaction, before its commit: notes the hosts whose progress it
    /// logged and brings the next slice of host rows up to date from `hosts`.
    pub fn save(
        &mut self,
        tx: &Transaction<'_>,
        progressed: &[i64],
        hosts: &HashMap<i64, HostState>,
    ) -> anyhow::Result<()> {
        self.unsaved.extend(progressed);
        if self.round.is_empty() {
            let now = Instant::now();
            if self.unsaved.is_empty() || now < self.next_round {
                return Ok(());
            }
            self.round.extend(self.unsaved.drain());
            // In key order, which is the rows' order: neighbours share their pages.
            self.round.sort_unstable_by(|a, b| b.cmp(a));
            self.round_covers =
                tx.query_row("SELECT coalesce(max(id), 0) FROM progress", [], |r| r.get(0))?;
            self.next_round = now + SAVE_EVERY;
        }
        let mut update = tx.prepare_cached(
            "UPDATE hosts SET last_seq = ?1, last_seen_ms = ?2, dropped_total = ?3, last_sample = ?4
             WHERE id = ?5",
        )?;
        for _ in 0..SAVE_PER_TRANSACTION {
            let Some(key) = self.round.pop() else { break };
            // A host removed since has no row to bring up to date.
            let Some(host) = hosts.get(&key) else { continue };
            let sample = match &host.previous {
                Some(sample) => Some(
                    postcard::to_allocvec(sample.as_ref()).context("encoding the last sample")?,
                ),
                None => None,
            };
            update.execute(params![
                host.last_seq.map(|s| s as i64),
                host.last_seen_ms.map(|t| t as i64),
                host.dropped_total as i64,
                sample,
                key
            ])?;
        }
        if self.round.is_empty() {
            tx.prepare_cached("DELETE FROM progress WHERE id <= ?1")?
                .execute([self.round_covers])?;
        }
        Ok(())
    }

    /// After a commit: a replay it ran is done.
    pub fn committed(&mut self) {
        self.replay = false;
    }

    /// After a failed transaction: what the writer remembers may be rolled back, so the
    /// database's own record is replayed by the next transaction.
    pub fn failed(&mut self) {
        self.unsaved.clear();
        self.round.clear();
        self.replay = true;
    }

    /// A removed host has nothing more to save.
    pub fn removed(&mut self, key: i64) {
        self.unsaved.remove(&key);
        self.round.retain(|&k| k != key);
    }
}

/// Logs the progress of `host` (key `key`) in the current transaction.
pub fn log(tx: &Transaction<'_>, key: i64, host: &HostState) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO progress (host, seq, seen_ms, dropped_total) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        key,
        host.last_seq.map(|s| s as i64),
        host.last_seen_ms.map(|t| t as i64),
        host.dropped_total as i64
    ])?;
    Ok(())
}

/// Forgets the logged progress of a host whose numbering starts afresh (another agent
/// instance), so that no replay brings the previous numbering back.
pub fn forget(tx: &Transaction<'_>, key: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM progress WHERE host = ?1")?.execute([key])?;
    Ok(())
}

/// Copies each host's newest `progress` row into its `hosts` row and empties `progress`.
fn replay(tx: &Transaction<'_>) -> anyhow::Result<()> {
    let hosts = tx
        .execute(
            "UPDATE hosts SET last_seq = p.seq, last_seen_ms = p.seen_ms,
                              dropped_total = p.dropped_total
             FROM (SELECT host, seq, seen_ms, dropped_total FROM progress
                   WHERE id IN (SELECT max(id) FROM progress GROUP BY host)) AS p
             WHERE hosts.id = p.host",
            [],
        )
        .context("bringing host rows up to date")?;
    let rows = tx.execute("DELETE FROM progress", []).context("emptying the progress log")?;
    if rows > 0 {
        log::info!("storage: {hosts} host rows brought up to date from {rows} progress rows");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use protocol::{Batch, Hello, Sample};
    use rusqlite::{Connection, OpenFlags};

    use super::super::{HostLimits, Storage, maintenance::Policy};

    /// A directory removed at the end of the test.
    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("hw-progress-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// Runs `f` on a storage opened on `db`, then stops it as a crash would (nothing saved).
    fn with_storage<T>(db: &Path, f: impl FnOnce(&Storage) -> T) -> T {
        let (storage, writer) =
            Storage::open(db, Policy::default(), HostLimits::default(), |_| {}).unwrap();
        let result = f(&storage);
        storage.stop();
        writer.join().unwrap();
        result
    }

    fn samples(seqs: std::ops::RangeInclusive<u64>) -> Batch {
        let now = crate::now_ms();
        let samples =
            seqs.map(|seq| Sample { seq, ts_ms: now - 10_000 + seq, ..Sample::default() });
        Batch { dropped_total: 2, samples: samples.collect() }
    }

    /// The host row's `last_seq`, and the rows of `progress`.
    fn stored(db: &Path) -> (Option<i64>, i64) {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let seq = conn.query_row("SELECT last_seq FROM hosts", [], |r| r.get(0)).unwrap();
        let rows = conn.query_row("SELECT count(*) FROM progress", [], |r| r.get(0)).unwrap();
        (seq, rows)
    }

    #[test]
    fn a_restart_resumes_from_the_logged_progress_and_a_new_instance_forgets_it() {
        let dir = dir("resume");
        let db = dir.0.join("t.db");
        let hello = Hello { host_id: "web-1".into(), instance_id: 7, ..Hello::default() };
        let quick = with_storage(&db, |storage| {
            let host = storage.register_blocking(hello.clone()).unwrap();
            assert_eq!(host.last_seq, None);
            // The first batch starts a round, which brings the row up to date at once; the
            // second comes before the next round.
            let started = Instant::now();
            storage.store_blocking(host.host_key, samples(1..=3)).unwrap();
            let acked = storage.store_blocking(host.host_key, samples(4..=6)).unwrap();
            assert_eq!(acked.acked_seq, Some(6));
            started.elapsed() < super::SAVE_EVERY / 2
        });
        if quick {
            assert_eq!(stored(&db), (Some(3), 1), "the row waits for its round, the log has it");
        }
        let again = with_storage(&db, |storage| {
            let host = storage.register_blocking(hello.clone()).unwrap();
            assert_eq!(host.last_seq, Some(6), "replayed from the log at the start");
            // Another agent state numbers afresh: its first batch is below the old numbering.
            let other = Hello { instance_id: 8, ..hello.clone() };
            let host = storage.register_blocking(other.clone()).unwrap();
            assert_eq!(host.last_seq, None);
            storage.store_blocking(host.host_key, samples(1..=2)).unwrap();
            storage.register_blocking(other).unwrap().last_seq
        });
        assert_eq!(again, Some(2), "a registration reads the writer's memory, not the row");
        let resumed = with_storage(&db, |storage| {
            let other = Hello { instance_id: 8, ..hello.clone() };
            storage.register_blocking(other).unwrap().last_seq
        });
        assert_eq!(resumed, Some(2), "the old instance's progress was forgotten, not replayed");
        assert_eq!(stored(&db), (Some(2), 0));
    }
}
