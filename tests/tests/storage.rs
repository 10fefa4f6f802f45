//! Storage as an operator sees it through the API: the schema-1 fixture and how it was made.
//!
//! `make_schema1_fixture` (ignored; run by hand) wrote `tests/fixtures/schema1/`: a database made
//! by the schema-1 collector (commit 54a48e5) from known samples, and that collector's history
//! answers for it. It stays here as the record of how the fixture was made; run against a newer
//! collector it would write a newer schema, so it is never run by CI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tests::*;

/// 2026-11-30 00:00 UTC: fixture samples are this old, so only long retentions keep them.
const FIXTURE_START_MS: u64 = 1_795_996_800_000;

/// The folder of the schema-1 fixture.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schema1")
}

/// The fixture hosts: (host id, samples at 1 s from [`FIXTURE_START_MS`]).
const FIXTURE_HOSTS: [(&str, u64); 2] = [("old-web", 600), ("old-db", 150)];

/// History requests whose answers the fixture keeps, per host.
fn fixture_requests(host: &str) -> Vec<(String, String)> {
    let (from, to) = (FIXTURE_START_MS, FIXTURE_START_MS + 3_600_000);
    let base = format!("/api/hosts/{host}/history?from={from}&to={to}");
    vec![
        (format!("{host}-raw.json"), base.clone()),
        (format!("{host}-raw.csv"), format!("{base}&format=csv")),
        (format!("{host}-1m.json"), format!("{base}&step=60000")),
        (format!("{host}-1m.csv"), format!("{base}&step=60000&format=csv")),
        (format!("{host}-1h.json"), format!("{base}&step=3600000")),
        (format!("{host}-90s.json"), format!("{base}&step=90000")),
    ]
}

/// A fixture sample: every area filled, counters growing at known rates.
fn fixture_sample(host: usize, i: u64) -> protocol::Sample {
    let busy = |i: u64, core: u64| (i * (13 + core) + core * 7) % 90 + 1;
    let ticks = |core: u64| {
        let busy_total: u64 = (0..=i).map(|k| busy(k, core)).sum();
        protocol::CpuTimes {
            user_ticks: busy_total,
            idle_ticks: 100 * (i + 1) - busy_total,
            ..Default::default()
        }
    };
    let cores: Vec<protocol::CpuTimes> = (0..2).map(ticks).collect();
    let total = cores.iter().fold(protocol::CpuTimes::default(), |a, c| protocol::CpuTimes {
        user_ticks: a.user_ticks + c.user_ticks,
        idle_ticks: a.idle_ticks + c.idle_ticks,
        ..Default::default()
    });
    let h = host as u64 + 1;
    protocol::Sample {
        seq: i + 1,
        ts_ms: FIXTURE_START_MS + i * 1000,
        cpu: Some(total),
        cores,
        load: Some(protocol::LoadAverage {
            one: (i % 300) as f32 / 100.0,
            five: 0.5,
            fifteen: 0.25,
        }),
        memory: Some(protocol::Memory {
            total_bytes: h << 32,
            used_bytes: (h << 30) + i * 4096,
            available_bytes: (h << 31) - i * 4096,
        }),
        swap: Some(protocol::Swap { total_bytes: 1 << 30, used_bytes: i * 1024 }),
        networks: ["eth0", "eth1"]
            .iter()
            .enumerate()
            .map(|(n, name)| {
                let n = n as u64 + 1;
                protocol::NetworkInterface {
                    name: (*name).into(),
                    rx_bytes: i * i * 10 * n + i * 1500,
                    tx_bytes: i * 700 * n,
                    rx_packets: i * 5 * n,
                    tx_packets: i * 3 * n,
                    rx_errors: i / 100,
                    tx_errors: 0,
                }
            })
            .collect(),
        filesystems: vec![
            protocol::Filesystem {
                mount_point: "/".into(),
                total_bytes: 100 << 30,
                available_bytes: (60 << 30) - i * 65_536,
            },
            protocol::Filesystem {
                mount_point: "/data".into(),
                total_bytes: 500 << 30,
                available_bytes: 400 << 30,
            },
        ],
        disks: vec![protocol::DiskIo {
            device: "sda".into(),
            read_bytes: i * 8192 * h,
            written_bytes: i * i * 512,
        }],
        uptime_seconds: Some(10_000 + i),
        process_count: Some(100 + (i % 17) as u32),
        temperatures: vec![protocol::Temperature {
            label: "cpu".into(),
            celsius: 40.0 + (i % 20) as f32 / 2.0,
        }],
    }
}

/// Writes `tests/fixtures/schema1/` with the schema-1 collector: run by hand at 54a48e5 with
/// `cargo nextest run -p tests --test storage --run-ignored only -E 'test(make_schema1_fixture)'`.
#[test]
#[ignore = "made the committed schema-1 fixture; only meaningful on the schema-1 collector"]
fn make_schema1_fixture() {
    let dir = temp_dir();
    let long = ["--no-self-monitor", "--retention-raw", "3650d", "--retention-rollup", "3650d"];
    let mut collector = Collector::spawn(dir.path(), &long);
    let token = collector.token();
    for (index, (host, count)) in FIXTURE_HOSTS.iter().enumerate() {
        let mut probe = ProbeAgent::connect(collector.ws, &token, host).expect("connect");
        let samples: Vec<_> = (0..*count).map(|i| fixture_sample(index, i)).collect();
        for chunk in samples.chunks(100) {
            probe.store(chunk.to_vec());
        }
    }
    // Every closed minute rolled up (the samples are days old, so all minutes are closed).
    for (host, count) in FIXTURE_HOSTS {
        let path = format!(
            "/api/hosts/{host}/history?from={FIXTURE_START_MS}&to={}&step=60000",
            FIXTURE_START_MS + 3_600_000
        );
        wait_for(Duration::from_secs(30), "the fixture's rollups", || {
            let (_, body) = collector.get_json(&path);
            let counted: u64 =
                body["points"].as_array()?.iter().filter_map(|p| p["samples"].as_u64()).sum();
            (counted == count).then_some(())
        });
    }
    let out = fixture_dir();
    std::fs::create_dir_all(&out).unwrap();
    for (host, _) in FIXTURE_HOSTS {
        for (file, path) in fixture_requests(host) {
            let response = http(collector.http, "GET", &path, &[], b"");
            assert_eq!(response.status, 200, "{path}");
            std::fs::write(out.join(file), response.body).unwrap();
        }
    }
    assert!(collector.terminate().success());
    // Fold the WAL into the main file, so the fixture is one file.
    let conn = rusqlite::Connection::open(&collector.db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(conn);
    std::fs::copy(&collector.db, out.join("hostwatch.db")).unwrap();
}
