//! Alert state and silences in SQLite: the firing alerts (`alert_state`, written in the same
//! transaction as the `alert` activity event that announces each change, so the two never
//! disagree, even after `kill -9`), the silences, each notification channel's delivery cursor,
//! and the pages of past alert events for `GET /api/alerts`.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::activity::{Activity, AlertCause, AlertState, Record};
use crate::alerts::{Persisted, glob};

/// A silence: alerts of a host and/or a rule send no notifications until a time (their state
/// and events go on).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    /// Its id, for `DELETE /api/silences/ID`.
    pub id: u64,
    /// Glob on host id or hostname; `None`: every host.
    pub host: Option<String>,
    /// Glob on rule name; `None`: every rule.
    pub rule: Option<String>,
    /// Until when (unix ms).
    pub until_ms: u64,
    /// When it was made (unix ms).
    pub created_ms: u64,
    /// Why, as the operator wrote it.
    pub comment: String,
    /// Who made it (the client's address).
    pub created_by: String,
    /// For a silence made on another collector (`--redis`): its reference there, `TAG:ID`
    /// (that collector's tag and its id of the silence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl Silence {
    /// Whether it covers `rule` on the host `host` (id) or `hostname` at `now_ms`.
    pub fn covers(&self, host: &str, hostname: &str, rule: &str, now_ms: u64) -> bool {
        now_ms < self.until_ms
            && self.host.as_deref().is_none_or(|g| glob(g, host) || glob(g, hostname))
            && self.rule.as_deref().is_none_or(|g| glob(g, rule))
    }
}

/// A change to the silences.
#[derive(Debug, Clone)]
pub enum SilenceChange {
    /// Adds this one (its id is assigned).
    Add(Silence),
    /// Deletes the one with this id.
    Delete(u64),
    /// Deletes the one made on another collector with this reference (`TAG:ID`).
    DeleteOrigin(String),
}

/// Keeps `alert_state` in step with an `alert` activity event: a firing alert is written, a
/// resolved one deleted.
pub fn on_activity(tx: &Transaction<'_>, record: &Record) -> rusqlite::Result<()> {
    let Activity::Alert(alert) = &record.activity else {
        return Ok(());
    };
    let device = alert.device.as_ref().map_or("", |d| d.name.as_str());
    let host = record.host.as_deref().unwrap_or_default();
    if alert.state == AlertState::Firing {
        let summary = match &alert.cause {
            AlertCause::Judged { summary, .. } => summary.as_str(),
            AlertCause::RuleRemoved { .. } => "",
        };
        tx.prepare_cached(
            "INSERT OR REPLACE INTO alert_state (rule, host, device, since_ms, fired_ms, value, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            alert.rule,
            host,
            device,
            alert.since_ms as i64,
            record.ts_ms as i64,
            alert.value,
            summary,
        ])?;
    } else {
        tx.prepare_cached("DELETE FROM alert_state WHERE rule = ?1 AND host = ?2 AND device = ?3")?
            .execute(params![alert.rule, host, device])?;
    }
    Ok(())
}

/// Deletes the alert state of a removed host.
pub fn forget_host(tx: &Transaction<'_>, host: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM alert_state WHERE host = ?1")?.execute([host])?;
    Ok(())
}

/// Applies a change to the silences; the answer is the silence added or deleted (`None`: no
/// silence had that id).
pub fn change_silences(
    tx: &Transaction<'_>,
    change: SilenceChange,
) -> rusqlite::Result<Option<Silence>> {
    match change {
        SilenceChange::Add(mut silence) => {
            // A replicated one read twice (the stream re-read after a restart) is added once.
            let added = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO silences (host, rule, until_ms, created_ms, comment,
                                                     created_by, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    silence.host,
                    silence.rule,
                    silence.until_ms as i64,
                    silence.created_ms as i64,
                    silence.comment,
                    silence.created_by,
                    silence.origin
                ])?;
            if added == 0 {
                return Ok(None);
            }
            silence.id = tx.last_insert_rowid() as u64;
            // Expired silences are kept a day for the record, then go.
            // By this collector's clock at most: a replicated silence's time is another's.
            let day_ago = silence.created_ms.min(crate::now_ms()).saturating_sub(86_400_000) as i64;
            tx.prepare_cached("DELETE FROM silences WHERE until_ms < ?1")?.execute([day_ago])?;
            Ok(Some(silence))
        }
        SilenceChange::Delete(id) => {
            let found = silence_by_id(tx, id)?;
            tx.prepare_cached("DELETE FROM silences WHERE id = ?1")?.execute([id as i64])?;
            Ok(found)
        }
        SilenceChange::DeleteOrigin(origin) => {
            let found = tx
                .prepare_cached(&format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences WHERE origin = ?1"
                ))?
                .query_row([&origin], silence_from_row)
                .optional()?;
            tx.prepare_cached("DELETE FROM silences WHERE origin = ?1")?.execute([&origin])?;
            Ok(found)
        }
    }
}

fn silence_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Silence> {
    Ok(Silence {
        id: row.get::<_, i64>(0)? as u64,
        host: row.get(1)?,
        rule: row.get(2)?,
        until_ms: row.get::<_, i64>(3)?.max(0) as u64,
        created_ms: row.get::<_, i64>(4)?.max(0) as u64,
        comment: row.get(5)?,
        created_by: row.get(6)?,
        origin: row.get(7)?,
    })
}

const SILENCE_COLUMNS: &str = "id, host, rule, until_ms, created_ms, comment, created_by, origin";

fn silence_by_id(conn: &Connection, id: u64) -> rusqlite::Result<Option<Silence>> {
    conn.prepare_cached(&format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?1"))?
        .query_row([id as i64], silence_from_row)
        .optional()
}

/// Every stored silence, newest first.
pub fn load_silences(conn: &Connection) -> rusqlite::Result<Vec<Silence>> {
    let mut stmt =
        conn.prepare(&format!("SELECT {SILENCE_COLUMNS} FROM silences ORDER BY id DESC"))?;
    stmt.query_map([], silence_from_row)?.collect()
}

/// The alerts firing when the collector stopped.
pub fn load_firing(conn: &Connection) -> rusqlite::Result<Vec<Persisted>> {
    let mut stmt = conn.prepare(
        "SELECT rule, host, device, since_ms, fired_ms, value, summary FROM alert_state",
    )?;
    stmt.query_map([], |row| {
        Ok(Persisted {
            rule: row.get(0)?,
            host: row.get(1)?,
            device: row.get(2)?,
            since_ms: row.get::<_, i64>(3)?.max(0) as u64,
            fired_ms: row.get::<_, i64>(4)?.max(0) as u64,
            value: row.get(5)?,
            summary: row.get(6)?,
        })
    })?
    .collect()
}

/// One past alert event, as `GET /api/alerts` lists it: `id`, `ts_ms` and `host`, then the
/// alert's fields (rule, state, value, since, severity, summary, device…) without its `type`.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    /// Its event id (also its live event id).
    pub id: u64,
    /// When it happened (unix ms).
    pub ts_ms: u64,
    /// The host.
    pub host: Option<String>,
    /// The event: [`Activity::Alert`], or [`Activity::Other`] for a row of an earlier version.
    pub activity: Activity,
}

impl Serialize for AlertEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.activity.fields();
        let mut map = serializer.serialize_map(Some(3 + fields.len()))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("ts_ms", &self.ts_ms)?;
        map.serialize_entry("host", &self.host)?;
        for (key, value) in &fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Alert events with `since_ms <= ts_ms < until_ms` and an id below `before` (the previous
/// page's last), newest first, at most `limit`.
pub fn recent(
    conn: &Connection,
    since_ms: u64,
    until_ms: u64,
    before: Option<u64>,
    limit: usize,
) -> anyhow::Result<Vec<AlertEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT eid, ts_ms, host, json FROM activity
         WHERE kind = 'alert' AND eid < ?1 AND ts_ms >= ?2 AND ts_ms < ?3
         ORDER BY eid DESC LIMIT ?4",
    )?;
    let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
    let rows = stmt.query_map(
        params![
            before,
            since_ms.min(i64::MAX as u64) as i64,
            until_ms.min(i64::MAX as u64) as i64,
            limit as i64
        ],
        alert_event,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An alert event from a row of `SELECT eid, ts_ms, host, json FROM activity`.
fn alert_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<AlertEvent> {
    let json: String = row.get(3)?;
    Ok(AlertEvent {
        id: row.get::<_, i64>(0)? as u64,
        ts_ms: row.get::<_, i64>(1)?.max(0) as u64,
        host: row.get(2)?,
        activity: Activity::from_row("alert", &json),
    })
}

/// Records that `channel` delivered (or gave up on) every alert event up to `eid`.
pub fn notify_delivered(tx: &Transaction<'_>, channel: &str, eid: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO notify_cursor (channel, delivered_eid) VALUES (?1, ?2)
         ON CONFLICT (channel) DO UPDATE SET delivered_eid = max(delivered_eid, excluded.delivered_eid)",
    )?
    .execute(params![channel, eid.min(i64::MAX as u64) as i64])?;
    Ok(())
}

/// Every channel's delivery cursor.
pub fn notify_cursors(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare("SELECT channel, delivered_eid FROM notify_cursor")?;
    stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64)))?.collect()
}

/// Alert events after `after` and at or after `since_ms`, oldest first, at most `limit`: what
/// channels had not delivered when the collector stopped.
pub fn undelivered(
    conn: &Connection,
    after: u64,
    since_ms: u64,
    limit: usize,
) -> anyhow::Result<Vec<AlertEvent>> {
    let mut stmt = conn.prepare(
        "SELECT eid, ts_ms, host, json FROM activity
         WHERE kind = 'alert' AND eid > ?1 AND ts_ms >= ?2 ORDER BY eid LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            after.min(i64::MAX as u64) as i64,
            since_ms.min(i64::MAX as u64) as i64,
            limit as i64
        ],
        alert_event,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated database in a directory of its own (WAL needs a file), removed with it.
    struct Database {
        dir: std::path::PathBuf,
        conn: Connection,
    }

    impl Drop for Database {
        fn drop(&mut self) {
            // Open files may go on Linux; a test that panicked leaves its directory to the
            // next run, which removes it first.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl std::ops::Deref for Database {
        type Target = Connection;
        fn deref(&self) -> &Connection {
            &self.conn
        }
    }

    impl std::ops::DerefMut for Database {
        fn deref_mut(&mut self) -> &mut Connection {
            &mut self.conn
        }
    }

    fn database(name: &str) -> Database {
        let dir = std::env::temp_dir().join(format!("hw-alerts-{}-{name}", std::process::id()));
        // Left over from an earlier run, if any.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut conn = Connection::open(dir.join("t.db")).unwrap();
        crate::storage::schema::configure(&conn).unwrap();
        crate::storage::schema::migrate(&mut conn).unwrap();
        Database { dir, conn }
    }

    fn alert(state: AlertState, ts_ms: u64) -> Record {
        let alert = crate::activity::Alert {
            rule: "r".into(),
            state,
            value: 95.0,
            since_ms: 5,
            device: Some(crate::activity::AlertDevice {
                name: "/var".into(),
                selector: Some(crate::activity::Selector::Mount),
            }),
            silenced: false,
            cause: AlertCause::Judged {
                hostname: "web".into(),
                severity: crate::alerts::Severity::Warning,
                summary: "s".into(),
                metric: "fs_used_percent".into(),
                threshold: Some(90.0),
            },
        };
        Record { ts_ms, host: Some("h".into()), activity: Activity::Alert(Box::new(alert)) }
    }

    #[test]
    fn rows_of_earlier_versions_show_as_the_field_maps_showed_them() {
        let conn = database("old-rows");
        // An alert from before severities, a kind this build does not know, a status row.
        conn.execute_batch(
            r#"INSERT INTO activity (eid, ts_ms, kind, host, json) VALUES
               (1, 5, 'alert', 'h', '{"hostname":"web","rule":"cpu","since":1,"state":"firing","value":97.0}'),
               (2, 6, 'agent_refused', 'h', '{"reason":"x"}'),
               (3, 7, 'status', 'h', '{"hostname":"web","status":"offline"}');"#,
        )
        .unwrap();
        let page = recent(&conn, 0, u64::MAX, None, 10).unwrap();
        assert_eq!(
            serde_json::json!(page).to_string(),
            r#"[{"host":"h","hostname":"web","id":1,"rule":"cpu","since":1,"state":"firing","ts_ms":5,"value":97.0}]"#
        );
        let path = conn.dir.join("t.db");
        let reader =
            crate::storage::query::Reader::open(&path, std::time::Duration::from_secs(3600))
                .unwrap();
        let filter = crate::fanout::events::Filter::default();
        let (events, more) = reader.activity_before(None, 10, &filter).unwrap();
        let shown: Vec<&str> = events.iter().map(|e| e.json()).collect();
        assert_eq!(
            shown,
            [
                r#"{"host":"h","hostname":"web","id":3,"status":"offline","ts":7,"type":"status"}"#,
                r#"{"host":"h","id":2,"reason":"x","ts":6,"type":"activity"}"#,
                r#"{"host":"h","hostname":"web","id":1,"rule":"cpu","since":1,"state":"firing","ts":5,"type":"alert","value":97.0}"#,
            ]
        );
        assert!(!more);
    }

    #[test]
    fn firing_alerts_are_kept_until_they_resolve() {
        let mut conn = database("state");
        let tx = conn.transaction().unwrap();
        on_activity(&tx, &alert(AlertState::Firing, 10)).unwrap();
        tx.commit().unwrap();
        let firing = load_firing(&conn).unwrap();
        assert_eq!(firing.len(), 1);
        assert_eq!(
            (firing[0].device.as_str(), firing[0].since_ms, firing[0].fired_ms),
            ("/var", 5, 10)
        );
        let tx = conn.transaction().unwrap();
        on_activity(&tx, &alert(AlertState::Resolved, 20)).unwrap();
        tx.commit().unwrap();
        assert!(load_firing(&conn).unwrap().is_empty());
    }

    #[test]
    fn silences_are_added_listed_matched_and_deleted() {
        let mut conn = database("silences");
        let silence = Silence {
            id: 0,
            host: Some("web-*".into()),
            rule: None,
            until_ms: 1_000,
            created_ms: 1,
            comment: String::new(),
            created_by: "t".into(),
            origin: None,
        };
        // One made on another collector: added once however often its entry is read, and
        // deleted by its reference there.
        let tx = conn.transaction().unwrap();
        let remote = Silence { origin: Some("3f9a01bc:7".into()), ..silence.clone() };
        let copy = change_silences(&tx, SilenceChange::Add(remote.clone())).unwrap().unwrap();
        assert_eq!(change_silences(&tx, SilenceChange::Add(remote)).unwrap(), None);
        let gone = SilenceChange::DeleteOrigin("3f9a01bc:7".into());
        assert_eq!(change_silences(&tx, gone.clone()).unwrap(), Some(copy));
        assert_eq!(change_silences(&tx, gone).unwrap(), None);
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        let added = change_silences(&tx, SilenceChange::Add(silence)).unwrap().unwrap();
        tx.commit().unwrap();
        assert!(added.id > 0);
        assert!(
            added.covers("x", "web-1", "any", 999) && !added.covers("x", "web-1", "any", 1_000)
        );
        assert!(!added.covers("db-1", "db-1", "any", 5));
        assert_eq!(load_silences(&conn).unwrap(), vec![added.clone()]);
        let tx = conn.transaction().unwrap();
        assert_eq!(change_silences(&tx, SilenceChange::Delete(added.id)).unwrap(), Some(added));
        assert_eq!(change_silences(&tx, SilenceChange::Delete(99)).unwrap(), None);
        tx.commit().unwrap();
        assert!(load_silences(&conn).unwrap().is_empty());
    }

    #[test]
    fn cursors_only_move_forward_and_undelivered_events_follow_them() {
        let mut conn = database("cursors");
        let tx = conn.transaction().unwrap();
        for (eid, ts) in [(1, 100), (2, 200), (3, 300)] {
            tx.execute(
                "INSERT INTO activity (eid, ts_ms, kind, host, json) VALUES (?1, ?2, 'alert', 'h', '{}')",
                params![eid, ts],
            )
            .unwrap();
        }
        notify_delivered(&tx, "hook", 2).unwrap();
        notify_delivered(&tx, "hook", 1).unwrap();
        tx.commit().unwrap();
        assert_eq!(notify_cursors(&conn).unwrap(), vec![("hook".to_owned(), 2)]);
        let ids: Vec<u64> = undelivered(&conn, 1, 0, 10).unwrap().iter().map(|e| e.id).collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(undelivered(&conn, 0, 250, 10).unwrap().len(), 1, "older than the window");
        let page: Vec<u64> =
            recent(&conn, 0, u64::MAX, Some(3), 1).unwrap().iter().map(|e| e.id).collect();
        assert_eq!(page, [2], "newest first, below `before`");
    }
}
