//! The spool: every sample not yet acknowledged by the collector, bounded, kept in memory and
//! appended to disk so that it survives an agent restart (even `kill -9`).
//!
//! On disk, `DIR/spool.log` is a sequence of records `[len: u32 LE][crc32: u32 LE][postcard
//! Sample]`, appended once per sample with a single `write` (no fsync: a process crash cannot lose
//! written data, only a power cut can lose the page cache). `DIR/state` holds the next sequence
//! number and the dropped count, replaced atomically. A torn record at the end of the log (a crash
//! mid-write) is cut off on load. The state also records the oldest live sequence number, so
//! records that were dropped before a restart are not restored (nor counted twice).
//!
//! Bound: at most `max` samples. When full, the oldest sample is dropped and counted in
//! [`Spool::dropped_total`], which reaches the collector with every batch. Records that were
//! acknowledged or dropped stay in the log until it is compacted, so the log never holds more
//! than about twice `max` records.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use protocol::{Limits, Sample};

const LOG_FILE: &str = "spool.log";
const STATE_FILE: &str = "state";
const RECORD_HEADER_BYTES: usize = 8;

/// The layout of the samples in the log: [`Sample`] of protocol version 2. A state file without
/// a `sample_format` line was written by the first release, whose log holds version-1 samples;
/// they are converted on open.
const SAMPLE_FORMAT: u64 = 2;

/// One spooled sample, kept encoded: about 150 bytes instead of a few hundred decoded.
struct Entry {
    seq: u64,
    bytes: Box<[u8]>,
}

/// The bounded spool of unacknowledged samples.
pub struct Spool {
    entries: VecDeque<Entry>,
    max: usize,
    next_seq: u64,
    dropped_total: u64,
    instance_id: u64,
    dir: PathBuf,
    log: File,
    dead_records: usize,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, keeping at most `max` samples. Without any
    /// saved state, sequence numbers start at `now_ms`, so that an agent reinstalled without its
    /// state still numbers above everything it sent before.
    pub fn open(dir: &Path, max: usize, now_ms: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create spool directory {}", dir.display()))?;
        let state = read_state(&dir.join(STATE_FILE))?;
        let log_path = dir.join(LOG_FILE);
        let format = state.map_or(SAMPLE_FORMAT, |s| s.sample_format);
        let (mut entries, good_len, file_len) = read_log(&log_path, format)?;
        // Records below the saved low-water mark were dropped (and counted) or acknowledged
        // before the restart; the log keeps them only until its next compaction.
        let first_live = state.map_or(0, |s| s.first_live_seq);
        while entries.front().is_some_and(|e| e.seq < first_live) {
            entries.pop_front();
        }
        if good_len < file_len {
            log::warn!(
                "spool: cut {} bytes of a torn record from the end of {}",
                file_len - good_len,
                log_path.display()
            );
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        log.set_len(good_len).with_context(|| format!("cannot truncate {}", log_path.display()))?;

        let last_logged = entries.back().map(|e: &Entry| e.seq + 1).unwrap_or(0);
        let instance_id = match state.and_then(|s| s.instance_id) {
            Some(id) => id,
            None => new_instance_id()?,
        };
        let mut spool = Spool {
            max: max.max(1),
            next_seq: state.map_or(now_ms, |s| s.next_seq).max(last_logged),
            dropped_total: state.map_or(0, |s| s.dropped_total),
            instance_id,
            dead_records: 0,
            entries,
            dir: dir.to_owned(),
            log,
        };
        while spool.entries.len() > spool.max {
            spool.entries.pop_front();
            spool.dropped_total += 1;
            spool.dead_records += 1;
        }
        if format != SAMPLE_FORMAT && !spool.entries.is_empty() {
            // The entries were converted on reading: the log is rewritten in the current format
            // before the state says so, so a crash in between reads the old log the old way.
            spool.rewrite_log()?;
            log::info!("spool: converted {} samples to the current format", spool.entries.len());
        }
        // Record the sequence base now, so a crash before the first compaction keeps it.
        spool.write_state()?;
        if !spool.entries.is_empty() {
            log::info!(
                "spool: {} unacknowledged samples restored from {}",
                spool.entries.len(),
                dir.display()
            );
        }
        Ok(spool)
    }

    /// Hands out the next sequence number.
    pub fn allocate_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Appends a sample (whose `seq` came from [`Spool::allocate_seq`]) to memory and disk. When
    /// the spool is full the oldest sample is dropped and counted.
    pub fn push(&mut self, sample: &Sample) -> anyhow::Result<()> {
        let bytes = postcard::to_allocvec(sample).context("encoding a sample for the spool")?;
        let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + bytes.len());
        record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        record.extend_from_slice(&bytes);
        self.log.write_all(&record).context("appending to the spool log")?;
        self.entries.push_back(Entry { seq: sample.seq, bytes: bytes.into_boxed_slice() });
        if self.entries.len() > self.max {
            self.entries.pop_front();
            self.dropped_total += 1;
            self.dead_records += 1;
            // The count must survive a crash: it is how the operator learns of the gap.
            self.write_state_with(false)?;
        }
        self.maybe_compact()
    }

    /// Counts a sample dropped before it reached the spool (it was invalid).
    pub fn count_dropped(&mut self) -> anyhow::Result<()> {
        self.dropped_total += 1;
        self.write_state()
    }

    /// Forgets every sample with a sequence number up to and including `seq`: the collector has
    /// stored them.
    pub fn ack(&mut self, seq: u64) -> anyhow::Result<()> {
        while self.entries.front().is_some_and(|e| e.seq <= seq) {
            self.entries.pop_front();
            self.dead_records += 1;
        }
        self.maybe_compact()
    }

    /// Applies the collector's resume point from its welcome: everything up to `last_stored` is
    /// stored, and new samples must number above it.
    pub fn resume_from(&mut self, last_stored: Option<u64>) -> anyhow::Result<()> {
        if let Some(last) = last_stored {
            self.next_seq = self.next_seq.max(last + 1);
            self.ack(last)?;
        }
        Ok(())
    }

    /// The oldest spooled samples with a sequence number above `after`: at most `max_samples`,
    /// and no more than about `max_bytes` encoded.
    pub fn batch_after(&self, after: u64, max_samples: usize, max_bytes: usize) -> Vec<Sample> {
        let start = self.entries.partition_point(|e| e.seq <= after);
        let mut bytes = 0;
        let mut batch = Vec::new();
        for entry in self.entries.range(start..) {
            if batch.len() == max_samples
                || (bytes + entry.bytes.len() > max_bytes && !batch.is_empty())
            {
                break;
            }
            bytes += entry.bytes.len();
            match postcard::from_bytes::<Sample>(&entry.bytes) {
                Ok(sample) => batch.push(sample),
                // The bytes were encoded by this process or checked on load; a failure here
                // would be a bug, and skipping the sample is better than wedging the agent.
                Err(err) => log::error!("spool: cannot decode sample {}: {err}", entry.seq),
            }
        }
        batch
    }

    /// Number of spooled samples.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is waiting for an acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The random identity of this spool's state, sent in the hello: it changes only when the
    /// state is lost (a reinstalled agent), which tells the collector that the sequence numbers
    /// start afresh.
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// Samples dropped because the spool overflowed, since the spool was first created.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Writes the state and compacts the log, for a clean shutdown.
    pub fn persist(&mut self) -> anyhow::Result<()> {
        self.compact()
    }

    fn maybe_compact(&mut self) -> anyhow::Result<()> {
        if self.dead_records > self.entries.len().max(64) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the log with only the live samples: state first (so the sequence base is never
    /// lost), then the new log beside the old one, then an atomic rename.
    fn compact(&mut self) -> anyhow::Result<()> {
        self.write_state()?;
        self.rewrite_log()
    }

    /// Replaces the log with the live samples.
    fn rewrite_log(&mut self) -> anyhow::Result<()> {
        let path = self.dir.join(LOG_FILE);
        if self.entries.is_empty() {
            self.log.set_len(0).context("truncating the spool log")?;
        } else {
            let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
            let mut out = Vec::new();
            for entry in &self.entries {
                out.extend_from_slice(&(entry.bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&crc32fast::hash(&entry.bytes).to_le_bytes());
                out.extend_from_slice(&entry.bytes);
            }
            write_atomically(&tmp, &path, &out, true)?;
            self.log = OpenOptions::new()
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot reopen {}", path.display()))?;
        }
        self.dead_records = 0;
        Ok(())
    }

    /// Replaces the state file. The rename is atomic either way; `durable` also syncs it to
    /// disk first, which survives a power cut but costs an fsync, so frequent writes (one per
    /// dropped sample during a long outage) skip it: a process crash loses nothing either way.
    fn write_state_with(&self, durable: bool) -> anyhow::Result<()> {
        let first_live = self.entries.front().map_or(self.next_seq, |e| e.seq);
        let text = format!(
            "next_seq {}\ndropped_total {}\nfirst_live_seq {first_live}\ninstance_id {}\nsample_format {SAMPLE_FORMAT}\n",
            self.next_seq, self.dropped_total, self.instance_id
        );
        let path = self.dir.join(STATE_FILE);
        write_atomically(
            &self.dir.join(format!("{STATE_FILE}.tmp")),
            &path,
            text.as_bytes(),
            durable,
        )
    }

    fn write_state(&self) -> anyhow::Result<()> {
        self.write_state_with(true)
    }
}

fn write_atomically(tmp: &Path, path: &Path, bytes: &[u8], durable: bool) -> anyhow::Result<()> {
    let mut file = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    if durable {
        file.sync_data().with_context(|| format!("cannot sync {}", tmp.display()))?;
    }
    std::fs::rename(tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

#[derive(Clone, Copy)]
struct State {
    next_seq: u64,
    dropped_total: u64,
    first_live_seq: u64,
    /// Absent from the first release's state files: a new id is chosen then.
    instance_id: Option<u64>,
    /// 1 when absent (the first release's log format).
    sample_format: u64,
}

/// A fresh random instance id (never 0, which stands for agents of protocol version 1).
fn new_instance_id() -> anyhow::Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
    Ok(u64::from_le_bytes(bytes).max(1))
}

fn read_state(path: &Path) -> anyhow::Result<Option<State>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut state = State {
        next_seq: 0,
        dropped_total: 0,
        first_live_seq: 0,
        instance_id: None,
        sample_format: 1,
    };
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let value: u64 = value
            .trim()
            .parse()
            .with_context(|| format!("{}: bad line {line:?}", path.display()))?;
        match key {
            "next_seq" => state.next_seq = value,
            "dropped_total" => state.dropped_total = value,
            "first_live_seq" => state.first_live_seq = value,
            "instance_id" => state.instance_id = Some(value),
            "sample_format" => state.sample_format = value,
            _ => {} // Keys from a newer agent are kept out of the way, not fatal.
        }
    }
    Ok(Some(state))
}

/// Reads every intact record of a log whose samples are in `format`; returns them, in the
/// current format, with the length of the intact prefix and of the file.
fn read_log(path: &Path, format: u64) -> anyhow::Result<(VecDeque<Entry>, u64, u64)> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_end(&mut data)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot open {}", path.display())),
    }
    let mut entries: VecDeque<Entry> = VecDeque::new();
    let mut offset = 0;
    while data.len() - offset >= RECORD_HEADER_BYTES {
        let len =
            u32::from_le_bytes(data[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[offset + 4..offset + 8].try_into().expect("4 bytes"));
        let body_start = offset + RECORD_HEADER_BYTES;
        if len > Limits::MAX_MESSAGE_BYTES || data.len() - body_start < len {
            break;
        }
        let body = &data[body_start..body_start + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        let (sample, bytes): (Sample, Box<[u8]>) = if format == SAMPLE_FORMAT {
            let Ok(sample) = postcard::from_bytes::<Sample>(body) else {
                break;
            };
            (sample, body.into())
        } else {
            let Ok(old) = postcard::from_bytes::<protocol::v1::Sample>(body) else {
                break;
            };
            let sample = Sample::from(old);
            let bytes = postcard::to_allocvec(&sample).context("re-encoding a spooled sample")?;
            (sample, bytes.into_boxed_slice())
        };
        // Sequence numbers only grow; anything else is not a record this spool wrote.
        if entries.back().is_some_and(|e| e.seq >= sample.seq) {
            break;
        }
        entries.push_back(Entry { seq: sample.seq, bytes });
        offset = body_start + len;
    }
    Ok((entries, offset as u64, data.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hw-spool-{}-{name}", std::process::id()));
        // A leftover from an earlier run of the same test would change the outcome.
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn push_n(spool: &mut Spool, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let seq = spool.allocate_seq();
                spool.push(&Sample { seq, ts_ms: seq * 1000, ..Default::default() }).unwrap();
                seq
            })
            .collect()
    }

    #[test]
    fn a_first_release_spool_is_converted_and_keeps_its_samples() {
        let dir = temp_dir("v1");
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = Vec::new();
        for seq in [40u64, 41, 42] {
            let old = protocol::v1::Sample {
                seq,
                ts_ms: seq * 1000,
                memory: Some(protocol::v1::Memory {
                    total_bytes: 8,
                    used_bytes: 3,
                    available_bytes: 5,
                }),
                ..Default::default()
            };
            let body = postcard::to_allocvec(&old).unwrap();
            log.extend_from_slice(&(body.len() as u32).to_le_bytes());
            log.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            log.extend_from_slice(&body);
        }
        std::fs::write(dir.join(LOG_FILE), &log).unwrap();
        std::fs::write(dir.join(STATE_FILE), "next_seq 43\ndropped_total 2\nfirst_live_seq 41\n")
            .unwrap();
        let spool = Spool::open(&dir, 100, 1).unwrap();
        let first_id = spool.instance_id();
        assert_ne!(first_id, 0);
        let batch = spool.batch_after(0, 10, usize::MAX);
        assert_eq!(batch.iter().map(|s| s.seq).collect::<Vec<_>>(), [41, 42]);
        assert_eq!(batch[0].memory.map(|m| (m.used_bytes, m.free_bytes)), Some((3, None)));
        assert_eq!(spool.dropped_total(), 2);
        drop(spool); // As after kill -9: the converted log and the new state are on disk.
        let mut spool = Spool::open(&dir, 100, 1).unwrap();
        assert_eq!(spool.instance_id(), first_id, "the instance id is kept across restarts");
        assert_eq!(spool.batch_after(0, 10, usize::MAX).len(), 2);
        assert_eq!(spool.allocate_seq(), 43);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lost_state_gets_a_new_instance_id() {
        let dir = temp_dir("instance");
        let first = Spool::open(&dir, 10, 1).unwrap().instance_id();
        std::fs::remove_dir_all(&dir).unwrap();
        let second = Spool::open(&dir, 10, 1).unwrap().instance_id();
        assert_ne!(first, second);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unacknowledged_samples_survive_a_reopen_and_numbering_continues() {
        let dir = temp_dir("reopen");
        let mut spool = Spool::open(&dir, 100, 5000).unwrap();
        let seqs = push_n(&mut spool, 10);
        assert_eq!(seqs[0], 5000);
        spool.ack(5003).unwrap();
        drop(spool); // No persist: as after kill -9.
        let mut spool = Spool::open(&dir, 100, 999_999).unwrap();
        // Acked records may come back until compaction; the collector's welcome removes them.
        spool.resume_from(Some(5003)).unwrap();
        assert_eq!(spool.len(), 6);
        let batch = spool.batch_after(0, 100, usize::MAX);
        assert_eq!(
            batch.iter().map(|s| s.seq).collect::<Vec<_>>(),
            (5004..5010).collect::<Vec<_>>()
        );
        assert_eq!(spool.allocate_seq(), 5010);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn overflow_drops_the_oldest_and_the_count_survives() {
        let dir = temp_dir("overflow");
        let mut spool = Spool::open(&dir, 5, 1).unwrap();
        push_n(&mut spool, 8);
        assert_eq!(spool.len(), 5);
        assert_eq!(spool.dropped_total(), 3);
        assert_eq!(spool.batch_after(0, 10, usize::MAX)[0].seq, 4);
        drop(spool);
        let spool = Spool::open(&dir, 5, 1).unwrap();
        assert_eq!(spool.dropped_total(), 3);
        assert_eq!(spool.len(), 5);
        // A smaller limit after a restart drops (and counts) the excess too.
        drop(spool);
        let spool = Spool::open(&dir, 2, 1).unwrap();
        assert_eq!((spool.len(), spool.dropped_total()), (2, 6));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_torn_record_at_the_end_is_cut_off() {
        let dir = temp_dir("torn");
        let mut spool = Spool::open(&dir, 100, 1).unwrap();
        push_n(&mut spool, 3);
        drop(spool);
        let mut log = OpenOptions::new().append(true).open(dir.join(LOG_FILE)).unwrap();
        log.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        drop(log);
        let mut spool = Spool::open(&dir, 100, 1).unwrap();
        assert_eq!(spool.len(), 3);
        push_n(&mut spool, 1);
        drop(spool);
        let spool = Spool::open(&dir, 100, 1).unwrap();
        assert_eq!(spool.batch_after(0, 10, usize::MAX).last().map(|s| s.seq), Some(4));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn compaction_keeps_the_log_small_and_the_numbering() {
        let dir = temp_dir("compact");
        let mut spool = Spool::open(&dir, 1000, 1).unwrap();
        for _ in 0..300 {
            let seq = push_n(&mut spool, 1)[0];
            spool.ack(seq).unwrap();
        }
        let size = std::fs::metadata(dir.join(LOG_FILE)).unwrap().len();
        assert!(size < 65 * 40, "log is {size} bytes");
        spool.persist().unwrap();
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(), 0);
        drop(spool);
        let mut spool = Spool::open(&dir, 1000, 1).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.allocate_seq(), 301);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn batches_respect_sample_and_byte_limits() {
        let dir = temp_dir("batch");
        let mut spool = Spool::open(&dir, 100, 1).unwrap();
        push_n(&mut spool, 20);
        assert_eq!(spool.batch_after(0, 7, usize::MAX).len(), 7);
        assert_eq!(spool.batch_after(15, 100, usize::MAX).len(), 5);
        // Always at least one sample, even if it alone is over the byte budget.
        assert_eq!(spool.batch_after(0, 100, 1).len(), 1);
        assert!(spool.batch_after(20, 100, usize::MAX).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn welcome_moves_numbering_past_what_the_collector_has() {
        let dir = temp_dir("welcome");
        let mut spool = Spool::open(&dir, 100, 10).unwrap();
        spool.resume_from(Some(50_000)).unwrap();
        assert_eq!(spool.allocate_seq(), 50_001);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
