//! Alerts: threshold rules with a duration ("CPU above 90 % for 2 minutes") and an "agent
//! silent" rule, evaluated by the hub on every stored sample and every tick. Firing and resolved
//! alerts become `alert` events in the activity feed and the live streams.
//!
//! Rules are written as text (`--alerts`), separated by `;`:
//! `METRIC OP THRESHOLD for DURATION` (OP one of `>`, `>=`, `<`, `<=`) or `silent for DURATION`.
//! Threshold rules are judged on the samples' own timestamps, so a replayed outage raises the
//! alerts it would have raised live. This module is pure logic: no I/O, no clock of its own.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::storage::Point;

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
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A metric compared with a threshold.
    Threshold {
        /// The metric.
        metric: Metric,
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
    /// The rule as written, normalized: its name in events and the API.
    pub name: String,
    /// What it watches.
    pub condition: Condition,
    /// How long the condition must hold before the alert fires.
    pub duration: Duration,
}

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
            condition: Condition::Silent,
            duration: duration_of(duration)?,
        }),
        [metric, op, value, "for", duration] => {
            // The catalog says which series rules may watch; METRIC_NAMES says how to read each.
            let (_, metric_value) = crate::catalog::alert_names()
                .find(|name| name == metric)
                .and_then(|name| METRIC_NAMES.iter().find(|(n, _)| *n == name))
                .ok_or_else(|| {
                    let names: Vec<&str> = crate::catalog::alert_names().collect();
                    format!(
                        "rule {text:?}: unknown metric {metric:?} (use one of {})",
                        names.join(", ")
                    )
                })?;
            let op_value = match *op {
                ">" => Op::Above,
                ">=" => Op::AtLeast,
                "<" => Op::Below,
                "<=" => Op::AtMost,
                other => {
                    return Err(format!(
                        "rule {text:?}: unknown comparison {other:?} (use >, >=, < or <=)"
                    ));
                }
            };
            let threshold: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("rule {text:?}: {value:?} is not a number"))?;
            Ok(Rule {
                name: format!("{metric} {op} {value} for {duration}"),
                condition: Condition::Threshold {
                    metric: *metric_value,
                    op: op_value,
                    value: threshold,
                },
                duration: duration_of(duration)?,
            })
        }
        _ => Err(format!(
            "rule {text:?}: expected `METRIC OP THRESHOLD for DURATION` or `silent for DURATION`"
        )),
    }
}

/// A change of an alert's state, to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The host.
    pub host: String,
    /// The rule's name.
    pub rule: String,
    /// `true` when it starts firing, `false` when it resolves.
    pub firing: bool,
    /// The value that decided it (the metric's value, or seconds of silence).
    pub value: f64,
    /// Since when the condition held (unix ms).
    pub since_ms: u64,
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
}

#[derive(Debug, Default, Clone)]
struct State {
    since_ms: Option<u64>,
    firing: bool,
    value: f64,
}

/// Every rule's state for every host.
#[derive(Debug, Default)]
pub struct Alerts {
    rules: Vec<Rule>,
    states: HashMap<(String, usize), State>,
    /// Hosts that sent a sample since the collector started, with their newest sample time: only
    /// they can fall silent (a host retired long ago is not an alert).
    heard: HashMap<String, u64>,
}

impl Alerts {
    /// Watches these rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules, ..Self::default() }
    }

    /// Judges a host's newly stored point.
    pub fn on_point(&mut self, host: &str, point: &Point) -> Vec<Change> {
        let newest = self.heard.entry(host.to_owned()).or_insert(point.ts);
        *newest = (*newest).max(point.ts);
        let mut changes = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let state = self.states.entry((host.to_owned(), index)).or_default();
            // A sample ends any silence; a metric the host did not report changes nothing.
            let observed = match &rule.condition {
                Condition::Silent => Some((false, 0.0)),
                Condition::Threshold { metric, op, value } => {
                    metric.value(point).map(|v| (op.holds(v, *value), v))
                }
            };
            let Some((holds, value)) = observed else { continue };
            if let Some(change) = advance(state, host, rule, holds, value, point.ts) {
                changes.push(change);
            }
        }
        changes
    }

    /// Judges silence at `now_ms`: a host that sent samples and then none for a silent rule's
    /// duration fires it.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.condition != Condition::Silent {
                continue;
            }
            for (host, last) in &self.heard {
                let quiet_ms = now_ms.saturating_sub(*last);
                let state = self.states.entry((host.clone(), index)).or_default();
                let silent = quiet_ms >= rule.duration.as_millis() as u64;
                if silent && !state.firing {
                    state.firing = true;
                    state.since_ms = Some(*last);
                    state.value = quiet_ms as f64 / 1000.0;
                    changes.push(Change {
                        host: host.clone(),
                        rule: rule.name.clone(),
                        firing: true,
                        value: state.value,
                        since_ms: *last,
                    });
                }
            }
        }
        changes
    }

    /// Forgets a removed host: its alerts, and that it was ever heard from (so it never falls
    /// silent).
    pub fn forget(&mut self, host: &str) {
        self.states.retain(|(h, _), _| h != host);
        self.heard.remove(host);
    }

    /// Alerts firing now.
    pub fn active(&self) -> Vec<Active> {
        let mut active: Vec<Active> = self
            .states
            .iter()
            .filter(|(_, state)| state.firing)
            .map(|((host, index), state)| Active {
                host: host.clone(),
                rule: self.rules[*index].name.clone(),
                since: state.since_ms.unwrap_or(0),
                value: state.value,
            })
            .collect();
        active.sort_by(|a, b| a.host.cmp(&b.host).then_with(|| a.rule.cmp(&b.rule)));
        active
    }
}

/// Moves one rule's state for one host with a new observation at `ts`.
fn advance(
    state: &mut State,
    host: &str,
    rule: &Rule,
    holds: bool,
    value: f64,
    ts: u64,
) -> Option<Change> {
    state.value = value;
    if !holds {
        state.since_ms = None;
        if !state.firing {
            return None;
        }
        state.firing = false;
        return Some(Change {
            host: host.to_owned(),
            rule: rule.name.clone(),
            firing: false,
            value,
            since_ms: ts,
        });
    }
    let since = *state.since_ms.get_or_insert(ts);
    if state.firing || ts.saturating_sub(since) < rule.duration.as_millis() as u64 {
        return None;
    }
    state.firing = true;
    Some(Change {
        host: host.to_owned(),
        rule: rule.name.clone(),
        firing: true,
        value,
        since_ms: since,
    })
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
        assert!(alerts.on_point("h", &point(1_000, 95.0)).is_empty(), "not yet: just started");
        assert!(alerts.on_point("h", &point(2_000, 96.0)).is_empty());
        let fired = alerts.on_point("h", &point(3_000, 97.0));
        assert_eq!(fired.len(), 1);
        assert!(fired[0].firing);
        assert_eq!((fired[0].since_ms, fired[0].value), (1_000, 97.0));
        assert!(alerts.on_point("h", &point(4_000, 99.0)).is_empty(), "fires once");
        assert_eq!(alerts.active().len(), 1);
        let resolved = alerts.on_point("h", &point(5_000, 10.0));
        assert_eq!(resolved.len(), 1);
        assert!(!resolved[0].firing);
        assert!(alerts.active().is_empty());
    }

    #[test]
    fn a_dip_restarts_the_clock() {
        let mut alerts = Alerts::new(parse_rules("cpu_percent >= 50 for 2s").unwrap());
        alerts.on_point("h", &point(1_000, 60.0));
        alerts.on_point("h", &point(2_000, 40.0));
        assert!(alerts.on_point("h", &point(3_000, 60.0)).is_empty());
        assert!(alerts.on_point("h", &point(4_000, 60.0)).is_empty());
        assert_eq!(alerts.on_point("h", &point(5_000, 60.0)).len(), 1);
    }

    #[test]
    fn percentages_are_derived_from_used_and_total() {
        let mut alerts = Alerts::new(parse_rules("memory_used_percent > 90 for 0s").unwrap());
        let fired = alerts.on_point("h", &point(1_000, 0.0));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].value, 95.0);
    }

    #[test]
    fn silence_fires_for_hosts_heard_from_and_a_sample_resolves_it() {
        let mut alerts = Alerts::new(parse_rules("silent for 10s").unwrap());
        assert!(alerts.on_tick(1_000_000).is_empty(), "nobody was heard from");
        alerts.on_point("h", &point(1_000_000, 1.0));
        assert!(alerts.on_tick(1_005_000).is_empty());
        let fired = alerts.on_tick(1_010_000);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].value, fired[0].since_ms), (10.0, 1_000_000));
        assert!(alerts.on_tick(1_020_000).is_empty(), "fires once");
        let resolved = alerts.on_point("h", &point(1_030_000, 1.0));
        assert_eq!(resolved.len(), 1);
        assert!(!resolved[0].firing);
    }
}
