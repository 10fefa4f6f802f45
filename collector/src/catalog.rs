//! The one table of metrics: every series the collector keeps, with its JSON name, unit, kind,
//! how it is stored and rolled up, its Prometheus name and labels, its alert name and the page's
//! label. Storage (columns, block encoding, rollups), the history JSON and CSV, `/api/series`,
//! alert rule validation and the `/metrics` names are read from here, so adding a metric is one
//! entry below plus the sampler code that fills it (and, for a device field, one line in
//! `storage/device.rs` that derives it).
//!
//! Host series keep the order of the schema-1 `samples` columns, which is also the order of the
//! history API's fields and of the rollup tables' column groups: that order is a public contract.

use serde::Serialize;

/// How a series' values come from what the agent sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A reading taken as sent (memory in use, a temperature).
    Gauge,
    /// A cumulative counter turned into a per-second rate or a busy share between two samples.
    Rate,
}

/// One series: a host total or one field of a device.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Series {
    /// Name in the history JSON and CSV (for a device field, the field's name).
    pub json: &'static str,
    /// Unit, as the page shows it.
    pub unit: &'static str,
    /// Gauge or counter turned into a rate.
    pub kind: Kind,
    /// Whether values are whole numbers (bytes, counts); others are written as floats.
    pub integer: bool,
    /// Decimal places kept: values are stored as integers of `10^-decimals` (what `derive`
    /// rounds to, so storing is lossless).
    pub decimals: u32,
    /// Column of the schema-1 `samples` table and prefix of the rollup columns (host totals
    /// only; empty for device fields).
    #[serde(skip)]
    pub column: &'static str,
    /// Family at `/metrics` (node_exporter's where it has one), if exported.
    #[serde(skip)]
    pub prometheus: Option<&'static prometheus::Family>,
    /// Name in alert rules, if rules may watch it.
    pub alert: Option<&'static str>,
    /// Label on the page.
    pub label: &'static str,
}

impl Series {
    /// The fixed-point factor of stored values.
    pub fn scale(&self) -> f64 {
        10f64.powi(self.decimals as i32)
    }

    /// A value as stored: an integer of `10^-decimals`, or `None` for a value JSON cannot carry.
    pub fn to_stored(&self, value: f64) -> Option<i64> {
        let scaled = (value * self.scale()).round();
        (scaled.is_finite() && scaled.abs() < 9.0e18).then_some(scaled as i64)
    }

    /// A stored value back as the number the API shows: the same float `derive` produced.
    pub fn from_stored(&self, stored: i64) -> f64 {
        stored as f64 / self.scale()
    }
}

// Positional, so the table below reads as a table.
#[allow(clippy::too_many_arguments)]
const fn gauge(
    json: &'static str,
    unit: &'static str,
    integer: bool,
    decimals: u32,
    column: &'static str,
    prometheus: Option<&'static prometheus::Family>,
    alert: Option<&'static str>,
    label: &'static str,
) -> Series {
    Series { json, unit, kind: Kind::Gauge, integer, decimals, column, prometheus, alert, label }
}

const fn rate(
    json: &'static str,
    unit: &'static str,
    decimals: u32,
    column: &'static str,
    prometheus: Option<&'static prometheus::Family>,
    alert: Option<&'static str>,
    label: &'static str,
) -> Series {
    Series {
        json,
        unit,
        kind: Kind::Rate,
        integer: false,
        decimals,
        column,
        prometheus,
        alert,
        label,
    }
}

/// The Prometheus families `/metrics` exports for hosts: node_exporter's name, help text and type
/// where it has one. The exporter (`api/metrics.rs`) names families only through these, and
/// the series above point at theirs, so a name is written once.
pub mod prometheus {
    /// One metric family.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Family {
        /// Metric name (a counter's ends in `_total`).
        pub name: &'static str,
        /// `# HELP` text.
        pub help: &'static str,
        /// Counter (cumulative, as the agent sends it) or gauge.
        pub counter: bool,
    }

    const fn gauge(name: &'static str, help: &'static str) -> Family {
        Family { name, help, counter: false }
    }

    const fn counter(name: &'static str, help: &'static str) -> Family {
        Family { name, help, counter: true }
    }

    /// `node_cpu_seconds_total`.
    pub const CPU_SECONDS: Family =
        counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.");
    /// `hostwatch_host_cpu_percent`.
    pub const CPU_PERCENT: Family = gauge(
        "hostwatch_host_cpu_percent",
        "CPU busy percentage of the whole host between its two newest samples.",
    );
    /// `node_boot_time_seconds`.
    pub const BOOT_TIME: Family = gauge("node_boot_time_seconds", "Node boot time, in unixtime.");
    /// `node_time_seconds`.
    pub const TIME: Family =
        gauge("node_time_seconds", "System time in seconds since epoch (1970).");
    /// `node_uname_info`.
    pub const UNAME: Family = gauge(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
    );
    /// `node_load1`.
    pub const LOAD1: Family = gauge("node_load1", "1m load average.");
    /// `node_load5`.
    pub const LOAD5: Family = gauge("node_load5", "5m load average.");
    /// `node_load15`.
    pub const LOAD15: Family = gauge("node_load15", "15m load average.");
    /// `node_memory_MemTotal_bytes`.
    pub const MEM_TOTAL: Family =
        gauge("node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes.");
    /// `node_memory_MemAvailable_bytes`.
    pub const MEM_AVAILABLE: Family =
        gauge("node_memory_MemAvailable_bytes", "Memory information field MemAvailable_bytes.");
    /// `node_memory_MemFree_bytes`.
    pub const MEM_FREE: Family =
        gauge("node_memory_MemFree_bytes", "Memory information field MemFree_bytes.");
    /// `node_memory_Buffers_bytes`.
    pub const MEM_BUFFERS: Family =
        gauge("node_memory_Buffers_bytes", "Memory information field Buffers_bytes.");
    /// `node_memory_Cached_bytes`.
    pub const MEM_CACHED: Family =
        gauge("node_memory_Cached_bytes", "Memory information field Cached_bytes.");
    /// `node_memory_SwapTotal_bytes`.
    pub const SWAP_TOTAL: Family =
        gauge("node_memory_SwapTotal_bytes", "Memory information field SwapTotal_bytes.");
    /// `node_memory_SwapFree_bytes`.
    pub const SWAP_FREE: Family =
        gauge("node_memory_SwapFree_bytes", "Memory information field SwapFree_bytes.");
    /// `node_network_receive_bytes_total`.
    pub const NET_RX_BYTES: Family =
        counter("node_network_receive_bytes_total", "Network device statistic receive_bytes.");
    /// `node_network_transmit_bytes_total`.
    pub const NET_TX_BYTES: Family =
        counter("node_network_transmit_bytes_total", "Network device statistic transmit_bytes.");
    /// `node_network_receive_packets_total`.
    pub const NET_RX_PACKETS: Family =
        counter("node_network_receive_packets_total", "Network device statistic receive_packets.");
    /// `node_network_transmit_packets_total`.
    pub const NET_TX_PACKETS: Family = counter(
        "node_network_transmit_packets_total",
        "Network device statistic transmit_packets.",
    );
    /// `node_network_receive_errs_total`.
    pub const NET_RX_ERRORS: Family =
        counter("node_network_receive_errs_total", "Network device statistic receive_errs.");
    /// `node_network_transmit_errs_total`.
    pub const NET_TX_ERRORS: Family =
        counter("node_network_transmit_errs_total", "Network device statistic transmit_errs.");
    /// `node_filesystem_size_bytes`.
    pub const FS_SIZE: Family = gauge("node_filesystem_size_bytes", "Filesystem size in bytes.");
    /// `node_filesystem_avail_bytes`.
    pub const FS_AVAIL: Family = gauge(
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes.",
    );
    /// `node_filesystem_free_bytes`.
    pub const FS_FREE: Family =
        gauge("node_filesystem_free_bytes", "Filesystem free space in bytes.");
    /// `node_disk_read_bytes_total`.
    pub const DISK_READ_BYTES: Family =
        counter("node_disk_read_bytes_total", "The total number of bytes read successfully.");
    /// `node_disk_written_bytes_total`.
    pub const DISK_WRITTEN_BYTES: Family =
        counter("node_disk_written_bytes_total", "The total number of bytes written successfully.");
    /// `node_disk_reads_completed_total`.
    pub const DISK_READS: Family = counter(
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
    );
    /// `node_disk_writes_completed_total`.
    pub const DISK_WRITES: Family = counter(
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
    );
    /// `node_disk_io_time_seconds_total`.
    pub const DISK_IO_TIME: Family =
        counter("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.");
    /// `node_hwmon_temp_celsius`.
    pub const TEMPERATURE: Family =
        gauge("node_hwmon_temp_celsius", "Hardware monitor for temperature (input).");
    /// `hostwatch_host_processes`.
    pub const PROCESSES: Family =
        gauge("hostwatch_host_processes", "Number of processes on the host.");

    /// Every family, in the order above.
    pub const ALL: &[&Family] = &[
        &CPU_SECONDS,
        &CPU_PERCENT,
        &BOOT_TIME,
        &TIME,
        &UNAME,
        &LOAD1,
        &LOAD5,
        &LOAD15,
        &MEM_TOTAL,
        &MEM_AVAILABLE,
        &MEM_FREE,
        &MEM_BUFFERS,
        &MEM_CACHED,
        &SWAP_TOTAL,
        &SWAP_FREE,
        &NET_RX_BYTES,
        &NET_TX_BYTES,
        &NET_RX_PACKETS,
        &NET_TX_PACKETS,
        &NET_RX_ERRORS,
        &NET_TX_ERRORS,
        &FS_SIZE,
        &FS_AVAIL,
        &FS_FREE,
        &DISK_READ_BYTES,
        &DISK_WRITTEN_BYTES,
        &DISK_READS,
        &DISK_WRITES,
        &DISK_IO_TIME,
        &TEMPERATURE,
        &PROCESSES,
    ];
}

/// Host totals, in the order of the history API's fields and the rollup tables' columns.
pub const HOST: &[Series] = &[
    rate(
        "cpu_percent",
        "%",
        2,
        "cpu_percent",
        Some(&prometheus::CPU_SECONDS),
        Some("cpu_percent"),
        "CPU",
    ),
    gauge("memory_used_bytes", "bytes", true, 0, "mem_used", None, None, "Memory used"),
    gauge(
        "memory_total_bytes",
        "bytes",
        true,
        0,
        "mem_total",
        Some(&prometheus::MEM_TOTAL),
        None,
        "Memory installed",
    ),
    gauge(
        "memory_available_bytes",
        "bytes",
        true,
        0,
        "mem_available",
        Some(&prometheus::MEM_AVAILABLE),
        None,
        "Memory available",
    ),
    gauge(
        "swap_used_bytes",
        "bytes",
        true,
        0,
        "swap_used",
        Some(&prometheus::SWAP_FREE),
        None,
        "Swap used",
    ),
    gauge(
        "swap_total_bytes",
        "bytes",
        true,
        0,
        "swap_total",
        Some(&prometheus::SWAP_TOTAL),
        None,
        "Swap configured",
    ),
    gauge("load1", "", false, 2, "load1", Some(&prometheus::LOAD1), Some("load1"), "Load 1 min"),
    gauge("load5", "", false, 2, "load5", Some(&prometheus::LOAD5), Some("load5"), "Load 5 min"),
    gauge(
        "load15",
        "",
        false,
        2,
        "load15",
        Some(&prometheus::LOAD15),
        Some("load15"),
        "Load 15 min",
    ),
    rate(
        "net_rx_bytes_per_second",
        "bytes/s",
        1,
        "net_rx_bps",
        Some(&prometheus::NET_RX_BYTES),
        Some("net_rx_bytes_per_second"),
        "Network received",
    ),
    rate(
        "net_tx_bytes_per_second",
        "bytes/s",
        1,
        "net_tx_bps",
        Some(&prometheus::NET_TX_BYTES),
        Some("net_tx_bytes_per_second"),
        "Network sent",
    ),
    rate(
        "disk_read_bytes_per_second",
        "bytes/s",
        1,
        "disk_read_bps",
        Some(&prometheus::DISK_READ_BYTES),
        Some("disk_read_bytes_per_second"),
        "Disk read",
    ),
    rate(
        "disk_write_bytes_per_second",
        "bytes/s",
        1,
        "disk_write_bps",
        Some(&prometheus::DISK_WRITTEN_BYTES),
        Some("disk_write_bytes_per_second"),
        "Disk written",
    ),
    gauge("fs_used_bytes", "bytes", true, 0, "fs_used", None, None, "Filesystems used"),
    gauge(
        "fs_total_bytes",
        "bytes",
        true,
        0,
        "fs_total",
        Some(&prometheus::FS_SIZE),
        None,
        "Filesystems size",
    ),
    gauge(
        "processes",
        "processes",
        true,
        0,
        "processes",
        Some(&prometheus::PROCESSES),
        None,
        "Processes",
    ),
    gauge("uptime_seconds", "s", true, 0, "uptime", Some(&prometheus::BOOT_TIME), None, "Uptime"),
    gauge(
        "temperature_celsius",
        "°C",
        false,
        1,
        "temp_max",
        Some(&prometheus::TEMPERATURE),
        Some("temperature_celsius"),
        "Hottest sensor",
    ),
    // Added by storage v2 (schema 3), after schema 1's columns.
    gauge(
        "fs_free_bytes",
        "bytes",
        true,
        0,
        "fs_free",
        Some(&prometheus::FS_FREE),
        None,
        "Filesystems free",
    ),
    gauge(
        "fs_avail_bytes",
        "bytes",
        true,
        0,
        "fs_avail",
        Some(&prometheus::FS_AVAIL),
        None,
        "Filesystems available",
    ),
    gauge(
        "fs_used_percent",
        "%",
        false,
        2,
        "fs_used_pct",
        None,
        Some("fs_used_percent"),
        "Filesystems used",
    ),
];

/// How many of [`HOST`] are schema 1's columns: in a raw CSV they come before
/// `cpu_cores_percent`, the others after it (columns are only ever appended).
pub const SCHEMA_1_HOST_SERIES: usize = 18;

/// Host percentages computed from two stored series when a rule asks for them; not stored.
pub const HOST_PERCENTAGES: &[Series] = &[
    gauge(
        "memory_used_percent",
        "%",
        false,
        2,
        "",
        None,
        Some("memory_used_percent"),
        "Memory used",
    ),
    gauge("swap_used_percent", "%", false, 2, "", None, Some("swap_used_percent"), "Swap used"),
];

/// The kinds of device a host has several of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A logical CPU.
    Cpu,
    /// A network interface.
    Net,
    /// A mounted filesystem.
    Fs,
    /// A block device.
    Disk,
    /// A temperature sensor.
    Sensor,
}

/// A kind of device and the fields each device of it has.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DeviceTable {
    /// The kind.
    pub kind: DeviceKind,
    /// Key in the history's `devices` object and in `series=` (`cpu`, `net`, …).
    pub key: &'static str,
    /// Prometheus label naming the device.
    pub prometheus_label: &'static str,
    /// Label on the page.
    pub label: &'static str,
    /// The fields, in stored order.
    pub fields: &'static [Series],
}

/// Per-device series, by kind.
pub const DEVICES: &[DeviceTable] = &[
    DeviceTable {
        kind: DeviceKind::Cpu,
        key: "cpu",
        prometheus_label: "cpu",
        label: "CPU cores",
        fields: &[rate("percent", "%", 0, "", Some(&prometheus::CPU_SECONDS), None, "Busy")],
    },
    DeviceTable {
        kind: DeviceKind::Net,
        key: "net",
        prometheus_label: "device",
        label: "Network interfaces",
        fields: &[
            rate(
                "rx_bytes_per_second",
                "bytes/s",
                1,
                "",
                Some(&prometheus::NET_RX_BYTES),
                None,
                "Received",
            ),
            rate(
                "tx_bytes_per_second",
                "bytes/s",
                1,
                "",
                Some(&prometheus::NET_TX_BYTES),
                None,
                "Sent",
            ),
            rate(
                "rx_packets_per_second",
                "packets/s",
                1,
                "",
                Some(&prometheus::NET_RX_PACKETS),
                None,
                "Packets received",
            ),
            rate(
                "tx_packets_per_second",
                "packets/s",
                1,
                "",
                Some(&prometheus::NET_TX_PACKETS),
                None,
                "Packets sent",
            ),
            rate(
                "rx_errors_per_second",
                "errors/s",
                1,
                "",
                Some(&prometheus::NET_RX_ERRORS),
                None,
                "Receive errors",
            ),
            rate(
                "tx_errors_per_second",
                "errors/s",
                1,
                "",
                Some(&prometheus::NET_TX_ERRORS),
                None,
                "Transmit errors",
            ),
        ],
    },
    DeviceTable {
        kind: DeviceKind::Fs,
        key: "fs",
        prometheus_label: "mountpoint",
        label: "Filesystems",
        fields: &[
            gauge("used_bytes", "bytes", true, 0, "", None, None, "Used"),
            gauge("total_bytes", "bytes", true, 0, "", Some(&prometheus::FS_SIZE), None, "Size"),
            gauge(
                "available_bytes",
                "bytes",
                true,
                0,
                "",
                Some(&prometheus::FS_AVAIL),
                None,
                "Available",
            ),
            gauge("used_percent", "%", false, 2, "", None, None, "Used"),
        ],
    },
    DeviceTable {
        kind: DeviceKind::Disk,
        key: "disk",
        prometheus_label: "device",
        label: "Disks",
        fields: &[
            rate(
                "read_bytes_per_second",
                "bytes/s",
                1,
                "",
                Some(&prometheus::DISK_READ_BYTES),
                None,
                "Read",
            ),
            rate(
                "write_bytes_per_second",
                "bytes/s",
                1,
                "",
                Some(&prometheus::DISK_WRITTEN_BYTES),
                None,
                "Written",
            ),
            rate("reads_per_second", "ops/s", 1, "", Some(&prometheus::DISK_READS), None, "Reads"),
            rate(
                "writes_per_second",
                "ops/s",
                1,
                "",
                Some(&prometheus::DISK_WRITES),
                None,
                "Writes",
            ),
            rate("busy_percent", "%", 1, "", Some(&prometheus::DISK_IO_TIME), None, "Busy"),
        ],
    },
    DeviceTable {
        kind: DeviceKind::Sensor,
        key: "sensor",
        prometheus_label: "sensor",
        label: "Temperatures",
        fields: &[gauge(
            "celsius",
            "°C",
            false,
            1,
            "",
            Some(&prometheus::TEMPERATURE),
            None,
            "Temperature",
        )],
    },
];

impl DeviceKind {
    /// The table entry of this kind.
    pub fn table(self) -> &'static DeviceTable {
        // DEVICES lists every kind once, in declaration order.
        &DEVICES[self.code() as usize]
    }

    /// The number stored for this kind in the `devices` table.
    pub fn code(self) -> u8 {
        match self {
            DeviceKind::Cpu => 0,
            DeviceKind::Net => 1,
            DeviceKind::Fs => 2,
            DeviceKind::Disk => 3,
            DeviceKind::Sensor => 4,
        }
    }

    /// The kind stored as `code`, if known.
    pub fn from_code(code: i64) -> Option<Self> {
        DEVICES.iter().map(|t| t.kind).find(|k| i64::from(k.code()) == code)
    }

    /// The kind whose key is `key`.
    pub fn from_key(key: &str) -> Option<Self> {
        DEVICES.iter().find(|t| t.key == key).map(|t| t.kind)
    }
}

/// Names alert rules may use, in the order the error message lists them.
pub fn alert_names() -> impl Iterator<Item = &'static str> {
    HOST.iter().chain(HOST_PERCENTAGES).filter_map(|s| s.alert)
}

/// How alert rules name a kind's device fields: the prefix before the field's name
/// (`fs_` + `used_percent`) and the rule key that selects the device (`mount = "/var"`). CPU
/// cores are not devices rules watch (their values are the host's `cpu_percent` split up).
pub fn alert_scope(kind: DeviceKind) -> Option<(&'static str, &'static str)> {
    match kind {
        DeviceKind::Cpu => None,
        DeviceKind::Net => Some(("net_", "interface")),
        DeviceKind::Fs => Some(("fs_", "mount")),
        DeviceKind::Disk => Some(("disk_", "disk")),
        DeviceKind::Sensor => Some(("temperature_", "sensor")),
    }
}

/// The device field an alert rule names (`fs_used_percent`: the filesystems' `used_percent`).
pub fn device_alert_series(name: &str) -> Option<(DeviceKind, usize)> {
    DEVICES.iter().find_map(|table| {
        let (prefix, _) = alert_scope(table.kind)?;
        let field = name.strip_prefix(prefix)?;
        Some((table.kind, table.fields.iter().position(|f| f.json == field)?))
    })
}

/// Per-device names alert rules may use, with the rule key that selects the device.
pub fn device_alert_names() -> impl Iterator<Item = (String, &'static str)> {
    DEVICES.iter().filter_map(|t| Some((t, alert_scope(t.kind)?))).flat_map(|(t, (prefix, key))| {
        t.fields.iter().map(move |f| (format!("{prefix}{}", f.json), key))
    })
}

/// The `/api/series` answer: every series with its unit, kind, rollup and names.
pub fn describe() -> serde_json::Value {
    let describe = |s: &Series| {
        serde_json::json!({
            "name": s.json, "unit": s.unit, "kind": s.kind, "label": s.label,
            "storage": if s.integer { "integer".to_owned() } else { format!("fixed-point, {} decimals", s.decimals) },
            "rollup": ["min", "avg", "max"],
            "prometheus": s.prometheus.map(|f| f.name),
            "alert": s.alert,
        })
    };
    let describe_device = |t: &DeviceTable, s: &Series| {
        let mut value = describe(s);
        if let Some((prefix, key)) = alert_scope(t.kind) {
            value["alert"] = serde_json::json!(format!("{prefix}{}", s.json));
            value["alert_selector"] = serde_json::json!(key);
        }
        value
    };
    serde_json::json!({
        "host": HOST.iter().map(describe).collect::<Vec<_>>(),
        "derived": HOST_PERCENTAGES.iter().map(describe).collect::<Vec<_>>(),
        "devices": DEVICES.iter().map(|t| serde_json::json!({
            "kind": t.key, "label": t.label, "prometheus_label": t.prometheus_label,
            "fields": t.fields.iter().map(|s| describe_device(t, s)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_their_codes_agree_with_the_table() {
        for (index, table) in DEVICES.iter().enumerate() {
            assert_eq!(table.kind.code() as usize, index);
            assert_eq!(DeviceKind::from_code(index as i64), Some(table.kind));
            assert_eq!(DeviceKind::from_key(table.key), Some(table.kind));
        }
    }

    #[test]
    fn stored_values_come_back_as_derive_rounded_them() {
        let cpu = &HOST[0];
        for v in [0.0, 33.33, 99.99, 12.5, 0.01] {
            let rounded = (v * 100.0f64).round() / 100.0;
            assert_eq!(cpu.from_stored(cpu.to_stored(rounded).unwrap()), rounded);
        }
        assert_eq!(cpu.to_stored(f64::NAN), None);
    }

    #[test]
    fn device_fields_have_alert_names_with_selectors() {
        assert_eq!(device_alert_series("fs_used_percent"), Some((DeviceKind::Fs, 3)));
        assert_eq!(device_alert_series("net_rx_bytes_per_second"), Some((DeviceKind::Net, 0)));
        assert_eq!(device_alert_series("temperature_celsius"), Some((DeviceKind::Sensor, 0)));
        assert_eq!(device_alert_series("disk_busy_percent"), Some((DeviceKind::Disk, 4)));
        assert_eq!(device_alert_series("cpu_percent"), None);
        let names: Vec<(String, &str)> = device_alert_names().collect();
        assert!(names.contains(&("fs_available_bytes".to_owned(), "mount")));
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = HOST.iter().chain(HOST_PERCENTAGES).map(|s| s.json).collect();
        names.extend(DEVICES.iter().map(|t| t.key));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
