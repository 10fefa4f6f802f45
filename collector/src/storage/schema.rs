//! The database schema, versioned with `PRAGMA user_version` and migrated forward on open.
//!
//! Each entry of [`MIGRATIONS`] takes the schema from version `i` to `i + 1`. Migrations are only
//! ever appended. A database whose version is newer than this build knows is refused with a
//! clear message rather than misread.

use anyhow::Context;
use rusqlite::Connection;

/// Schema migrations, in order. Index `i` upgrades version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: hosts, raw samples with derived values, and the activity log.
    "CREATE TABLE hosts (
        id INTEGER PRIMARY KEY,
        host_id TEXT NOT NULL UNIQUE,
        hostname TEXT NOT NULL,
        os TEXT NOT NULL DEFAULT '',
        kernel TEXT NOT NULL DEFAULT '',
        arch TEXT NOT NULL DEFAULT '',
        cpu_model TEXT NOT NULL DEFAULT '',
        cpu_cores INTEGER NOT NULL DEFAULT 0,
        memory_total_bytes INTEGER NOT NULL DEFAULT 0,
        boot_time_seconds INTEGER NOT NULL DEFAULT 0,
        agent_version TEXT NOT NULL DEFAULT '',
        interval_ms INTEGER NOT NULL DEFAULT 1000,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER,
        last_seq INTEGER,
        dropped_total INTEGER NOT NULL DEFAULT 0,
        last_sample BLOB
    );
    -- rowid is the live event id of the sample, so subscribers can resume from the database.
    CREATE TABLE samples (
        eid INTEGER PRIMARY KEY,
        host INTEGER NOT NULL REFERENCES hosts(id),
        seq INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        cpu_percent REAL,
        cores BLOB,
        mem_used INTEGER,
        mem_total INTEGER,
        mem_available INTEGER,
        swap_used INTEGER,
        swap_total INTEGER,
        load1 REAL,
        load5 REAL,
        load15 REAL,
        net_rx_bps REAL,
        net_tx_bps REAL,
        disk_read_bps REAL,
        disk_write_bps REAL,
        fs_used INTEGER,
        fs_total INTEGER,
        processes INTEGER,
        uptime INTEGER,
        temp_max REAL
    );
    CREATE INDEX samples_host_ts ON samples(host, ts_ms);
    CREATE TABLE activity (
        eid INTEGER PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        host TEXT,
        json TEXT NOT NULL
    );
    CREATE INDEX activity_ts ON activity(ts_ms);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Sets the connection options every connection uses.
pub fn configure(conn: &Connection) -> anyhow::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .context("setting the busy timeout")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .context("enabling foreign keys")?;
    Ok(())
}

/// Brings the database up to [`SCHEMA_VERSION`], or refuses a newer one.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .context("enabling WAL")?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "the database refused WAL mode (got {mode})"
    );
    // WAL with synchronous=NORMAL is durable across process crashes (kill -9); FULL also
    // survives power loss, and an ack means durable, so FULL it is.
    conn.pragma_update(None, "synchronous", "FULL")
        .context("setting synchronous")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    anyhow::ensure!(
        version <= SCHEMA_VERSION,
        "the database has schema version {version}, newer than this collector's {SCHEMA_VERSION}; \
         use a newer hostwatch-collector or another --db"
    );
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("migrating the schema to version {}", index + 1))?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        log::info!("database schema migrated to version {}", index + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_reaches_the_current_version_and_reopens() {
        let dir = std::env::temp_dir().join(format!("hw-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        drop(conn);
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_newer_database_is_refused_clearly() {
        let dir = std::env::temp_dir().join(format!("hw-schema-new-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer than this collector"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
