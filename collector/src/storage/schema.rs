//! The database schema, versioned with `PRAGMA user_version` and migrated forward on open.
//!
//! Each entry of [`MIGRATIONS`] takes the schema from version `i` to `i + 1`. Migrations are only
//! ever appended. A database whose version is newer than this build knows is refused with a
//! clear message rather than misread.

use anyhow::Context;
use rusqlite::Connection;

/// Schema migrations, in order. Index `i` upgrades version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: hosts, raw samples with derived values, the activity log and min/avg/max rollups.
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
    CREATE INDEX activity_ts ON activity(ts_ms);
    -- Rollups: per bucket and metric, min, max, sum and count of non-null values, so coarser
    -- buckets combine exactly (avg = sum / n).
    CREATE TABLE rollup_1m (
        host INTEGER NOT NULL REFERENCES hosts(id),
        bucket_ms INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        cpu_percent_min REAL, cpu_percent_max REAL, cpu_percent_sum REAL, cpu_percent_n INTEGER,
        mem_used_min REAL, mem_used_max REAL, mem_used_sum REAL, mem_used_n INTEGER,
        mem_total_min REAL, mem_total_max REAL, mem_total_sum REAL, mem_total_n INTEGER,
        mem_available_min REAL, mem_available_max REAL, mem_available_sum REAL, mem_available_n INTEGER,
        swap_used_min REAL, swap_used_max REAL, swap_used_sum REAL, swap_used_n INTEGER,
        swap_total_min REAL, swap_total_max REAL, swap_total_sum REAL, swap_total_n INTEGER,
        load1_min REAL, load1_max REAL, load1_sum REAL, load1_n INTEGER,
        load5_min REAL, load5_max REAL, load5_sum REAL, load5_n INTEGER,
        load15_min REAL, load15_max REAL, load15_sum REAL, load15_n INTEGER,
        net_rx_bps_min REAL, net_rx_bps_max REAL, net_rx_bps_sum REAL, net_rx_bps_n INTEGER,
        net_tx_bps_min REAL, net_tx_bps_max REAL, net_tx_bps_sum REAL, net_tx_bps_n INTEGER,
        disk_read_bps_min REAL, disk_read_bps_max REAL, disk_read_bps_sum REAL, disk_read_bps_n INTEGER,
        disk_write_bps_min REAL, disk_write_bps_max REAL, disk_write_bps_sum REAL, disk_write_bps_n INTEGER,
        fs_used_min REAL, fs_used_max REAL, fs_used_sum REAL, fs_used_n INTEGER,
        fs_total_min REAL, fs_total_max REAL, fs_total_sum REAL, fs_total_n INTEGER,
        processes_min REAL, processes_max REAL, processes_sum REAL, processes_n INTEGER,
        uptime_min REAL, uptime_max REAL, uptime_sum REAL, uptime_n INTEGER,
        temp_max_min REAL, temp_max_max REAL, temp_max_sum REAL, temp_max_n INTEGER,
        PRIMARY KEY (host, bucket_ms)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_1h (
        host INTEGER NOT NULL REFERENCES hosts(id),
        bucket_ms INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        cpu_percent_min REAL, cpu_percent_max REAL, cpu_percent_sum REAL, cpu_percent_n INTEGER,
        mem_used_min REAL, mem_used_max REAL, mem_used_sum REAL, mem_used_n INTEGER,
        mem_total_min REAL, mem_total_max REAL, mem_total_sum REAL, mem_total_n INTEGER,
        mem_available_min REAL, mem_available_max REAL, mem_available_sum REAL, mem_available_n INTEGER,
        swap_used_min REAL, swap_used_max REAL, swap_used_sum REAL, swap_used_n INTEGER,
        swap_total_min REAL, swap_total_max REAL, swap_total_sum REAL, swap_total_n INTEGER,
        load1_min REAL, load1_max REAL, load1_sum REAL, load1_n INTEGER,
        load5_min REAL, load5_max REAL, load5_sum REAL, load5_n INTEGER,
        load15_min REAL, load15_max REAL, load15_sum REAL, load15_n INTEGER,
        net_rx_bps_min REAL, net_rx_bps_max REAL, net_rx_bps_sum REAL, net_rx_bps_n INTEGER,
        net_tx_bps_min REAL, net_tx_bps_max REAL, net_tx_bps_sum REAL, net_tx_bps_n INTEGER,
        disk_read_bps_min REAL, disk_read_bps_max REAL, disk_read_bps_sum REAL, disk_read_bps_n INTEGER,
        disk_write_bps_min REAL, disk_write_bps_max REAL, disk_write_bps_sum REAL, disk_write_bps_n INTEGER,
        fs_used_min REAL, fs_used_max REAL, fs_used_sum REAL, fs_used_n INTEGER,
        fs_total_min REAL, fs_total_max REAL, fs_total_sum REAL, fs_total_n INTEGER,
        processes_min REAL, processes_max REAL, processes_sum REAL, processes_n INTEGER,
        uptime_min REAL, uptime_max REAL, uptime_sum REAL, uptime_n INTEGER,
        temp_max_min REAL, temp_max_max REAL, temp_max_sum REAL, temp_max_n INTEGER,
        PRIMARY KEY (host, bucket_ms)
    ) WITHOUT ROWID;",
    // 2: the agent instance whose sequence numbers `last_seq` counts (0: agents of protocol
    // version 1, and hosts stored before this version).
    "ALTER TABLE hosts ADD COLUMN instance_id INTEGER NOT NULL DEFAULT 0;",
    // 3: storage v2. Every device a host reported (when it was there is what its points say),
    // per-device values of the newest (hot) rows,
    // closed minutes compacted into one block per host and minute, and per-device rollups.
    // Schema-1 rows stay where they are: they are hot rows without device values, which
    // maintenance compacts in small steps like any other (see maintenance.rs), so this
    // migration itself is instant whatever the size of the database.
    "CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        host INTEGER NOT NULL REFERENCES hosts(id),
        kind INTEGER NOT NULL,
        name TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        UNIQUE (host, kind, name)
    );
    ALTER TABLE samples ADD COLUMN devices BLOB;
    -- Host totals kept since storage v2: free and available space of all mounts, and df's Use%.
    ALTER TABLE samples ADD COLUMN fs_free INTEGER;
    ALTER TABLE samples ADD COLUMN fs_avail INTEGER;
    ALTER TABLE samples ADD COLUMN fs_used_pct REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_free_min REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_free_max REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_free_sum REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_free_n INTEGER;
    ALTER TABLE rollup_1m ADD COLUMN fs_avail_min REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_avail_max REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_avail_sum REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_avail_n INTEGER;
    ALTER TABLE rollup_1m ADD COLUMN fs_used_pct_min REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_used_pct_max REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_used_pct_sum REAL;
    ALTER TABLE rollup_1m ADD COLUMN fs_used_pct_n INTEGER;
    ALTER TABLE rollup_1h ADD COLUMN fs_free_min REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_free_max REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_free_sum REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_free_n INTEGER;
    ALTER TABLE rollup_1h ADD COLUMN fs_avail_min REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_avail_max REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_avail_sum REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_avail_n INTEGER;
    ALTER TABLE rollup_1h ADD COLUMN fs_used_pct_min REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_used_pct_max REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_used_pct_sum REAL;
    ALTER TABLE rollup_1h ADD COLUMN fs_used_pct_n INTEGER;
    -- One row per host and minute: the minute's samples, encoded by storage/block.rs. The
    -- event id range lets subscribers resume from compacted minutes.
    CREATE TABLE blocks (
        host INTEGER NOT NULL REFERENCES hosts(id),
        minute_ms INTEGER NOT NULL,
        first_eid INTEGER NOT NULL,
        last_eid INTEGER NOT NULL,
        count INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (host, minute_ms)
    );
    CREATE INDEX blocks_last_eid ON blocks(last_eid);
    -- Per-device min/max/sum/count of a host's bucket, all devices in one blob.
    CREATE TABLE device_rollup_1m (
        host INTEGER NOT NULL REFERENCES hosts(id),
        bucket_ms INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (host, bucket_ms)
    ) WITHOUT ROWID;
    CREATE TABLE device_rollup_1h (
        host INTEGER NOT NULL REFERENCES hosts(id),
        bucket_ms INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (host, bucket_ms)
    ) WITHOUT ROWID;",
    // 4: alerts. The firing ones (written with their `alert` activity event, in its
    // transaction), so a restart neither forgets nor repeats them; silences; each notification
    // channel's delivery cursor; and an index to page through past alert events.
    "CREATE TABLE alert_state (
        rule TEXT NOT NULL,
        host TEXT NOT NULL,
        device TEXT NOT NULL DEFAULT '',
        since_ms INTEGER NOT NULL,
        fired_ms INTEGER NOT NULL,
        value REAL NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (rule, host, device)
    ) WITHOUT ROWID;
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        host TEXT,
        rule TEXT,
        until_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL DEFAULT ''
    );
    -- Each notification channel's newest delivered (or given up) alert event: a restart
    -- sends what came after it.
    CREATE TABLE notify_cursor (
        channel TEXT PRIMARY KEY,
        delivered_eid INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX activity_kind_eid ON activity(kind, eid);",
    // 5: replication over Redis (`--redis`). The outbox holds, in the transaction that stored
    // them, the entries still to be published to the stream (a `kill -9` before the XADD loses
    // none); `replica_state` keeps this collector's id and the stream position it consumed up to.
    // AUTOINCREMENT: ids never come back once the published entries are deleted, so the
    // publisher's cursor (the newest id in the stream) never hides a new entry.
    "CREATE TABLE replica_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        entry BLOB NOT NULL
    );
    CREATE TABLE replica_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 6: silences made on another collector (`--redis`) keep their origin's reference
    // (`TAG:ID`), so a deletion anywhere finds them, and a replayed entry adds nothing twice;
    // ids are never reused (AUTOINCREMENT), so a reference never names a later silence.
    "CREATE TABLE silences_v6 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        host TEXT,
        rule TEXT,
        until_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL DEFAULT '',
        origin TEXT
    );
    INSERT INTO silences_v6 (id, host, rule, until_ms, created_ms, comment, created_by)
        SELECT id, host, rule, until_ms, created_ms, comment, created_by FROM silences;
    DROP TABLE silences;
    ALTER TABLE silences_v6 RENAME TO silences;
    CREATE UNIQUE INDEX silences_origin ON silences(origin) WHERE origin IS NOT NULL;",
    // 7: each stored batch logs its host's progress here instead of rewriting the host's row
    // (progress.rs); no index and no foreign key, so a row costs an append and nothing else.
    // Ids are never reused (AUTOINCREMENT): a round of progress.rs deletes the rows up to the
    // newest id when it started, and a row deleted meanwhile (a new instance, a removed host)
    // must not hand its id to a newer row.
    "CREATE TABLE progress (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        host INTEGER NOT NULL,
        seq INTEGER,
        seen_ms INTEGER,
        dropped_total INTEGER NOT NULL
    );",
];

/// The DDL of schema version 1, as a release before storage v2 created it (the collector
/// benchmark compares its size with today's for the same samples).
pub fn schema_1_sql() -> &'static str {
    MIGRATIONS[0]
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Sets the connection options every connection uses.
pub fn configure(conn: &Connection) -> anyhow::Result<()> {
    // The bundled SQLite plans with STAT4, which re-prepares a statement whenever a bound range
    // value changes; the query planner stability guarantee keeps each prepared plan.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .context("enabling the query planner stability guarantee")?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).context("setting the busy timeout")?;
    conn.pragma_update(None, "foreign_keys", "ON").context("enabling foreign keys")?;
    Ok(())
}

/// Brings the database up to [`SCHEMA_VERSION`], or refuses a newer one.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    anyhow::ensure!(
        version <= SCHEMA_VERSION,
        "the database has schema version {version}, newer than this collector's {SCHEMA_VERSION}; \
         use a newer hostwatch-collector or another --db"
    );
    if version == 0 {
        // Only possible on a new, empty file (before WAL mode writes its header): lets the size
        // cap give pages back to the file system in small steps (PRAGMA incremental_vacuum)
        // instead of a blocking VACUUM.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").context("setting auto_vacuum")?;
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .context("enabling WAL")?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "the database refused WAL mode (got {mode})");
    // WAL with synchronous=NORMAL is durable across process crashes (kill -9); FULL also
    // survives power loss, and an ack means durable, so FULL it is.
    conn.pragma_update(None, "synchronous", "FULL").context("setting synchronous")?;
    // After a checkpoint, keep the WAL file from staying at its high-water mark.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .context("setting journal_size_limit")?;
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
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
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
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer than this collector"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
