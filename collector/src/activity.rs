//! The activity contract: everything that happens besides samples (agents connecting and
//! disconnecting, status changes, broadcasts, host removals, alerts firing and resolving) as one
//! closed, serde-tagged [`Activity`] enum.
//!
//! An activity is made by the hub (or `DELETE /api/hosts/{id}`), stored as a row of `activity`
//! (`kind` column = its `type`, `json` column = its other fields), published live after the
//! commit, read back by the activity log, resuming subscribers, `GET /api/alerts` and the
//! notification channels. Every one of them sees the JSON `docs/API.md` documents; the tests
//! below pin it byte for byte, as the field-map code before this enum wrote it.
//!
//! Rows written by earlier versions keep reading: a row the typed variants cannot reproduce
//! exactly (an older alert without a severity, a kind this build does not know) is
//! [`Activity::Other`], its fields kept as they were stored.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::alerts::Severity;

/// Something that happened, for the activity feed. The `type` of its JSON is the variant's name
/// in snake case; the other fields are the variant's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Activity {
    /// An agent completed its hello.
    AgentConnected {
        /// The host's name, from the hello.
        hostname: String,
        /// The agent's address as the collector saw it.
        addr: String,
    },
    /// An agent's connection ended.
    AgentDisconnected {
        /// The host's name.
        hostname: String,
        /// Why, as the connection's end was logged.
        reason: String,
    },
    /// A host's status changed (`online`, `offline`, `stale`).
    Status {
        /// The host's name.
        hostname: String,
        /// The new status.
        status: String,
    },
    /// A broadcast from `POST /api/broadcast`; it concerns no host.
    Notification {
        /// The text, as sent.
        message: String,
        /// Who sent it (the client's address).
        from: String,
    },
    /// A host removed with `DELETE /api/hosts/{id}`.
    HostRemoved {
        /// The host's name.
        hostname: String,
    },
    /// An alert started firing or resolved.
    Alert(Box<Alert>),
    /// A stored row none of the variants above reproduces exactly: a kind this build does not
    /// know (its `type` is then `activity`, as before this enum) or a known kind in an older
    /// shape. Its fields, `type` included, are kept as stored and shown as they are.
    #[serde(untagged)]
    Other(Map<String, Value>),
}

/// Event types recorded in the activity log: every typed variant's [`Activity::kind`].
pub const KINDS: &[&str] =
    &["agent_connected", "agent_disconnected", "status", "notification", "alert", "host_removed"];

/// The static name of a stored activity type (`activity` for one this build does not know).
pub fn known_kind(kind: &str) -> &'static str {
    KINDS.iter().copied().find(|k| *k == kind).unwrap_or("activity")
}

impl Activity {
    /// Its `type`: the `kind` column of its row and the SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Activity::AgentConnected { .. } => "agent_connected",
            Activity::AgentDisconnected { .. } => "agent_disconnected",
            Activity::Status { .. } => "status",
            Activity::Notification { .. } => "notification",
            Activity::HostRemoved { .. } => "host_removed",
            Activity::Alert(_) => "alert",
            Activity::Other(fields) => {
                known_kind(fields.get("type").and_then(Value::as_str).unwrap_or(""))
            }
        }
    }

    /// Its fields without `type`: the `json` column of its row, and the base of every JSON
    /// object showing it.
    pub fn fields(&self) -> Map<String, Value> {
        // Every variant is a struct of strings, numbers and booleans, or a map: always an
        // object, so the empty fallback is never taken.
        let Ok(Value::Object(mut object)) = serde_json::to_value(self) else {
            return Map::new();
        };
        object.remove("type");
        object
    }

    /// The activity a stored row holds (`kind` and `json` columns). Typed when a variant
    /// reproduces the stored fields exactly, so showing a row never changes what it says;
    /// [`Activity::Other`] otherwise, also when `json` is not an object (then with no fields).
    pub fn from_row(kind: &str, json: &str) -> Self {
        let mut fields = match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        fields.insert("type".into(), Value::from(known_kind(kind)));
        match serde_json::from_value::<Activity>(Value::Object(fields.clone())) {
            Ok(typed)
                if !matches!(typed, Activity::Other(_))
                    && serde_json::to_value(&typed).ok().as_ref().and_then(Value::as_object)
                        == Some(&fields) =>
            {
                typed
            }
            _ => Activity::Other(fields),
        }
    }
}

/// An activity with when it happened and the host it concerns: what the hub records, the
/// storage writes as one row and the hub publishes once committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When it happened (unix ms); `ts` in its JSON.
    pub ts_ms: u64,
    /// The host concerned (its own column, and `host` in its JSON); `None` for a broadcast.
    pub host: Option<Arc<str>>,
    /// What happened.
    pub activity: Activity,
}

impl Record {
    /// An activity happening now.
    pub fn now(host: Option<&str>, activity: Activity) -> Self {
        Self { ts_ms: crate::now_ms(), host: host.map(Arc::from), activity }
    }

    /// The JSON object subscribers and the activity log show for event `id`: its fields with
    /// `ts`, `id`, `type` and `host`.
    pub fn json(&self, id: u64) -> String {
        // serde_json's map (without `preserve_order`) keeps keys sorted, which is the order
        // the field maps before this enum wrote; the tests pin the bytes.
        let mut object = self.activity.fields();
        object.insert("ts".into(), Value::from(self.ts_ms));
        object.insert("id".into(), Value::from(id));
        object.insert("type".into(), Value::from(self.activity.kind()));
        if let Some(host) = &self.host {
            object.insert("host".into(), Value::from(host.as_ref()));
        }
        Value::Object(object).to_string()
    }
}

/// An alert change. Built by the hub from an [`crate::alerts::Change`], or when the collector
/// starts without the rule of an alert still firing.
///
/// Its JSON is `AlertFields`: one flat object whose device field is named after the rule
/// key that selected the device, a name that is data, which a derive cannot express.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AlertFields", into = "AlertFields")]
pub struct Alert {
    /// The rule's name.
    pub rule: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// The value that decided it (the metric's value, or seconds of silence).
    pub value: f64,
    /// Since when the condition held (unix ms); `since` in its JSON.
    pub since_ms: u64,
    /// The device, for a per-device rule.
    pub device: Option<AlertDevice>,
    /// A silence held its notifications back.
    pub silenced: bool,
    /// Who decided it.
    pub cause: AlertCause,
}

/// Whether an alert started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition held for the rule's `for`.
    Firing,
    /// The condition cleared (or its rule went).
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved`, as written.
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// The device of a per-device alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDevice {
    /// The device's name (mount point, interface, disk, sensor); `device` in its JSON.
    pub name: String,
    /// The rule key naming the device, written as a field of its own with the device's name,
    /// `"mount": "/var"`; `None` for an alert whose rule is gone.
    pub selector: Option<Selector>,
}

/// The rule key that selects a device (`catalog::alert_scope`'s keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// A filesystem's mount point.
    Mount,
    /// A network interface.
    Interface,
    /// A whole disk.
    Disk,
    /// A temperature sensor.
    Sensor,
}

impl Selector {
    /// The key as rules and alert JSON write it.
    pub fn key(self) -> &'static str {
        match self {
            Selector::Mount => "mount",
            Selector::Interface => "interface",
            Selector::Disk => "disk",
            Selector::Sensor => "sensor",
        }
    }

    /// The selector of a rule key.
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "mount" => Some(Selector::Mount),
            "interface" => Some(Selector::Interface),
            "disk" => Some(Selector::Disk),
            "sensor" => Some(Selector::Sensor),
            _ => None,
        }
    }
}

/// Who decided an alert change.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertCause {
    /// Its rule, judging the host's samples (or their absence).
    Judged {
        /// The host's name (empty when the hub did not know it).
        hostname: String,
        /// The rule's severity.
        severity: Severity,
        /// The rule's summary, filled in.
        summary: String,
        /// The metric's name (`silent` for silence).
        metric: String,
        /// The rule's threshold, for threshold rules.
        threshold: Option<f64>,
    },
    /// The collector started without its rule and resolved it.
    RuleRemoved {
        /// Why, as shown (`rule removed`).
        reason: String,
    },
}

/// An alert's JSON, field by field: what [`Alert`] is written as and read from. Of the four
/// selector fields at most one is present, equal to `device`; the rule's fields come with a
/// judged change and `reason` with a removed rule's. [`Alert`]'s `TryFrom` holds rows to that.
#[derive(Serialize, Deserialize)]
struct AlertFields {
    rule: String,
    state: AlertState,
    value: f64,
    since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sensor: Option<String>,
    silenced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<Alert> for AlertFields {
    fn from(alert: Alert) -> Self {
        let mut fields = AlertFields {
            rule: alert.rule,
            state: alert.state,
            value: alert.value,
            since: alert.since_ms,
            device: None,
            mount: None,
            interface: None,
            disk: None,
            sensor: None,
            silenced: alert.silenced,
            hostname: None,
            severity: None,
            summary: None,
            metric: None,
            threshold: None,
            reason: None,
        };
        if let Some(device) = alert.device {
            if let Some(selector) = device.selector {
                *fields.selector_mut(selector) = Some(device.name.clone());
            }
            fields.device = Some(device.name);
        }
        match alert.cause {
            AlertCause::Judged { hostname, severity, summary, metric, threshold } => {
                fields.hostname = Some(hostname);
                fields.severity = Some(severity);
                fields.summary = Some(summary);
                fields.metric = Some(metric);
                fields.threshold = threshold;
            }
            AlertCause::RuleRemoved { reason } => fields.reason = Some(reason),
        }
        fields
    }
}

impl TryFrom<AlertFields> for Alert {
    type Error = String;

    fn try_from(mut fields: AlertFields) -> Result<Self, String> {
        let mut selected = [Selector::Mount, Selector::Interface, Selector::Disk, Selector::Sensor]
            .into_iter()
            .filter_map(|s| fields.selector_mut(s).take().map(|name| (s, name)));
        let selector = selected.next();
        if selected.next().is_some() {
            return Err("an alert names one device".into());
        }
        let device = match (fields.device, selector) {
            (None, None) => None,
            (Some(name), None) => Some(AlertDevice { name, selector: None }),
            (Some(name), Some((selector, named))) if named == name => {
                Some(AlertDevice { name, selector: Some(selector) })
            }
            _ => return Err("an alert's selector field names its device".into()),
        };
        let cause = match (fields.hostname, fields.severity, fields.summary, fields.metric) {
            (Some(hostname), Some(severity), Some(summary), Some(metric))
                if fields.reason.is_none() =>
            {
                AlertCause::Judged {
                    hostname,
                    severity,
                    summary,
                    metric,
                    threshold: fields.threshold,
                }
            }
            (None, None, None, None) if fields.threshold.is_none() => match fields.reason {
                Some(reason) => AlertCause::RuleRemoved { reason },
                None => return Err("an alert has its rule's fields or a reason".into()),
            },
            _ => return Err("an alert has its rule's fields or a reason, not both".into()),
        };
        Ok(Alert {
            rule: fields.rule,
            state: fields.state,
            value: fields.value,
            since_ms: fields.since,
            device,
            silenced: fields.silenced,
            cause,
        })
    }
}

impl AlertFields {
    fn selector_mut(&mut self, selector: Selector) -> &mut Option<String> {
        match selector {
            Selector::Mount => &mut self.mount,
            Selector::Interface => &mut self.interface,
            Selector::Disk => &mut self.disk,
            Selector::Sensor => &mut self.sensor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: u64 = 1_790_000_000_123;
    const SINCE: u64 = 1_790_000_000_000;

    fn record(host: Option<&str>, activity: Activity) -> Record {
        Record { ts_ms: TS, host: host.map(Arc::from), activity }
    }

    fn disk_full() -> Activity {
        Activity::Alert(Box::new(Alert {
            rule: "disk-full".into(),
            state: AlertState::Firing,
            value: 95.5,
            since_ms: SINCE,
            device: Some(AlertDevice { name: "/var".into(), selector: Some(Selector::Mount) }),
            silenced: false,
            cause: AlertCause::Judged {
                hostname: "web-1".into(),
                severity: Severity::Warning,
                summary: "web-1: / at 95.5%".into(),
                metric: "fs_used_percent".into(),
                threshold: Some(90.0),
            },
        }))
    }

    /// Every variant with its host, event id, and the live JSON and `json` column the
    /// field-map code before this enum wrote for the same event (captured from it).
    fn golden() -> Vec<(Record, u64, &'static str, &'static str)> {
        vec![
            (
                record(
                    Some("h1"),
                    Activity::AgentConnected {
                        hostname: "web-1".into(),
                        addr: "127.0.0.1:5000".into(),
                    },
                ),
                42,
                r#"{"addr":"127.0.0.1:5000","host":"h1","hostname":"web-1","id":42,"ts":1790000000123,"type":"agent_connected"}"#,
                r#"{"addr":"127.0.0.1:5000","hostname":"web-1"}"#,
            ),
            (
                record(
                    Some("h1"),
                    Activity::AgentDisconnected {
                        hostname: "web-1".into(),
                        reason: "closed: bye \"now\"\n".into(),
                    },
                ),
                42,
                r#"{"host":"h1","hostname":"web-1","id":42,"reason":"closed: bye \"now\"\n","ts":1790000000123,"type":"agent_disconnected"}"#,
                r#"{"hostname":"web-1","reason":"closed: bye \"now\"\n"}"#,
            ),
            (
                record(
                    Some("h1"),
                    Activity::Status { hostname: "web-1".into(), status: "offline".into() },
                ),
                42,
                r#"{"host":"h1","hostname":"web-1","id":42,"status":"offline","ts":1790000000123,"type":"status"}"#,
                r#"{"hostname":"web-1","status":"offline"}"#,
            ),
            (
                record(
                    None,
                    Activity::Notification {
                        message: "deploy <b>at</b> 5 é".into(),
                        from: "127.0.0.1".into(),
                    },
                ),
                42,
                r#"{"from":"127.0.0.1","id":42,"message":"deploy <b>at</b> 5 é","ts":1790000000123,"type":"notification"}"#,
                r#"{"from":"127.0.0.1","message":"deploy <b>at</b> 5 é"}"#,
            ),
            (
                record(Some("h1"), Activity::HostRemoved { hostname: "web-1".into() }),
                42,
                r#"{"host":"h1","hostname":"web-1","id":42,"ts":1790000000123,"type":"host_removed"}"#,
                r#"{"hostname":"web-1"}"#,
            ),
            (
                record(Some("h1"), disk_full()),
                43,
                r#"{"device":"/var","host":"h1","hostname":"web-1","id":43,"metric":"fs_used_percent","mount":"/var","rule":"disk-full","severity":"warning","silenced":false,"since":1790000000000,"state":"firing","summary":"web-1: / at 95.5%","threshold":90.0,"ts":1790000000123,"type":"alert","value":95.5}"#,
                r#"{"device":"/var","hostname":"web-1","metric":"fs_used_percent","mount":"/var","rule":"disk-full","severity":"warning","silenced":false,"since":1790000000000,"state":"firing","summary":"web-1: / at 95.5%","threshold":90.0,"value":95.5}"#,
            ),
            (
                record(
                    Some("h1"),
                    Activity::Alert(Box::new(Alert {
                        rule: "agent-silent".into(),
                        state: AlertState::Resolved,
                        value: 12.0,
                        since_ms: SINCE,
                        device: None,
                        silenced: true,
                        cause: AlertCause::Judged {
                            hostname: "web-1".into(),
                            severity: Severity::Critical,
                            summary: "web-1 silent".into(),
                            metric: "silent".into(),
                            threshold: None,
                        },
                    })),
                ),
                44,
                r#"{"host":"h1","hostname":"web-1","id":44,"metric":"silent","rule":"agent-silent","severity":"critical","silenced":true,"since":1790000000000,"state":"resolved","summary":"web-1 silent","ts":1790000000123,"type":"alert","value":12.0}"#,
                r#"{"hostname":"web-1","metric":"silent","rule":"agent-silent","severity":"critical","silenced":true,"since":1790000000000,"state":"resolved","summary":"web-1 silent","value":12.0}"#,
            ),
            (
                record(
                    Some("h1"),
                    Activity::Alert(Box::new(Alert {
                        rule: "old-rule".into(),
                        state: AlertState::Resolved,
                        value: 3.25,
                        since_ms: SINCE,
                        device: Some(AlertDevice { name: "eth0".into(), selector: None }),
                        silenced: true,
                        cause: AlertCause::RuleRemoved { reason: "rule removed".into() },
                    })),
                ),
                45,
                r#"{"device":"eth0","host":"h1","id":45,"reason":"rule removed","rule":"old-rule","silenced":true,"since":1790000000000,"state":"resolved","ts":1790000000123,"type":"alert","value":3.25}"#,
                r#"{"device":"eth0","reason":"rule removed","rule":"old-rule","silenced":true,"since":1790000000000,"state":"resolved","value":3.25}"#,
            ),
        ]
    }

    #[test]
    fn every_variant_writes_the_json_the_field_maps_wrote_and_reads_it_back() {
        for (record, id, live, row) in golden() {
            let kind = record.activity.kind();
            assert_eq!(record.json(id), live, "{kind}: live JSON");
            let column = Value::Object(record.activity.fields()).to_string();
            assert_eq!(column, row, "{kind}: json column");
            let read = Activity::from_row(kind, &column);
            assert_eq!(read, record.activity, "{kind}: read back typed");
            assert!(!matches!(read, Activity::Other(_)), "{kind}");
        }
    }

    #[test]
    fn alert_pages_and_notifications_show_what_they_showed() {
        // `GET /api/alerts` lists an event through `json!`, `AlertEvent` on its own keeps its
        // order; the notification is what every channel formats. Captured from the field maps.
        let event = crate::storage::alerts::AlertEvent {
            id: 43,
            ts_ms: TS,
            host: Some("h1".into()),
            activity: disk_full(),
        };
        assert_eq!(
            serde_json::json!({ "recent": [event.clone()] }).to_string(),
            r#"{"recent":[{"device":"/var","host":"h1","hostname":"web-1","id":43,"metric":"fs_used_percent","mount":"/var","rule":"disk-full","severity":"warning","silenced":false,"since":1790000000000,"state":"firing","summary":"web-1: / at 95.5%","threshold":90.0,"ts_ms":1790000000123,"value":95.5}]}"#
        );
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"id":43,"ts_ms":1790000000123,"host":"h1","device":"/var","hostname":"web-1","metric":"fs_used_percent","mount":"/var","rule":"disk-full","severity":"warning","silenced":false,"since":1790000000000,"state":"firing","summary":"web-1: / at 95.5%","threshold":90.0,"value":95.5}"#
        );
        let Activity::Alert(alert) = disk_full() else { unreachable!() };
        let notification = crate::notify::Notification::from_alert(43, TS, "h1", &alert).unwrap();
        assert_eq!(
            serde_json::to_string(&notification).unwrap(),
            r#"{"state":"firing","rule":"disk-full","host":"h1","hostname":"web-1","device":"/var","severity":"warning","summary":"web-1: / at 95.5%","value":95.5,"threshold":90.0,"since_ms":1790000000000,"ts_ms":1790000000123,"event_id":43}"#
        );
        let silenced = Alert { silenced: true, ..*alert };
        assert!(crate::notify::Notification::from_alert(43, TS, "h1", &silenced).is_none());
    }

    #[test]
    fn every_selector_of_the_catalog_is_one_of_ours() {
        for table in crate::catalog::DEVICES {
            if let Some((_, key)) = crate::catalog::alert_scope(table.kind) {
                assert_eq!(Selector::from_key(key).map(Selector::key), Some(key));
            }
        }
    }

    #[test]
    fn rows_of_earlier_versions_and_unknown_kinds_show_as_they_were_stored() {
        // Outputs of the field-map code for the same rows (captured from it).
        let cases = [
            // An alert from before severities and summaries.
            (
                "alert",
                r#"{"hostname":"web-1","rule":"cpu","since":1790000000000,"state":"firing","value":97.0}"#,
                r#"{"host":"h1","hostname":"web-1","id":7,"rule":"cpu","since":1790000000000,"state":"firing","ts":5,"type":"alert","value":97.0}"#,
            ),
            // A kind this build does not know.
            (
                "agent_refused",
                r#"{"reason":"x","n":1}"#,
                r#"{"host":"h1","id":7,"n":1,"reason":"x","ts":5,"type":"activity"}"#,
            ),
            // A damaged row.
            ("status", "not json", r#"{"host":"h1","id":7,"ts":5,"type":"status"}"#),
            // A selector field that is not the device, an integer value, an extra field.
            (
                "alert",
                r#"{"device":"/","disk":"sda","hostname":"w","metric":"m","rule":"r","severity":"info","silenced":false,"since":1,"state":"firing","summary":"s","value":1.0}"#,
                r#"{"device":"/","disk":"sda","host":"h1","hostname":"w","id":7,"metric":"m","rule":"r","severity":"info","silenced":false,"since":1,"state":"firing","summary":"s","ts":5,"type":"alert","value":1.0}"#,
            ),
            (
                "status",
                r#"{"hostname":"w","status":"online","since":3}"#,
                r#"{"host":"h1","hostname":"w","id":7,"since":3,"status":"online","ts":5,"type":"status"}"#,
            ),
        ];
        for (kind, json, shown) in cases {
            let activity = Activity::from_row(kind, json);
            assert!(matches!(activity, Activity::Other(_)), "{kind} {json}: {activity:?}");
            let record = Record { ts_ms: 5, host: Some(Arc::from("h1")), activity };
            assert_eq!(record.json(7), shown, "{json}");
            assert_eq!(record.activity.kind(), known_kind(kind));
        }
        // An alert value stored as an integer would be written back as 97.0: kept as stored.
        let integer = r#"{"hostname":"w","metric":"m","rule":"r","severity":"info","silenced":false,"since":1,"state":"firing","summary":"s","value":97}"#;
        let activity = Activity::from_row("alert", integer);
        assert!(matches!(activity, Activity::Other(_)), "{activity:?}");
        assert_eq!(Value::Object(activity.fields()).to_string(), integer);
    }
}
