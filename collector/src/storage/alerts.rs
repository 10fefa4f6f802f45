//! Alert state and silences in SQLite: the firing alerts (`alert_state`, written in the same
//! transaction as the `alert` activity event that announces each change, so the two never
//! disagree, even after `kill -9`), the silences, each notification channel's delivery cursor,
//! and the pages of past alert events for `GET /api/alerts`.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde_json::Value;

use super::Activity;
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
}

/// Keeps `alert_state` in step with an `alert` activity event: a firing alert is written, a
/// resolved one deleted.
pub fn on_activity(tx: &Transaction<'_>, activity: &Activity) -> rusqlite::Result<()> {
    if activity.kind != "alert" {
        return Ok(());
    }
    let field = |name: &str| activity.fields.get(name);
    let text = |name: &str| field(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let rule = text("rule");
    let device = text("device");
    let host = activity.host.as_deref().unwrap_or_default();
    if field("state").and_then(Value::as_str) == Some("firing") {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO alert_state (rule, host, device, since_ms, fired_ms, value, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            rule,
            host,
            device,
            field("since").and_then(Value::as_u64).unwrap_or(0) as i64,
            field("fired_ms").and_then(Value::as_u64).unwrap_or(activity.ts_ms) as i64,
            field("value").and_then(Value::as_f64).unwrap_or(0.0),
            text("summary"),
        ])?;
    } else {
        tx.prepare_cached("DELETE FROM alert_state WHERE rule = ?1 AND host = ?2 AND device = ?3")?
            .execute(params![rule, host, device])?;
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
            tx.prepare_cached(
                "INSERT INTO silences (host, rule, until_ms, created_ms, comment, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                silence.host,
                silence.rule,
                silence.until_ms as i64,
                silence.created_ms as i64,
                silence.comment,
                silence.created_by
            ])?;
            silence.id = tx.last_insert_rowid() as u64;
            // Expired silences are kept a day for the record, then go.
            let day_ago = silence.created_ms.saturating_sub(86_400_000) as i64;
            tx.prepare_cached("DELETE FROM silences WHERE until_ms < ?1")?.execute([day_ago])?;
            Ok(Some(silence))
        }
        SilenceChange::Delete(id) => {
            let found = silence_by_id(tx, id)?;
            tx.prepare_cached("DELETE FROM silences WHERE id = ?1")?.execute([id as i64])?;
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
    })
}

const SILENCE_COLUMNS: &str = "id, host, rule, until_ms, created_ms, comment, created_by";

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

/// One past alert event, as `GET /api/alerts` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// Its event id (also its live event id).
    pub id: u64,
    /// When it happened (unix ms).
    pub ts_ms: u64,
    /// The host.
    pub host: Option<String>,
    /// The event's fields: rule, state, value, since, severity, summary, device…
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
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
        fields: serde_json::from_str(&json).unwrap_or_default(),
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

    /// A migrated database in a file of its own (WAL needs a file).
    fn database(name: &str) -> Connection {
        let dir = std::env::temp_dir().join(format!("hw-alerts-{}-{name}", std::process::id()));
        // Left over from an earlier run, if any.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut conn = Connection::open(dir.join("t.db")).unwrap();
        crate::storage::schema::configure(&conn).unwrap();
        crate::storage::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn alert(state: &str, ts_ms: u64) -> Activity {
        let fields = serde_json::json!({
            "rule": "r", "state": state, "device": "/var", "since": 5, "value": 95.0, "summary": "s",
        });
        Activity {
            ts_ms,
            kind: "alert",
            host: Some("h".into()),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn firing_alerts_are_kept_until_they_resolve() {
        let mut conn = database("state");
        let tx = conn.transaction().unwrap();
        on_activity(&tx, &alert("firing", 10)).unwrap();
        tx.commit().unwrap();
        let firing = load_firing(&conn).unwrap();
        assert_eq!(firing.len(), 1);
        assert_eq!(
            (firing[0].device.as_str(), firing[0].since_ms, firing[0].fired_ms),
            ("/var", 5, 10)
        );
        let tx = conn.transaction().unwrap();
        on_activity(&tx, &alert("resolved", 20)).unwrap();
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
        };
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
