//! Alerts: threshold rules with a duration ("CPU above 90 % for 2 minutes"), on host totals or
//! on one device's series (a mount, an interface, a disk, a sensor), with hysteresis, host
//! selectors, a severity and a summary; and "agent silent" rules. The hub judges them on every
//! stored sample of the host concerned and, for silence, every tick. Firing and resolved
//! alerts become `alert` events in the activity feed and the live streams; the storage keeps
//! the firing ones (`alert_state`), so a restart neither forgets nor repeats them.
//!
//! Rules come from two places: text (`--alerts`), separated by `;`:
//! `METRIC OP THRESHOLD for DURATION` (OP one of `>`, `>=`, `<`, `<=`) or `silent for DURATION`;
//! and `[[alert]]` tables of the TOML configuration ([`rules_from_toml`]). When no rule watches
//! silence, the built-in `agent-silent` does: a host that sent samples and then none for
//! `agent_silent_intervals` of its own intervals.
//!
//! Each (rule, host, device) is one alert: inactive → pending (the condition holds, not yet for
//! the rule's `for`) → firing → resolved (the value crossed the clear threshold) → inactive.
//! Threshold rules are judged on the samples' own timestamps, so a replayed outage raises the
//! alerts it would have raised live. This module is pure logic: no I/O, no clock of its own.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, DeviceKind};
use crate::storage::Point;
use crate::storage::device::Reading;

/// The rules used when `--alerts` is not given.
pub const DEFAULT_RULES: &str = "cpu_percent > 90 for 2m; memory_used_percent > 90 for 5m; fs_used_percent > 90 for 5m; silent for 1m";

/// A value a threshold rule can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// CPU busy percentage.
    CpuPercent,
    /// Memory in use, as a percentage of the total.
    MemoryUsedPercent,
    /// Swap in use, as a percentage of the total.
    SwapUsedPercent,
    /// Filesystem space in use as `df` shows it: used / (used + available to users).
    FsUsedPercent,
    /// One-minute load average.
    Load1,
    /// Five-minute load average.
    Load5,
    /// Fifteen-minute load average.
    Load15,
    /// Network bytes received per second.
    NetRx,
    /// Network bytes sent per second.
    NetTx,
    /// Disk bytes read per second.
    DiskRead,
    /// Disk bytes written per second.
    DiskWrite,
    /// Hottest sensor.
    Temperature,
}

const METRIC_NAMES: [(&str, Metric); 12] = [
    ("cpu_percent", Metric::CpuPercent),
    ("memory_used_percent", Metric::MemoryUsedPercent),
    ("swap_used_percent", Metric::SwapUsedPercent),
    ("fs_used_percent", Metric::FsUsedPercent),
    ("load1", Metric::Load1),
    ("load5", Metric::Load5),
    ("load15", Metric::Load15),
    ("net_rx_bytes_per_second", Metric::NetRx),
    ("net_tx_bytes_per_second", Metric::NetTx),
    ("disk_read_bytes_per_second", Metric::DiskRead),
    ("disk_write_bytes_per_second", Metric::DiskWrite),
    ("temperature_celsius", Metric::Temperature),
];

impl Metric {
    /// The metric's value in a point, if the host reported what it needs.
    pub fn value(self, point: &Point) -> Option<f64> {
        let percent = |used: Option<u64>, total: Option<u64>| match (used, total) {
            (Some(used), Some(total)) if total > 0 => Some(used as f64 * 100.0 / total as f64),
            _ => None,
        };
        match self {
            Metric::CpuPercent => point.cpu_percent,
            Metric::MemoryUsedPercent => percent(point.memory_used_bytes, point.memory_total_bytes),
            Metric::SwapUsedPercent => percent(point.swap_used_bytes, point.swap_total_bytes),
            // df's Use%, which leaves root's reserve out; used / size only for a point that
            // lacks the available space (never from a live agent).
            Metric::FsUsedPercent => {
                point.fs_used_percent.or_else(|| percent(point.fs_used_bytes, point.fs_total_bytes))
            }
            Metric::Load1 => point.load1,
            Metric::Load5 => point.load5,
            Metric::Load15 => point.load15,
            Metric::NetRx => point.net_rx_bytes_per_second,
            Metric::NetTx => point.net_tx_bytes_per_second,
            Metric::DiskRead => point.disk_read_bytes_per_second,
            Metric::DiskWrite => point.disk_write_bytes_per_second,
            Metric::Temperature => point.temperature_celsius,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Above,
    /// `>=`
    AtLeast,
    /// `<`
    Below,
    /// `<=`
    AtMost,
}

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Above => value > threshold,
            Op::AtLeast => value >= threshold,
            Op::Below => value < threshold,
            Op::AtMost => value <= threshold,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            ">" => Some(Op::Above),
            ">=" => Some(Op::AtLeast),
            "<" => Some(Op::Below),
            "<=" => Some(Op::AtMost),
            _ => None,
        }
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Above => ">",
            Op::AtLeast => ">=",
            Op::Below => "<",
            Op::AtMost => "<=",
        }
    }

    fn upward(self) -> bool {
        matches!(self, Op::Above | Op::AtLeast)
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// Parses `info`, `warning` or `critical`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The name as written.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The series a threshold rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    /// A host total (or a percentage of two).
    Host(Metric),
    /// One field of every device of a kind whose name matches a glob.
    Device {
        /// The kind of device.
        kind: DeviceKind,
        /// The field, in [`catalog::DeviceTable::fields`] order.
        field: usize,
        /// Glob on the device's name (`*`: every device of the kind).
        name: String,
    },
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A series compared with a threshold.
    Threshold {
        /// The series.
        watched: Watched,
        /// The comparison.
        op: Op,
        /// The threshold.
        value: f64,
    },
    /// No sample from a host that was sending.
    Silent,
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its unique name in events, the API and notifications.
    pub name: String,
    /// What it watches.
    pub condition: Condition,
    /// How long the condition must hold before the alert fires.
    pub duration: Duration,
    /// The metric's name as written.
    pub metric_name: String,
    /// A firing alert resolves once the value no longer passes this (hysteresis).
    pub clear: f64,
    /// Globs on host id or hostname; empty means every host.
    pub hosts: Vec<String>,
    /// Severity.
    pub severity: Severity,
    /// Summary template (`{host}`, `{value}`, … see [`PLACEHOLDERS`]).
    pub summary: String,
    /// Silence rules: how many of the host's own intervals without a sample count as silent
    /// (0: only [`Rule::duration`]); the larger of the two applies.
    pub silent_intervals: u32,
}

impl Rule {
    /// The threshold of a threshold rule.
    pub fn threshold(&self) -> Option<f64> {
        match self.condition {
            Condition::Threshold { value, .. } => Some(value),
            Condition::Silent => None,
        }
    }

    /// The series of a threshold rule.
    pub fn watched(&self) -> Option<&Watched> {
        match &self.condition {
            Condition::Threshold { watched, .. } => Some(watched),
            Condition::Silent => None,
        }
    }

    fn applies_to(&self, host: &str, hostname: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|g| glob(g, host) || glob(g, hostname))
    }
}

/// The name of the built-in silence rule.
pub const AGENT_SILENT: &str = "agent-silent";

/// The built-in silence rule: `intervals` of a host's own sampling interval without a sample
/// (at least 10 s, so a host sending every 100 ms is not called silent for a hiccup).
pub fn agent_silent(intervals: u32) -> Rule {
    Rule {
        name: AGENT_SILENT.into(),
        condition: Condition::Silent,
        duration: Duration::from_secs(10),
        metric_name: "silent".into(),
        clear: 0.0,
        hosts: Vec::new(),
        severity: Severity::Critical,
        summary: DEFAULT_SILENT_SUMMARY.into(),
        silent_intervals: intervals,
    }
}

/// Placeholders a summary template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "host",
    "host_id",
    "hostname",
    "rule",
    "metric",
    "value",
    "threshold",
    "clear",
    "op",
    "for",
    "severity",
    "state",
    "device",
    "mount",
    "interface",
    "disk",
    "sensor",
];

const DEFAULT_SUMMARY: &str = "{hostname}: {metric}{device_suffix} is {value} ({op} {threshold})";
const DEFAULT_SILENT_SUMMARY: &str = "{hostname}: no sample for {value} s";

/// Parses `;`-separated rules; `none` (or an empty text) means no rules.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(';').map(str::trim).filter(|r| !r.is_empty()).map(parse_rule).collect()
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let duration_of = |word: &str| {
        humantime::parse_duration(word)
            .map_err(|_| format!("rule {text:?}: {word:?} is not a duration"))
    };
    match words.as_slice() {
        ["silent", "for", duration] => Ok(Rule {
            name: format!("silent for {duration}"),
            duration: duration_of(duration)?,
            silent_intervals: 0,
            severity: Severity::Warning,
            ..agent_silent(0)
        }),
        [metric, op, value, "for", duration] => {
            let metric_value = host_metric(metric).ok_or_else(|| {
                let names: Vec<&str> = catalog::alert_names().collect();
                format!(
                    "rule {text:?}: unknown metric {metric:?} (use one of {})",
                    names.join(", ")
                )
            })?;
            let op_value = Op::parse(op).ok_or_else(|| {
                format!("rule {text:?}: unknown comparison {op:?} (use >, >=, < or <=)")
            })?;
            let threshold: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("rule {text:?}: {value:?} is not a number"))?;
            Ok(Rule {
                name: format!("{metric} {op} {value} for {duration}"),
                condition: Condition::Threshold {
                    watched: Watched::Host(metric_value),
                    op: op_value,
                    value: threshold,
                },
                duration: duration_of(duration)?,
                metric_name: (*metric).to_owned(),
                clear: threshold,
                hosts: Vec::new(),
                severity: Severity::Warning,
                summary: DEFAULT_SUMMARY.into(),
                silent_intervals: 0,
            })
        }
        _ => Err(format!(
            "rule {text:?}: expected `METRIC OP THRESHOLD for DURATION` or `silent for DURATION`"
        )),
    }
}

/// The host total a rule names, if rules may watch it.
fn host_metric(name: &str) -> Option<Metric> {
    // The catalog says which series rules may watch; METRIC_NAMES says how to read each.
    catalog::alert_names()
        .find(|n| *n == name)
        .and_then(|n| METRIC_NAMES.iter().find(|(m, _)| *m == n))
        .map(|(_, metric)| *metric)
}

/// A bad `[[alert]]` table: which rule, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// `alert "NAME".FIELD` (or `alert[N].FIELD` before the name is known).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Keys of an `[[alert]]` table.
const RULE_KEYS: &[&str] = &[
    "name",
    "metric",
    "mount",
    "interface",
    "disk",
    "sensor",
    "op",
    "threshold",
    "clear",
    "for",
    "hosts",
    "severity",
    "summary",
];

/// Reads the `[[alert]]` tables of the configuration. `taken` are names already in use (the
/// `--alerts` rules'), which must stay unique.
pub fn rules_from_toml(value: &toml::Value, taken: &[String]) -> Result<Vec<Rule>, RuleError> {
    let tables = value.as_array().ok_or_else(|| RuleError {
        key: "alert".into(),
        message: "must be an array of tables: [[alert]]".into(),
    })?;
    let mut names: Vec<String> = taken.to_vec();
    let mut rules = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let rule = rule_from_table(index, table, &names)?;
        names.push(rule.name.clone());
        rules.push(rule);
    }
    Ok(rules)
}

fn rule_from_table(index: usize, value: &toml::Value, taken: &[String]) -> Result<Rule, RuleError> {
    let at = |field: &str| format!("alert[{}].{field}", index + 1);
    let table = value
        .as_table()
        .ok_or_else(|| RuleError { key: at(""), message: "must be a table".into() })?;
    let name = match table.get("name") {
        Some(toml::Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
        Some(_) => {
            return Err(RuleError { key: at("name"), message: "must be non-empty text".into() });
        }
        None => {
            return Err(RuleError {
                key: at("name"),
                message: "missing: every rule needs a unique name".into(),
            });
        }
    };
    let err = |field: &str, message: String| RuleError {
        key: format!("alert {name:?}.{field}"),
        message,
    };
    if crate::untrusted::has_control(&name) || name.chars().count() > 100 {
        return Err(err(
            "name",
            "must be at most 100 characters without control characters".into(),
        ));
    }
    if taken.contains(&name) {
        return Err(err("name", "is not unique".into()));
    }
    if let Some(key) = table.keys().find(|k| !RULE_KEYS.contains(&k.as_str())) {
        return Err(err(key, format!("unknown key (use {})", RULE_KEYS.join(", "))));
    }
    let text = |field: &str| -> Result<Option<&str>, RuleError> {
        match table.get(field) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(err(field, "must be a string".into())),
        }
    };
    let number = |field: &str| -> Result<Option<f64>, RuleError> {
        match table.get(field) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(toml::Value::Float(f)) if f.is_finite() => Ok(Some(*f)),
            Some(_) => Err(err(field, "must be a number".into())),
        }
    };
    let metric_name = text("metric")?.ok_or_else(|| err("metric", "missing".into()))?.to_owned();
    let selectors: Vec<(&str, &str)> = ["mount", "interface", "disk", "sensor"]
        .into_iter()
        .filter_map(|key| Some((key, text(key).transpose()?)))
        .map(|(key, v)| v.map(|v| (key, v)))
        .collect::<Result<_, _>>()?;
    if selectors.len() > 1 {
        return Err(err(
            selectors[1].0,
            format!("a rule selects one device; {} is given too", selectors[0].0),
        ));
    }
    let host_total = host_metric(&metric_name);
    let device = catalog::device_alert_series(&metric_name);
    let watched = match (selectors.first(), host_total, device) {
        (Some((key, pattern)), _, Some((kind, field))) => {
            let (_, wanted) = catalog::alert_scope(kind).expect("device alert series have a scope");
            if *key != wanted {
                return Err(err(
                    key,
                    format!(
                        "{metric_name} is a per-{wanted} series: select the device with {wanted} = \"…\""
                    ),
                ));
            }
            if pattern.is_empty() {
                return Err(err(key, "must not be empty".into()));
            }
            Watched::Device { kind, field, name: (*pattern).to_owned() }
        }
        (Some((key, _)), _, None) => {
            return Err(err(key, format!("{metric_name:?} has no per-device series")));
        }
        (None, Some(metric), _) => Watched::Host(metric),
        (None, None, Some((kind, field))) => Watched::Device { kind, field, name: "*".into() },
        (None, None, None) => {
            let mut names: Vec<String> = catalog::alert_names().map(String::from).collect();
            names.extend(catalog::device_alert_names().map(|(n, key)| format!("{n} (with {key})")));
            names.sort();
            names.dedup();
            return Err(err(
                "metric",
                format!("unknown metric {metric_name:?} (use one of {})", names.join(", ")),
            ));
        }
    };
    let op_text = text("op")?.ok_or_else(|| err("op", "missing (>, >=, < or <=)".into()))?;
    let op = Op::parse(op_text)
        .ok_or_else(|| err("op", format!("unknown comparison {op_text:?} (use >, >=, < or <=)")))?;
    let threshold = number("threshold")?.ok_or_else(|| err("threshold", "missing".into()))?;
    let clear = number("clear")?.unwrap_or(threshold);
    if (op.upward() && clear > threshold) || (!op.upward() && clear < threshold) {
        let side = if op.upward() { "at or below" } else { "at or above" };
        return Err(err(
            "clear",
            format!("must be {side} the threshold {threshold} for {op_text}"),
        ));
    }
    let duration = match text("for")? {
        None => Duration::ZERO,
        Some(d) => humantime::parse_duration(d)
            .map_err(|_| err("for", format!("{d:?} is not a duration (such as 30s, 5m)")))?,
    };
    let hosts = match table.get("hosts") {
        None => Vec::new(),
        Some(toml::Value::String(s)) if s == "all" || s == "*" => Vec::new(),
        Some(toml::Value::String(s)) => vec![s.clone()],
        Some(toml::Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().filter(|s| !s.is_empty()).map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| err("hosts", "must be a list of host ids, hostnames or globs".into()))?,
        Some(_) => {
            return Err(err("hosts", "must be a list of host ids, hostnames or globs".into()));
        }
    };
    let severity = match text("severity")? {
        None => Severity::Warning,
        Some(s) => Severity::parse(s)
            .ok_or_else(|| err("severity", format!("{s:?} is not info, warning or critical")))?,
    };
    let summary = text("summary")?.unwrap_or(DEFAULT_SUMMARY).to_owned();
    check_template(&summary).map_err(|m| err("summary", m))?;
    Ok(Rule {
        name,
        condition: Condition::Threshold { watched, op, value: threshold },
        duration,
        metric_name,
        clear,
        hosts,
        severity,
        summary,
        silent_intervals: 0,
    })
}

/// Checks that a template's `{…}` are known placeholders and its braces balance (`{{`, `}}`
/// for literal braces).
fn check_template(template: &str) -> Result<(), String> {
    render_template(template, |name| {
        (PLACEHOLDERS.contains(&name) || name == "device_suffix").then(String::new)
    })
    .map(|_| ())
}

fn render_template(
    template: &str,
    mut lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let value = lookup(&name).ok_or_else(|| {
                    format!(
                        "unknown placeholder {{{name}}} (use {})",
                        PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                out.push_str(&value);
            }
            '}' => return Err("a lone } (write }} for a literal brace)".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A number as people read it: at most two decimals, no trailing zeros.
pub fn shown_number(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    let text = format!("{rounded:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `*` (any run) and `?` (any one character) globs, as on host ids and device names.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A change of an alert's state, to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The host.
    pub host: String,
    /// The rule's name.
    pub rule: String,
    /// The device (mount point, interface, disk, sensor), for a per-device rule.
    pub device: Option<String>,
    /// `true` when it starts firing, `false` when it resolves.
    pub firing: bool,
    /// The value that decided it (the metric's value, or seconds of silence).
    pub value: f64,
    /// Since when the condition held (unix ms).
    pub since_ms: u64,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's summary, filled in.
    pub summary: String,
    /// The rule's threshold (threshold rules).
    pub threshold: Option<f64>,
    /// The metric's name (`silent` for silence).
    pub metric: String,
    /// The rule key naming the device (`mount`, `interface`, `disk`, `sensor`).
    pub selector: Option<&'static str>,
}

/// An alert that is firing now, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Active {
    /// The host.
    pub host: String,
    /// The rule's name.
    pub rule: String,
    /// Since when the condition has held (unix ms).
    pub since: u64,
    /// The latest value.
    pub value: f64,
    /// Always `firing` here.
    pub state: &'static str,
    /// The device, for a per-device rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's summary, filled in when it fired.
    pub summary: String,
    /// When it fired (unix ms; the sample's time).
    pub fired_ms: u64,
    /// Whether a silence covers it now (its notifications are held back).
    pub silenced: bool,
}

/// A firing alert as the storage keeps it, to restore after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Persisted {
    /// The rule's name.
    pub rule: String,
    /// The host.
    pub host: String,
    /// The device, empty for host totals and silence.
    pub device: String,
    /// Since when the condition held (unix ms).
    pub since_ms: u64,
    /// When it fired (unix ms).
    pub fired_ms: u64,
    /// The value it fired with.
    pub value: f64,
    /// Its summary.
    pub summary: String,
}

#[derive(Debug, Default, Clone)]
struct State {
    /// Pending since (the condition holds, not yet for long enough).
    since_ms: Option<u64>,
    firing: bool,
    fired_ms: u64,
    value: f64,
    summary: String,
}

/// What the module knows of a host for silence and summaries.
#[derive(Debug, Clone)]
struct Heard {
    hostname: String,
    /// Newest sample's time.
    last_ms: u64,
    /// Silence is counted from here: the newest sample, or the collector's start for a host
    /// not heard from since (agents reconnect after a restart; that gap is not silence).
    quiet_from_ms: u64,
    interval_ms: u64,
}

/// The host a point comes from.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Host id.
    pub id: &'a str,
    /// Host name.
    pub hostname: &'a str,
    /// Its agent's sampling interval.
    pub interval_ms: u64,
}

type Key = (String, String, String);

/// Every rule's state for every host and device.
#[derive(Debug, Default)]
pub struct Alerts {
    rules: Vec<Rule>,
    /// By (rule name, host, device or "").
    states: HashMap<Key, State>,
    /// Hosts that can fall silent: every known host.
    heard: HashMap<String, Heard>,
}

impl Alerts {
    /// Watches these rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules, ..Self::default() }
    }

    /// The rules in force.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any rule reads device values (the hub computes them only then).
    pub fn wants_devices(&self) -> bool {
        self.rules.iter().any(|r| matches!(r.watched(), Some(Watched::Device { .. })))
    }

    /// Watches a known host for silence: its newest sample was at `last_ms`; silence is counted
    /// from `now_ms` at the earliest.
    pub fn watch(
        &mut self,
        host: &str,
        hostname: &str,
        last_ms: Option<u64>,
        interval_ms: u64,
        now_ms: u64,
    ) {
        let last = last_ms.unwrap_or(now_ms);
        self.heard.insert(
            host.to_owned(),
            Heard {
                hostname: hostname.to_owned(),
                last_ms: last,
                quiet_from_ms: last.max(now_ms),
                interval_ms,
            },
        );
    }

    /// Forgets a host (deleted): its alerts end without a resolved event.
    pub fn forget(&mut self, host: &str) {
        self.heard.remove(host);
        self.states.retain(|(_, h, _), _| h != host);
    }

    /// Restores alerts that were firing before a restart; those of rules no longer configured
    /// are left out (and returned, so their end can be recorded).
    pub fn restore(&mut self, firing: Vec<Persisted>) -> Vec<Persisted> {
        let mut orphans = Vec::new();
        for alert in firing {
            if !self.rules.iter().any(|r| r.name == alert.rule) {
                orphans.push(alert);
                continue;
            }
            self.states.insert(
                (alert.rule, alert.host, alert.device),
                State {
                    since_ms: Some(alert.since_ms),
                    firing: true,
                    fired_ms: alert.fired_ms,
                    value: alert.value,
                    summary: alert.summary,
                },
            );
        }
        orphans
    }

    /// Replaces the rules (a reload). Alerts of rules that are gone resolve; the others keep
    /// their state.
    pub fn set_rules(&mut self, rules: Vec<Rule>, now_ms: u64) -> Vec<Change> {
        let old = std::mem::replace(&mut self.rules, rules);
        let mut changes = Vec::new();
        let gone: Vec<Key> = self
            .states
            .keys()
            .filter(|(rule, _, _)| !self.rules.iter().any(|r| &r.name == rule))
            .cloned()
            .collect();
        for key in gone {
            let Some(state) = self.states.remove(&key) else { continue };
            let Some(rule) = old.iter().find(|r| r.name == key.0) else { continue };
            if state.firing {
                let hostname = self
                    .heard
                    .get(&key.1)
                    .map_or(key.1.as_str(), |h| h.hostname.as_str())
                    .to_owned();
                let subject = Subject { id: &key.1, hostname: &hostname, interval_ms: 0 };
                let device = (!key.2.is_empty()).then_some(key.2.as_str());
                changes.push(change(rule, subject, device, false, state.value, now_ms));
            }
        }
        changes
    }

    /// Judges a host's newly stored point and its devices' readings (empty unless
    /// [`Alerts::wants_devices`]).
    pub fn on_point(
        &mut self,
        subject: Subject<'_>,
        point: &Point,
        devices: &[Reading],
    ) -> Vec<Change> {
        let heard = self.heard.entry(subject.id.to_owned()).or_insert_with(|| Heard {
            hostname: String::new(),
            last_ms: point.ts,
            quiet_from_ms: point.ts,
            interval_ms: subject.interval_ms,
        });
        heard.hostname = subject.hostname.to_owned();
        heard.interval_ms = subject.interval_ms;
        heard.last_ms = heard.last_ms.max(point.ts);
        heard.quiet_from_ms = heard.quiet_from_ms.max(point.ts);
        let mut changes = Vec::new();
        for rule in &self.rules {
            if !rule.applies_to(subject.id, subject.hostname) {
                continue;
            }
            let Condition::Threshold { ref watched, op, value: threshold } = rule.condition else {
                // A sample ends any silence.
                let key = (rule.name.clone(), subject.id.to_owned(), String::new());
                if let Some(state) = self.states.get_mut(&key) {
                    if let Some(c) =
                        advance(state, rule, subject, None, Observation::Clear, 0.0, point.ts)
                    {
                        changes.push(c);
                    }
                }
                continue;
            };
            let mut judge = |device: Option<&str>, value: f64| {
                let key =
                    (rule.name.clone(), subject.id.to_owned(), device.unwrap_or("").to_owned());
                let firing = self.states.get(&key).is_some_and(|s| s.firing);
                let observation = if firing {
                    if op.holds(value, rule.clear) {
                        Observation::Holds
                    } else {
                        Observation::Clear
                    }
                } else if op.holds(value, threshold) {
                    Observation::Holds
                } else {
                    Observation::Clear
                };
                if observation == Observation::Clear && !self.states.contains_key(&key) {
                    return; // Inactive stays inactive, without keeping a state for it.
                }
                let state = self.states.entry(key.clone()).or_default();
                if let Some(c) = advance(state, rule, subject, device, observation, value, point.ts)
                {
                    changes.push(c);
                }
                if !state.firing && state.since_ms.is_none() {
                    self.states.remove(&key);
                }
            };
            match watched {
                Watched::Host(metric) => {
                    if let Some(value) = metric.value(point) {
                        judge(None, value);
                    }
                }
                Watched::Device { kind, field, name } => {
                    for reading in devices.iter().filter(|r| r.kind == *kind && glob(name, &r.name))
                    {
                        let value = reading.values.get(*field).copied().flatten();
                        let Some(value) =
                            value.and_then(|v| crate::storage::device::shown(*kind, *field, v))
                        else {
                            continue;
                        };
                        judge(Some(&reading.name), value);
                    }
                }
            }
        }
        changes
    }

    /// Judges silence at `now_ms`: a host that sent samples and then none for a silent rule's
    /// duration (or its intervals) fires it.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for rule in &self.rules {
            if rule.condition != Condition::Silent {
                continue;
            }
            for (host, heard) in &self.heard {
                if !rule.applies_to(host, &heard.hostname) {
                    continue;
                }
                let patience = (rule.duration.as_millis() as u64)
                    .max(u64::from(rule.silent_intervals) * heard.interval_ms);
                let quiet_ms = now_ms.saturating_sub(heard.quiet_from_ms);
                if quiet_ms < patience {
                    continue;
                }
                let key = (rule.name.clone(), host.clone(), String::new());
                if self.states.get(&key).is_some_and(|s| s.firing) {
                    continue;
                }
                let state = self.states.entry(key).or_default();
                state.since_ms = Some(heard.last_ms);
                let silent_for = now_ms.saturating_sub(heard.last_ms) as f64 / 1000.0;
                let subject =
                    Subject { id: host, hostname: &heard.hostname, interval_ms: heard.interval_ms };
                if let Some(mut c) = advance(
                    state,
                    rule,
                    subject,
                    None,
                    Observation::Holds,
                    silent_for.round(),
                    now_ms,
                ) {
                    c.since_ms = heard.last_ms;
                    changes.push(c);
                }
            }
        }
        changes
    }

    /// How many alerts are firing now.
    pub fn firing(&self) -> usize {
        self.states.values().filter(|s| s.firing).count()
    }

    /// Alerts firing now, with whether `silenced` covers each.
    pub fn active(&self, silenced: impl Fn(&str, &str) -> bool) -> Vec<Active> {
        let mut active: Vec<Active> = self
            .states
            .iter()
            .filter(|(_, state)| state.firing)
            .filter_map(|((rule, host, device), state)| {
                let rule = self.rules.iter().find(|r| &r.name == rule)?;
                Some(Active {
                    host: host.clone(),
                    rule: rule.name.clone(),
                    since: state.since_ms.unwrap_or(0),
                    value: state.value,
                    state: "firing",
                    device: (!device.is_empty()).then(|| device.clone()),
                    severity: rule.severity,
                    summary: state.summary.clone(),
                    fired_ms: state.fired_ms,
                    silenced: silenced(host, &rule.name),
                })
            })
            .collect();
        active.sort_by(|a, b| {
            a.host
                .cmp(&b.host)
                .then_with(|| a.rule.cmp(&b.rule))
                .then_with(|| a.device.cmp(&b.device))
        });
        active
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Observation {
    /// The condition holds (against the threshold, or while firing against the clear value).
    Holds,
    /// It does not.
    Clear,
}

/// Moves one alert's state with a new observation at `ts`.
fn advance(
    state: &mut State,
    rule: &Rule,
    subject: Subject<'_>,
    device: Option<&str>,
    observation: Observation,
    value: f64,
    ts: u64,
) -> Option<Change> {
    state.value = value;
    if observation == Observation::Clear {
        state.since_ms = None;
        if !state.firing {
            return None;
        }
        state.firing = false;
        return Some(change(rule, subject, device, false, value, ts));
    }
    let since = *state.since_ms.get_or_insert(ts);
    if state.firing || ts.saturating_sub(since) < rule.duration.as_millis() as u64 {
        return None;
    }
    state.firing = true;
    state.fired_ms = ts;
    let mut fired = change(rule, subject, device, true, value, since);
    state.summary = fired.summary.clone();
    fired.since_ms = since;
    Some(fired)
}

fn change(
    rule: &Rule,
    subject: Subject<'_>,
    device: Option<&str>,
    firing: bool,
    value: f64,
    since_ms: u64,
) -> Change {
    let selector = match rule.watched() {
        Some(Watched::Device { kind, .. }) => catalog::alert_scope(*kind).map(|(_, key)| key),
        _ => None,
    };
    let threshold = rule.threshold();
    let op = match rule.condition {
        Condition::Threshold { op, .. } => op.symbol(),
        Condition::Silent => "",
    };
    let summary = render_template(&rule.summary, |name| {
        Some(match name {
            "host" | "hostname" => {
                if subject.hostname.is_empty() {
                    subject.id.to_owned()
                } else {
                    subject.hostname.to_owned()
                }
            }
            "host_id" => subject.id.to_owned(),
            "rule" => rule.name.clone(),
            "metric" => rule.metric_name.clone(),
            "value" => shown_number(value),
            "threshold" => threshold.map(shown_number).unwrap_or_default(),
            "clear" => shown_number(rule.clear),
            "op" => op.to_owned(),
            "for" => humantime::format_duration(rule.duration).to_string(),
            "severity" => rule.severity.name().to_owned(),
            "state" => if firing { "firing" } else { "resolved" }.to_owned(),
            "device" => device.unwrap_or_default().to_owned(),
            "device_suffix" => match (selector, device) {
                (Some(key), Some(d)) => format!(" on {key} {d}"),
                _ => String::new(),
            },
            key @ ("mount" | "interface" | "disk" | "sensor") => {
                if selector == Some(key) {
                    device.unwrap_or_default().to_owned()
                } else {
                    String::new()
                }
            }
            _ => return None,
        })
    })
    // Templates are checked when the rule is read.
    .unwrap_or_else(|_| rule.name.clone());
    Change {
        host: subject.id.to_owned(),
        rule: rule.name.clone(),
        device: device.map(String::from),
        firing,
        value,
        since_ms,
        severity: rule.severity,
        summary,
        threshold,
        metric: rule.metric_name.clone(),
        selector,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_used_percent_is_what_df_shows() {
        let point = Point {
            fs_used_bytes: Some(50),
            fs_total_bytes: Some(100),
            fs_avail_bytes: Some(40),
            fs_used_percent: Some(55.56),
            ..Default::default()
        };
        assert_eq!(Metric::FsUsedPercent.value(&point), Some(55.56));
        // A point without the available space (none from live agents) falls back to the size.
        let sizes_only =
            Point { fs_used_bytes: Some(50), fs_total_bytes: Some(100), ..Default::default() };
        assert_eq!(Metric::FsUsedPercent.value(&sizes_only), Some(50.0));
    }

    const SUBJECT: Subject<'static> = Subject { id: "h", hostname: "web-1", interval_ms: 1000 };

    fn point(ts: u64, cpu: f64) -> Point {
        Point {
            ts,
            cpu_percent: Some(cpu),
            memory_used_bytes: Some(950),
            memory_total_bytes: Some(1000),
            ..Default::default()
        }
    }

    #[test]
    fn every_alert_name_of_the_catalog_can_be_judged() {
        let catalog: Vec<&str> = crate::catalog::alert_names().collect();
        let judged: Vec<&str> = METRIC_NAMES.iter().map(|(n, _)| *n).collect();
        let (mut a, mut b) = (catalog.clone(), judged.clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "catalog {catalog:?} against evaluators {judged:?}");
    }

    #[test]
    fn rules_parse_and_bad_ones_say_why() {
        let rules = parse_rules(DEFAULT_RULES).unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].name, "cpu_percent > 90 for 2m");
        assert_eq!(rules[0].duration, Duration::from_secs(120));
        assert_eq!(rules[3].condition, Condition::Silent);
        assert_eq!(rules[3].name, "silent for 1m");
        assert!(parse_rules("none").unwrap().is_empty());
        assert!(parse_rules("cpu > 90 for 2m").unwrap_err().contains("unknown metric"));
        assert!(parse_rules("cpu_percent >> 90 for 2m").unwrap_err().contains("comparison"));
        assert!(parse_rules("cpu_percent > lots for 2m").unwrap_err().contains("not a number"));
        assert!(parse_rules("cpu_percent > 90 for ages").unwrap_err().contains("duration"));
        assert!(parse_rules("cpu_percent > 90").unwrap_err().contains("expected"));
    }

    #[test]
    fn a_threshold_fires_after_its_duration_and_resolves_once() {
        let mut alerts = Alerts::new(parse_rules("cpu_percent > 90 for 2s").unwrap());
        assert!(
            alerts.on_point(SUBJECT, &point(1_000, 95.0), &[]).is_empty(),
            "not yet: just started"
        );
        assert!(alerts.on_point(SUBJECT, &point(2_000, 96.0), &[]).is_empty());
        let fired = alerts.on_point(SUBJECT, &point(3_000, 97.0), &[]);
        assert_eq!(fired.len(), 1);
        assert!(fired[0].firing);
        assert_eq!((fired[0].since_ms, fired[0].value), (1_000, 97.0));
        assert!(alerts.on_point(SUBJECT, &point(4_000, 99.0), &[]).is_empty(), "fires once");
        assert_eq!(alerts.active(|_, _| false).len(), 1);
        let resolved = alerts.on_point(SUBJECT, &point(5_000, 10.0), &[]);
        assert_eq!(resolved.len(), 1);
        assert!(!resolved[0].firing);
        assert!(alerts.active(|_, _| false).is_empty());
    }

    #[test]
    fn a_dip_restarts_the_clock() {
        let mut alerts = Alerts::new(parse_rules("cpu_percent >= 50 for 2s").unwrap());
        alerts.on_point(SUBJECT, &point(1_000, 60.0), &[]);
        alerts.on_point(SUBJECT, &point(2_000, 40.0), &[]);
        assert!(alerts.on_point(SUBJECT, &point(3_000, 60.0), &[]).is_empty());
        assert!(alerts.on_point(SUBJECT, &point(4_000, 60.0), &[]).is_empty());
        assert_eq!(alerts.on_point(SUBJECT, &point(5_000, 60.0), &[]).len(), 1);
    }

    #[test]
    fn percentages_are_derived_from_used_and_total() {
        let mut alerts = Alerts::new(parse_rules("memory_used_percent > 90 for 0s").unwrap());
        let fired = alerts.on_point(SUBJECT, &point(1_000, 0.0), &[]);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].value, 95.0);
    }

    #[test]
    fn silence_fires_for_hosts_heard_from_and_a_sample_resolves_it() {
        let mut alerts = Alerts::new(parse_rules("silent for 10s").unwrap());
        assert!(alerts.on_tick(1_000_000).is_empty(), "nobody was heard from");
        alerts.on_point(SUBJECT, &point(1_000_000, 1.0), &[]);
        assert!(alerts.on_tick(1_005_000).is_empty());
        let fired = alerts.on_tick(1_010_000);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].value, fired[0].since_ms), (10.0, 1_000_000));
        assert!(alerts.on_tick(1_020_000).is_empty(), "fires once");
        let resolved = alerts.on_point(SUBJECT, &point(1_030_000, 1.0), &[]);
        assert_eq!(resolved.len(), 1);
        assert!(!resolved[0].firing);
    }

    fn toml_rules(text: &str) -> Result<Vec<Rule>, RuleError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        rules_from_toml(&table["alert"], &[])
    }

    fn fs_point(ts: u64) -> Point {
        Point { ts, ..Default::default() }
    }

    fn mounts(values: &[(&str, f64)]) -> Vec<Reading> {
        values
            .iter()
            .map(|(name, percent)| Reading {
                kind: DeviceKind::Fs,
                name: (*name).into(),
                values: vec![Some(1), Some(2), Some(3), Some((percent * 100.0) as i64)],
            })
            .collect()
    }

    #[test]
    fn toml_rules_parse_with_every_key() {
        let rules = toml_rules(
            r#"
            [[alert]]
            name = "root-filling"
            metric = "fs_used_percent"
            mount = "/"
            op = ">"
            threshold = 90
            clear = 85
            for = "5m"
            hosts = ["web-*", "db-1"]
            severity = "critical"
            summary = "{host}: {mount} at {value}%"
            [[alert]]
            name = "busy"
            metric = "cpu_percent"
            op = ">="
            threshold = 95.5
            "#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        let root = &rules[0];
        assert_eq!(
            root.watched(),
            Some(&Watched::Device { kind: DeviceKind::Fs, field: 3, name: "/".into() })
        );
        assert_eq!((root.threshold(), root.clear), (Some(90.0), 85.0));
        assert_eq!(root.duration, Duration::from_secs(300));
        assert_eq!(root.hosts, vec!["web-*", "db-1"]);
        assert_eq!(root.severity, Severity::Critical);
        assert_eq!(rules[1].watched(), Some(&Watched::Host(Metric::CpuPercent)));
        assert_eq!(
            (rules[1].clear, rules[1].duration, rules[1].severity),
            (95.5, Duration::ZERO, Severity::Warning)
        );
    }

    #[test]
    fn bad_toml_rules_name_the_rule_and_the_field() {
        let bad = |body: &str| toml_rules(&format!("[[alert]]\n{body}")).unwrap_err();
        let base = "name = \"r\"\nmetric = \"cpu_percent\"\nop = \">\"\nthreshold = 1\n";
        assert_eq!(bad("metric = \"cpu_percent\"").key, "alert[1].name");
        assert_eq!(bad(&base.replace("cpu_percent", "cpu")).key, "alert \"r\".metric");
        assert!(
            bad(&base.replace("cpu_percent", "cpu"))
                .message
                .contains("fs_used_percent (with mount)")
        );
        assert_eq!(bad(&base.replace("\">\"", "\"=>\"")).key, "alert \"r\".op");
        assert_eq!(
            bad(&base.replace("threshold = 1", "threshold = \"x\"")).key,
            "alert \"r\".threshold"
        );
        assert_eq!(bad(&format!("{base}clear = 5")).key, "alert \"r\".clear");
        assert_eq!(bad(&format!("{base}for = \"ages\"")).key, "alert \"r\".for");
        assert_eq!(bad(&format!("{base}severity = \"dire\"")).key, "alert \"r\".severity");
        assert_eq!(bad(&format!("{base}summary = \"{{nope}}\"")).key, "alert \"r\".summary");
        assert_eq!(bad(&format!("{base}hosts = [1]")).key, "alert \"r\".hosts");
        assert_eq!(bad(&format!("{base}mount = \"/\"")).key, "alert \"r\".mount");
        assert_eq!(bad(&format!("{base}colour = \"red\"")).key, "alert \"r\".colour");
        let net = base.replace("cpu_percent", "net_rx_bytes_per_second");
        assert_eq!(bad(&format!("{net}mount = \"/\"")).key, "alert \"r\".mount");
        let twice = toml_rules(&format!("[[alert]]\n{base}[[alert]]\n{base}")).unwrap_err();
        assert_eq!(
            (twice.key.as_str(), twice.message.as_str()),
            ("alert \"r\".name", "is not unique")
        );
    }

    #[test]
    fn hysteresis_fires_once_while_a_value_oscillates_around_the_threshold() {
        let rules = toml_rules(
            "[[alert]]\nname = \"full\"\nmetric = \"fs_used_percent\"\nmount = \"/var\"\nop = \">\"\nthreshold = 90\nclear = 80\nfor = \"2s\"\n",
        )
        .unwrap();
        let mut alerts = Alerts::new(rules);
        let mut fired = 0;
        let mut resolved = 0;
        for (i, v) in
            [95.0, 89.0, 95.0, 96.0, 97.0, 89.0, 91.0, 85.0, 92.0, 79.0].iter().enumerate()
        {
            let devices = mounts(&[("/var", *v), ("/", 99.0)]);
            for c in alerts.on_point(SUBJECT, &fs_point(1_000 * (i as u64 + 1)), &devices) {
                assert_eq!(c.device.as_deref(), Some("/var"), "only the selected mount");
                if c.firing { fired += 1 } else { resolved += 1 }
            }
        }
        assert_eq!((fired, resolved), (1, 1));
    }

    #[test]
    fn hosts_select_by_glob_on_id_or_hostname_and_summaries_fill_in() {
        let rules = toml_rules(
            "[[alert]]\nname = \"r\"\nmetric = \"fs_used_percent\"\nmount = \"/\"\nop = \">\"\nthreshold = 1\nhosts = [\"web-*\"]\nsummary = \"{host} {mount} at {value}% ({{{rule}}})\"\n",
        )
        .unwrap();
        let mut alerts = Alerts::new(rules);
        let other = Subject { id: "db", hostname: "db-1", interval_ms: 1000 };
        assert!(alerts.on_point(other, &fs_point(1), &mounts(&[("/", 50.0)])).is_empty());
        let fired = alerts.on_point(SUBJECT, &fs_point(1), &mounts(&[("/", 50.0)]));
        assert_eq!(fired[0].summary, "web-1 / at 50% ({r})");
        assert!(glob("a*c?e", "abbbcde") && !glob("a*c", "abd") && glob("*", ""));
    }

    #[test]
    fn restored_alerts_do_not_fire_again_and_resolve_once() {
        let mut alerts = Alerts::new(parse_rules("cpu_percent > 90 for 0s").unwrap());
        let orphans = alerts.restore(vec![
            Persisted {
                rule: "cpu_percent > 90 for 0s".into(),
                host: "h".into(),
                device: String::new(),
                since_ms: 1,
                fired_ms: 2,
                value: 95.0,
                summary: "s".into(),
            },
            Persisted {
                rule: "gone".into(),
                host: "h".into(),
                device: String::new(),
                since_ms: 1,
                fired_ms: 2,
                value: 1.0,
                summary: "s".into(),
            },
        ]);
        assert_eq!(orphans.len(), 1);
        assert!(alerts.on_point(SUBJECT, &point(10, 99.0), &[]).is_empty(), "still firing");
        let resolved = alerts.on_point(SUBJECT, &point(11, 1.0), &[]);
        assert_eq!(resolved.len(), 1);
        assert!(!resolved[0].firing);
        assert!(alerts.on_point(SUBJECT, &point(12, 1.0), &[]).is_empty());
    }

    #[test]
    fn agent_silent_counts_intervals_from_the_collectors_start_for_known_hosts() {
        let mut alerts = Alerts::new(vec![agent_silent(5)]);
        // Known from the database, last heard long before this start at 1_000_000.
        alerts.watch("h", "web-1", Some(100_000), 1_000, 1_000_000);
        assert!(alerts.on_tick(1_009_000).is_empty(), "at least 10 s");
        let fired = alerts.on_tick(1_010_000);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].rule.as_str(), fired[0].since_ms), (AGENT_SILENT, 100_000));
        let back = alerts.on_point(SUBJECT, &point(1_011_000, 1.0), &[]);
        assert_eq!(back.len(), 1);
        assert!(!back[0].firing);
    }

    #[test]
    fn a_removed_rule_resolves_its_firing_alerts() {
        let mut alerts = Alerts::new(parse_rules("cpu_percent > 1 for 0s").unwrap());
        assert_eq!(alerts.on_point(SUBJECT, &point(1, 50.0), &[]).len(), 1);
        let changes = alerts.set_rules(parse_rules("cpu_percent > 2 for 0s").unwrap(), 5);
        assert_eq!(changes.len(), 1);
        assert!(!changes[0].firing);
    }
}
