//! Removing a host (`DELETE /api/hosts/{id}`): its row is renamed at once to a tombstone, and
//! maintenance then deletes its rows in small steps, children first and the `hosts` row last,
//! so removing a host with months of history never stalls ingest.
//!
//! A tombstone is `"\u{1}removed:KEY"`. Ingest refuses host ids with control characters at the
//! hello, so no agent can ever send one, and the host's own id is free at once: its agent
//! connecting again is a fresh host with a fresh history and a fresh sequence numbering. Every
//! load and lookup skips tombstones ([`NOT_REMOVED`]); a restart finds them again and resumes
//! the deletion. Nothing in the schema changes.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// The first character of every tombstone: a control character, which no hello may carry.
const MARK: char = '\u{1}';

/// SQL condition that holds for a `hosts` row that is not a tombstone.
pub const NOT_REMOVED: &str = "unicode(hosts.host_id) IS NOT 1";

/// A host's rows, children before the `hosts` row (foreign keys are on), each with the column
/// that picks a chunk of them and how many rows of the step's budget one of them counts for
/// (a block holds a minute of samples, a device rollup every device of a bucket).
const TABLES: &[(&str, &str, i64)] = &[
    ("samples", "eid", 1),
    ("blocks", "rowid", 60),
    ("rollup_1m", "bucket_ms", 1),
    ("rollup_1h", "bucket_ms", 1),
    ("device_rollup_1m", "bucket_ms", 8),
    ("device_rollup_1h", "bucket_ms", 8),
    ("devices", "id", 1),
];

/// The tombstone of the host with database key `key`.
pub fn tombstone(key: i64) -> String {
    format!("{MARK}removed:{key}")
}

/// Whether a stored host id is a tombstone.
pub fn is_tombstone(host_id: &str) -> bool {
    host_id.starts_with(MARK)
}

/// Renames a host's row to its tombstone, in the caller's transaction. Returns its key, or
/// `None` when no such host is stored.
pub fn mark(tx: &Transaction<'_>, host_id: &str) -> rusqlite::Result<Option<i64>> {
    let key: Option<i64> = tx
        .prepare_cached(&format!("SELECT id FROM hosts WHERE host_id = ?1 AND {NOT_REMOVED}"))?
        .query_row([host_id], |r| r.get(0))
        .optional()?;
    if let Some(key) = key {
        tx.prepare_cached("UPDATE hosts SET host_id = ?1 WHERE id = ?2")?
            .execute(params![tombstone(key), key])?;
    }
    Ok(key)
}

/// Keys of removed hosts whose rows are still being deleted.
pub fn pending(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut stmt =
        conn.prepare(&format!("SELECT id FROM hosts WHERE NOT ({NOT_REMOVED}) ORDER BY id"))?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// What one deletion step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Rows deleted.
    pub rows: usize,
    /// Whether the host is gone, its `hosts` row included.
    pub gone: bool,
}

/// Deletes about `budget` rows of a removed host in one transaction, children first; once none
/// is left, its `hosts` row. A key that is not a tombstone (any more) is left alone.
pub fn delete_step(conn: &mut Connection, key: i64, budget: i64) -> rusqlite::Result<Step> {
    let tx = conn.transaction()?;
    let host_id: Option<String> = tx
        .prepare_cached("SELECT host_id FROM hosts WHERE id = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    if !host_id.is_some_and(|id| is_tombstone(&id)) {
        return Ok(Step { rows: 0, gone: true });
    }
    let mut left = budget.max(1);
    let mut rows = 0;
    for (table, column, weight) in TABLES {
        let limit = (left / weight).max(1);
        let deleted = tx
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE host = ?1 AND {column} IN
                   (SELECT {column} FROM {table} WHERE host = ?1 LIMIT ?2)"
            ))?
            .execute(params![key, limit])?;
        rows += deleted;
        left -= deleted as i64 * weight;
        if left <= 0 {
            break;
        }
    }
    let gone = rows == 0;
    if gone {
        // Every child table was found empty in this transaction.
        rows += tx.prepare_cached("DELETE FROM hosts WHERE id = ?1")?.execute([key])?;
    }
    tx.commit()?;
    Ok(Step { rows, gone })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (std::path::PathBuf, Connection) {
        let dir = std::env::temp_dir().join(format!("hw-removal-{}", std::process::id()));
        // Leftovers of an earlier run would hold other rows.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut conn = Connection::open(dir.join("t.db")).unwrap();
        super::super::schema::configure(&conn).unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        (dir, conn)
    }

    fn add_host(conn: &Connection, host_id: &str, samples: i64) -> i64 {
        conn.execute(
            "INSERT INTO hosts (host_id, hostname, first_seen_ms) VALUES (?1, ?1, 0)",
            [host_id],
        )
        .unwrap();
        let key = conn.last_insert_rowid();
        for i in 0..samples {
            conn.execute(
                "INSERT INTO samples (host, seq, ts_ms) VALUES (?1, ?2, ?3)",
                params![key, i, i * 1000],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO devices (host, kind, name, first_seen_ms) VALUES (?1, 1, 'eth0', 0)",
            [key],
        )
        .unwrap();
        conn.execute("INSERT INTO rollup_1m (host, bucket_ms, samples) VALUES (?1, 0, 1)", [key])
            .unwrap();
        conn.execute(
            "INSERT INTO blocks (host, minute_ms, first_eid, last_eid, count, data)
             VALUES (?1, 0, 1, 1, 1, x'00')",
            [key],
        )
        .unwrap();
        key
    }

    fn rows_of(conn: &Connection, key: i64) -> i64 {
        TABLES
            .iter()
            .map(|(table, _, _)| {
                conn.query_row(
                    &format!("SELECT count(*) FROM {table} WHERE host = ?1"),
                    [key],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
            })
            .sum::<i64>()
            + conn
                .query_row("SELECT count(*) FROM hosts WHERE id = ?1", [key], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
    }

    #[test]
    fn tombstones_are_control_characters_that_no_hello_may_carry() {
        assert!(is_tombstone(&tombstone(5)));
        assert!(crate::untrusted::has_control(&tombstone(5)));
        assert!(!is_tombstone("web-1"));
    }

    #[test]
    fn a_removed_host_is_deleted_in_bounded_steps_and_its_neighbour_is_untouched() {
        let (dir, mut conn) = database();
        let gone = add_host(&conn, "gone", 250);
        let kept = add_host(&conn, "kept", 10);
        let kept_rows = rows_of(&conn, kept);
        let tx = conn.transaction().unwrap();
        assert_eq!(mark(&tx, "gone").unwrap(), Some(gone));
        assert_eq!(mark(&tx, "nobody").unwrap(), None);
        tx.commit().unwrap();
        assert_eq!(pending(&conn).unwrap(), vec![gone]);
        // The id is free at once: the same agent is a new host.
        let again = add_host(&conn, "gone", 1);
        assert_ne!(again, gone);
        let mut steps = 0;
        loop {
            let step = delete_step(&mut conn, gone, 100).unwrap();
            assert!(step.rows <= 100 + 1, "a step deletes about its budget: {step:?}");
            steps += 1;
            if step.gone {
                break;
            }
            assert!(steps < 100, "deletion must end");
        }
        assert!(steps >= 3, "250 samples at 100 a step take several steps, took {steps}");
        assert_eq!(rows_of(&conn, gone), 0);
        assert_eq!(rows_of(&conn, kept), kept_rows);
        assert!(rows_of(&conn, again) > 0);
        assert!(pending(&conn).unwrap().is_empty());
        // A key that is no tombstone is never deleted.
        assert_eq!(delete_step(&mut conn, kept, 100).unwrap(), Step { rows: 0, gone: true });
        assert_eq!(rows_of(&conn, kept), kept_rows);
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }
}
