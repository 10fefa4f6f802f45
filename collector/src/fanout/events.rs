//! Live events: the JSON objects subscribers receive, over SSE and WebSocket alike.
//!
//! An event keeps what it announces (a sample's point, an [`crate::activity::Record`]) and is
//! serialized at most once, the first time a subscriber needs it, then shared between
//! subscribers: with nobody watching, ingest pays nothing for JSON. Event ids are the database ids of what they
//! announce (a sample's row, an activity row), so they only grow and a subscriber can resume
//! from the database after any disconnect.

use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::activity::Record;
use crate::storage::Point;

/// A sample event's JSON without its names and per-core values, with every metric present:
/// the base of the size estimate that bounds the ring and the subscriber queues before anyone
/// serialized the event.
const SAMPLE_FIXED_BYTES: usize = 720;
/// One per-core value in a sample event's JSON (`100.0,` at most, `12.5,` typically).
const SAMPLE_CORE_BYTES: usize = 6;

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
    bytes: usize,
}

#[derive(Debug)]
enum Body {
    Sample { hostname: Arc<str>, point: Arc<Point> },
    Activity(Record),
    Notice { message: String },
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

    /// Bytes of JSON this event takes, estimated when it was made (a sample's from its names
    /// and number of cores, anything else from its JSON, built then): the same figure whether or
    /// not it has been serialized since, so queues and the ring count it in and out alike.
    pub fn size(&self) -> usize {
        self.bytes
    }

    /// The event as a Server-Sent Events frame, appended to `out`. Notices (id 0) carry no
    /// `id:` line, so they do not move the browser's `Last-Event-ID`.
    pub fn write_sse_frame(&self, out: &mut String) {
        self.write_sse_frame_tagged(out, None);
    }

    /// The SSE frame with `--redis`: the `id:` line names this collector (`{id}.{tag}`, see
    /// [`format_event_id`]) and the JSON gains a `collector` field, so a viewer the load
    /// balancer moves to another collector is told to resync instead of resuming from
    /// another database's numbering. `None` writes what [`Self::write_sse_frame`] writes.
    pub fn write_sse_frame_tagged(&self, out: &mut String, tag: Option<&str>) {
        use std::fmt::Write;
        if self.id != 0 {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "id: {}", format_event_id(self.id, tag));
        }
        let _ = write!(out, "event: {}\ndata: ", self.kind);
        self.write_json_tagged(out, tag);
        out.push_str("\n\n");
    }

    /// The JSON appended to `out`, with a `"collector": tag` field first when `tag` is given
    /// and the event has an id; the shared JSON stays as it is (the id stays a number).
    pub fn write_json_tagged(&self, out: &mut String, tag: Option<&str>) {
        let json = self.json();
        match (tag, json.strip_prefix('{')) {
            (Some(tag), Some(rest)) if self.id != 0 => {
                // Tags are ASCII letters and digits only (`event_tag`): nothing to escape.
                out.push_str("{\"collector\":\"");
                out.push_str(tag);
                out.push_str(if rest.starts_with('}') { "\"" } else { "\"," });
                out.push_str(rest);
            }
            _ => out.push_str(json),
        }
    }

    /// A sample event.
    pub fn sample(id: u64, host_id: Arc<str>, hostname: Arc<str>, point: Arc<Point>) -> Self {
        Self::new(id, "sample", Some(host_id), Body::Sample { hostname, point })
    }

    /// An activity event (connects, disconnects, status changes, notifications…).
    pub fn activity(id: u64, record: &Record) -> Self {
        let (kind, host) = (record.activity.kind(), record.host.clone());
        Self::new(id, kind, host, Body::Activity(record.clone()))
    }

    /// A notice that is not stored and has no id (`lagged`, `shutdown`, `resync`).
    pub fn notice(kind: &'static str, message: &str) -> Self {
        Self::new(0, kind, None, Body::Notice { message: message.to_owned() })
    }

    fn new(id: u64, kind: &'static str, host: Option<Arc<str>>, body: Body) -> Self {
        let mut event = Self { id, kind, host, body, json: OnceLock::new(), bytes: 0 };
        event.bytes = match &event.body {
            Body::Sample { hostname, point } => {
                let host = event.host.as_deref().map_or(0, str::len);
                SAMPLE_FIXED_BYTES
                    + host
                    + hostname.len()
                    + SAMPLE_CORE_BYTES * point.cpu_cores_percent.len()
            }
            // Activities and notices are rare: their JSON is built now.
            Body::Activity(_) | Body::Notice { .. } => event.json().len(),
        };
        event
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
            Body::Activity(record) => record.json(self.id),
            // A notice (id 0) has no id in its JSON, as in its SSE frame: a client that keeps
            // the last id it saw must not be moved back to 0 by it.
            Body::Notice { message } => {
                serde_json::json!({ "message": message, "type": self.kind }).to_string()
            }
        }
    }
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

/// A resume point from `Last-Event-ID` or `?since=`: an event id, `None` when absent or blank
/// (a browser's `EventSource` sends an empty `Last-Event-ID` before it saw any id), and an
/// error naming the value for anything else, which the caller answers with 400.
pub fn parse_event_id(value: Option<&str>) -> Result<Option<u64>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| format!("bad event id {v:?}")),
    }
}

/// Most characters of a collector's tag in event ids.
const TAG_MAX: usize = 16;

/// The tag this collector puts in its event ids with `--redis`: the first 8 letters and digits
/// of its replica id (made once, kept in the database), so it is stable across restarts.
pub fn event_tag(collector_id: &str) -> String {
    let tag: String = collector_id.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    if tag.is_empty() { "0".into() } else { tag }
}

/// An event id as written in SSE `id:` lines and resume hints: the number, then `.tag` with
/// `--redis`.
pub fn format_event_id(id: u64, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{id}.{tag}"),
        None => id.to_string(),
    }
}

/// Where a subscriber resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// From now: no id given.
    Now,
    /// After this collector's event id.
    After(u64),
    /// The id names another collector (`--redis`): its numbering is not this database's, so
    /// the subscriber gets `resync`, as for an id newer than any stored here.
    Elsewhere,
}

impl Resume {
    /// The id to resume after, if any.
    pub fn after(self) -> Option<u64> {
        match self {
            Self::After(id) => Some(id),
            Self::Now | Self::Elsewhere => None,
        }
    }
}

/// A resume point from `Last-Event-ID` or `?since=`. Without a tag (no `--redis`) exactly
/// [`parse_event_id`]. With this collector's `tag`, `{id}.{tag}` resumes here, `{id}.{other}`
/// is [`Resume::Elsewhere`], and a plain number is taken as this collector's (clients that
/// keep only the JSON's numeric `id` keep working against one collector; behind a load
/// balancer they must send the tagged form).
pub fn parse_resume(value: Option<&str>, tag: Option<&str>) -> Result<Resume, String> {
    let tagged = tag.zip(value.and_then(|v| v.trim().split_once('.')));
    let Some((ours, (number, theirs))) = tagged else {
        return Ok(parse_event_id(value)?.map_or(Resume::Now, Resume::After));
    };
    let bad = || format!("bad event id {:?}", value.unwrap_or_default());
    let id = parse_event_id(Some(number)).map_err(|_| bad())?.ok_or_else(bad)?;
    if number.trim() != number
        || theirs.is_empty()
        || theirs.len() > TAG_MAX
        || !theirs.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(bad());
    }
    Ok(if theirs == ours { Resume::After(id) } else { Resume::Elsewhere })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn event_ids_are_plain_numbers_or_blank() {
        assert_eq!(parse_event_id(None), Ok(None));
        assert_eq!(parse_event_id(Some(" ")), Ok(None));
        assert_eq!(parse_event_id(Some(" 42 ")), Ok(Some(42)));
        assert_eq!(parse_event_id(Some("18446744073709551615")), Ok(Some(u64::MAX)));
        for bad in ["-1", "1e3", "0x10", "18446744073709551616", "1 2", "\u{0}", "١"] {
            assert!(parse_event_id(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn tagged_ids_resume_here_or_resync_elsewhere() {
        let tag = Some("ab12cd34");
        assert_eq!(parse_resume(Some("42.ab12cd34"), tag), Ok(Resume::After(42)));
        assert_eq!(parse_resume(Some(" 42.ab12cd34 "), tag), Ok(Resume::After(42)));
        assert_eq!(parse_resume(Some("42.ffff0000"), tag), Ok(Resume::Elsewhere));
        assert_eq!(parse_resume(Some("42"), tag), Ok(Resume::After(42)), "plain is local");
        assert_eq!(parse_resume(Some(""), tag), Ok(Resume::Now));
        assert_eq!(parse_resume(None, tag), Ok(Resume::Now));
        for bad in ["42.", ".ab12cd34", "x.ab12cd34", "42.a-b", "42 .ab12cd34", "4.2.ab"] {
            assert!(parse_resume(Some(bad), tag).is_err(), "{bad}");
        }
        // Without --redis nothing changes: a tagged id is a bad id, as before.
        assert!(parse_resume(Some("42.ab12cd34"), None).is_err());
        assert_eq!(parse_resume(Some("42"), None), Ok(Resume::After(42)));
        assert_eq!(event_tag("0123456789abcdef"), "01234567");
        assert_eq!(format_event_id(7, Some("01234567")), "7.01234567");
        assert_eq!(format_event_id(7, None), "7");

        let point = Arc::new(Point { ts: 5, ..Default::default() });
        let event = LiveEvent::sample(9, Arc::from("h1"), Arc::from("web"), point);
        let mut frame = String::new();
        event.write_sse_frame_tagged(&mut frame, tag);
        assert!(frame.starts_with("id: 9.ab12cd34\nevent: sample\ndata: {"), "{frame}");
        let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let value: Value = serde_json::from_str(data).unwrap();
        assert_eq!((value["id"].as_u64(), value["collector"].as_str()), (Some(9), tag));
        let mut notice = String::new();
        LiveEvent::notice("resync", "m").write_sse_frame_tagged(&mut notice, tag);
        assert!(!notice.contains("collector") && !notice.contains("id:"), "{notice}");
    }

    #[test]
    fn sample_events_carry_host_type_id_and_values() {
        let point = Point {
            ts: 5,
            cpu_percent: Some(12.5),
            memory_used_bytes: Some(42),
            ..Default::default()
        };
        let event = LiveEvent::sample(9, Arc::from("h1"), Arc::from("web"), Arc::new(point));
        assert!(event.json.get().is_none(), "not serialized before it is needed");
        let value: Value = serde_json::from_str(event.json()).unwrap();
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
    fn notices_have_no_id_in_their_json() {
        for kind in ["lagged", "shutdown", "resync"] {
            let value: Value = serde_json::from_str(LiveEvent::notice(kind, "m").json()).unwrap();
            assert_eq!(value.get("id"), None, "{kind}: {value}");
            assert_eq!(
                (value["type"].as_str(), value["message"].as_str()),
                (Some(kind), Some("m"))
            );
        }
    }

    /// A sample with every metric, with `cores` per-core values.
    fn full_point(cores: usize) -> Point {
        let value = |i: usize| Some(1_000_000_000.0 + i as f64 + 0.5);
        Point {
            ts: 1_790_000_000_000,
            cpu_percent: Some(37.5),
            cpu_cores_percent: (0..cores).map(|i| (i % 100) as f64 + 0.5).collect(),
            memory_used_bytes: Some(8_000_000_000),
            memory_total_bytes: Some(16_000_000_000),
            memory_available_bytes: Some(8_000_000_000),
            swap_used_bytes: Some(1_000_000_000),
            swap_total_bytes: Some(4_000_000_000),
            load1: Some(1.25),
            load5: Some(1.5),
            load15: Some(1.75),
            net_rx_bytes_per_second: value(1),
            net_tx_bytes_per_second: value(2),
            disk_read_bytes_per_second: value(3),
            disk_write_bytes_per_second: value(4),
            fs_used_bytes: Some(100_000_000_000),
            fs_total_bytes: Some(500_000_000_000),
            fs_free_bytes: Some(400_000_000_000),
            fs_avail_bytes: Some(375_000_000_000),
            fs_used_percent: Some(21.05),
            processes: Some(312),
            uptime_seconds: Some(8_640_000),
            temperature_celsius: Some(54.5),
        }
    }

    #[test]
    fn size_estimates_track_the_json_from_two_to_a_thousand_cores() {
        for cores in [0, 2, 64, 1024] {
            let point = Arc::new(full_point(cores));
            let event =
                LiveEvent::sample(123_456_789, Arc::from("host-1"), Arc::from("web"), point);
            let (estimate, actual) = (event.size() as f64, event.json().len() as f64);
            assert!(
                (0.75..=1.5).contains(&(estimate / actual)),
                "{cores} cores: estimated {estimate} bytes, the JSON has {actual}"
            );
            assert_eq!(event.size() as f64, estimate, "serializing does not change the size");
        }
        let notice = LiveEvent::notice("lagged", "slow");
        assert_eq!(notice.size(), notice.json().len());
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
