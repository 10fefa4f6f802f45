//! `GET /metrics` as Prometheus scrapes it: a real collector monitoring its own host and a real
//! agent, with node_exporter-style series for both hosts, checked by Prometheus's own `promtool`.
//!
//! `promtool` comes from Debian's `prometheus` package, which `scripts/test.sh` installs. Without
//! it this test fails and says so, rather than passing without having checked anything.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::*;

const SECOND: Duration = Duration::from_secs(1);
const PROMTOOL: &str = "/usr/bin/promtool";

#[test]
fn metrics_are_a_valid_exposition_of_every_host() {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: run scripts/test.sh, which installs Debian's prometheus package"
    );
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &[]);
    let _agent = Agent::spawn(
        &collector.ingest_url(),
        &collector.token(),
        "metrics-host",
        &dir.path().join("spool"),
        &[],
    );
    let self_host = wait_for(10 * SECOND, "the collector's own host in /api/hosts", || {
        let (status, hosts) = collector.get_json("/api/hosts");
        assert_eq!(status, 200);
        hosts
            .as_array()?
            .iter()
            .find(|h| h["self"] == true)
            .and_then(|h| h["id"].as_str())
            .map(str::to_owned)
    });

    // The CPU percentage needs two samples of a host, so once it is there for both hosts every
    // other series is too.
    let response = wait_for(20 * SECOND, "both hosts' samples in /metrics", || {
        let response = http(collector.http, "GET", "/metrics", &[], b"");
        assert_eq!(response.status, 200, "GET /metrics");
        let body = String::from_utf8(response.body.clone()).expect("UTF-8 body");
        [&self_host, "metrics-host"]
            .iter()
            .all(|host| body.contains(&format!("hostwatch_host_cpu_percent{{host=\"{host}\"}}")))
            .then_some(response)
    });
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "content type: {content_type}");
    let body = String::from_utf8(response.body).expect("UTF-8 body");
    let lines: Vec<&str> = body.lines().collect();
    let has_prefix = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));

    for host in [self_host.as_str(), "metrics-host"] {
        for prefix in [
            format!("node_cpu_seconds_total{{host=\"{host}\",cpu=\"0\",mode=\"idle\"}} "),
            format!("node_memory_MemTotal_bytes{{host=\"{host}\"}} "),
            format!("node_memory_MemAvailable_bytes{{host=\"{host}\"}} "),
            format!("node_load1{{host=\"{host}\"}} "),
            format!("hostwatch_host_info{{host=\"{host}\",hostname=\""),
            format!("hostwatch_host_last_seen_timestamp_seconds{{host=\"{host}\"}} "),
        ] {
            assert!(has_prefix(&prefix), "no {prefix:?} in:\n{body}");
        }
        let up = format!("hostwatch_host_up{{host=\"{host}\"}} 1");
        assert!(lines.contains(&up.as_str()), "no {up:?} in:\n{body}");
    }
    for prefix in [
        "hostwatch_collector_samples_total ",
        "hostwatch_collector_agents_connected 2",
        "hostwatch_collector_hosts 2",
        "hostwatch_collector_ingest_bytes_total ",
        "hostwatch_collector_database_bytes ",
    ] {
        assert!(has_prefix(prefix), "no {prefix:?} in:\n{body}");
    }

    // The writer's histograms: stored samples mean committed transactions, each in a bucket.
    let commits = histogram(&body, "hostwatch_collector_commit_seconds");
    assert!(commits.count > 0, "no commit counted in:\n{body}");
    assert!(commits.sum > 0.0, "commits took no time in:\n{body}");
    let per_commit = histogram(&body, "hostwatch_collector_commit_samples");
    assert_eq!(per_commit.count, commits.count, "one batch size per commit");
    let stored = value(&body, "hostwatch_collector_samples_total");
    assert!(
        per_commit.sum >= stored,
        "transactions held {} samples, fewer than the {stored} stored",
        per_commit.sum
    );
    histogram(&body, "hostwatch_collector_maintenance_seconds");

    let (code, problems) = promtool_check(&body);
    // node_exporter's memory names copy /proc/meminfo's field names, camelCase included, and
    // promtool's linter flags exactly those; matching node_exporter's names is the point (the
    // same dashboards and alerts work), so that one finding is accepted for those metrics and
    // nothing else. promtool exits 3 when it found only lint problems.
    let accepted = |line: &str| {
        line.starts_with("node_memory_")
            && line.contains("metric names should be written in 'snake_case' not 'camelCase'")
    };
    let findings: Vec<&str> = problems.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        findings.iter().all(|l| accepted(l)),
        "promtool check metrics found problems:\n{problems}\nin:\n{body}"
    );
    let expected_code = if findings.is_empty() { 0 } else { 3 };
    assert_eq!(
        code,
        Some(expected_code),
        "promtool check metrics exit code; it printed:\n{problems}"
    );
}

/// A histogram family read back from the exposition.
struct Histogram {
    count: u64,
    sum: f64,
}

/// The value of the series written exactly as `series` (name and labels).
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
        .parse()
        .expect("numeric value")
}

/// Reads histogram `name` and checks it is one: typed so, with cumulative buckets of increasing
/// bounds ending in `+Inf`, which equals `_count`.
fn histogram(body: &str, name: &str) -> Histogram {
    assert!(body.contains(&format!("\n# TYPE {name} histogram\n")), "{name} is no histogram");
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, u64)> = body
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (le, count) = rest.split_once("\"} ").expect("bucket line");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le") };
            (le, count.parse().expect("bucket count"))
        })
        .collect();
    assert!(buckets.len() >= 2, "{name} has buckets: {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{buckets:?}");
    let (last, inf) = *buckets.last().expect("a bucket");
    assert!(last.is_infinite(), "{name} ends in +Inf");
    let count = value(body, &format!("{name}_count"));
    assert_eq!(inf as f64, count, "{name}: +Inf bucket and _count");
    Histogram { count: inf, sum: value(body, &format!("{name}_sum")) }
}

/// Runs `promtool check metrics` on `body`; returns its exit code and what it printed.
fn promtool_check(body: &str) -> (Option<i32>, String) {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(body.as_bytes())
        .expect("writing to promtool");
    let output = child.wait_with_output().expect("waiting for promtool");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), printed)
}
