//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of every host's newest values, with
//! node_exporter's metric and label names and a `host` label, plus the collector's own counters.
//! `GET /metrics?host=ID`: one host's series without the `host` label, as node_exporter on that
//! host would export them, for Prometheus's multi-target exporter pattern.
//!
//! Rendering is a pure function of a [`MetricsView`] snapshot taken from the hub. Series are
//! added host by host into an [`Exposition`], which groups them by metric family, so each family
//! is written once with one `# HELP` and one `# TYPE`, whatever order the series came in.
//!
//! Counters are the agent's cumulative values exactly as sent (CPU time converted from ticks to
//! seconds), so Prometheus computes rates itself with `rate()`. The collector's own derived rates
//! are not exported, except the CPU percentage, for which node_exporter has no name.

use std::collections::{HashMap, HashSet};

use protocol::{CPU_TICKS_PER_SECOND, CpuTimes, Sample};

use crate::api::views::{HostMetrics, MetricsView, StatsView};
use crate::catalog::prometheus;

/// Every status a host can have; `hostwatch_host_status` has one series per status.
const STATUSES: [&str; 3] = ["online", "stale", "offline"];

/// Collector figures the hub does not hold.
#[derive(Debug, Clone, Default)]
pub struct CollectorFigures {
    /// Size of the database in bytes, if it could be read.
    pub database_bytes: Option<u64>,
    /// Bytes received from agents since start.
    pub ingest_bytes_total: u64,
    /// Live subscribers now.
    pub subscribers: usize,
    /// Whether the storage commits.
    pub storage: crate::storage::health::HealthView,
    /// The storage writer's histograms.
    pub writer: crate::storage::timing::WriterTimingsView,
    /// Each notification channel's counters.
    pub notify: std::sync::Arc<Vec<std::sync::Arc<crate::notify::ChannelStats>>>,
    /// Replication's status (`--redis`), if on.
    pub redis: Option<crate::replica::status::StatusView>,
}

/// Renders the exposition: every host's series, then the collector's own.
pub fn render(view: &MetricsView, figures: &CollectorFigures) -> String {
    let mut out = Exposition::default();
    for host in &view.hosts {
        host_series(&mut out, host, Scope::AllHosts);
    }
    collector_series(&mut out, &view.stats, figures);
    out.finish()
}

/// Renders one host's series as node_exporter on that host would (`/metrics?host=ID`, the
/// multi-target exporter pattern): no `host` label, since Prometheus gives each host its own
/// `instance`, and node_exporter's labels (`device` and `fstype` on filesystems).
pub fn render_host(host: &HostMetrics) -> String {
    let mut out = Exposition::default();
    host_series(&mut out, host, Scope::OneHost);
    out.finish()
}

/// Which exposition the series go to, which decides their labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `/metrics`: every host, each series with a `host` label (unchanged since the first
    /// release, so existing queries keep working).
    AllHosts,
    /// `/metrics?host=ID`: one host, node_exporter's labels only.
    OneHost,
}

/// `base` followed by `more`: a series' labels.
fn labels<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

/// The series every known host has, whether or not it ever sent a sample.
fn host_series(out: &mut Exposition, host: &HostMetrics, scope: Scope) {
    let id = host.id.as_str();
    let by_host: &[(&str, &str)] = match scope {
        Scope::AllHosts => &[("host", id)],
        Scope::OneHost => &[],
    };
    out.gauge("hostwatch_host_info", "Always 1; labels the host id with the host name.")
        .sample(&[("host", id), ("hostname", &host.hostname)], 1_u64);
    out.gauge(
        "hostwatch_host_up",
        "1 if the host's agent is connected and sending samples, 0 if it is stale or offline.",
    )
    .sample(by_host, u64::from(host.status == "online"));
    let status = out.gauge(
        "hostwatch_host_status",
        "1 for the host's current status (online, stale or offline), 0 for the others.",
    );
    for candidate in STATUSES {
        status.sample(
            &labels(by_host, &[("status", candidate)]),
            u64::from(host.status == candidate),
        );
    }
    // A status added to the hub later still shows up, rather than every series reading 0.
    if !STATUSES.contains(&host.status) {
        status.sample(&labels(by_host, &[("status", host.status)]), 1_u64);
    }
    if let Some(ms) = host.last_seen_ms {
        out.gauge(
            "hostwatch_host_last_seen_timestamp_seconds",
            "When the host's newest sample was taken, seconds since the Unix epoch.",
        )
        .sample(by_host, ms as f64 / 1000.0);
    }
    out.counter(
        "hostwatch_host_dropped_samples_total",
        "Samples the host's agent dropped from its full spool during outages.",
    )
    .sample(by_host, host.dropped_samples);
    // The agent sends 0 when it could not read the boot time; a 1970 boot would mislead.
    if host.boot_time_seconds > 0 {
        out.family_of(&prometheus::BOOT_TIME).sample(by_host, host.boot_time_seconds);
    }
    // What the host is, known from its hello even while it is offline: dashboards list hosts
    // by this series (Grafana's host pickers), so one scraped on its own always has it.
    if scope == Scope::OneHost || host.status != "offline" {
        out.family_of(&prometheus::UNAME).sample(
            &labels(
                by_host,
                &[
                    ("domainname", "(none)"),
                    ("machine", &host.arch),
                    ("nodename", &host.hostname),
                    ("release", &host.kernel),
                    ("sysname", "Linux"),
                    ("version", &host.kernel_build),
                ],
            ),
            1_u64,
        );
    }
    // An offline host's newest values are frozen in time: exporting them as current would keep
    // dashboards and alerts looking at a dead host's last second. `hostwatch_host_up` says it.
    if host.status == "offline" {
        return;
    }
    let processes = host
        .sample
        .as_ref()
        .and_then(|s| s.process_count)
        .or_else(|| host.point.as_ref().and_then(|p| p.processes));
    if let Some(processes) = processes {
        out.family_of(&prometheus::PROCESSES).sample(by_host, u64::from(processes));
    }
    if let Some(cpu_percent) = host.point.as_ref().and_then(|p| p.cpu_percent) {
        out.family_of(&prometheus::CPU_PERCENT).sample(by_host, cpu_percent);
    }
    if let Some(sample) = &host.sample {
        sample_series(out, by_host, sample, scope);
    }
}

/// The node_exporter equivalents of one host's newest sample.
fn sample_series(out: &mut Exposition, by_host: &[(&str, &str)], sample: &Sample, scope: Scope) {
    // node_exporter reports the host's clock when scraped; the newest sample's time is the
    // host's clock when it was taken, at most an interval ago.
    out.family_of(&prometheus::TIME).sample(by_host, sample.ts_ms as f64 / 1000.0);
    let cpu = out.family_of(&prometheus::CPU_SECONDS);
    for (index, core) in sample.cores.iter().enumerate() {
        let index = index.to_string();
        for (mode, ticks) in cpu_modes(core) {
            cpu.sample(
                &labels(by_host, &[("cpu", &index), ("mode", mode)]),
                ticks_to_seconds(ticks),
            );
        }
    }

    if let Some(load) = &sample.load {
        out.family_of(&prometheus::LOAD1).sample(by_host, load.one);
        out.family_of(&prometheus::LOAD5).sample(by_host, load.five);
        out.family_of(&prometheus::LOAD15).sample(by_host, load.fifteen);
    }

    if let Some(memory) = &sample.memory {
        out.family_of(&prometheus::MEM_TOTAL).sample(by_host, memory.total_bytes);
        out.family_of(&prometheus::MEM_AVAILABLE).sample(by_host, memory.available_bytes);
        if let Some(free) = memory.free_bytes {
            out.family_of(&prometheus::MEM_FREE).sample(by_host, free);
        }
        if let Some(buffers) = memory.buffers_bytes {
            out.family_of(&prometheus::MEM_BUFFERS).sample(by_host, buffers);
        }
        if let Some(cached) = memory.cached_bytes {
            out.family_of(&prometheus::MEM_CACHED).sample(by_host, cached);
        }
    }
    if let Some(swap) = &sample.swap {
        out.family_of(&prometheus::SWAP_TOTAL).sample(by_host, swap.total_bytes);
        // The agent reports swap in use; node_exporter reports what is free.
        out.family_of(&prometheus::SWAP_FREE)
            .sample(by_host, swap.total_bytes.saturating_sub(swap.used_bytes));
    }

    type NetCounter = (&'static prometheus::Family, fn(&protocol::NetworkInterface) -> u64);
    let network: [NetCounter; 6] = [
        (&prometheus::NET_RX_BYTES, |n| n.rx_bytes),
        (&prometheus::NET_TX_BYTES, |n| n.tx_bytes),
        (&prometheus::NET_RX_PACKETS, |n| n.rx_packets),
        (&prometheus::NET_TX_PACKETS, |n| n.tx_packets),
        (&prometheus::NET_RX_ERRORS, |n| n.rx_errors),
        (&prometheus::NET_TX_ERRORS, |n| n.tx_errors),
    ];
    for (family, value) in network {
        let family = out.family_of(family);
        for interface in &sample.networks {
            family.sample(&labels(by_host, &[("device", &interface.name)]), value(interface));
        }
    }

    for filesystem in &sample.filesystems {
        let mount = ("mountpoint", filesystem.mount_point.as_str());
        // `/metrics` keeps the labels it always had; one host's exposition has node_exporter's.
        let fs_labels = match scope {
            Scope::AllHosts => labels(by_host, &[mount]),
            Scope::OneHost => labels(
                by_host,
                &[("device", &filesystem.device), ("fstype", &filesystem.fs_type), mount],
            ),
        };
        out.family_of(&prometheus::FS_SIZE).sample(&fs_labels, filesystem.total_bytes);
        out.family_of(&prometheus::FS_AVAIL).sample(&fs_labels, filesystem.available_bytes);
        if let Some(free) = filesystem.free_bytes {
            out.family_of(&prometheus::FS_FREE).sample(&fs_labels, free);
        }
    }

    for disk in &sample.disks {
        let disk_labels = labels(by_host, &[("device", disk.device.as_str())]);
        out.family_of(&prometheus::DISK_READ_BYTES).sample(&disk_labels, disk.read_bytes);
        out.family_of(&prometheus::DISK_WRITTEN_BYTES).sample(&disk_labels, disk.written_bytes);
        if let Some(reads) = disk.reads_completed {
            out.family_of(&prometheus::DISK_READS).sample(&disk_labels, reads);
        }
        if let Some(writes) = disk.writes_completed {
            out.family_of(&prometheus::DISK_WRITES).sample(&disk_labels, writes);
        }
        if let Some(ms) = disk.io_time_ms {
            out.family_of(&prometheus::DISK_IO_TIME).sample(&disk_labels, ms as f64 / 1000.0);
        }
    }

    let temperature = out.family_of(&prometheus::TEMPERATURE);
    for sensor in &sample.temperatures {
        temperature.sample(&labels(by_host, &[("sensor", &sensor.label)]), sensor.celsius);
    }
}

/// The collector's own figures.
fn collector_series(out: &mut Exposition, stats: &StatsView, figures: &CollectorFigures) {
    out.gauge(
        "hostwatch_collector_agents_connected",
        "Agents connected now, the collector's own monitoring included.",
    )
    .sample(&[], stats.agents_connected);
    // The connection-level count, as `/api/stats` shows it: it includes subscribers still
    // catching up from the database, which the hub does not count yet.
    out.gauge("hostwatch_collector_subscribers", "Live event subscribers (SSE and WebSocket) now.")
        .sample(&[], figures.subscribers);
    out.gauge("hostwatch_collector_hosts", "Known hosts.").sample(&[], stats.hosts);
    out.counter("hostwatch_collector_samples_total", "Samples stored since the collector started.")
        .sample(&[], stats.samples_total);
    out.gauge(
        "hostwatch_collector_samples_per_second",
        "Samples stored per second over the last ten seconds.",
    )
    .sample(&[], stats.samples_per_second);
    out.counter(
        "hostwatch_collector_subscribers_lagged_total",
        "Subscribers dropped for being too slow since the collector started.",
    )
    .sample(&[], stats.subscribers_lagged_total);
    out.gauge("hostwatch_collector_uptime_seconds", "Seconds since the collector started.")
        .sample(&[], stats.uptime_seconds);
    out.gauge("hostwatch_collector_alerts_firing", "Alerts firing now (silenced ones included).")
        .sample(&[], stats.alerts_firing);
    out.counter(
        "hostwatch_collector_ingest_bytes_total",
        "Bytes received from agents since the collector started.",
    )
    .sample(&[], figures.ingest_bytes_total);
    out.gauge(
        "hostwatch_collector_storage_up",
        "1 while the storage commits, 0 while its last write failed (nothing is acknowledged).",
    )
    .sample(&[], u64::from(!figures.storage.failing));
    out.counter(
        "hostwatch_collector_storage_failures_total",
        "Failed storage transactions and maintenance steps since the collector started.",
    )
    .sample(&[], figures.storage.failures_total);
    let writer = &figures.writer;
    out.histogram(
        "hostwatch_collector_commit_seconds",
        "Storage transactions (BEGIN to the end of COMMIT, fsync and automatic checkpoints \
         included) by duration; acks and live events wait for them.",
        &writer.commit_seconds,
    );
    out.histogram(
        "hostwatch_collector_commit_samples",
        "Samples stored by each storage transaction.",
        &writer.commit_samples,
    );
    out.histogram(
        "hostwatch_collector_maintenance_seconds",
        "Storage maintenance steps (rollups, compaction, retention, size cap, removals) by \
         duration; nothing is stored while one runs.",
        &writer.maintenance_seconds,
    );
    if let Some(redis) = &figures.redis {
        out.gauge(
            "hostwatch_collector_redis_up",
            "1 while the collector replicates through Redis, 0 while it works alone.",
        )
        .sample(&[], u64::from(redis.up));
        out.gauge(
            "hostwatch_collector_redis_lag_seconds",
            "How far the consumer is behind the stream's newest entry.",
        )
        .sample(&[], redis.lag_ms as f64 / 1000.0);
        let counters: [(&str, &str, u64); 5] = [
            (
                "hostwatch_collector_redis_published_total",
                "Stream entries (stored batches) this collector published since it started.",
                redis.published_total,
            ),
            (
                "hostwatch_collector_redis_consumed_total",
                "Other collectors' stream entries stored here since start.",
                redis.consumed_total,
            ),
            (
                "hostwatch_collector_redis_skipped_total",
                "Stream entries not stored here (undecodable, or refused by the storage).",
                redis.skipped_total,
            ),
            (
                "hostwatch_collector_redis_gaps_total",
                "Times the stream had been trimmed past this collector's position.",
                redis.gaps_total,
            ),
            (
                "hostwatch_collector_redis_losses_total",
                "Times the connection to Redis was lost since start.",
                redis.losses_total,
            ),
        ];
        for (name, help, value) in counters {
            out.counter(name, help).sample(&[], value);
        }
    }
    if let Some(bytes) = figures.database_bytes {
        out.gauge("hostwatch_collector_database_bytes", "Size of the SQLite database on disk.")
            .sample(&[], bytes);
    }
    if !figures.notify.is_empty() {
        use std::sync::atomic::Ordering::Relaxed;
        type Read = fn(&crate::notify::ChannelStats) -> u64;
        let counters: [(&str, &str, Read); 4] = [
            (
                "hostwatch_collector_notify_sent_total",
                "Notifications delivered, by channel.",
                |s| s.sent_total.load(Relaxed),
            ),
            (
                "hostwatch_collector_notify_failures_total",
                "Failed notification attempts (each retry counts), by channel.",
                |s| s.failures_total.load(Relaxed),
            ),
            (
                "hostwatch_collector_notify_dropped_total",
                "Notifications dropped (queue full, or retried for an hour in vain), by channel.",
                |s| s.dropped_total.load(Relaxed),
            ),
            (
                "hostwatch_collector_notify_deduplicated_total",
                "Notifications another collector sent first (--redis), by channel.",
                |s| s.deduplicated_total.load(Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            let family = out.counter(name, help);
            for stats in figures.notify.iter() {
                family.sample(&[("channel", stats.name.as_str())], read(stats));
            }
        }
    }
}

/// node_exporter's CPU modes with their tick counts.
fn cpu_modes(times: &CpuTimes) -> [(&'static str, u64); 8] {
    [
        ("user", times.user_ticks),
        ("nice", times.nice_ticks),
        ("system", times.system_ticks),
        ("idle", times.idle_ticks),
        ("iowait", times.iowait_ticks),
        ("irq", times.irq_ticks),
        ("softirq", times.softirq_ticks),
        ("steal", times.steal_ticks),
    ]
}

/// Converts CPU ticks to seconds.
fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / f64::from(CPU_TICKS_PER_SECOND)
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// An exposition under construction: families in order of first use, each with its series.
#[derive(Default)]
struct Exposition {
    families: Vec<Family>,
    by_name: HashMap<&'static str, usize>,
}

impl Exposition {
    /// A host family of the catalog, created on first use.
    fn family_of(&mut self, family: &'static prometheus::Family) -> &mut Family {
        let kind = if family.counter { Kind::Counter } else { Kind::Gauge };
        self.family(family.name, kind, family.help)
    }

    /// The gauge family `name`, created on first use.
    fn gauge(&mut self, name: &'static str, help: &'static str) -> &mut Family {
        self.family(name, Kind::Gauge, help)
    }

    /// The counter family `name` (which must end in `_total`), created on first use.
    fn counter(&mut self, name: &'static str, help: &'static str) -> &mut Family {
        self.family(name, Kind::Counter, help)
    }

    /// The histogram family `name`, written whole from `view`: its cumulative `_bucket` series
    /// (the `+Inf` one equal to `_count`), `_sum` and `_count`.
    fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        view: &crate::storage::timing::HistogramView,
    ) {
        let family = self.family(name, Kind::Histogram, help);
        let mut line = |suffix: &str, labels: &str, value: String| {
            for part in [name, suffix, labels, " ", &value, "\n"] {
                family.series.push_str(part);
            }
        };
        for (bound, count) in &view.buckets {
            line("_bucket", &label_set(&[("le", &bound.to_string())]), count.to_string());
        }
        line("_bucket", &label_set(&[("le", "+Inf")]), view.count.to_string());
        line("_sum", "", view.sum.exposition().unwrap_or_else(|| "0".into()));
        line("_count", "", view.count.to_string());
    }

    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) -> &mut Family {
        let next = self.families.len();
        let index = *self.by_name.entry(name).or_insert(next);
        if index == next {
            debug_assert!(
                kind != Kind::Counter || name.ends_with("_total"),
                "counter {name} must end in _total"
            );
            // HELP text escapes backslashes and newlines; ours are constants without either.
            debug_assert!(!help.contains(['\\', '\n']), "help of {name} needs escaping");
            self.families.push(Family {
                name,
                kind,
                help,
                series: String::new(),
                seen: HashSet::new(),
            });
        }
        let family = &mut self.families[index];
        debug_assert!(
            family.kind == kind && family.help == help,
            "{name} is declared twice with different type or help"
        );
        family
    }

    /// Writes every family that has at least one series; an empty family says nothing useful.
    fn finish(self) -> String {
        let mut text = String::new();
        for family in self.families.iter().filter(|f| !f.series.is_empty()) {
            for part in [
                "# HELP ",
                family.name,
                " ",
                family.help,
                "\n# TYPE ",
                family.name,
                " ",
                family.kind.as_str(),
                "\n",
                &family.series,
            ] {
                text.push_str(part);
            }
        }
        text
    }
}

/// One metric family: its series lines and the label sets already written.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    series: String,
    seen: HashSet<String>,
}

impl Family {
    /// Adds one series. A value that is not finite is left out, because a NaN or infinite
    /// reading is a sampling glitch rather than a measurement. A label set already present (two
    /// sensors with the same label, say) keeps its first value, because Prometheus rejects the
    /// whole scrape when a series appears twice.
    fn sample(&mut self, labels: &[(&str, &str)], value: impl Number) -> &mut Self {
        let Some(value) = value.exposition() else {
            return self;
        };
        let labels = label_set(labels);
        if self.seen.contains(&labels) {
            return self;
        }
        for part in [self.name, &labels, " ", &value, "\n"] {
            self.series.push_str(part);
        }
        self.seen.insert(labels);
        self
    }
}

/// `{name="value",...}` with values escaped, or nothing when there are no labels.
fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut text = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(name);
        text.push_str("=\"");
        escape_label_value(value, &mut text);
        text.push('"');
    }
    text.push('}');
    text
}

/// Escapes a label value as the text format requires: backslash, double quote and line feed.
fn escape_label_value(value: &str, text: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

/// A sample value as the exposition writes it.
trait Number {
    /// The value's text, or `None` for NaN and infinities.
    fn exposition(self) -> Option<String>;
}

impl Number for u64 {
    fn exposition(self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Number for usize {
    fn exposition(self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Number for f64 {
    fn exposition(self) -> Option<String> {
        // Rust prints the shortest text that reads back as the same value, which Prometheus
        // parses exactly.
        self.is_finite().then(|| self.to_string())
    }
}

impl Number for f32 {
    fn exposition(self) -> Option<String> {
        // Printed as an f32, so a load of 0.15 reads "0.15", not 0.15000000596046448.
        self.is_finite().then(|| self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use protocol::{DiskIo, Filesystem, LoadAverage, Memory, NetworkInterface, Swap, Temperature};

    use super::*;
    use crate::api::views::HostMetrics;
    use crate::storage::Point;

    fn core(user: u64, idle: u64) -> CpuTimes {
        CpuTimes {
            user_ticks: user,
            nice_ticks: 1,
            system_ticks: 2,
            idle_ticks: idle,
            iowait_ticks: 3,
            irq_ticks: 4,
            softirq_ticks: 5,
            steal_ticks: 0,
        }
    }

    fn full_sample() -> Sample {
        Sample {
            seq: 42,
            ts_ms: 1_700_000_000_500,
            cpu: Some(core(300, 900)),
            cores: vec![core(100, 12_345), core(200, 50)],
            load: Some(LoadAverage { one: 0.15, five: 1.5, fifteen: 2.0 }),
            memory: Some(Memory {
                total_bytes: 8_000_000_000,
                used_bytes: 3_000_000_000,
                available_bytes: 5_000_000_000,
                free_bytes: Some(1_000_000_000),
                buffers_bytes: Some(200_000_000),
                cached_bytes: Some(3_000_000_000),
            }),
            swap: Some(Swap { total_bytes: 1_000, used_bytes: 300 }),
            networks: vec![NetworkInterface {
                name: "eth0".into(),
                rx_bytes: 1_000,
                tx_bytes: 2_000,
                rx_packets: 10,
                tx_packets: 20,
                rx_errors: 1,
                tx_errors: 2,
            }],
            filesystems: vec![Filesystem {
                mount_point: "/mnt/a \"b\"\\c\nd".into(),
                total_bytes: 100,
                available_bytes: 40,
                device: "/dev/sda1".into(),
                fs_type: "ext4".into(),
                free_bytes: Some(45),
            }],
            disks: vec![DiskIo {
                device: "sda".into(),
                read_bytes: 4_096,
                written_bytes: 8_192,
                reads_completed: Some(10),
                writes_completed: Some(20),
                io_time_ms: Some(1_500),
            }],
            uptime_seconds: Some(1_000),
            process_count: Some(123),
            temperatures: vec![
                Temperature { label: "coretemp Core 0".into(), celsius: 45.5 },
                // The same label again: only the first is kept.
                Temperature { label: "coretemp Core 0".into(), celsius: 99.0 },
                Temperature { label: "acpitz".into(), celsius: f32::NAN },
            ],
        }
    }

    fn view() -> MetricsView {
        let full = HostMetrics {
            id: "alpha".into(),
            hostname: "alpha.example".into(),
            status: "online",
            last_seen_ms: Some(1_700_000_000_500),
            boot_time_seconds: 1_699_999_000,
            kernel: "6.1.0-18-amd64".into(),
            kernel_build: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)".into(),
            arch: "x86_64".into(),
            dropped_samples: 7,
            sample: Some(Arc::new(full_sample())),
            point: Some(Arc::new(Point {
                ts: 1_700_000_000_500,
                cpu_percent: Some(12.5),
                ..Point::default()
            })),
        };
        let empty = HostMetrics {
            id: "beta".into(),
            hostname: "beta".into(),
            status: "offline",
            last_seen_ms: None,
            boot_time_seconds: 0,
            kernel: "6.1.0".into(),
            kernel_build: String::new(),
            arch: "aarch64".into(),
            dropped_samples: 0,
            sample: None,
            point: None,
        };
        MetricsView {
            hosts: vec![full, empty],
            stats: StatsView {
                agents_connected: 1,
                subscribers: 2,
                samples_total: 99,
                samples_per_second: 1.5,
                hosts: 2,
                subscribers_lagged_total: 0,
                uptime_seconds: 60,
                alerts_firing: 3,
            },
        }
    }

    fn figures() -> CollectorFigures {
        CollectorFigures {
            database_bytes: Some(65_536),
            ingest_bytes_total: 12_345,
            subscribers: 3,
            storage: crate::storage::health::HealthView {
                failing: false,
                failures_total: 2,
                failing_since_ms: None,
                reason: None,
            },
            writer: writer_timings(),
            notify: Default::default(),
            redis: None,
        }
    }

    /// Histograms with a few observations: 3 fast commits, one of 0.3 s and one of 9 s.
    fn writer_timings() -> crate::storage::timing::WriterTimingsView {
        let timings = crate::storage::timing::WriterTimings::default();
        for seconds in [0.0004, 0.002, 0.002, 0.3, 9.0] {
            timings.commit_seconds.observe(seconds);
        }
        timings.commit_samples.observe(100.0);
        timings.maintenance_seconds.observe(0.02);
        timings.view()
    }

    fn rendered() -> String {
        render(&view(), &figures())
    }

    fn assert_line(text: &str, line: &str) {
        assert!(text.lines().any(|l| l == line), "missing line {line:?} in:\n{text}");
    }

    #[test]
    fn every_prometheus_name_of_the_catalog_is_exported() {
        let mut view = view();
        let mut sample = full_sample();
        sample.disks[0].reads_completed = Some(3);
        sample.disks[0].writes_completed = Some(4);
        sample.disks[0].io_time_ms = Some(1_500);
        view.hosts[0].sample = Some(Arc::new(sample));
        let text = render(&view, &figures());
        for family in prometheus::ALL {
            let name = family.name;
            assert!(text.contains(&format!("\n{name}{{")), "{name} missing from /metrics");
            let kind = if family.counter { "counter" } else { "gauge" };
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} is not a {kind}");
        }
        // Every series of the catalog that names a family names one the exporter writes.
        let series = crate::catalog::HOST
            .iter()
            .chain(crate::catalog::DEVICES.iter().flat_map(|t| t.fields.iter()));
        for family in series.filter_map(|s| s.prometheus) {
            assert!(prometheus::ALL.contains(&family), "{} is not in the family list", family.name);
        }
        assert_line(&text, r#"node_disk_io_time_seconds_total{host="alpha",device="sda"} 1.5"#);
    }

    #[test]
    fn an_offline_host_exports_its_status_but_not_its_frozen_values() {
        let mut view = view();
        let alpha = view.hosts.iter_mut().find(|h| h.id == "alpha").unwrap();
        alpha.status = "offline";
        let text = render(&view, &figures());
        assert_line(&text, r#"hostwatch_host_up{host="alpha"} 0"#);
        assert!(!text.lines().any(|l| l.starts_with("node_load1{host=\"alpha\"}")), "{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("node_cpu_seconds_total{host=\"alpha\"")),
            "{text}"
        );
    }

    #[test]
    fn exact_series_for_a_host_with_a_sample() {
        let text = rendered();
        for line in [
            r#"hostwatch_host_info{host="alpha",hostname="alpha.example"} 1"#,
            r#"hostwatch_host_up{host="alpha"} 1"#,
            r#"hostwatch_host_status{host="alpha",status="online"} 1"#,
            r#"hostwatch_host_status{host="alpha",status="offline"} 0"#,
            r#"hostwatch_host_last_seen_timestamp_seconds{host="alpha"} 1700000000.5"#,
            r#"hostwatch_host_dropped_samples_total{host="alpha"} 7"#,
            r#"hostwatch_host_processes{host="alpha"} 123"#,
            r#"hostwatch_host_cpu_percent{host="alpha"} 12.5"#,
            r#"node_boot_time_seconds{host="alpha"} 1699999000"#,
            r#"node_cpu_seconds_total{host="alpha",cpu="0",mode="idle"} 123.45"#,
            r#"node_cpu_seconds_total{host="alpha",cpu="1",mode="user"} 2"#,
            r#"node_cpu_seconds_total{host="alpha",cpu="1",mode="steal"} 0"#,
            r#"node_load1{host="alpha"} 0.15"#,
            r#"node_load15{host="alpha"} 2"#,
            r#"node_memory_MemTotal_bytes{host="alpha"} 8000000000"#,
            r#"node_memory_MemAvailable_bytes{host="alpha"} 5000000000"#,
            r#"node_memory_SwapFree_bytes{host="alpha"} 700"#,
            r#"node_network_receive_errs_total{host="alpha",device="eth0"} 1"#,
            r#"node_network_transmit_packets_total{host="alpha",device="eth0"} 20"#,
            r#"node_disk_written_bytes_total{host="alpha",device="sda"} 8192"#,
            r#"node_hwmon_temp_celsius{host="alpha",sensor="coretemp Core 0"} 45.5"#,
        ] {
            assert_line(&text, line);
        }
        // The whole-host CPU line is not exported: node_exporter has per-CPU series only.
        assert_eq!(
            text.lines().filter(|l| l.starts_with("node_cpu_seconds_total{")).count(),
            2 * 8
        );
    }

    #[test]
    fn one_hosts_exposition_has_node_exporters_names_and_labels_and_no_host_label() {
        let view = view();
        let text = render_host(&view.hosts[0]);
        for line in [
            r#"hostwatch_host_info{host="alpha",hostname="alpha.example"} 1"#,
            "hostwatch_host_up 1",
            r#"hostwatch_host_status{status="online"} 1"#,
            "node_boot_time_seconds 1699999000",
            "node_time_seconds 1700000000.5",
            concat!(
                r#"node_uname_info{domainname="(none)",machine="x86_64",nodename="alpha.example","#,
                r#"release="6.1.0-18-amd64",sysname="Linux","#,
                r##"version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"} 1"##
            ),
            r#"node_cpu_seconds_total{cpu="0",mode="idle"} 123.45"#,
            "node_load1 0.15",
            "node_memory_MemFree_bytes 1000000000",
            "node_memory_Buffers_bytes 200000000",
            "node_memory_Cached_bytes 3000000000",
            r#"node_network_receive_bytes_total{device="eth0"} 1000"#,
            r#"node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/mnt/a \"b\"\\c\nd"} 100"#,
            r#"node_filesystem_free_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/mnt/a \"b\"\\c\nd"} 45"#,
            r#"node_disk_reads_completed_total{device="sda"} 10"#,
            r#"node_disk_writes_completed_total{device="sda"} 20"#,
            r#"node_disk_io_time_seconds_total{device="sda"} 1.5"#,
            r#"node_hwmon_temp_celsius{sensor="coretemp Core 0"} 45.5"#,
        ] {
            assert_line(&text, line);
        }
        let labelled = text.lines().filter(|l| !l.starts_with('#') && l.contains("host=\""));
        assert_eq!(labelled.count(), 1, "only hostwatch_host_info names the host:\n{text}");
        assert!(
            !text.contains("hostwatch_collector_"),
            "the collector's own series stay in /metrics"
        );

        // An offline host still says what it is, and nothing else of its frozen values.
        let text = render_host(&view.hosts[1]);
        assert_line(&text, "hostwatch_host_up 0");
        assert!(text.contains("node_uname_info{"), "{text}");
        assert!(!text.contains("node_load1"), "{text}");
    }

    #[test]
    fn all_hosts_keep_their_filesystem_labels_and_gain_the_new_series() {
        let text = rendered();
        assert_line(
            &text,
            r#"node_filesystem_free_bytes{host="alpha",mountpoint="/mnt/a \"b\"\\c\nd"} 45"#,
        );
        assert_line(&text, r#"node_memory_Cached_bytes{host="alpha"} 3000000000"#);
        assert!(text.contains(r#"node_uname_info{host="alpha",domainname="(none)""#), "{text}");
    }

    #[test]
    fn a_host_without_a_sample_has_only_its_host_series() {
        let text = rendered();
        let beta: Vec<&str> = text.lines().filter(|l| l.contains(r#"host="beta""#)).collect();
        assert_eq!(
            beta,
            [
                r#"hostwatch_host_info{host="beta",hostname="beta"} 1"#,
                r#"hostwatch_host_up{host="beta"} 0"#,
                r#"hostwatch_host_status{host="beta",status="online"} 0"#,
                r#"hostwatch_host_status{host="beta",status="stale"} 0"#,
                r#"hostwatch_host_status{host="beta",status="offline"} 1"#,
                r#"hostwatch_host_dropped_samples_total{host="beta"} 0"#,
            ]
        );
    }

    #[test]
    fn collector_series() {
        let text = rendered();
        for line in [
            "hostwatch_collector_agents_connected 1",
            "hostwatch_collector_subscribers 3",
            "hostwatch_collector_hosts 2",
            "hostwatch_collector_samples_total 99",
            "hostwatch_collector_samples_per_second 1.5",
            "hostwatch_collector_subscribers_lagged_total 0",
            "hostwatch_collector_uptime_seconds 60",
            "hostwatch_collector_alerts_firing 3",
            "hostwatch_collector_ingest_bytes_total 12345",
            "hostwatch_collector_database_bytes 65536",
            "hostwatch_collector_storage_up 1",
            "hostwatch_collector_storage_failures_total 2",
        ] {
            assert_line(&text, line);
        }
        let unknown = CollectorFigures { database_bytes: None, ..figures() };
        assert!(!render(&view(), &unknown).contains("hostwatch_collector_database_bytes"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = rendered();
        assert_line(
            &text,
            r#"node_filesystem_size_bytes{host="alpha",mountpoint="/mnt/a \"b\"\\c\nd"} 100"#,
        );
        assert_eq!(
            label_set(&[("a", "x\\y\"z\n")]),
            r#"{a="x\\y\"z\n"}"#,
            "backslash, quote and newline"
        );
    }

    #[test]
    fn each_family_has_one_help_and_type_and_its_series_together() {
        let text = rendered();
        let mut helps = HashSet::new();
        let mut types = HashSet::new();
        let mut finished = HashSet::new();
        let mut kinds = HashMap::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(helps.insert(name), "second HELP for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                kinds.insert(name, kind);
                assert!(types.insert(name), "second TYPE for {name}");
                assert!(helps.contains(name), "TYPE before HELP for {name}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                if !current.is_empty() {
                    finished.insert(current);
                }
                current = name;
                continue;
            }
            let mut name = line.split(['{', ' ']).next().unwrap_or_default();
            // A histogram's series are its name with a suffix.
            if kinds.get(current) == Some(&"histogram") {
                for suffix in ["_bucket", "_sum", "_count"] {
                    name = name.strip_suffix(suffix).filter(|n| *n == current).unwrap_or(name);
                }
            }
            assert_eq!(name, current, "series outside its family: {line}");
            assert!(!finished.contains(name), "family {name} split: {line}");
        }
        assert_eq!(helps, types);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn no_duplicate_lines_and_no_non_finite_values() {
        let text = rendered();
        let mut seen = HashSet::new();
        for line in text.lines() {
            assert!(seen.insert(line), "duplicate line {line:?}");
        }
        assert!(!text.contains(r#"sensor="acpitz""#), "NaN reading left out");
        assert!(!text.contains(r#"} 99"#), "second reading of a duplicate sensor left out");
        for value in
            text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.rsplit(' ').next())
        {
            let parsed: f64 = value.parse().expect("numeric value");
            assert!(parsed.is_finite(), "{value}");
        }
    }

    #[test]
    fn commit_durations_are_a_cumulative_histogram() {
        let text = rendered();
        for line in [
            "# TYPE hostwatch_collector_commit_seconds histogram",
            r#"hostwatch_collector_commit_seconds_bucket{le="0.001"} 1"#,
            r#"hostwatch_collector_commit_seconds_bucket{le="0.0025"} 3"#,
            r#"hostwatch_collector_commit_seconds_bucket{le="0.25"} 3"#,
            r#"hostwatch_collector_commit_seconds_bucket{le="0.5"} 4"#,
            r#"hostwatch_collector_commit_seconds_bucket{le="8"} 4"#,
            r#"hostwatch_collector_commit_seconds_bucket{le="+Inf"} 5"#,
            "hostwatch_collector_commit_seconds_sum 9.3044",
            "hostwatch_collector_commit_seconds_count 5",
            r#"hostwatch_collector_commit_samples_bucket{le="256"} 1"#,
            "hostwatch_collector_commit_samples_count 1",
            r#"hostwatch_collector_maintenance_seconds_bucket{le="0.025"} 1"#,
        ] {
            assert_line(&text, line);
        }
        // An idle collector still exports the family, every bucket at 0.
        let text = render(&view(), &CollectorFigures::default());
        assert_line(&text, r#"hostwatch_collector_commit_seconds_bucket{le="+Inf"} 0"#);
        assert_line(&text, "hostwatch_collector_commit_seconds_count 0");
    }

    #[test]
    fn an_empty_view_exports_only_the_collector() {
        let empty = MetricsView { hosts: Vec::new(), ..view() };
        let text = render(&empty, &CollectorFigures::default());
        assert!(text.lines().all(|l| l.contains("hostwatch_collector_")), "{text}");
        assert!(!text.contains("node_"));
    }
}
