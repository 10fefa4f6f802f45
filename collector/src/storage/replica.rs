//! The replication tables (`--redis`): the outbox of entries still to be published to the
//! stream, written in the transaction that stored their samples, and `replica_state`, this
//! collector's id and the stream position it consumed up to. Only the writer writes them; the
//! publisher reads the outbox on its own read-only connection.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Most entries the outbox keeps while Redis is away: about a day of 1 batch a second from one
/// host, or 17 minutes of 100 hosts. Past it the oldest are deleted and a warning says how many;
/// those samples stay stored here but never reach the other collectors.
pub const OUTBOX_MAX_ENTRIES: i64 = 100_000;

/// The key of this collector's id in `replica_state`.
pub const COLLECTOR_ID: &str = "collector_id";
/// The key of the newest stream id consumed, in `replica_state`.
pub const CONSUMED: &str = "consumed";

/// Adds an entry to the outbox and returns its id; every 1,024 entries, trims the outbox to
/// [`OUTBOX_MAX_ENTRIES`].
pub fn insert(tx: &Transaction<'_>, entry: &[u8]) -> rusqlite::Result<i64> {
    tx.prepare_cached("INSERT INTO replica_outbox (entry) VALUES (?1)")?.execute([entry])?;
    let id = tx.last_insert_rowid();
    if id % 1024 == 0 {
        let deleted = tx
            .prepare_cached("DELETE FROM replica_outbox WHERE id <= ?1")?
            .execute([id - OUTBOX_MAX_ENTRIES])?;
        if deleted > 0 {
            log::warn!(
                "redis: the outbox is full ({OUTBOX_MAX_ENTRIES} entries unpublished): dropped \
                 the {deleted} oldest; the other collectors will not get those samples"
            );
        }
    }
    Ok(id)
}

/// Deletes the outbox's entries up to `up_to`, which are in the stream.
pub fn published(tx: &Transaction<'_>, up_to: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM replica_outbox WHERE id <= ?1")?.execute([up_to])?;
    Ok(())
}

/// Keeps a replication setting.
pub fn set_state(tx: &Transaction<'_>, key: &str, value: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO replica_state (key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// Reads a replication setting.
pub fn state(path: &Path, key: &str) -> anyhow::Result<Option<String>> {
    let conn = super::query::open_read_only(path)?;
    Ok(conn
        .query_row("SELECT value FROM replica_state WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// The publisher's read-only view of the outbox.
pub struct Outbox {
    conn: Connection,
}

impl Outbox {
    /// Opens the database for reading the outbox.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self { conn: super::query::open_read_only(path)? })
    }

    /// At most `limit` entries after `after`, oldest first, with their ids.
    pub fn after(&self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, entry FROM replica_outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
