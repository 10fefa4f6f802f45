//! The collector as an operator exposes it: durable acknowledgements across `kill -9`, gapless
//! resume for subscribers, isolation from slow subscribers, token checks, broadcasts, exact
//! downsampling, and retention and size limits that hold while ingest goes on.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::*;

const SECOND: Duration = Duration::from_secs(1);

/// Sequence numbers stored more than once for a host.
fn duplicates(db: &std::path::Path, host: &str) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    stored_samples(db, host)
        .into_iter()
        .map(|(seq, _)| seq)
        .filter(|seq| !seen.insert(*seq))
        .collect()
}

#[test]
fn every_acknowledged_sample_survives_kill_9_exactly_once() {
    if !slow_tests_enabled("every_acknowledged_sample_survives_kill_9_exactly_once") {
        return;
    }
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();
    let (http, ws) = (collector.http.to_string(), collector.ws.to_string());
    let real =
        Agent::spawn(&collector.ingest_url(), &token, "real", &dir.path().join("spool"), &[]);

    // A probe agent streams batches and remembers the highest acknowledged sequence number.
    let ws_addr = collector.ws;
    let probe_token = token.clone();
    let sender = std::thread::spawn(move || {
        let mut probe = ProbeAgent::connect(ws_addr, &probe_token, "probe").expect("connect");
        let mut acked = 0;
        let mut seq = 1;
        loop {
            let samples: Vec<_> = (seq..seq + 50).map(|s| probe_sample(s, now_ms())).collect();
            if probe.send(samples).is_err() {
                return acked;
            }
            seq += 50;
            match probe.receive() {
                Some(protocol::CollectorMessage::Ack(ack)) => acked = ack.seq,
                _ => return acked,
            }
        }
    });
    wait_for(10 * SECOND, "probe samples stored", || {
        (stored_samples(&collector.db, "probe").len() > 2_000).then_some(())
    });
    let mut collector = collector;
    signal(&collector.child, "KILL");
    wait_exit(&mut collector.child, 5 * SECOND).expect("killed collector exits");
    let acked = sender.join().expect("sender thread");
    assert!(acked > 2_000, "acked up to {acked}");
    drop(collector);

    let collector = Collector::spawn_on(dir.path(), &http, &ws, &["--no-self-monitor"]);
    let stored = stored_samples(&collector.db, "probe");
    let seqs: BTreeSet<u64> = stored.iter().map(|(seq, _)| *seq).collect();
    let missing: Vec<u64> = (1..=acked).filter(|seq| !seqs.contains(seq)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {} samples, first {:?}",
        missing.len(),
        missing.first()
    );
    assert!(duplicates(&collector.db, "probe").is_empty());

    // The real agent reconnects and replays what it had spooled: complete, no duplicates.
    let restart = now_ms();
    let samples = wait_for(45 * SECOND, "the real agent back", || {
        let samples = stored_samples(&collector.db, "real");
        samples.iter().any(|(_, ts)| *ts > restart + 1_000).then_some(samples)
    });
    for pair in samples.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "sequence gap in the real agent's samples");
    }
    drop(real);
}

/// Ids of stored events (samples and activity) above `after`, in order.
fn stored_event_ids(db: &std::path::Path, after: u64, limit: usize) -> Vec<u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT eid FROM (SELECT eid FROM samples UNION ALL SELECT eid FROM activity) WHERE eid > ?1 ORDER BY eid LIMIT ?2")
        .unwrap();
    let rows = stmt
        .query_map(rusqlite::params![after as i64, limit as i64], |r| r.get::<_, i64>(0))
        .unwrap();
    rows.map(|r| r.unwrap() as u64).collect()
}

fn read_ids(client: &mut SseClient, count: usize) -> Vec<u64> {
    (0..count)
        .map(|_| {
            let event = client.until(10 * SECOND, |e| e.id.is_some());
            event.id.unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn last_event_id_resumes_exactly_from_the_ring_and_after_a_restart() {
    let dir = temp_dir();
    let mut collector = Collector::spawn(dir.path(), &["--self-interval", "200ms"]);
    let mut first = SseClient::connect(collector.http, "/events", &[]);
    let seen = read_ids(&mut first, 5);
    let last = *seen.last().unwrap();
    drop(first);

    // Away for a while: events keep being stored.
    std::thread::sleep(2 * SECOND);
    let mut resumed =
        SseClient::connect(collector.http, "/events", &[("Last-Event-ID", &last.to_string())]);
    let got = read_ids(&mut resumed, 15);
    assert_eq!(
        got,
        stored_event_ids(&collector.db, last, 15),
        "from the ring: exactly what was missed"
    );
    let last = *got.last().unwrap();
    drop(resumed);

    // Away across a collector restart: the ring is gone, the database is not.
    std::thread::sleep(SECOND);
    let (http, ws) = (collector.http.to_string(), collector.ws.to_string());
    assert!(collector.terminate().success());
    drop(collector);
    let collector = Collector::spawn_on(dir.path(), &http, &ws, &["--self-interval", "200ms"]);
    let mut resumed =
        SseClient::connect(collector.http, "/events", &[("Last-Event-ID", &last.to_string())]);
    let got = read_ids(&mut resumed, 30);
    assert_eq!(
        got,
        stored_event_ids(&collector.db, last, 30),
        "from the database: exactly what was missed"
    );

    // /live resumes the same way with ?since=.
    let mut live = ws_connect(collector.ws, &format!("/live?since={last}"), &[]).expect("/live");
    let first_live = ws_until(&mut live, 10 * SECOND, |m| m["id"].as_u64() > Some(0));
    assert_eq!(first_live["id"].as_u64(), Some(got[0]));
}

#[test]
fn a_stuck_subscriber_does_not_delay_another_and_memory_stays_bounded() {
    if !slow_tests_enabled("a_stuck_subscriber_does_not_delay_another_and_memory_stays_bounded") {
        return;
    }
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();
    // A subscriber that sends its request and then never reads a byte.
    let mut stuck = std::net::TcpStream::connect(collector.http).unwrap();
    std::io::Write::write_all(&mut stuck, b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut good = SseClient::connect(collector.http, "/events?types=sample", &[]);
    std::thread::sleep(SECOND);
    let rss_before = resident_bytes(collector.child.id());

    let ws_addr = collector.ws;
    let flood = std::thread::spawn(move || {
        let mut probe = ProbeAgent::connect(ws_addr, &token, "flood").expect("connect");
        let started = Instant::now();
        let mut seq = 1;
        // 4,000 samples a second: far more than a stuck subscriber's buffers hold for long, and
        // well within what a reading subscriber takes.
        while started.elapsed() < 12 * SECOND {
            let samples: Vec<_> = (seq..seq + 200).map(|s| probe_sample(s, now_ms())).collect();
            probe.store(samples);
            seq += 200;
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // The good subscriber keeps receiving, never waiting a second for the next event.
    let started = Instant::now();
    let mut last_arrival = Instant::now();
    let mut ids = Vec::new();
    let mut worst = Duration::ZERO;
    // Read while the flood lasts (it runs 12 s, so a read never waits for an event that will
    // not come); what arrives while the flood thread is joined waits in the socket's buffers.
    while started.elapsed() < 11 * SECOND {
        let event = good.next_event().expect("the good subscriber's stream ended");
        assert_eq!(event.event, "sample", "the good subscriber was told {:?}", event.data);
        worst = worst.max(last_arrival.elapsed());
        last_arrival = Instant::now();
        ids.push(event.id.unwrap().parse::<u64>().unwrap());
    }
    flood.join().unwrap();
    assert!(worst < SECOND, "the good subscriber waited {worst:?} for an event");
    // And it missed nothing: after the flood it catches up to exactly the stored samples.
    let conn = rusqlite::Connection::open_with_flags(
        &collector.db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let stored: Vec<u64> = conn
        .prepare("SELECT eid FROM samples WHERE eid >= ?1 ORDER BY eid")
        .unwrap()
        .query_map([ids[0] as i64], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|r| r.unwrap() as u64)
        .collect();
    while ids.len() < stored.len() {
        let event = good.until(10 * SECOND, |e| e.event == "sample");
        ids.push(event.id.unwrap().parse().unwrap());
    }
    assert_eq!(ids, stored, "the good subscriber received every stored sample, in order");
    // The stuck one was dropped for lagging, and memory did not follow the flood.
    let (_, stats) = collector.get_json("/api/stats");
    assert!(stats["subscribers_lagged_total"].as_u64() >= Some(1), "{stats}");
    let rss_after = resident_bytes(collector.child.id());
    assert!(
        rss_after < rss_before + 100 * 1024 * 1024,
        "RSS went from {rss_before} to {rss_after}"
    );
    drop(stuck);
}

fn tokens_file(dir: &std::path::Path, lines: &str) -> std::path::PathBuf {
    let path = dir.join("agent-tokens");
    std::fs::write(&path, lines).unwrap();
    path
}

#[test]
fn wrong_missing_and_revoked_tokens_are_refused() {
    let dir = temp_dir();
    let tokens = tokens_file(dir.path(), "web-1 token-one\nweb-2 token-two\n");
    let collector = Collector::spawn(
        dir.path(),
        &[
            "--no-self-monitor",
            "--agent-tokens-file",
            tokens.to_str().unwrap(),
            "--viewer-token",
            "viewer-secret",
        ],
    );
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(ws_connect(collector.ws, "/ingest", &[]).err(), Some(401));
    assert_eq!(
        ws_connect(collector.ws, "/ingest", &[("Authorization", &bearer("nope"))]).err(),
        Some(401)
    );
    // No shared token was generated: per-host tokens only.
    assert!(!dir.path().join("hostwatch.db.agent-token").exists());

    // A per-host token works for its host only.
    let mut web1 = ProbeAgent::connect(collector.ws, "token-one", "web-1").expect("web-1 admitted");
    assert_eq!(web1.store(vec![probe_sample(1, now_ms())]), 1);
    match ProbeAgent::connect(collector.ws, "token-two", "web-1") {
        Err(ProbeRefused::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::BadToken);
            assert!(refusal.message.contains("belongs to host web-2"), "{}", refusal.message);
        }
        Ok(_) => panic!("a token of web-2 was accepted for web-1"),
        Err(other) => panic!("expected a refusal after the hello, got {other:?}"),
    }

    // Removing a line and sending SIGHUP revokes it: the open connection is closed, a new
    // upgrade gets 403, and the other host is unaffected.
    let mut web2 = ProbeAgent::connect(collector.ws, "token-two", "web-2").expect("web-2 admitted");
    tokens_file(dir.path(), "web-2 token-two\n");
    signal(&collector.child, "HUP");
    match web1.receive() {
        Some(protocol::CollectorMessage::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::BadToken);
            assert!(refusal.message.contains("revoked"), "{}", refusal.message);
        }
        other => panic!("expected the revoked connection to be refused, got {other:?}"),
    }
    assert_eq!(
        ws_connect(collector.ws, "/ingest", &[("Authorization", &bearer("token-one"))]).err(),
        Some(403)
    );
    assert_eq!(web2.store(vec![probe_sample(1, now_ms())]), 1);
    assert!(collector.log.shows("re-read"));
    assert!(
        !collector.log.lines().iter().any(|l| l.contains("token-one") || l.contains("token-two")),
        "tokens never logged"
    );

    // The API wants the viewer token: 401 without it, 200 with it (bearer or login cookie).
    for path in ["/api/hosts", "/api/stats", "/events", "/metrics", "/api/hosts/web-2/history"] {
        let response = http(collector.http, "GET", path, &[], b"");
        assert_eq!(response.status, 401, "{path}");
        assert!(response.json()["error"].is_string());
    }
    assert_eq!(
        http(
            collector.http,
            "GET",
            "/api/hosts",
            &[("Authorization", "Bearer viewer-secret")],
            b""
        )
        .status,
        200
    );
    assert_eq!(
        http(collector.http, "GET", "/api/hosts", &[("Authorization", "Bearer wrong")], b"").status,
        401
    );
    assert_eq!(http(collector.http, "GET", "/healthz", &[], b"").status, 200);
    let login = http(
        collector.http,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"token=viewer-secret",
    );
    assert_eq!(login.status, 303);
    let cookie = login.header("set-cookie").expect("cookie").split(';').next().unwrap().to_owned();
    assert!(login.header("set-cookie").unwrap().contains("HttpOnly"));
    assert_eq!(http(collector.http, "GET", "/api/stats", &[("Cookie", &cookie)], b"").status, 200);
    let page = http(collector.http, "GET", "/", &[], b"");
    assert!(
        String::from_utf8_lossy(&page.body).contains("name=\"token\""),
        "the page asks to log in"
    );
    assert_eq!(ws_connect(collector.ws, "/live", &[]).err(), Some(401));
    assert!(ws_connect(collector.ws, "/live", &[("Cookie", &cookie)]).is_ok());
    // Another site's page cannot open /live with the viewer's cookie.
    assert_eq!(
        ws_connect(
            collector.ws,
            "/live",
            &[("Cookie", &cookie), ("Origin", "https://evil.example")]
        )
        .err(),
        Some(403)
    );
}

#[test]
fn broadcasts_need_the_admin_token_and_reach_every_subscriber() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--admin-token", "admin-secret"]);
    let mut sse = SseClient::connect(collector.http, "/events?types=notification", &[]);
    let mut live = ws_connect(collector.ws, "/live?types=notification", &[]).expect("/live");
    let body = br#"{"message": "maintenance at 18:00"}"#;
    assert_eq!(http(collector.http, "POST", "/api/broadcast", &[], body).status, 401);
    assert_eq!(
        http(collector.http, "POST", "/api/broadcast", &[("Authorization", "Bearer wrong")], body)
            .status,
        401
    );
    let bad = http(
        collector.http,
        "POST",
        "/api/broadcast",
        &[("Authorization", "Bearer admin-secret")],
        b"{}",
    );
    assert_eq!(bad.status, 400);
    let ok = http(
        collector.http,
        "POST",
        "/api/broadcast",
        &[("Authorization", "Bearer admin-secret")],
        body,
    );
    assert_eq!(ok.status, 202, "{:?}", String::from_utf8_lossy(&ok.body));
    let event = sse.until(5 * SECOND, |e| e.event == "notification");
    assert_eq!(event.data["message"], "maintenance at 18:00");
    let message = ws_until(&mut live, 5 * SECOND, |m| m["type"] == "notification");
    assert_eq!(message["message"], "maintenance at 18:00");
    assert_eq!(http(collector.http, "GET", "/api/broadcast", &[], b"").status, 405);

    // Without an admin token configured, broadcasts are disabled.
    let other = temp_dir();
    let plain = Collector::spawn(other.path(), &["--no-self-monitor"]);
    assert_eq!(
        http(plain.http, "POST", "/api/broadcast", &[("Authorization", "Bearer x")], body).status,
        403
    );
}

#[test]
fn a_day_at_one_second_downsamples_exactly() {
    if !slow_tests_enabled("a_day_at_one_second_downsamples_exactly") {
        return;
    }
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--retention-raw", "48h"]);
    let token = collector.token();
    // 24 h of samples at 1 s ending a few minutes ago, on minute boundaries, with known values:
    // CPU busy share and memory in use follow fixed patterns.
    let day: u64 = 86_400;
    let end = now_ms() / 60_000 * 60_000 - 5 * 60_000;
    let start = end - day * 1000;
    let busy = |i: u64| (i * 37) % 101;
    let memory = |i: u64| ((i * 7919) % 100_000) * 1000;
    let mut probe = ProbeAgent::connect(collector.ws, &token, "day").expect("connect");
    let mut busy_total = 0;
    let samples: Vec<protocol::Sample> = (0..day)
        .map(|i| {
            busy_total += busy(i);
            let mut sample = probe_sample(i + 1, start + i * 1000);
            sample.cpu = Some(protocol::CpuTimes {
                user_ticks: busy_total,
                idle_ticks: 100 * (i + 1) - busy_total,
                ..Default::default()
            });
            sample.memory = Some(protocol::Memory {
                total_bytes: 1 << 40,
                used_bytes: memory(i),
                available_bytes: 0,
                ..Default::default()
            });
            sample
        })
        .collect();
    for chunk in samples.chunks(256) {
        probe.store(chunk.to_vec());
    }

    // Hand-computed per minute: min, average and max of CPU percent and memory used.
    let expected: Vec<(u64, [f64; 6])> = (0..day / 60)
        .map(|minute| {
            let range = minute * 60..minute * 60 + 60;
            // The first sample has no CPU percentage (no previous sample to compare with).
            let cpu: Vec<f64> = range.clone().filter(|i| *i > 0).map(|i| busy(i) as f64).collect();
            let mem: Vec<f64> = range.map(|i| memory(i) as f64).collect();
            let stats = |v: &[f64]| {
                (
                    v.iter().copied().fold(f64::MAX, f64::min),
                    v.iter().sum::<f64>() / v.len() as f64,
                    v.iter().copied().fold(f64::MIN, f64::max),
                )
            };
            let (cmin, cavg, cmax) = stats(&cpu);
            let (mmin, mavg, mmax) = stats(&mem);
            (start + minute * 60_000, [cmin, cavg, cmax, mmin, mavg, mmax])
        })
        .collect();
    let path = format!("/api/hosts/day/history?from={start}&to={end}&step=60000");
    let points = wait_for(60 * SECOND, "the rollups of the whole day", || {
        let (status, body) = collector.get_json(&path);
        assert_eq!(status, 200, "{body}");
        let points = body["points"].as_array()?.clone();
        (points.len() == expected.len() && points.iter().all(|p| p["samples"] == 60))
            .then_some(points)
    });
    assert!(points.len() <= 1_500);
    for (point, (ts, want)) in points.iter().zip(&expected) {
        assert_eq!(point["ts"].as_u64(), Some(*ts));
        let got = [
            point["cpu_percent_min"].as_f64().unwrap(),
            point["cpu_percent"].as_f64().unwrap(),
            point["cpu_percent_max"].as_f64().unwrap(),
            point["memory_used_bytes_min"].as_f64().unwrap(),
            point["memory_used_bytes"].as_f64().unwrap(),
            point["memory_used_bytes_max"].as_f64().unwrap(),
        ];
        for (g, w) in got.iter().zip(want) {
            // Memory averages are rounded to whole bytes; CPU percentages are exact.
            assert!((g - w).abs() <= 0.5, "bucket {ts}: got {got:?}, want {want:?}");
        }
    }
    // The same range at an odd step comes from raw samples and agrees on the extremes.
    let hour_end = start + 3_600_000;
    let (_, raw) = collector
        .get_json(&format!("/api/hosts/day/history?from={start}&to={hour_end}&step=90000"));
    let raw = raw["points"].as_array().unwrap().clone();
    // Buckets are aligned to multiples of the step since the epoch, so an hour spans 40 or 41.
    let buckets = (hour_end - 1) / 90_000 - start / 90_000 + 1;
    assert_eq!(raw.len() as u64, buckets);
    assert_eq!(raw.iter().map(|p| p["samples"].as_u64().unwrap()).sum::<u64>(), 3_600);
    let hand_max = (0..3_600).map(memory).max().unwrap();
    let api_max = raw.iter().map(|p| p["memory_used_bytes_max"].as_u64().unwrap()).max().unwrap();
    assert_eq!(api_max, hand_max);
    // CSV carries the same buckets.
    let csv = http(collector.http, "GET", &format!("{path}&format=csv"), &[], b"");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = String::from_utf8(csv.body).unwrap();
    assert!(text.starts_with("ts,samples,cpu_percent,cpu_percent_min,cpu_percent_max,"));
    assert_eq!(text.lines().count(), expected.len() + 1);
}

#[test]
fn the_collector_unit_is_valid_and_rated_ok() {
    let dir = temp_dir();
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../systemd/hostwatch-collector.service"),
    )
    .unwrap();
    assert!(unit.contains("StateDirectory=hostwatch-collector"), "the database has a home");
    let exposure = verified_unit_exposure(
        &unit,
        "/usr/local/bin/hostwatch-collector",
        &binary("hostwatch-collector"),
        dir.path(),
    );
    assert!(exposure <= 3.0, "exposure {exposure}");
}

#[test]
fn history_at_minute_and_hour_steps_reaches_up_to_now() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut probe =
        ProbeAgent::connect(collector.ws, &collector.token(), "recent").expect("connect");
    // The last five minutes at 1 s: the minutes closed before they arrived are rolled up by the
    // next maintenance pass, a few seconds away.
    let start = now_ms();
    let mut seq = 0;
    for chunk in (0..300).collect::<Vec<u64>>().chunks(100) {
        let batch = chunk.iter().map(|i| probe_sample(i + 1, start - (299 - i) * 1000)).collect();
        seq = probe.store(batch);
    }
    for step in [60_000, 120_000, 3_600_000] {
        // Each look first stores a sample taken now: the current minute is never rolled up
        // before it is over, so that sample can only be counted from the raw samples.
        wait_for(30 * SECOND, &format!("every sample up to now at step {step}"), || {
            seq += 1;
            let now = now_ms();
            probe.store(vec![probe_sample(seq, now)]);
            let path = format!(
                "/api/hosts/recent/history?from={}&to={}&step={step}",
                start - 10 * 60_000,
                now + 1
            );
            let (status, body) = collector.get_json(&path);
            assert_eq!(status, 200, "{body}");
            let points = body["points"].as_array().unwrap();
            let counted: u64 = points.iter().map(|p| p["samples"].as_u64().unwrap()).sum();
            let last = points.last().and_then(|p| p["ts"].as_u64());
            (counted == seq && last == Some(now / step * step)).then_some(())
        });
    }
}

#[test]
fn retention_and_the_size_cap_shrink_the_database_while_ingest_goes_on() {
    if !slow_tests_enabled("retention_and_the_size_cap_shrink_the_database_while_ingest_goes_on") {
        return;
    }
    let dir = temp_dir();
    let collector = Collector::spawn(
        dir.path(),
        &["--no-self-monitor", "--retention-raw", "30s", "--max-db-size", "4MiB"],
    );
    let token = collector.token();
    let used_bytes = || {
        let conn = rusqlite::Connection::open_with_flags(
            &collector.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (pages * size) as u64
    };
    let cap = 4u64 << 20;
    let mut probe = ProbeAgent::connect(collector.ws, &token, "filler").expect("connect");
    // Old samples (past the raw retention) and fresh ones, well past the cap.
    let old = now_ms() - 3_600_000;
    let mut seq = 1;
    let mut peak = 0;
    while peak <= cap + cap / 2 {
        let samples: Vec<_> = (seq..seq + 256)
            .map(|s| {
                let mut sample = probe_sample(s, if s % 2 == 0 { old + s } else { now_ms() });
                sample.networks = (0..8)
                    .map(|n| protocol::NetworkInterface {
                        name: format!("eth{n}"),
                        rx_bytes: s * n,
                        ..Default::default()
                    })
                    .collect();
                sample
            })
            .collect();
        probe.store(samples);
        seq += 256;
        peak = peak.max(used_bytes());
    }
    // Ingest goes on while the database shrinks back under the cap.
    let shrunk = wait_for(60 * SECOND, "the database back under its cap", || {
        let ts = now_ms();
        let acked = probe.store(vec![probe_sample(seq, ts)]);
        assert_eq!(acked, seq, "ingest keeps acknowledging");
        seq += 1;
        let used = used_bytes();
        (used < cap).then_some(used)
    });
    assert!(shrunk < peak, "{shrunk} < {peak}");
    // Expired raw samples are gone, the fresh ones stayed.
    let expired = wait_for(30 * SECOND, "expired samples pruned", || {
        let cutoff = now_ms() - 31_000;
        let stored = stored_samples(&collector.db, "filler");
        (!stored.iter().any(|(_, ts)| *ts < cutoff)).then_some(stored)
    });
    assert!(expired.iter().any(|(s, _)| *s == seq - 1), "the newest sample is kept");
    assert!(collector.log.shows("over --max-db-size"));
    let (_, stats) = collector.get_json("/api/stats");
    assert!(stats["db_size_bytes"].as_u64().is_some_and(|b| b > 0));
}

/// Sends raw bytes as the first message of an ingest connection and returns what the collector
/// answered: its refusal (if any) and the close frame.
fn first_message_answer(
    collector: &Collector,
    token: &str,
    bytes: Vec<u8>,
) -> (Option<protocol::Refusal>, Option<(u16, String)>) {
    let mut socket =
        ws_connect(collector.ws, "/ingest", &[("Authorization", &format!("Bearer {token}"))])
            .expect("upgrade");
    // The collector may close before reading everything; its answer is what matters.
    let _ = socket.send(tungstenite::Message::binary(bytes));
    refusal_and_close(&mut socket)
}

#[test]
fn protocol_violations_are_refused_with_a_reason_and_a_close_code() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();

    // A hello from a future protocol version: the version is read even if the rest is unknown.
    let (refusal, close) = first_message_answer(&collector, &token, vec![0x00, 0x63, 0xff, 0xff]);
    assert_eq!(refusal.map(|r| r.reason), Some(protocol::RefusalReason::UnsupportedVersion));
    let (code, reason) = close.expect("close frame");
    assert_eq!(code, 1008);
    assert!(reason.contains("protocol version 99"), "{reason}");

    // Garbage instead of a hello.
    let (refusal, close) = first_message_answer(&collector, &token, vec![0x07, 0x01]);
    assert_eq!(refusal.map(|r| r.reason), Some(protocol::RefusalReason::Malformed));
    assert_eq!(close.map(|c| c.0), Some(1002));

    // A batch over the sample limit, after a proper hello.
    let mut probe = ProbeAgent::connect(collector.ws, &token, "greedy").expect("connect");
    let too_many: Vec<_> = (1..=protocol::Limits::MAX_SAMPLES_PER_BATCH as u64 + 1)
        .map(|s| probe_sample(s, now_ms()))
        .collect();
    probe.send(too_many).expect("send");
    match probe.receive() {
        Some(protocol::CollectorMessage::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::OverLimit);
            assert!(refusal.message.contains("samples per batch"), "{}", refusal.message);
        }
        other => panic!("expected an over-limit refusal, got {other:?}"),
    }
    assert!(
        stored_samples(&collector.db, "greedy").is_empty(),
        "nothing of the refused batch is stored"
    );

    // A message over the size limit is cut off by the WebSocket layer with 1009.
    let (_, close) = first_message_answer(
        &collector,
        &token,
        vec![0u8; protocol::Limits::MAX_MESSAGE_BYTES + 1],
    );
    assert_eq!(close.map(|c| c.0), Some(1009));

    // A second connection for the same host replaces the first, which is told why.
    let mut first = ProbeAgent::connect(collector.ws, &token, "twin").expect("first");
    assert_eq!(first.store(vec![probe_sample(1, now_ms())]), 1);
    let mut second = ProbeAgent::connect(collector.ws, &token, "twin").expect("second");
    assert_eq!(second.welcome_last_seq, Some(1), "the newcomer resumes where the first stopped");
    match first.receive() {
        Some(protocol::CollectorMessage::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::Replaced);
        }
        other => panic!("expected the first connection to be replaced, got {other:?}"),
    }
    assert_eq!(second.store(vec![probe_sample(2, now_ms())]), 2);
}

#[test]
fn http_limits_answer_with_the_right_status() {
    use std::io::{Read, Write};
    let dir = temp_dir();
    let collector =
        Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", "admin-secret"]);
    let raw = |request: &[u8]| {
        let mut stream = std::net::TcpStream::connect(collector.http).unwrap();
        stream.set_read_timeout(Some(20 * SECOND)).unwrap();
        // The server may answer and close before reading an oversized request to its end.
        let _ = stream.write_all(request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
    };
    let huge_header =
        format!("GET /api/hosts HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert!(raw(huge_header.as_bytes()).contains(" 431 "));
    let big_body = format!(
        "POST /api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-secret\r\nContent-Length: 100000\r\n\r\n{}",
        "a".repeat(100_000)
    );
    assert!(raw(big_body.as_bytes()).contains(" 413 "));
    assert!(raw(b"GET /api/hosts HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").contains(" 501 "));
    assert!(raw(b"BLAH\r\n\r\n").contains(" 400 "));
    // A client that never finishes its request head is cut off.
    let started = Instant::now();
    let line = raw(b"GET /api/hosts HTTP/1.1\r\nHost: x\r\n");
    assert!(line.contains(" 408 "), "{line}");
    assert!(started.elapsed() < 15 * SECOND);
    // The server still answers everyone else.
    assert_eq!(http(collector.http, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn the_subscriber_limit_holds_for_sse_and_websocket_alike() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--max-subscribers", "2"]);
    let first = SseClient::connect(collector.http, "/events", &[]);
    let second = ws_connect(collector.ws, "/live", &[]).expect("second subscriber");
    // Both kinds count against the same limit.
    assert_eq!(http(collector.http, "GET", "/events", &[], b"").status, 503);
    assert_eq!(ws_connect(collector.ws, "/live", &[]).err(), Some(503));
    let (_, clients) = collector.get_json("/api/clients");
    let transports: Vec<&str> = clients["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports.len(), 2, "{clients}");
    assert!(transports.contains(&"sse") && transports.contains(&"websocket"));
    // A place freed is a place taken again.
    drop(first);
    wait_for(5 * SECOND, "the freed place", || {
        (http(collector.http, "GET", "/api/stats", &[], b"").json()["subscribers"] == 1)
            .then_some(())
    });
    let _third = SseClient::connect(collector.http, "/events", &[]);
    drop(second);
}

#[test]
fn clients_and_readiness_describe_the_collector() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &[]);
    let _agent = Agent::spawn(
        &collector.ingest_url(),
        &collector.token(),
        "client-host",
        &dir.path().join("spool"),
        &[],
    );
    let _sse = SseClient::connect(collector.http, "/events", &[]);
    let clients = wait_for(10 * SECOND, "the agent among the clients", || {
        let (_, clients) = collector.get_json("/api/clients");
        let agents = clients["agents"].as_array()?.clone();
        agents
            .iter()
            .any(|a| a["host"] == "client-host" && a["count"].as_u64() > Some(0))
            .then_some(clients)
    });
    let agents = clients["agents"].as_array().unwrap();
    let real = agents.iter().find(|a| a["host"] == "client-host").unwrap();
    assert_eq!(real["transport"], "websocket");
    assert!(real["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(real["since"].as_u64().is_some_and(|s| s <= now_ms()));
    assert!(agents.iter().any(|a| a["transport"] == "in-process"), "the self-monitoring is listed");
    assert_eq!(clients["subscribers"].as_array().unwrap().len(), 1);
    let ready = http(collector.http, "GET", "/readyz", &[], b"");
    assert_eq!((ready.status, ready.json()["ready"].clone()), (200, Value::Bool(true)));
}

#[test]
fn a_sample_dated_far_ahead_is_refused_and_not_stored() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut probe =
        ProbeAgent::connect(collector.ws, &collector.token(), "time-traveller").expect("connect");
    assert_eq!(probe.store(vec![probe_sample(1, now_ms())]), 1);
    let ten_years = 10 * 365 * 24 * 3_600_000;
    probe.send(vec![probe_sample(2, now_ms() + ten_years)]).unwrap();
    match probe.receive() {
        Some(protocol::CollectorMessage::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::Malformed);
            assert!(refusal.message.contains("clock"), "{}", refusal.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(stored_samples(&collector.db, "time-traveller").len(), 1);
    // Counters at the edge of u64 do not break the collector either.
    let mut probe =
        ProbeAgent::connect(collector.ws, &collector.token(), "overflow").expect("connect");
    let huge = |seq| {
        let mut sample = probe_sample(seq, now_ms());
        sample.cpu = Some(protocol::CpuTimes {
            user_ticks: u64::MAX,
            system_ticks: u64::MAX,
            ..Default::default()
        });
        sample.filesystems = vec![
            protocol::Filesystem {
                mount_point: "/".into(),
                total_bytes: u64::MAX,
                available_bytes: u64::MAX,
                ..Default::default()
            };
            2
        ];
        sample
    };
    assert_eq!(probe.store(vec![huge(1), huge(2)]), 2);
    assert_eq!(
        http(collector.http, "GET", "/readyz", &[], b"").status,
        200,
        "storage still commits"
    );
}

#[test]
fn an_event_id_from_another_database_asks_for_a_resync() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--self-interval", "200ms"]);
    let huge = u64::MAX.to_string();
    let mut client = SseClient::connect(collector.http, "/events", &[("Last-Event-ID", &huge)]);
    let first = client.next_event().expect("an event");
    assert_eq!(first.event, "resync", "{first:?}");
    // Then it streams from now.
    client.until(10 * SECOND, |e| e.event == "sample");
    assert_eq!(http(collector.http, "GET", "/readyz", &[], b"").status, 200, "the hub is alive");
}

#[test]
fn alerts_fire_after_their_duration_and_resolve() {
    let dir = temp_dir();
    let rules = "cpu_percent >= 0 for 2s; silent for 3s";
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--alerts", rules]);
    let mut feed = SseClient::connect(collector.http, "/events?types=alert", &[]);
    let token = collector.token();
    let spool = dir.path().join("spool");
    let mut agent = Agent::spawn(&collector.ingest_url(), &token, "alerting", &spool, &[]);
    let fired = feed.until(20 * SECOND, |e| e.data["rule"] == "cpu_percent >= 0 for 2s");
    assert_eq!(
        (fired.data["state"].as_str(), fired.data["host"].as_str()),
        (Some("firing"), Some("alerting"))
    );
    assert!(fired.data["value"].is_number() && fired.data["since"].is_u64());
    let (_, active) = collector.get_json("/api/alerts");
    assert!(
        active
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["host"] == "alerting" && a["rule"] == "cpu_percent >= 0 for 2s")
    );

    // The agent falls silent: the silent rule fires; it comes back: the rule resolves.
    assert!(agent.terminate().success());
    let silent = feed.until(20 * SECOND, |e| e.data["rule"] == "silent for 3s");
    assert_eq!(silent.data["state"], "firing");
    let _agent = Agent::spawn(&collector.ingest_url(), &token, "alerting", &spool, &[]);
    let back = feed.until(20 * SECOND, |e| e.data["rule"] == "silent for 3s");
    assert_eq!(back.data["state"], "resolved");
    // Bad rules are refused at start, naming the key.
    let output = std::process::Command::new(binary("hostwatch-collector"))
        .args(["--alerts", "cpu > 90 for 2m", "--db"])
        .arg(dir.path().join("other.db"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("alerts: rule"));
}
