//! The first complete path through hostwatch, with the real binaries on real sockets: an agent
//! pushes to a collector, which stores in SQLite and serves the API and live streams.

use std::time::Duration;

use serde_json::Value;
use tests::*;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn agent_to_collector_to_api_and_live_streams() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &[]);
    let token = collector.token();

    // Live subscribers first, so they see the agent's first samples.
    let mut sse = SseClient::connect(collector.http, "/events", &[]);
    let mut live = ws_connect(collector.ws, "/live", &[]).expect("/live upgrade");

    let mut agent = Agent::spawn(
        &collector.ingest_url(),
        &token,
        "test-host-1",
        &dir.path().join("spool"),
        &[],
    );

    let host = wait_for(5 * SECOND, "test-host-1 online in /api/hosts", || {
        collector.host("test-host-1").filter(|h| h["status"] == "online")
    });
    assert!(host["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(host["last_seen"].as_u64().is_some());

    // At least three points, in increasing time, with the core values.
    let points = wait_for(10 * SECOND, "3 history points", || {
        let (status, history) = collector.get_json("/api/hosts/test-host-1/history?from=0");
        assert_eq!(status, 200);
        let points = history["points"].as_array().cloned().unwrap_or_default();
        (points.len() >= 3).then_some(points)
    });
    let ts: Vec<u64> = points.iter().map(|p| p["ts"].as_u64().expect("ts")).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "timestamps increase: {ts:?}");
    assert!(points.iter().all(|p| p["memory_used_bytes"].as_u64().is_some_and(|m| m > 0)));
    assert!(
        points[1..]
            .iter()
            .all(|p| { p["cpu_percent"].as_f64().is_some_and(|c| (0.0..=100.0).contains(&c)) })
    );
    let latest = collector.host("test-host-1").expect("host")["latest"].clone();
    assert!(
        latest["cpu_percent"].is_number() && latest["memory_used_bytes"].is_number(),
        "{latest}"
    );

    // Both live streams carry the agent's samples.
    let event = sse.until(10 * SECOND, |e| e.event == "sample" && e.data["host"] == "test-host-1");
    assert!(event.id.is_some(), "SSE events carry ids");
    assert!(event.data["ts"].is_u64() && event.data["memory_used_bytes"].is_u64());
    assert!(event.data.get("cpu_percent").is_some());
    let message =
        ws_until(&mut live, 10 * SECOND, |m| m["type"] == "sample" && m["host"] == "test-host-1");
    assert!(message["id"].is_u64() && message["ts"].is_u64());

    // The agent's connection was announced live too.
    let mut sse2 = SseClient::connect(collector.http, "/events?since=0", &[]);
    sse2.until(10 * SECOND, |e| e.event == "agent_connected" && e.data["host"] == "test-host-1");

    // Stopping the agent turns it offline, and a disconnect event goes out.
    assert!(agent.terminate().success(), "agent exits 0 on SIGTERM");
    wait_for(5 * SECOND, "test-host-1 offline", || {
        collector.host("test-host-1").filter(|h| h["status"] == "offline")
    });
    sse.until(10 * SECOND, |e| e.event == "agent_disconnected" && e.data["host"] == "test-host-1");
}

#[test]
fn a_wrong_token_is_refused_at_the_upgrade_and_nothing_is_stored() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);

    // A raw upgrade with a wrong or missing token gets HTTP 401 before any WebSocket exists.
    let refused = ws_connect(collector.ws, "/ingest", &[("Authorization", "Bearer wrong")]);
    assert_eq!(refused.err(), Some(401));
    assert_eq!(ws_connect(collector.ws, "/ingest", &[]).err(), Some(401));

    // A real agent with a wrong token keeps trying, and none of its samples is stored.
    let mut agent = Agent::spawn(
        &collector.ingest_url(),
        "not-the-token",
        "intruder",
        &dir.path().join("spool"),
        &[],
    );
    wait_for(10 * SECOND, "the agent to log the refusal", || {
        agent.log.contains("401").then_some(())
    });
    std::thread::sleep(2 * SECOND);
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent keeps running and spooling");
    let (status, body) = collector.get_json("/api/hosts/intruder");
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    assert_eq!(collector.get_json("/api/hosts").1, Value::Array(vec![]));
    let db = rusqlite::Connection::open(&collector.db).unwrap();
    let rows: i64 = db.query_row("SELECT count(*) FROM samples", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 0);
    assert!(collector.log.shows("invalid or missing token"));
    assert!(!collector.log.contains("not-the-token"), "tokens are never logged");
    agent.terminate();
}

#[test]
fn api_errors_are_json_with_the_right_status() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &[]);
    let self_id = wait_for(5 * SECOND, "the collector's own host", || {
        let (_, hosts) = collector.get_json("/api/hosts");
        hosts
            .as_array()?
            .iter()
            .find(|h| h["self"] == true)
            .map(|h| h["id"].as_str().unwrap().to_owned())
    });
    let cases = [
        ("/api/hosts/nope/history", 404),
        ("/api/hosts/nope", 404),
        (&format!("/api/hosts/{self_id}/history?from=abc") as &str, 400),
        (&format!("/api/hosts/{self_id}/history?from=10&to=5"), 400),
        (&format!("/api/hosts/{self_id}/history?step=0"), 400),
        ("/api/nothing-here", 404),
    ];
    for (path, status) in cases {
        let response = http(collector.http, "GET", path, &[], b"");
        assert_eq!(response.status, status, "{path}");
        assert_eq!(response.header("content-type"), Some("application/json"), "{path}");
        assert!(response.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}");
    }
    assert_eq!(http(collector.http, "DELETE", "/api/hosts", &[], b"").status, 405);
    let health = http(collector.http, "GET", "/healthz", &[], b"");
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok\n"[..]));
    let (status, stats) = collector.get_json("/api/stats");
    assert_eq!(status, 200);
    for key in ["agents_connected", "subscribers", "samples_total", "uptime_seconds"] {
        assert!(stats[key].is_u64(), "stats.{key} in {stats}");
    }
    // The page and its assets are served from the binary.
    let page = http(collector.http, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("assets/uPlot.iife.min.js"));
    let uplot = http(collector.http, "GET", "/assets/uPlot.iife.min.js", &[], b"");
    assert_eq!(uplot.status, 200);
    assert!(uplot.body.len() > 10_000 && String::from_utf8_lossy(&uplot.body).contains("uPlot"));
}

#[test]
fn sigterm_stops_the_collector_cleanly() {
    let dir = temp_dir();
    let mut collector = Collector::spawn(dir.path(), &[]);
    let token = collector.token();
    let agent =
        Agent::spawn(&collector.ingest_url(), &token, "h-term", &dir.path().join("spool"), &[]);
    wait_for(5 * SECOND, "h-term online", || {
        collector.host("h-term").filter(|h| h["status"] == "online")
    });
    let mut sse = SseClient::connect(collector.http, "/events", &[]);
    let started = std::time::Instant::now();
    let status = collector.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped in {:?}", started.elapsed());
    // The SSE stream ends with a shutdown event, and the agent heard a proper close.
    sse.until(5 * SECOND, |e| e.event == "shutdown");
    wait_for(5 * SECOND, "the agent to hear why", || {
        agent.log.contains("collector shutting down").then_some(())
    });
}
