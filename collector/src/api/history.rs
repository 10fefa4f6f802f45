//! The history answer of `GET /api/hosts/{id}/history`, as JSON or CSV: host totals in
//! `points` (every field they had before storage v2, in the same order), each device's series in
//! `devices` (keyed by kind, then device name), and `series=` to ask for a subset. Every name
//! comes from the catalog.

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::{Map, Value, json};

use crate::catalog::{self, DeviceKind, HOST};
use crate::storage::query::Bucket;
use crate::storage::rows::{DeviceHistory, DevicePoint};

/// A history answer's points: raw, or buckets with averages, minimums and maximums.
pub enum Points {
    /// Raw points.
    Raw(Vec<crate::storage::Point>),
    /// Buckets.
    Buckets(Vec<Bucket>),
}

/// Which series a request asked for with `series=` (all when the parameter is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Per [`catalog::HOST`] entry.
    host: Vec<bool>,
    /// `cpu_cores_percent`.
    cores: bool,
    /// Per device kind (in [`catalog::DEVICES`] order), per field.
    fields: Vec<Vec<bool>>,
}

impl Selection {
    /// Everything.
    pub fn all() -> Self {
        Self {
            host: vec![true; HOST.len()],
            cores: true,
            fields: catalog::DEVICES.iter().map(|t| vec![true; t.fields.len()]).collect(),
        }
    }

    /// Parses `series=`: comma-separated host series (`cpu_percent`, `cpu_cores_percent`, or
    /// `host` for all of them), device kinds (`net`) and device fields
    /// (`net.rx_bytes_per_second`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut selection = Self {
            host: vec![false; HOST.len()],
            cores: false,
            fields: catalog::DEVICES.iter().map(|t| vec![false; t.fields.len()]).collect(),
        };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "host" {
                // Every host total, as the history had before per-device series.
                selection.host.iter_mut().for_each(|h| *h = true);
                selection.cores = true;
            } else if name == "cpu_cores_percent" {
                selection.cores = true;
            } else if let Some(index) = HOST.iter().position(|s| s.json == name) {
                selection.host[index] = true;
            } else {
                let (kind, field) = name.split_once('.').unwrap_or((name, ""));
                let kind = DeviceKind::from_key(kind).ok_or_else(|| unknown(name))?;
                let fields = &mut selection.fields[kind.code() as usize];
                if field.is_empty() {
                    fields.iter_mut().for_each(|f| *f = true);
                } else {
                    let index = kind
                        .table()
                        .fields
                        .iter()
                        .position(|s| s.json == field)
                        .ok_or_else(|| unknown(name))?;
                    fields[index] = true;
                }
            }
        }
        Ok(selection)
    }

    fn device_fields(&self, kind: DeviceKind) -> &[bool] {
        &self.fields[kind.code() as usize]
    }
}

fn unknown(name: &str) -> String {
    format!("unknown series {name:?} in series= (GET /api/series lists them)")
}

/// Encodes a history answer.
pub fn encode(
    host: &str,
    range: crate::api::routes::Range,
    points: &Points,
    devices: &DeviceHistory,
    selection: &Selection,
    csv: bool,
) -> Vec<u8> {
    if csv {
        return encode_csv(points, devices, selection).into_bytes();
    }
    let mut out =
        json!({ "host": host, "from": range.from, "to": range.to, "step": range.step }).to_string();
    out.pop(); // The closing brace; the points follow.
    out.push_str(",\"points\":[");
    match points {
        Points::Raw(points) if *selection == Selection::all() => {
            for (index, point) in points.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                // Encoding our own plain data types cannot fail.
                out.push_str(&serde_json::to_string(point).expect("JSON encoding"));
            }
        }
        Points::Raw(points) => {
            for (index, point) in points.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let Ok(Value::Object(map)) = serde_json::to_value(point) else { continue };
                let kept: Map<String, Value> =
                    map.into_iter().filter(|(k, _)| keep_host_field(selection, k)).collect();
                out.push_str(&Value::Object(kept).to_string());
            }
        }
        Points::Buckets(buckets) => {
            for (index, bucket) in buckets.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                bucket.write_json_selected(&mut out, &selection.host);
            }
        }
    }
    out.push_str("],\"devices\":{");
    let mut first_kind = true;
    for table in catalog::DEVICES {
        let wanted = selection.device_fields(table.kind);
        if !wanted.iter().any(|w| *w) {
            continue;
        }
        if !first_kind {
            out.push(',');
        }
        first_kind = false;
        let _ = write!(out, "\"{}\":{{", table.key);
        let mut first_device = true;
        for (name, points) in devices.iter().filter(|(n, _)| n.kind == table.kind) {
            if !first_device {
                out.push(',');
            }
            first_device = false;
            out.push_str(&Value::String(name.name.clone()).to_string());
            out.push_str(":[");
            for (index, point) in points.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_device_point(&mut out, table, wanted, point);
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push_str("}}");
    out.into_bytes()
}

fn keep_host_field(selection: &Selection, key: &str) -> bool {
    key == "ts"
        || (key == "cpu_cores_percent" && selection.cores)
        || HOST.iter().zip(&selection.host).any(|(s, wanted)| *wanted && s.json == key)
}

fn write_device_point(
    out: &mut String,
    table: &catalog::DeviceTable,
    wanted: &[bool],
    point: &DevicePoint,
) {
    let mut digits = itoa::Buffer::new();
    out.push_str("{\"ts\":");
    out.push_str(digits.format(point.ts));
    if let Some(samples) = point.samples {
        out.push_str(",\"samples\":");
        out.push_str(digits.format(samples));
    }
    for ((series, values), _) in
        table.fields.iter().zip(&point.values).zip(wanted).filter(|(_, w)| **w)
    {
        let suffixes: &[&str] = if point.samples.is_some() { &["", "_min", "_max"] } else { &[""] };
        for (suffix, value) in suffixes.iter().zip(values) {
            out.push_str(",\"");
            out.push_str(series.json);
            out.push_str(suffix);
            out.push_str("\":");
            match value {
                Some(v) if v.is_finite() => {
                    crate::storage::query::write_number(out, *v, series.integer)
                }
                _ => out.push_str("null"),
            }
        }
    }
    out.push('}');
}

/// One CSV line, every cell through [`crate::untrusted::csv_cell`]: device names come from the
/// network, and none may become a spreadsheet formula (quoted where it holds a comma).
fn csv_line(out: &mut String, cells: &[String]) {
    for (index, cell) in cells.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&crate::untrusted::csv_cell(cell));
    }
    out.push('\n');
}

/// One CSV column of a device field: its header and where its values come from.
struct DeviceColumn<'a> {
    header: String,
    values: HashMap<u64, &'a [Option<f64>; 3]>,
    /// 0 average (or raw value), 1 minimum, 2 maximum.
    which: usize,
    integer: bool,
}

fn encode_csv(points: &Points, devices: &DeviceHistory, selection: &Selection) -> String {
    let bucketed = matches!(points, Points::Buckets(_));
    let mut columns: Vec<DeviceColumn<'_>> = Vec::new();
    for (name, history) in devices {
        let table = name.kind.table();
        let wanted = selection.device_fields(name.kind);
        for (field, series) in table.fields.iter().enumerate().filter(|(i, _)| wanted[*i]) {
            // Per-core columns are `cpu0_percent` (what a spreadsheet user expects); other
            // devices are `KIND.NAME.FIELD`.
            let base = if name.kind == DeviceKind::Cpu {
                format!("{}_{}", name.name, series.json)
            } else {
                format!("{}.{}.{}", table.key, name.name, series.json)
            };
            let suffixes: &[&str] = if bucketed { &["", "_min", "_max"] } else { &[""] };
            for (which, suffix) in suffixes.iter().enumerate() {
                columns.push(DeviceColumn {
                    header: format!("{base}{suffix}"),
                    values: history.iter().map(|p| (p.ts, &p.values[field])).collect(),
                    which,
                    integer: series.integer,
                });
            }
        }
    }
    let device_cells = |ts: u64| -> Vec<String> {
        columns
            .iter()
            .map(|c| {
                c.values
                    .get(&ts)
                    .and_then(|v| v[c.which])
                    .filter(|v| v.is_finite())
                    .map(|v| crate::storage::query::format_number(v, c.integer))
                    .unwrap_or_default()
            })
            .collect()
    };
    let mut header: Vec<String>;
    let mut out = String::new();
    match points {
        Points::Raw(points) => {
            header = vec!["ts".to_owned()];
            let host_columns = |range: std::ops::Range<usize>| {
                HOST[range.clone()]
                    .iter()
                    .zip(&selection.host[range])
                    .filter(|(_, w)| **w)
                    .map(|(s, _)| s.json.to_owned())
                    .collect::<Vec<_>>()
            };
            // Schema 1's columns, `cpu_cores_percent`, then the host series added since.
            header.extend(host_columns(0..catalog::SCHEMA_1_HOST_SERIES));
            if selection.cores {
                header.push("cpu_cores_percent".into());
            }
            header.extend(host_columns(catalog::SCHEMA_1_HOST_SERIES..HOST.len()));
            let host_columns = header.clone();
            header.extend(columns.iter().map(|c| c.header.clone()));
            csv_line(&mut out, &header);
            for point in points {
                let map = match serde_json::to_value(point) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                let mut cells: Vec<String> =
                    host_columns.iter().map(|column| cell(map.get(column))).collect();
                cells.extend(device_cells(point.ts));
                csv_line(&mut out, &cells);
            }
        }
        Points::Buckets(buckets) => {
            let all = Bucket::columns();
            // `ts`, `samples`, then three columns per host series.
            let keep: Vec<bool> = [true, true]
                .into_iter()
                .chain(selection.host.iter().flat_map(|w| [*w; 3]))
                .collect();
            header = all.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(c, _)| c).collect();
            header.extend(columns.iter().map(|c| c.header.clone()));
            csv_line(&mut out, &header);
            for bucket in buckets {
                let mut cells: Vec<String> = bucket
                    .cells()
                    .into_iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(c, _)| c)
                    .collect();
                cells.extend(device_cells(bucket.ts));
                csv_line(&mut out, &cells);
            }
        }
    }
    out
}

/// A JSON value as a CSV cell: empty when missing, arrays as space-separated values.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::Array(values)) => {
            values.iter().map(Value::to_string).collect::<Vec<_>>().join(" ")
        }
        Some(value) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rows::DeviceName;

    fn devices() -> DeviceHistory {
        let mut devices = DeviceHistory::new();
        devices.insert(
            DeviceName { kind: DeviceKind::Cpu, order: 0, name: "cpu0".into() },
            vec![DevicePoint { ts: 1000, samples: None, values: vec![[Some(7.0), None, None]] }],
        );
        let mut values = vec![[None; 3]; 6];
        values[0] = [Some(1500.5), None, None];
        devices.insert(
            DeviceName { kind: DeviceKind::Net, order: 0, name: "eth,0".into() },
            vec![DevicePoint { ts: 1000, samples: None, values }],
        );
        devices
    }

    #[test]
    fn a_device_name_never_becomes_a_spreadsheet_formula() {
        let mut devices = DeviceHistory::new();
        devices.insert(
            DeviceName { kind: DeviceKind::Sensor, order: 0, name: "=cmd|' /C calc'!A0".into() },
            vec![DevicePoint { ts: 1000, samples: None, values: vec![[Some(-5.5), None, None]] }],
        );
        let point = crate::storage::Point { ts: 1000, ..Default::default() };
        let range = crate::api::routes::Range { from: 0, to: 2000, step: None };
        let csv = encode("h", range, &Points::Raw(vec![point]), &devices, &Selection::all(), true);
        let csv = String::from_utf8(csv).unwrap();
        let header = csv.lines().next().unwrap();
        assert!(header.ends_with(",sensor.=cmd|' /C calc'!A0.celsius"), "{header}");
        assert!(csv.lines().nth(1).unwrap().ends_with(",-5.5"), "numbers stay numbers: {csv}");
        let mut devices = DeviceHistory::new();
        devices.insert(
            DeviceName { kind: DeviceKind::Cpu, order: 0, name: "=1+1".into() },
            vec![DevicePoint { ts: 1000, samples: None, values: vec![[Some(1.0), None, None]] }],
        );
        let point = crate::storage::Point { ts: 1000, ..Default::default() };
        let csv = encode("h", range, &Points::Raw(vec![point]), &devices, &Selection::all(), true);
        let header = String::from_utf8(csv).unwrap();
        assert!(header.lines().next().unwrap().ends_with(",'=1+1_percent"), "{header}");
    }

    #[test]
    fn devices_are_keyed_by_kind_and_name_and_series_selects() {
        let point =
            crate::storage::Point { ts: 1000, cpu_percent: Some(1.5), ..Default::default() };
        let range = crate::api::routes::Range { from: 0, to: 2000, step: None };
        let raw = Points::Raw(vec![point]);
        let body: Value =
            serde_json::from_slice(&encode("h", range, &raw, &devices(), &Selection::all(), false))
                .unwrap();
        assert_eq!(body["devices"]["net"]["eth,0"][0]["rx_bytes_per_second"], 1500.5);
        assert_eq!(body["devices"]["cpu"]["cpu0"][0]["percent"], 7.0);
        assert_eq!(body["points"][0]["cpu_percent"], 1.5);
        let only = Selection::parse("cpu_percent,net.rx_bytes_per_second").unwrap();
        let body: Value =
            serde_json::from_slice(&encode("h", range, &raw, &devices(), &only, false)).unwrap();
        assert_eq!(body["points"][0].as_object().unwrap().len(), 2, "{body}");
        assert!(body["devices"].get("cpu").is_none());
        assert_eq!(body["devices"]["net"]["eth,0"][0].as_object().unwrap().len(), 2);
        let csv = String::from_utf8(encode("h", range, &raw, &devices(), &Selection::all(), true))
            .unwrap();
        let header = csv.lines().next().unwrap();
        assert!(header.ends_with(",cpu0_percent,\"net.eth,0.rx_bytes_per_second\",\"net.eth,0.tx_bytes_per_second\",\"net.eth,0.rx_packets_per_second\",\"net.eth,0.tx_packets_per_second\",\"net.eth,0.rx_errors_per_second\",\"net.eth,0.tx_errors_per_second\""), "{header}");
        assert!(csv.lines().nth(1).unwrap().ends_with(",7.0,1500.5,,,,,"), "{csv}");
        assert!(Selection::parse("nope").unwrap_err().contains("/api/series"));
        let host = Selection::parse("host").unwrap();
        assert!(host.host.iter().all(|h| *h) && host.cores);
        assert!(host.fields.iter().flatten().all(|f| !*f));
        assert!(Selection::parse("net.nope").is_err());
    }
}
