//! Hosts as an operator manages them: removing an offline host (`DELETE /api/hosts/{id}`), whose
//! history the storage deletes in small steps, also across a restart, and the activity log
//! (`GET /api/activity`) read back page by page.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tests::*;

const SECOND: Duration = Duration::from_secs(1);
const ADMIN: &str = "admin-secret";

/// Every table that holds a host's rows, by the host's database key.
const HOST_TABLES: &[&str] = &[
    "samples",
    "blocks",
    "devices",
    "rollup_1m",
    "rollup_1h",
    "device_rollup_1m",
    "device_rollup_1h",
];

fn open(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open db")
}

/// The database key of a host id, if a row has that id.
fn host_key(db: &Path, host_id: &str) -> Option<i64> {
    open(db).query_row("SELECT id FROM hosts WHERE host_id = ?1", [host_id], |r| r.get(0)).ok()
}

/// Rows with the host key `key`, per table (the `hosts` row included, as `hosts`).
fn rows_of(db: &Path, key: i64) -> Vec<(&'static str, i64)> {
    let conn = open(db);
    let count = |sql: &str| conn.query_row(sql, [key], |r| r.get::<_, i64>(0)).expect(sql);
    let mut rows: Vec<(&'static str, i64)> = HOST_TABLES
        .iter()
        .map(|t| (*t, count(&format!("SELECT count(*) FROM {t} WHERE host = ?1"))))
        .collect();
    rows.push(("hosts", count("SELECT count(*) FROM hosts WHERE id = ?1")));
    rows
}

fn total(rows: &[(&str, i64)]) -> i64 {
    rows.iter().map(|(_, n)| n).sum()
}

fn delete(collector: &Collector, id: &str, token: Option<&str>) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http(collector.http, "DELETE", &format!("/api/hosts/{id}"), &headers, b"")
}

fn wait_status(collector: &Collector, id: &str, status: &str) {
    wait_for(10 * SECOND, &format!("{id} {status}"), || {
        collector.host(id).filter(|h| h["status"] == status).map(|_| ())
    });
}

/// A sample with an interface and a mount, so the host has devices and device rollups too.
fn device_sample(seq: u64, ts_ms: u64) -> protocol::Sample {
    let mut sample = probe_sample(seq, ts_ms);
    sample.networks = vec![protocol::NetworkInterface {
        name: "eth0".into(),
        rx_bytes: seq * 1000,
        tx_bytes: seq * 300,
        ..Default::default()
    }];
    sample.filesystems = vec![protocol::Filesystem {
        mount_point: "/".into(),
        total_bytes: 1 << 30,
        available_bytes: 1 << 29,
        ..Default::default()
    }];
    sample
}

#[test]
fn removing_an_offline_host_deletes_it_everywhere_and_its_agent_comes_back_as_a_new_host() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", ADMIN]);
    let token = collector.token();
    // 72 minutes of history up to now: an hour that is over and minutes compacted into blocks
    // within seconds, the newest still plain rows, so every table holds rows of the host.
    let mut probe = ProbeAgent::connect(collector.ws, &token, "web").expect("connect");
    let start = now_ms() - 72 * 60_000;
    let samples: Vec<_> = (1..=600).map(|s| device_sample(s, start + s * 7_200)).collect();
    for chunk in samples.chunks(200) {
        probe.store(chunk.to_vec());
    }
    let key = host_key(&collector.db, "web").expect("web is stored");
    wait_for(30 * SECOND, "rows of web in every table", || {
        rows_of(&collector.db, key).iter().all(|(_, n)| *n > 0).then_some(())
    });

    // Only an offline host can be removed: nothing of an online one goes.
    let refused = delete(&collector, "web", Some(ADMIN));
    assert_eq!(refused.status, 409, "{}", String::from_utf8_lossy(&refused.body));
    assert!(refused.json()["error"].as_str().unwrap().contains("offline"), "{:?}", refused.json());
    assert!(collector.host("web").is_some());
    assert_eq!(probe.store(vec![device_sample(601, now_ms())]), 601, "still stored");
    let before = total(&rows_of(&collector.db, key));
    probe.close();
    wait_status(&collector, "web", "offline");

    let mut sse = SseClient::connect(collector.http, "/events?types=host_removed", &[]);
    let mut live = ws_connect(collector.ws, "/live?types=host_removed", &[]).expect("/live");
    let removed = delete(&collector, "web", Some(ADMIN));
    assert_eq!(removed.status, 202, "{}", String::from_utf8_lossy(&removed.body));
    assert_eq!(removed.json(), serde_json::json!({"ok": true, "host": "web"}));
    let removed_at = now_ms();

    // Gone at once from the API, history and /metrics.
    assert!(collector.host("web").is_none());
    assert_eq!(collector.get_json("/api/hosts/web").0, 404);
    assert_eq!(collector.get_json(&format!("/api/hosts/web/history?from={start}")).0, 404);
    assert_eq!(http(collector.http, "GET", "/metrics?host=web", &[], b"").status, 404);
    let metrics = http(collector.http, "GET", "/metrics", &[], b"");
    assert!(!String::from_utf8_lossy(&metrics.body).contains("host=\"web\""));
    let (_, targets) = collector.get_json("/api/prometheus/targets");
    assert_eq!(targets, serde_json::json!([]));
    assert_eq!(delete(&collector, "web", Some(ADMIN)).status, 404, "removed once");

    let event = sse.until(5 * SECOND, |e| e.event == "host_removed");
    assert_eq!(
        (event.data["host"].as_str(), event.data["hostname"].as_str()),
        (Some("web"), Some("web"))
    );
    assert_eq!(event.data["type"], "host_removed");
    assert!(event.data["ts"].as_u64().is_some());
    assert_eq!(
        event.id.as_deref().map(str::parse::<u64>),
        Some(Ok(event.data["id"].as_u64().unwrap()))
    );
    let message = ws_until(&mut live, 5 * SECOND, |m| m["type"] == "host_removed");
    assert_eq!(message, event.data, "/live sends the same event");
    let (_, log) = collector.get_json("/api/activity?types=host_removed&limit=1");
    assert_eq!(log["events"][0], event.data, "the activity log has the event as it was sent");

    // The storage deletes every row of the host, in steps.
    let left = wait_for(30 * SECOND, "web's rows deleted", || {
        let rows = rows_of(&collector.db, key);
        (total(&rows) == 0).then_some(rows)
    });
    assert_eq!(total(&left), 0, "{before} rows before");

    // The same agent connecting again is a new host: stored from nothing, nothing of its past.
    let mut again = ProbeAgent::connect(collector.ws, &token, "web").expect("reconnect");
    assert_eq!(again.welcome_last_seq, None, "a fresh host resumes from nothing");
    assert_eq!(again.store(vec![device_sample(700, now_ms())]), 700);
    assert_eq!(
        stored_samples(&collector.db, "web").iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![700]
    );
    let (status, history) = collector.get_json(&format!("/api/hosts/web/history?from={start}"));
    assert_eq!(status, 200);
    let points = history["points"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    assert!(points[0]["ts"].as_u64().unwrap() + 5_000 >= removed_at);
    assert_eq!(collector.host("web").expect("listed again")["status"], "online");
}

#[test]
fn a_real_agent_whose_host_was_removed_is_stored_afresh_when_it_returns() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", ADMIN]);
    let token = collector.token();
    let spool = dir.path().join("spool");
    let mut agent =
        Agent::spawn(&collector.ingest_url(), &token, "real", &spool, &["--interval", "200ms"]);
    wait_for(10 * SECOND, "a few samples", || {
        (stored_samples(&collector.db, "real").len() >= 3).then_some(())
    });
    agent.terminate();
    wait_status(&collector, "real", "offline");
    let last_before = stored_samples(&collector.db, "real").last().unwrap().0;
    assert_eq!(delete(&collector, "real", Some(ADMIN)).status, 202);

    // Its numbering goes on where it was; the collector has nothing of it, and takes it all.
    let agent =
        Agent::spawn(&collector.ingest_url(), &token, "real", &spool, &["--interval", "200ms"]);
    let stored = wait_for(10 * SECOND, "samples of the new host", || {
        let stored = stored_samples(&collector.db, "real");
        (stored.len() >= 3).then_some(stored)
    });
    assert!(stored.iter().all(|(seq, _)| *seq > last_before), "{stored:?} after {last_before}");
    assert!(!agent.log.contains("refused"), "{:?}", agent.log.lines());
    assert_eq!(collector.host("real").expect("listed")["status"], "online");
}

#[test]
fn removal_needs_the_admin_token_a_known_host_and_the_right_method() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", ADMIN]);
    let mut probe = ProbeAgent::connect(collector.ws, &collector.token(), "h1").expect("connect");
    probe.store(vec![probe_sample(1, now_ms())]);
    for token in [None, Some("wrong")] {
        let response = delete(&collector, "h1", token);
        assert_eq!(response.status, 401, "{token:?}");
        assert!(response.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    }
    assert_eq!(delete(&collector, "nobody", Some(ADMIN)).status, 404);
    let online = delete(&collector, "h1", Some(ADMIN));
    assert_eq!(online.status, 409);
    for (method, path, allow) in [
        ("PUT", "/api/hosts/h1", "GET, HEAD, DELETE"),
        ("POST", "/api/hosts/h1", "GET, HEAD, DELETE"),
        ("DELETE", "/api/hosts/h1/history", "GET, HEAD"),
        ("POST", "/api/activity", "GET, HEAD"),
    ] {
        let response = http(collector.http, method, path, &[("Authorization", "Bearer x")], b"");
        assert_eq!(
            (response.status, response.header("allow")),
            (405, Some(allow)),
            "{method} {path}"
        );
    }
    assert_eq!(http(collector.http, "HEAD", "/api/hosts/h1", &[], b"").status, 200);
    assert_eq!(stored_samples(&collector.db, "h1").len(), 1, "nothing was deleted");
    assert!(collector.host("h1").is_some());

    // Without an admin token configured, removals are disabled.
    let other = temp_dir();
    let plain = Collector::spawn(other.path(), &["--no-self-monitor"]);
    let response = delete(&plain, "h1", Some("x"));
    assert_eq!(response.status, 403);
    assert!(response.json()["error"].as_str().unwrap().contains("--admin-token"));
}

#[test]
fn removal_resumes_after_the_collector_is_killed() {
    let dir = temp_dir();
    let mut collector = Collector::spawn(
        dir.path(),
        &["--no-self-monitor", "--admin-token", ADMIN, "--alerts", "silent for 5s"],
    );
    let (http_addr, ws_addr) = (collector.http.to_string(), collector.ws.to_string());
    let token = collector.token();
    // A large host, its rows still plain (the last 100 s), and a small neighbour.
    let mut big = ProbeAgent::connect(collector.ws, &token, "big").expect("connect");
    let count = 30_000u64;
    let start = now_ms() - 100_000;
    let samples: Vec<_> = (1..=count).map(|s| probe_sample(s, start + s * 3)).collect();
    for chunk in samples.chunks(256) {
        big.store(chunk.to_vec());
    }
    big.close();
    let mut small = ProbeAgent::connect(collector.ws, &token, "small").expect("connect");
    small.store((1..=10).map(|s| probe_sample(s, start + s * 1000)).collect());
    small.close();
    wait_status(&collector, "big", "offline");
    let key = host_key(&collector.db, "big").unwrap();
    // Its newest sample is ten seconds old: its silence alert fires, and is kept in the
    // database so a restart would bring it back.
    let firing = |collector: &Collector, host: &str| {
        let (status, alerts) = collector.get_json("/api/alerts");
        assert_eq!(status, 200);
        alerts.as_array().unwrap().iter().any(|a| a["host"] == host)
    };
    wait_for(15 * SECOND, "the silence alert firing for big", || {
        firing(&collector, "big").then_some(())
    });

    let removed = delete(&collector, "big", Some(ADMIN));
    assert_eq!(removed.status, 202);
    collector.child.kill().expect("kill -9");
    collector.child.wait().expect("reap");
    // The 202 came after the commit: the host is gone for good, whatever was deleted yet.
    assert_eq!(host_key(&collector.db, "big"), None);
    let left = total(&rows_of(&collector.db, key));
    eprintln!("rows of the removed host left at the kill: {left} of {}", count + 1);

    let collector = Collector::spawn_on(
        dir.path(),
        &http_addr,
        &ws_addr,
        &["--no-self-monitor", "--admin-token", ADMIN, "--alerts", "silent for 5s"],
    );
    assert!(collector.host("big").is_none());
    assert!(collector.host("small").is_some());
    assert!(!firing(&collector, "big"), "a removed host's alerts end with it");
    // Its tombstone is no host id anyone can name.
    let tombstone = format!("%01removed:{key}");
    assert_eq!(collector.get_json(&format!("/api/hosts/{tombstone}")).0, 404);
    assert_eq!(collector.get_json(&format!("/api/hosts/{tombstone}/history")).0, 404);
    assert_eq!(delete(&collector, &tombstone, Some(ADMIN)).status, 404);
    wait_for(30 * SECOND, "the rest of big's rows deleted", || {
        (total(&rows_of(&collector.db, key)) == 0).then_some(())
    });
    assert_eq!(stored_samples(&collector.db, "small").len(), 10, "the neighbour keeps its rows");
    let (_, log) = collector.get_json("/api/activity?types=host_removed");
    assert_eq!(log["events"][0]["host"], "big", "{log}");
}

#[test]
fn the_activity_log_pages_back_newest_first() {
    let dir = temp_dir();
    let collector = Collector::spawn(
        dir.path(),
        &["--no-self-monitor", "--admin-token", ADMIN, "--viewer-token", "viewer-secret"],
    );
    let viewer = [("Authorization", "Bearer viewer-secret")];
    let get = |path: &str| {
        let response = http(collector.http, "GET", path, &viewer, b"");
        (response.status, response.json())
    };
    assert_eq!(http(collector.http, "GET", "/api/activity", &[], b"").status, 401);
    for i in 0..12 {
        let body = format!("{{\"message\": \"note {i}\"}}");
        let auth = [("Authorization", "Bearer admin-secret")];
        assert_eq!(
            http(collector.http, "POST", "/api/broadcast", &auth, body.as_bytes()).status,
            202
        );
    }
    let mut probe = ProbeAgent::connect(collector.ws, &collector.token(), "p").expect("connect");
    probe.store(vec![probe_sample(1, now_ms())]);
    // Activity is recorded shortly after it happens: wait for all of it.
    let all = wait_for(10 * SECOND, "12 notifications and the probe's activity", || {
        let (status, body) = get("/api/activity?limit=500");
        assert_eq!(status, 200);
        let events = body["events"].as_array().unwrap().clone();
        let notes = events.iter().filter(|e| e["type"] == "notification").count();
        let connected = events.iter().any(|e| e["type"] == "agent_connected");
        (notes == 12 && connected && body["more"] == false).then_some(events)
    });
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert!(all.iter().all(|e| e["ts"].as_u64().is_some() && e["type"].is_string()));
    assert_eq!(all.last().unwrap()["message"], "note 0", "the oldest last");

    // Pages of 5 from the newest add up to the whole log, each saying whether more are left.
    let mut paged: Vec<Value> = Vec::new();
    let mut path = "/api/activity?limit=5".to_owned();
    loop {
        let (status, body) = get(&path);
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().unwrap();
        paged.extend(events.iter().cloned());
        if body["more"] == false {
            break;
        }
        assert_eq!(events.len(), 5);
        let oldest = events.last().unwrap()["id"].as_u64().unwrap();
        path = format!("/api/activity?limit=5&before={oldest}");
    }
    assert_eq!(paged, all);
    let (_, default) = get("/api/activity");
    assert_eq!(default["events"].as_array().unwrap().len(), all.len().min(50));

    let (_, notes) = get("/api/activity?types=notification&limit=3");
    let notes = notes["events"].as_array().unwrap().clone();
    assert_eq!(
        notes.iter().map(|e| e["message"].as_str().unwrap()).collect::<Vec<_>>(),
        ["note 11", "note 10", "note 9"]
    );
    let (_, none) = get(&format!("/api/activity?before={}", ids.last().unwrap()));
    assert_eq!(none, serde_json::json!({"events": [], "more": false}));

    for bad in ["limit=0", "limit=501", "limit=x", "before=abc", "before=-1"] {
        let (status, body) = get(&format!("/api/activity?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
}

#[test]
fn removing_a_host_makes_room_under_max_hosts() {
    let dir = temp_dir();
    let collector = Collector::spawn(
        dir.path(),
        &["--no-self-monitor", "--admin-token", ADMIN, "--max-hosts", "1"],
    );
    let token = collector.token();
    let old = ProbeAgent::connect(collector.ws, &token, "old").expect("connect");
    old.close();
    match ProbeAgent::connect(collector.ws, &token, "new") {
        Err(ProbeRefused::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::OverLimit, "{}", refusal.message);
        }
        other => panic!("expected a refusal over --max-hosts, got {:?}", other.map(|_| ())),
    }
    wait_status(&collector, "old", "offline");
    assert_eq!(delete(&collector, "old", Some(ADMIN)).status, 202);
    let mut new = ProbeAgent::connect(collector.ws, &token, "new").expect("room for a new host");
    assert_eq!(new.store(vec![probe_sample(1, now_ms())]), 1);
}
