//! Live events: the JSON objects subscribers receive, over SSE and WebSocket alike.
//!
//! Each event is serialized once, when the hub first sees it, and shared between subscribers.
//! Event ids are the database ids of what they announce (a sample's row, an activity row), so
//! they only grow and a subscriber can resume from the database after any disconnect.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::storage::{Activity, Point};

/// One event, ready to send.
#[derive(Debug)]
pub struct LiveEvent {
    /// Increasing event id.
    pub id: u64,
    /// Event type (`sample`, `agent_connected`, …).
    pub kind: &'static str,
    /// The host it concerns, if any.
    pub host: Option<Arc<str>>,
    /// The JSON object, including `id`, `type` and `host`.
    pub json: String,
}

impl LiveEvent {
    /// The event as a Server-Sent Events frame. Notices (id 0) carry no `id:` line, so they do
    /// not move the browser's `Last-Event-ID`.
    pub fn sse_frame(&self) -> String {
        if self.id == 0 {
            format!("event: {}\ndata: {}\n\n", self.kind, self.json)
        } else {
            format!("id: {}\nevent: {}\ndata: {}\n\n", self.id, self.kind, self.json)
        }
    }

    /// A sample event.
    pub fn sample(id: u64, host_id: &Arc<str>, hostname: &str, point: &Point) -> Self {
        let mut object = match serde_json::to_value(point) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(), // A Point always serializes to an object.
        };
        object.insert("hostname".into(), Value::from(hostname));
        Self::build(id, "sample", Some(host_id.clone()), object)
    }

    /// An activity event (connects, disconnects, status changes, notifications…).
    pub fn activity(id: u64, activity: &Activity) -> Self {
        let mut object = activity.fields.clone();
        object.insert("ts".into(), Value::from(activity.ts_ms));
        Self::build(id, activity.kind, activity.host.clone(), object)
    }

    /// A notice that is not stored and has no id (`lagged`, `shutdown`, `resync`).
    pub fn notice(kind: &'static str, message: &str) -> Self {
        let mut object = Map::new();
        object.insert("message".into(), Value::from(message));
        Self::build(0, kind, None, object)
    }

    fn build(
        id: u64,
        kind: &'static str,
        host: Option<Arc<str>>,
        mut object: Map<String, Value>,
    ) -> Self {
        object.insert("id".into(), Value::from(id));
        object.insert("type".into(), Value::from(kind));
        if let Some(host) = &host {
            object.insert("host".into(), Value::from(host.as_ref()));
        }
        let json = Value::Object(object).to_string();
        Self { id, kind, host, json }
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
        let event = LiveEvent::sample(9, &Arc::from("h1"), "web", &point);
        let value: Value = serde_json::from_str(&event.json).unwrap();
        assert_eq!(value["id"], 9);
        assert_eq!(value["type"], "sample");
        assert_eq!(value["host"], "h1");
        assert_eq!(value["hostname"], "web");
        assert_eq!(value["cpu_percent"], 12.5);
        assert_eq!(value["memory_used_bytes"], 42);
        assert_eq!(value["ts"], 5);
        assert!(event.sse_frame().starts_with("id: 9\nevent: sample\ndata: {"));
        assert!(event.sse_frame().ends_with("}\n\n"));
    }

    #[test]
    fn filters_by_host_and_type() {
        let a = LiveEvent::sample(1, &Arc::from("a"), "a", &Point::default());
        let b = LiveEvent::sample(2, &Arc::from("b"), "b", &Point::default());
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
