//! The page in a real headless browser (Debian's chromium driven by playwright-core): it shows
//! this host, its chart grows live, and it recovers by itself after the collector restarts.
//! `scripts/test.sh` installs chromium and playwright-core; without them this test fails and
//! says so rather than skipping.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tests::*;

fn read_until(
    lines: &mpsc::Receiver<String>,
    marker: &str,
    timeout: Duration,
    seen: &mut Vec<String>,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return,
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "the browser script did not print {marker:?} within {timeout:?}; it printed:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[test]
fn the_page_shows_this_host_live_and_recovers_after_a_collector_restart() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "chromium is missing: run scripts/test.sh, which installs it"
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/test.sh, which installs it"
    );
    let dir = temp_dir();
    let mut collector = Collector::spawn(dir.path(), &[]);
    let host = wait_for(Duration::from_secs(5), "the collector's own host", || {
        let (_, hosts) = collector.get_json("/api/hosts");
        hosts.as_array()?.iter().find(|h| h["self"] == true).cloned()
    });
    let screenshot =
        std::env::temp_dir().join(format!("hostwatch-page-{}.png", std::process::id()));
    let mut node = Command::new("node")
        .arg(browser_dir.join("page.test.mjs"))
        .env("HOSTWATCH_URL", format!("http://{}/", collector.http))
        .env("HOSTWATCH_HOST_ID", host["id"].as_str().unwrap())
        .env("HOSTWATCH_HOSTNAME", host["hostname"].as_str().unwrap())
        .env("HOSTWATCH_SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running node");
    let (tx, lines) = mpsc::channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test may have given up listening; the script then ends with it.
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    read_until(&lines, "PHASE1 OK", Duration::from_secs(60), &mut seen);

    // Restart the collector on the same ports; the open page must reconnect on its own.
    let (http, ws) = (collector.http.to_string(), collector.ws.to_string());
    assert!(collector.terminate().success());
    drop(collector);
    let _collector = Collector::spawn_on(dir.path(), &http, &ws, &[]);
    node.stdin.as_mut().unwrap().write_all(b"RESTARTED\n").unwrap();
    read_until(&lines, "PHASE2 OK", Duration::from_secs(60), &mut seen);
    let status =
        wait_exit(&mut node, Duration::from_secs(20)).expect("the browser script did not exit");
    assert!(
        status.success(),
        "browser script failed: {status:?}; screenshot at {}",
        screenshot.display()
    );
}

/// A sample of a probe host: CPU busy `busy` % of `interval_ms`, two mounts ("/" half full,
/// "/data" 90 % full), one interface, one disk, one sensor, and load `load`.
fn rich_sample(seq: u64, ts_ms: u64, interval_ms: u64, load: f32, busy: u64) -> protocol::Sample {
    let ticks = interval_ms / 10; // 100 ticks a second
    let core = protocol::CpuTimes {
        user_ticks: seq * ticks * busy / 100,
        idle_ticks: seq * ticks * (100 - busy) / 100,
        ..Default::default()
    };
    let gib = 1u64 << 30;
    let mount = |mount_point: &str, total: u64, available: u64| protocol::Filesystem {
        mount_point: mount_point.into(),
        total_bytes: total,
        available_bytes: available,
        device: format!("/dev/{}", if mount_point == "/" { "sda1" } else { "sdb1" }),
        fs_type: "ext4".into(),
        free_bytes: Some(available),
    };
    protocol::Sample {
        seq,
        ts_ms,
        cpu: Some(core),
        cores: vec![core],
        load: Some(protocol::LoadAverage { one: load, five: load, fifteen: load }),
        memory: Some(protocol::Memory {
            total_bytes: 4 * gib,
            used_bytes: gib + seq % 100 * (1 << 20),
            available_bytes: 2 * gib,
            ..Default::default()
        }),
        networks: vec![protocol::NetworkInterface {
            name: "eth0".into(),
            rx_bytes: seq * 50_000,
            tx_bytes: seq * 20_000,
            rx_packets: seq * 40,
            tx_packets: seq * 30,
            ..Default::default()
        }],
        filesystems: vec![mount("/", 100 * gib, 50 * gib), mount("/data", 500 * gib, 50 * gib)],
        disks: vec![protocol::DiskIo {
            device: "sda".into(),
            read_bytes: seq * 4096,
            written_bytes: seq * 8192,
            ..Default::default()
        }],
        uptime_seconds: Some(10_000 + seq),
        process_count: Some(120),
        temperatures: vec![protocol::Temperature { label: "cpu".into(), celsius: 45.0 }],
        swap: None,
    }
}

/// A probe host's hello with a hostname of the test's choice.
fn named_hello(id: &str, hostname: &str) -> protocol::Hello {
    protocol::Hello { hostname: hostname.into(), ..probe_hello(id, PROBE_INSTANCE) }
}

#[test]
fn the_page_navigates_the_past_plays_it_back_and_manages_hosts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/test.sh, which installs it"
    );
    let dir = temp_dir();
    let admin = "admin-secret";
    let mut collector =
        Collector::spawn(dir.path(), &["--admin-token", admin, "--alerts", "load1 > 5 for 1s"]);
    let token = collector.token();
    let (a, b, gone) = ("page-a", "page-b", "page-gone");
    let hostile = "<img src=x onerror=\"window.__xss=1\">";
    let broadcast = "<b id=\"xss-b\">bold</b> & 'quoted'";

    // A: three hours of history at 10 s, then live at 1 Hz (below). B: live, load 9 (the alert).
    let mut agent_a = ProbeAgent::connect_hello(collector.ws, &token, named_hello(a, "twin"))
        .unwrap_or_else(|_| panic!("probe A refused"));
    let now = now_ms();
    let start = now - 3 * 3600 * 1000;
    let mut seq = 0;
    let past: Vec<_> = (0..3 * 360)
        .map(|i| {
            seq += 1;
            rich_sample(seq, start + i * 10_000, 10_000, 0.5, 30)
        })
        .collect();
    for batch in past.chunks(200) {
        agent_a.store(batch.to_vec());
    }
    let mut agent_b = ProbeAgent::connect_hello(collector.ws, &token, named_hello(b, "twin"))
        .unwrap_or_else(|_| panic!("probe B refused"));
    // The offline host with a hostile hostname: a few samples, then gone.
    let mut agent_gone =
        ProbeAgent::connect_hello(collector.ws, &token, named_hello(gone, hostile))
            .unwrap_or_else(|_| panic!("probe gone refused"));
    agent_gone
        .store((1..=3).map(|s| rich_sample(s, now - 10_000 + s * 1000, 1000, 0.1, 5)).collect());
    agent_gone.close();

    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seq_b = 0;
            while !stop.load(Ordering::Relaxed) {
                let ts = now_ms();
                seq += 1;
                seq_b += 1;
                // Sends fail once the collector is stopped at the end; the feeder just stops.
                if agent_a.send(vec![rich_sample(seq, ts, 1000, 0.5, 30)]).is_err()
                    || agent_b.send(vec![rich_sample(seq_b, ts, 1000, 9.0, 70)]).is_err()
                {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // Acks are not read by the feeder: the collector's send buffer holds them for a minute of
    // samples, far more than the test needs.
    let body = serde_json::json!({ "message": broadcast }).to_string();
    let sent = http(
        collector.http,
        "POST",
        "/api/broadcast",
        &[("Authorization", &format!("Bearer {admin}"))],
        body.as_bytes(),
    );
    assert_eq!(sent.status, 202);
    wait_for(Duration::from_secs(10), "the offline host", || {
        (collector.host(gone)?["status"] == "offline").then_some(())
    });

    let screenshot =
        std::env::temp_dir().join(format!("hostwatch-past-{}.png", std::process::id()));
    let mut node = Command::new("node")
        .arg(browser_dir.join("past.test.mjs"))
        .env("HOSTWATCH_URL", format!("http://{}/", collector.http))
        .env("HOSTWATCH_ADMIN", admin)
        .env("HOSTWATCH_A", a)
        .env("HOSTWATCH_B", b)
        .env("HOSTWATCH_GONE", gone)
        .env("HOSTWATCH_GONE_NAME", hostile)
        .env("HOSTWATCH_BROADCAST", broadcast)
        .env("HOSTWATCH_SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running node");
    let (tx, lines) = mpsc::channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    read_until(&lines, "READY_FOR_OUTAGE", Duration::from_secs(100), &mut seen);
    // The removed host is gone from the API as well.
    assert!(collector.host(gone).is_none(), "the removed host is still listed");
    stop.store(true, Ordering::Relaxed);
    assert!(collector.terminate().success());
    node.stdin.as_mut().unwrap().write_all(b"DOWN\n").unwrap();
    read_until(&lines, "DONE", Duration::from_secs(30), &mut seen);
    let status =
        wait_exit(&mut node, Duration::from_secs(20)).expect("the browser script did not exit");
    assert!(
        status.success(),
        "browser script failed: {status:?}; screenshot at {}",
        screenshot.display()
    );
    let _ = feeder.join();
}
