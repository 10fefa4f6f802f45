//! Live events: the JSON objects subscribers receive, over SSE and WebSocket alike.
//!
//! An event keeps what it announces (a sample's point, an activity's fields) and is serialized
//! at most once, the first time a subscriber needs it, then shared between subscribers: with
//! nobody watching, ingest pays nothing for JSON. Event ids are the database ids of what they
//! announce (a sample's row, an activity row), so they only grow and a subscriber can resume
//! from the database after any disconnect.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::storage::{Activity, Point};

/// A typical sample event's size, for bounding the ring before anyone serialized it.
const TYPICAL_EVENT_BYTES: usize = 700;

/// One event.
#[derive(Debug)]
pub struct LiveEvent {
    /// Increasing event id.
    pub id: u64,
    /// Event type (`sample`, `agent_connected`, …).
    pub kind: &'static str,
    /// The host it concerns, if any.
    pub host: Option<Arc<str>>,
    body: Body,
    json: OnceLock<String>,
}

#[derive(Debug)]
enum Body {
    Sample { hostname: Arc<str>, point: Arc<Point> },
    Fields { ts_ms: Option<u64>, fields: Map<String, Value> },
}

/// A sample event as JSON: the point's fields next to the event's own.
#[derive(Serialize)]
struct SampleJson<'a> {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    host: Option<&'a str>,
    hostname: &'a str,
    #[serde(flatten)]
    point: &'a Point,
}

impl LiveEvent {
    /// The JSON object, including `id`, `type` and `host`; built on first use.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| self.render())
    }

    /// Bytes this event takes: its JSON once built, a typical size before.
    pub fn size(&self) -> usize {
        self.json.get().map_or(TYPICAL_EVENT_BYTES, String::len)
    }

    /// The event as a Server-Sent Events frame, appended to `out`. Notices (id 0) carry no
    /// `id:` line, so they do not move the browser's `Last-Event-ID`.
    pub fn write_sse_frame(&self, out: &mut String) {
        use std::fmt::Write;
        if self.id != 0 {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "id: {}", self.id);
        }
        let _ = write!(out, "event: {}\ndata: {}\n\n", self.kind, self.json());
    }

    /// A sample event.
    pub fn sample(id: u64, host_id: Arc<str>, hostname: Arc<str>, point: Arc<Point>) -> Self {
        Self::new(id, "sample", Some(host_id), Body::Sample { hostname, point })
    }

    /// An activity event (connects, disconnects, status changes, notifications…).
    pub fn activity(id: u64, activity: &Activity) -> Self {
        let body = Body::Fields { ts_ms: Some(activity.ts_ms), fields: activity.fields.clone() };
        Self::new(id, activity.kind, activity.host.clone(), body)
    }

    /// A notice that is not stored and has no id (`lagged`, `shutdown`, `resync`).
    pub fn notice(kind: &'static str, message: &str) -> Self {
        let mut fields = Map::new();
        fields.insert("message".into(), Value::from(message));
        Self::new(0, kind, None, Body::Fields { ts_ms: None, fields })
    }

    fn new(id: u64, kind: &'static str, host: Option<Arc<str>>, body: Body) -> Self {
        Self { id, kind, host, body, json: OnceLock::new() }
    }

    fn render(&self) -> String {
        match &self.body {
            Body::Sample { hostname, point } => {
                let json = SampleJson {
                    id: self.id,
                    kind: self.kind,
                    host: self.host.as_deref(),
                    hostname,
                    point,
                };
                // Serializing our own plain data cannot fail.
                serde_json::to_string(&json).expect("JSON encoding of a sample event")
            }
            Body::Fields { ts_ms, fields } => {
                let mut object = fields.clone();
                if let Some(ts) = ts_ms {
                    object.insert("ts".into(), Value::from(*ts));
                }
                object.insert("id".into(), Value::from(self.id));
                object.insert("type".into(), Value::from(self.kind));
                if let Some(host) = &self.host {
                    object.insert("host".into(), Value::from(host.as_ref()));
                }
                Value::Object(object).to_string()
            }
        }
    }
}

/// Event types recorded in the activity log.
pub const ACTIVITY_KINDS: &[&str] =
    &["agent_connected", "agent_disconnected", "status", "notification", "alert"];

/// The static name of a stored activity type (`activity` for one this build does not know).
pub fn known_kind(kind: &str) -> &'static str {
    ACTIVITY_KINDS.iter().copied().find(|k| *k == kind).unwrap_or("activity")
}

/// Which events a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these hosts (events without a host always pass), or all.
    pub hosts: Option<Vec<String>>,
    /// Only these event types, or all.
    pub kinds: Option<Vec<String>>,
}

impl Filter {
    /// Whether the event passes.
    pub fn matches(&self, event: &LiveEvent) -> bool {
        let host_ok = match (&self.hosts, &event.host) {
            (Some(hosts), Some(host)) => hosts.iter().any(|h| h.as_str() == host.as_ref()),
            _ => true,
        };
        let kind_ok = self.kinds.as_ref().is_none_or(|kinds| kinds.iter().any(|k| k == event.kind));
        host_ok && kind_ok
    }

    /// Reads `host=` (repeatable, or comma-separated) and `types=` from query pairs.
    pub fn from_query(pairs: &[(String, String)]) -> Self {
        let list = |key: &str| {
            let values: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| k == key)
                .flat_map(|(_, v)| {
                    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from)
                })
                .collect();
            (!values.is_empty()).then_some(values)
        };
        Self { hosts: list("host"), kinds: list("types") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_events_carry_host_type_id_and_values() {
        let point = Point {
            ts: 5,
            cpu_percent: Some(12.5),
            memory_used_bytes: Some(42),
            ..Default::default()
        };
        let event = LiveEvent::sample(9, Arc::from("h1"), Arc::from("web"), Arc::new(point));
        assert_eq!(event.size(), TYPICAL_EVENT_BYTES, "not serialized before it is needed");
        let value: Value = serde_json::from_str(event.json()).unwrap();
        assert_eq!(event.size(), event.json().len());
        assert_eq!(value["id"], 9);
        assert_eq!(value["type"], "sample");
        assert_eq!(value["host"], "h1");
        assert_eq!(value["hostname"], "web");
        assert_eq!(value["cpu_percent"], 12.5);
        assert_eq!(value["memory_used_bytes"], 42);
        assert_eq!(value["ts"], 5);
        let mut frame = String::new();
        event.write_sse_frame(&mut frame);
        assert!(frame.starts_with("id: 9\nevent: sample\ndata: {"));
        assert!(frame.ends_with("}\n\n"));
        let mut notice = String::new();
        LiveEvent::notice("lagged", "slow").write_sse_frame(&mut notice);
        assert!(notice.starts_with("event: lagged\ndata: {"), "notices carry no id: {notice}");
    }

    #[test]
    fn filters_by_host_and_type() {
        let point = Arc::new(Point::default());
        let a = LiveEvent::sample(1, Arc::from("a"), Arc::from("a"), point.clone());
        let b = LiveEvent::sample(2, Arc::from("b"), Arc::from("b"), point);
        let notice = LiveEvent::notice("notification", "hi");
        let pairs = vec![("host".to_owned(), "a,c".to_owned())];
        let filter = Filter::from_query(&pairs);
        assert!(filter.matches(&a) && !filter.matches(&b) && filter.matches(&notice));
        let pairs = vec![("types".to_owned(), "notification".to_owned())];
        let filter = Filter::from_query(&pairs);
        assert!(!filter.matches(&a) && filter.matches(&notice));
        assert!(Filter::default().matches(&b));
    }
}
