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
            ..Default::default()
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
                ..Default::default()
            },
            protocol::Filesystem {
                mount_point: "/data".into(),
                total_bytes: 500 << 30,
                available_bytes: 400 << 30,
                ..Default::default()
            },
        ],
        disks: vec![protocol::DiskIo {
            device: "sda".into(),
            read_bytes: i * 8192 * h,
            written_bytes: i * i * 512,
            ..Default::default()
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

/// Rows of a host still plain (not yet compacted) and blocks it has, read from the database.
fn plain_and_blocks(db: &Path, host_id: &str) -> (i64, i64) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [host_id], |r| r.get(0)).unwrap_or(0) };
    (
        count(
            "SELECT count(*) FROM samples JOIN hosts ON hosts.id = samples.host WHERE hosts.host_id = ?1",
        ),
        count(
            "SELECT count(*) FROM blocks JOIN hosts ON hosts.id = blocks.host WHERE hosts.host_id = ?1",
        ),
    )
}

/// A sample of a host with interfaces `eth0` and (while `eth1` is true) `eth1`, and mounts `/`
/// and `/data`, whose counters grow by known amounts each second.
fn device_sample(seq: u64, ts_ms: u64, eth1: bool) -> protocol::Sample {
    let i = seq;
    let mut sample = probe_sample(seq, ts_ms);
    sample.networks = vec![protocol::NetworkInterface {
        name: "eth0".into(),
        rx_bytes: i * 1000 + i * i,
        tx_bytes: i * 300,
        rx_packets: i * 10,
        tx_packets: i * 4,
        rx_errors: i / 10,
        tx_errors: 0,
    }];
    if eth1 {
        sample.networks.push(protocol::NetworkInterface {
            name: "eth1".into(),
            rx_bytes: i * 5000,
            tx_bytes: i * 7,
            ..Default::default()
        });
    }
    sample.filesystems = vec![
        protocol::Filesystem {
            mount_point: "/".into(),
            total_bytes: 1 << 30,
            available_bytes: (1 << 29) - i * 4096,
            ..Default::default()
        },
        protocol::Filesystem {
            mount_point: "/data".into(),
            total_bytes: 1000,
            available_bytes: 250,
            // Root's reserve: free is more than what users may take.
            free_bytes: Some(300),
            ..Default::default()
        },
    ];
    sample.disks = vec![protocol::DiskIo {
        device: "sda".into(),
        read_bytes: i * 4096,
        written_bytes: i * 8192,
        reads_completed: Some(i * 5),
        writes_completed: Some(i * 2),
        io_time_ms: Some(i * 250),
    }];
    sample
}

#[test]
fn per_device_history_matches_what_was_sent_and_keeps_a_device_that_went_away() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut probe = ProbeAgent::connect(collector.ws, &collector.token(), "devs").expect("connect");
    // Ten minutes ending at the start of this minute: the older minutes are compacted
    // into blocks while the newest stay plain rows. eth1 goes away after sample 300.
    let count = 600u64;
    let start = (now_ms() / 60_000 - 10) * 60_000;
    let samples: Vec<_> =
        (1..=count).map(|s| device_sample(s, start + (s - 1) * 1000, s <= 300)).collect();
    for chunk in samples.chunks(100) {
        probe.store(chunk.to_vec());
    }
    wait_for(Duration::from_secs(30), "the older minutes compacted", || {
        let (plain, blocks) = plain_and_blocks(&collector.db, "devs");
        (blocks >= 7 && plain > 0).then_some(())
    });
    let path = |extra: &str| {
        format!("/api/hosts/devs/history?from={start}&to={}{extra}", start + count * 1000)
    };
    let (status, body) = collector.get_json(&path(""));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["points"].as_array().unwrap().len(), count as usize);
    let eth0 = body["devices"]["net"]["eth0"].as_array().expect("eth0");
    assert_eq!(eth0.len(), count as usize);
    for (index, point) in eth0.iter().enumerate() {
        let s = index as u64 + 1;
        assert_eq!(point["ts"].as_u64(), Some(start + (s - 1) * 1000));
        if s == 1 {
            // No previous sample: no rate.
            assert!(point["rx_bytes_per_second"].is_null(), "{point}");
            continue;
        }
        // rx grows by (s*1000 + s²) - ((s-1)*1000 + (s-1)²) = 1000 + 2s - 1 bytes in 1 s.
        assert_eq!(point["rx_bytes_per_second"].as_f64(), Some((1000 + 2 * s - 1) as f64), "{s}");
        assert_eq!(point["tx_bytes_per_second"].as_f64(), Some(300.0));
        assert_eq!(point["rx_packets_per_second"].as_f64(), Some(10.0));
        let errors = (s / 10 - (s - 1) / 10) as f64;
        assert_eq!(point["rx_errors_per_second"].as_f64(), Some(errors));
    }
    // eth1 keeps its 300 points, none after it went away.
    let eth1 = body["devices"]["net"]["eth1"].as_array().expect("eth1 kept");
    assert_eq!(eth1.len(), 300);
    assert_eq!(eth1.last().unwrap()["ts"].as_u64(), Some(start + 299_000));
    assert_eq!(eth1[10]["rx_bytes_per_second"].as_f64(), Some(5000.0));
    // Mounts: used = total - free, used % = used / (used + available), as df shows them.
    let root = body["devices"]["fs"]["/"].as_array().expect("/");
    assert_eq!(root[99]["used_bytes"].as_u64(), Some((1 << 29) + 100 * 4096));
    assert_eq!(root[99]["total_bytes"].as_u64(), Some(1 << 30));
    let data = &body["devices"]["fs"]["/data"][0];
    assert_eq!(
        (data["used_bytes"].as_u64(), data["used_percent"].as_f64()),
        (Some(700), Some(73.68))
    );
    // Disks: bytes, operations and busy time per second.
    let sda = &body["devices"]["disk"]["sda"][5];
    assert_eq!(sda["read_bytes_per_second"].as_f64(), Some(4096.0));
    assert_eq!(sda["reads_per_second"].as_f64(), Some(5.0));
    assert_eq!(sda["writes_per_second"].as_f64(), Some(2.0));
    assert_eq!(sda["busy_percent"].as_f64(), Some(25.0));
    // The host total is the sum of the interfaces present in both samples.
    assert_eq!(
        body["points"][10]["net_rx_bytes_per_second"].as_f64(),
        Some((1000 + 21 + 5000) as f64)
    );

    // Host totals added by storage v2 are kept too.
    assert_eq!(body["points"][10]["fs_avail_bytes"].as_u64(), Some((1 << 29) - 11 * 4096 + 250));

    // Minute buckets from the rollups: per-device min, average and max of each minute.
    let (status, body) = collector.get_json(&path("&step=60000"));
    assert_eq!(status, 200, "{body}");
    let minutes = body["devices"]["net"]["eth0"].as_array().unwrap();
    assert_eq!(minutes.len(), 10);
    let second = &minutes[1]; // Samples 61..=120.
    assert_eq!(second["samples"].as_u64(), Some(60));
    assert_eq!(second["rx_bytes_per_second_min"].as_f64(), Some((1000 + 2 * 61 - 1) as f64));
    assert_eq!(second["rx_bytes_per_second_max"].as_f64(), Some((1000 + 2 * 120 - 1) as f64));
    let average = (61..=120).map(|s| (1000 + 2 * s - 1) as f64).sum::<f64>() / 60.0;
    assert_eq!(second["rx_bytes_per_second"].as_f64(), Some(average));
    assert_eq!(body["devices"]["net"]["eth1"].as_array().unwrap().len(), 5, "minutes it was in");

    // series= asks for a subset; the CSV has a column per device field.
    let (_, only) = collector.get_json(&path("&series=net_rx_bytes_per_second,fs.used_percent"));
    assert_eq!(only["points"][5].as_object().unwrap().len(), 2, "ts and the one series");
    assert!(only["devices"].get("net").is_none());
    assert_eq!(only["devices"]["fs"]["/data"][0]["used_percent"].as_f64(), Some(73.68));
    let (status, _) = collector.get_json(&path("&series=bogus"));
    assert_eq!(status, 400);
    let csv = http(collector.http, "GET", &path("&format=csv"), &[], b"");
    let text = String::from_utf8(csv.body).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "net.eth0.rx_bytes_per_second").expect("column");
    let row: Vec<&str> = text.lines().nth(11).unwrap().split(',').collect();
    assert_eq!(row[column], format!("{:.1}", (1000 + 2 * 11 - 1) as f64));
    let (_, series) = collector.get_json("/api/series");
    assert!(series["devices"].as_array().unwrap().iter().any(|k| k["kind"] == "net"));
}

/// Copies the schema-1 fixture into `dir` as the collector's database.
fn fixture_database(dir: &Path) {
    std::fs::copy(fixture_dir().join("hostwatch.db"), dir.join("hostwatch.db")).unwrap();
}

/// Whether `got` holds everything `want` has, exactly: the same keys with the same values
/// (fields added since may be there too), arrays of the same length.
fn holds(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (got, want) {
        (Value::Object(got), Value::Object(want)) => {
            want.iter().all(|(k, w)| got.get(k).is_some_and(|g| holds(g, w)))
        }
        (Value::Array(got), Value::Array(want)) => {
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| holds(g, w))
        }
        (got, want) => got == want,
    }
}

/// The answer to `path` without the `devices` object storage v2 added.
fn host_totals(collector: &Collector, path: &str) -> serde_json::Value {
    let (status, mut body) = collector.get_json(path);
    assert_eq!(status, 200, "{path}: {body}");
    body.as_object_mut().unwrap().remove("devices");
    body
}

#[test]
fn a_schema_1_database_migrates_in_place_and_its_history_comes_back_unchanged() {
    let dir = temp_dir();
    fixture_database(dir.path());
    let long = ["--no-self-monitor", "--retention-raw", "3650d", "--retention-rollup", "3650d"];
    let collector = Collector::spawn(dir.path(), &long);
    let check = |when: &str| {
        for (host, _) in FIXTURE_HOSTS {
            for (file, path) in fixture_requests(host) {
                let expected = std::fs::read(fixture_dir().join(&file)).unwrap();
                if file.ends_with(".csv") {
                    // Every column the schema-1 collector wrote, exactly; new columns after.
                    let response = http(collector.http, "GET", &path, &[], b"");
                    let text = String::from_utf8(response.body).unwrap();
                    let expected = String::from_utf8(expected).unwrap();
                    assert_eq!(text.lines().count(), expected.lines().count(), "{when} {file}");
                    for (got, want) in text.lines().zip(expected.lines()) {
                        assert!(got.starts_with(want), "{when} {file}:\n{got}\n{want}");
                    }
                } else {
                    let want: serde_json::Value = serde_json::from_slice(&expected).unwrap();
                    let got = host_totals(&collector, &path);
                    assert!(holds(&got, &want), "{when} {file}:\n{got}\nwant\n{want}");
                }
            }
        }
    };
    check("right after the migration");
    // Maintenance folds the old rows into blocks in small steps; the answers stay the same.
    wait_for(Duration::from_secs(60), "the schema-1 rows compacted", || {
        FIXTURE_HOSTS
            .iter()
            .all(|(host, _)| plain_and_blocks(&collector.db, host).0 == 0)
            .then_some(())
    });
    check("after compaction");
    let conn = rusqlite::Connection::open_with_flags(
        &collector.db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert!(version >= 2, "schema {version}");
    for (host, count) in FIXTURE_HOSTS {
        assert_eq!(stored_samples(&collector.db, host).len() as u64, count);
    }
}

#[test]
fn kill_9_during_compaction_loses_nothing_acknowledged_and_stores_nothing_twice() {
    let dir = temp_dir();
    let args = ["--no-self-monitor", "--retention-raw", "48h"];
    let collector = Collector::spawn(dir.path(), &args);
    let token = collector.token();
    let (http_addr, ws_addr) = (collector.http.to_string(), collector.ws.to_string());
    // Six hours of an agent's spool, replayed: all of it old enough to be compacted.
    let start = (now_ms() / 60_000 - 7 * 60) * 60_000;
    let total = 6 * 3600u64;
    let batch = move |from: u64, to: u64| -> Vec<protocol::Sample> {
        (from..to).map(|s| device_sample(s, start + (s - 1) * 1000, s % 2 == 0)).collect()
    };
    let mut probe = ProbeAgent::connect(collector.ws, &token, "spool").expect("connect");
    // The first four hours are stored; the rest keeps coming while maintenance compacts.
    let first = 4 * 3600;
    for from in (1..=first).step_by(200) {
        probe.store(batch(from, (from + 200).min(first + 1)));
    }
    let sender = std::thread::spawn(move || {
        let mut acked = first;
        for from in (first + 1..=total).step_by(20) {
            if probe.send(batch(from, (from + 20).min(total + 1))).is_err() {
                break;
            }
            match probe.receive() {
                Some(protocol::CollectorMessage::Ack(ack)) => acked = ack.seq,
                _ => break,
            }
        }
        acked
    });
    // Killed in the middle of compaction: some minutes folded, others still plain rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (plain, blocks) = plain_and_blocks(&collector.db, "spool");
        if blocks > 10 && plain > 3600 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no compaction seen: {plain} {blocks}");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut collector = collector;
    signal(&collector.child, "KILL");
    wait_exit(&mut collector.child, Duration::from_secs(5)).expect("killed");
    drop(collector);
    let acked = sender.join().expect("sender");

    let collector = Collector::spawn_on(dir.path(), &http_addr, &ws_addr, &args);
    // Every acknowledged sample once; a batch committed but not acknowledged may be there too.
    let complete = |what: &str| -> u64 {
        let seqs: Vec<u64> =
            stored_samples(&collector.db, "spool").iter().map(|(s, _)| *s).collect();
        let newest = seqs.last().copied().unwrap_or(0);
        assert!(newest >= acked, "{what}: acked {acked}, stored up to {newest}");
        assert!(seqs.iter().copied().eq(1..=newest), "{what}: each sample exactly once");
        newest
    };
    let stored = complete("after the kill");
    // The agent resumes where the collector says, and compaction finishes.
    let probe = ProbeAgent::connect(collector.ws, &token, "spool").expect("reconnect");
    assert_eq!(probe.welcome_last_seq, Some(stored));
    wait_for(Duration::from_secs(60), "compaction finished", || {
        let (plain, _) = plain_and_blocks(&collector.db, "spool");
        (plain == 0).then_some(())
    });
    complete("after compaction");
    let end = start + total * 1000;
    let path = format!("/api/hosts/spool/history?from={start}&to={end}&step=3600000");
    let (_, body) = collector.get_json(&path);
    let points = body["points"].as_array().unwrap();
    let counted: u64 = points.iter().map(|p| p["samples"].as_u64().unwrap()).sum();
    assert_eq!(counted, stored, "the rollups count every sample once");
    drop(probe);
}

#[test]
fn a_subscriber_resumes_from_compacted_minutes_without_gaps() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();
    let (http_addr, ws_addr) = (collector.http.to_string(), collector.ws.to_string());
    let mut probe = ProbeAgent::connect(collector.ws, &token, "resume").expect("connect");
    // Five minutes, ten minutes ago: compacted within seconds.
    let start = (now_ms() / 60_000 - 10) * 60_000;
    let samples: Vec<_> =
        (1..=300).map(|s| device_sample(s, start + (s - 1) * 1000, true)).collect();
    for chunk in samples.chunks(100) {
        probe.store(chunk.to_vec());
    }
    drop(probe);
    wait_for(Duration::from_secs(30), "every minute compacted", || {
        (plain_and_blocks(&collector.db, "resume").0 == 0).then_some(())
    });
    let mut collector = collector;
    assert!(collector.terminate().success());
    drop(collector);
    // A new process: the ring is empty, so the replay comes from the blocks.
    let collector = Collector::spawn_on(dir.path(), &http_addr, &ws_addr, &["--no-self-monitor"]);
    let mut client = SseClient::connect(collector.http, "/events?since=0&types=sample", &[]);
    let mut ids = Vec::new();
    let mut times = Vec::new();
    while times.len() < 300 {
        let event = client.until(Duration::from_secs(10), |e| e.event == "sample");
        ids.push(event.id.expect("id").parse::<u64>().unwrap());
        times.push(event.data["ts"].as_u64().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids only grow");
    let sent: Vec<u64> = samples.iter().map(|s| s.ts_ms).collect();
    assert_eq!(times, sent, "every compacted sample replayed once, in order");
}
