//! The hostile-input catalogue (issue 13): every bad input the issue lists that no other test
//! covers yet, against the real collector on real sockets. Each case checks a clear refusal
//! (HTTP status, close code and reason, or a `Refused` message), that nothing already accepted
//! is lost, that the process still serves (`/healthz` 200), and where a flood could grow it,
//! that its resident memory stays bounded. `RELIABILITY.md` lists every case with the test
//! that covers it, here or elsewhere.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::*;

const SECOND: Duration = Duration::from_secs(1);

/// The hello [`ProbeAgent`] sends, for tests that drive the socket by hand.
fn hello_bytes(host_id: &str) -> Vec<u8> {
    protocol::encode_agent_message(&protocol::AgentMessage::Hello(probe_hello(
        host_id,
        PROBE_INSTANCE,
    )))
}

/// A batch of `samples`, encoded.
fn batch_bytes(samples: Vec<protocol::Sample>) -> Vec<u8> {
    protocol::encode_agent_message(&protocol::AgentMessage::Batch(protocol::Batch {
        dropped_total: 0,
        samples,
    }))
}

/// Opens `/ingest` as `host_id`, sends the hello, then `message`, and returns what the
/// collector answered: its refusal, if any, and the close frame's code and reason.
fn answer_after_hello(
    collector: &Collector,
    host_id: &str,
    message: tungstenite::Message,
) -> (Option<protocol::Refusal>, Option<(u16, String)>) {
    let token = format!("Bearer {}", collector.token());
    let mut socket =
        ws_connect(collector.ws, "/ingest", &[("Authorization", &token)]).expect("upgrade");
    socket.send(tungstenite::Message::binary(hello_bytes(host_id))).expect("hello");
    // The collector may close before it read everything; its answer is what matters.
    let _ = socket.send(message);
    refusal_and_close(&mut socket)
}

fn assert_alive(collector: &Collector) {
    assert_eq!(http(collector.http, "GET", "/healthz", &[], b"").status, 200, "alive");
}

fn seqs(collector: &Collector, host: &str) -> Vec<u64> {
    stored_samples(&collector.db, host).into_iter().map(|(seq, _)| seq).collect()
}

#[test]
fn malformed_truncated_and_text_messages_after_a_hello_are_refused_and_lose_nothing() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut agent = ProbeAgent::connect(collector.ws, &collector.token(), "victim").expect("agent");
    assert_eq!(agent.store(vec![probe_sample(1, now_ms())]), 1);
    drop(agent);

    let whole = batch_bytes(vec![probe_sample(2, now_ms()), probe_sample(3, now_ms())]);
    let truncated = whole[..whole.len() / 2].to_vec();
    let mut trailing = whole.clone();
    trailing.extend_from_slice(&[0, 1, 2]);
    let cases: Vec<(&str, tungstenite::Message)> = vec![
        ("truncated batch", tungstenite::Message::binary(truncated)),
        ("batch with trailing bytes", tungstenite::Message::binary(trailing)),
        ("unknown variant", tungstenite::Message::binary(vec![0x7f, 0x01, 0x02])),
        ("empty message", tungstenite::Message::binary(Vec::new())),
        ("a second hello", tungstenite::Message::binary(hello_bytes("victim"))),
        ("text frame", tungstenite::Message::text("{\"samples\": []}")),
    ];
    for (what, message) in cases {
        let (refusal, close) = answer_after_hello(&collector, "victim", message);
        assert_eq!(
            refusal.as_ref().map(|r| r.reason),
            Some(protocol::RefusalReason::Malformed),
            "{what}: {refusal:?}"
        );
        let (code, reason) = close.unwrap_or_else(|| panic!("{what}: no close frame"));
        assert_eq!(code, 1002, "{what}: protocol error ({reason})");
        assert!(!reason.is_empty(), "{what}: the close says why");
    }
    assert_eq!(seqs(&collector, "victim"), vec![1], "nothing of the bad messages, nothing lost");
    assert_alive(&collector);
}

#[test]
fn host_ids_empty_blank_or_10_kb_long_are_refused_at_the_hello() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();
    let long = "h".repeat(10 * 1024);
    for (what, id) in [("empty", ""), ("blank", "   "), ("10 KB", long.as_str())] {
        match ProbeAgent::connect(collector.ws, &token, id) {
            Err(ProbeRefused::Refused(refusal)) => {
                assert!(
                    matches!(
                        refusal.reason,
                        protocol::RefusalReason::Malformed | protocol::RefusalReason::OverLimit
                    ),
                    "{what}: {refusal:?}"
                );
                assert!(!refusal.message.is_empty());
            }
            Ok(_) => panic!("a host id {what} was admitted"),
            Err(other) => panic!("{what}: expected a refusal after the hello, got {other:?}"),
        }
    }
    let (_, hosts) = collector.get_json("/api/hosts");
    assert_eq!(hosts, Value::Array(vec![]), "no host was created");
    assert_alive(&collector);
}

#[test]
fn sequence_numbers_going_backwards_are_replays_and_stored_once() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut agent = ProbeAgent::connect(collector.ws, &collector.token(), "rewind").expect("agent");
    let now = now_ms();
    let first: Vec<_> = (1..=5).map(|s| probe_sample(s, now - 10_000 + s)).collect();
    assert_eq!(agent.store(first), 5);
    // Backwards: an older range again, then a batch whose order runs down.
    let again: Vec<_> = (2..=4).map(|s| probe_sample(s, now)).collect();
    assert_eq!(agent.store(again), 5, "the ack stays at the highest stored");
    // A batch whose order runs down is malformed (an agent numbers every sample it takes).
    let down: Vec<_> = [7, 6].iter().map(|&s| probe_sample(s, now)).collect();
    agent.send(down).expect("send");
    match agent.receive() {
        Some(protocol::CollectorMessage::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::Malformed, "{refusal:?}");
            assert!(refusal.message.contains("increasing"), "{}", refusal.message);
        }
        other => panic!("expected a refusal of the descending batch, got {other:?}"),
    }
    let stored = seqs(&collector, "rewind");
    assert_eq!(stored, vec![1, 2, 3, 4, 5], "each once, nothing of the refused batch");
    // A reconnect resumes after the highest stored, whatever came backwards before it.
    drop(agent);
    let again = ProbeAgent::connect(collector.ws, &collector.token(), "rewind").expect("again");
    assert_eq!(again.welcome_last_seq, Some(5));
    assert_alive(&collector);
}

#[test]
fn timestamps_far_in_the_past_are_stored_as_sent_and_break_no_query() {
    let dir = temp_dir();
    // Retention longer than the 56 years back to 1970: otherwise the first maintenance pass may
    // (rightly) delete the 1970 sample before the queries below look for it.
    let keep = ["--retention-raw", "100years", "--retention-rollup", "100years"];
    let collector = Collector::spawn(dir.path(), &[&["--no-self-monitor"][..], &keep].concat());
    let mut agent = ProbeAgent::connect(collector.ws, &collector.token(), "oldclock").expect("a");
    // 1970, then 2001: a host whose clock was reset. Nothing ahead, so nothing to refuse.
    assert_eq!(agent.store(vec![probe_sample(1, 1), probe_sample(2, 1_000_000_000_000)]), 2);
    assert_eq!(agent.store(vec![probe_sample(3, now_ms())]), 3);
    assert_eq!(seqs(&collector, "oldclock"), vec![1, 2, 3], "none lost, none twice");
    let (status, body) = collector.get_json("/api/hosts/oldclock/history?from=0&to=1000");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["points"].as_array().map(Vec::len), Some(1), "the 1970 sample: {body}");
    let (status, body) =
        collector.get_json("/api/hosts/oldclock/history?from=0&to=1000000000001&step=360000000");
    assert_eq!(status, 200, "{body}");
    assert_alive(&collector);
}

#[test]
fn a_hundred_thousand_interfaces_in_one_sample_are_refused_by_the_limits() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let pid = collector.child.id();
    let before = resident_bytes(pid);
    let interface =
        |i: usize| protocol::NetworkInterface { name: format!("eth{i}"), ..Default::default() };
    let mut over = probe_sample(1, now_ms());
    over.networks = (0..=protocol::Limits::MAX_INTERFACES).map(interface).collect();
    let (refusal, close) = answer_after_hello(
        &collector,
        "many-nics",
        tungstenite::Message::binary(batch_bytes(vec![over])),
    );
    let refusal = refusal.expect("a refusal");
    assert_eq!(refusal.reason, protocol::RefusalReason::OverLimit, "{refusal:?}");
    assert!(refusal.message.contains("interfaces"), "{}", refusal.message);
    assert_eq!(close.map(|c| c.0), Some(1008));

    // 100,000 of them do not even fit in a message: cut off by the WebSocket layer with 1009.
    let mut huge = probe_sample(1, now_ms());
    huge.networks = (0..100_000).map(interface).collect();
    let bytes = batch_bytes(vec![huge]);
    assert!(bytes.len() > protocol::Limits::MAX_MESSAGE_BYTES);
    let (_, close) =
        answer_after_hello(&collector, "many-nics", tungstenite::Message::binary(bytes));
    assert_eq!(close.map(|c| c.0), Some(1009));

    assert!(seqs(&collector, "many-nics").is_empty(), "nothing of either stored");
    assert_alive(&collector);
    let after = resident_bytes(pid);
    eprintln!("figure: collector RSS {before} -> {after} bytes around two oversized samples");
    assert!(
        after < before + 64 * 1024 * 1024,
        "resident memory {before} -> {after} bytes after two oversized samples"
    );
}

#[test]
fn non_finite_values_are_null_and_do_not_poison_averages() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut agent = ProbeAgent::connect(collector.ws, &collector.token(), "nan").expect("agent");
    let base = now_ms() / 60_000 * 60_000 - 120_000;
    let mut poisoned = probe_sample(1, base + 1_000);
    poisoned.load = Some(protocol::LoadAverage {
        one: f32::NAN,
        five: f32::INFINITY,
        fifteen: f32::NEG_INFINITY,
    });
    poisoned.temperatures =
        vec![protocol::Temperature { label: "cpu".into(), celsius: f32::INFINITY }];
    let mut fine = probe_sample(2, base + 2_000);
    fine.load = Some(protocol::LoadAverage { one: 1.5, five: 1.5, fifteen: 1.5 });
    fine.temperatures = vec![protocol::Temperature { label: "cpu".into(), celsius: 40.0 }];
    assert_eq!(agent.store(vec![poisoned, fine]), 2, "both accepted: the finite values count");

    let to = base + 3_000;
    let (status, raw) = collector.get_json(&format!("/api/hosts/nan/history?from={base}&to={to}"));
    assert_eq!(status, 200, "valid JSON, not NaN: {raw}");
    let points = raw["points"].as_array().expect("points");
    assert_eq!(points.len(), 2, "{raw}");
    for field in ["load1", "load5", "load15", "temperature_celsius"] {
        assert_eq!(points[0][field], Value::Null, "{field} of the non-finite sample: {raw}");
    }
    assert_eq!(points[1]["load1"], 1.5);
    // One bucket over both: the average is the finite value's, not NaN or null.
    let (status, bucketed) =
        collector.get_json(&format!("/api/hosts/nan/history?from={base}&to={to}&step=10000"));
    assert_eq!(status, 200, "{bucketed}");
    let bucket = &bucketed["points"][0];
    assert_eq!(bucket["load1"], 1.5, "{bucketed}");
    assert_eq!(bucket["temperature_celsius"], 40.0, "{bucketed}");
    let csv = http(
        collector.http,
        "GET",
        &format!("/api/hosts/nan/history?from={base}&to={to}&format=csv"),
        &[],
        b"",
    );
    assert_eq!(csv.status, 200);
    let text = String::from_utf8_lossy(&csv.body).to_lowercase();
    assert!(!text.contains("nan") && !text.contains("inf"), "{text}");
    assert_alive(&collector);
}

/// Sends `request` on a fresh connection and returns the status line of the answer.
fn status_line(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(20 * SECOND)).expect("timeout");
    // The server may answer and close before reading an oversized request to its end.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn many_headers_and_a_head_trickled_byte_by_byte_are_cut_off() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut many = String::from("GET /api/hosts HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(status_line(collector.http, many.as_bytes()).contains(" 431 "));

    // Slowloris: a byte every 200 ms, never reaching the end of the head. The 10 s head
    // deadline holds however steadily bytes arrive (it is not an idle timeout).
    let mut stream = TcpStream::connect(collector.http).expect("connect");
    stream.set_read_timeout(Some(100 * Duration::from_millis(1))).expect("timeout");
    let head = b"GET /api/hosts HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .chain(b"a".repeat(1000).iter())
        .copied()
        .collect::<Vec<u8>>();
    let started = Instant::now();
    let mut answer = Vec::new();
    for byte in head {
        if stream.write_all(&[byte]).is_err() {
            break;
        }
        let mut chunk = [0u8; 512];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => {} // Nothing yet: trickle on.
        }
        if !answer.is_empty() || started.elapsed() > 30 * SECOND {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stream.set_read_timeout(Some(5 * SECOND)).expect("timeout");
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    let took = started.elapsed();
    assert!(took >= 9 * SECOND && took < 20 * SECOND, "cut after {took:?}");
    assert_alive(&collector);
}

#[test]
fn last_event_id_and_since_garbage_get_400_and_blank_means_now() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    for garbage in ["abc", "-1", "1e3", "0x10", "18446744073709551616", "1 2", "%00"] {
        let response = http(collector.http, "GET", "/events", &[("Last-Event-ID", garbage)], b"");
        assert_eq!(response.status, 400, "Last-Event-ID {garbage:?}");
        assert!(response.json()["error"].as_str().is_some_and(|e| e.contains("event id")));
        let query = format!("/events?since={}", garbage.replace(' ', "%20"));
        assert_eq!(http(collector.http, "GET", &query, &[], b"").status, 400, "{query}");
        let live = format!("/live?since={}", garbage.replace(' ', "%20"));
        assert_eq!(ws_connect(collector.ws, &live, &[]).err(), Some(400), "{live}");
    }
    // A blank id (EventSource before its first event) is "from now", not an error.
    let mut blank = SseClient::connect(collector.http, "/events", &[("Last-Event-ID", " ")]);
    let mut agent = ProbeAgent::connect(collector.ws, &collector.token(), "after").expect("agent");
    assert_eq!(agent.store(vec![probe_sample(1, now_ms())]), 1);
    blank.until(10 * SECOND, |e| e.event == "sample");
    assert!(ws_connect(collector.ws, "/live?since=", &[]).is_ok());
    assert_alive(&collector);
}

#[test]
fn history_queries_with_nonsense_ranges_and_steps_are_refused_not_failed() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut agent = ProbeAgent::connect(collector.ws, &collector.token(), "hist").expect("agent");
    assert_eq!(agent.store(vec![probe_sample(1, now_ms())]), 1);
    let max = u64::MAX;
    let refused = [
        "from=10&to=5".to_owned(),
        "from=5&to=5".to_owned(),
        "from=-1".to_owned(),
        "to=1e20".to_owned(),
        "from=0&to=99999999999999999999".to_owned(),
        "step=0".to_owned(),
        "step=-5".to_owned(),
        "step=1.5".to_owned(),
        format!("from=0&to={max}&step=1"),
        "from=0&to=100000000&step=1".to_owned(),
        "format=xml".to_owned(),
    ];
    for query in &refused {
        let response =
            http(collector.http, "GET", &format!("/api/hosts/hist/history?{query}"), &[], b"");
        assert_eq!(response.status, 400, "{query}: {:?}", String::from_utf8_lossy(&response.body));
        assert!(response.json()["error"].is_string(), "{query}");
    }
    // Absurd but well-formed: the whole u64 range in few buckets, steps of any size, rollup
    // steps rounding `to` up near u64::MAX. A clear answer, never a 500 or a dead process.
    let absurd = [
        format!("from=0&to={max}&step={}", max / 10_000 + 1),
        format!("from=0&to={max}&step={max}"),
        format!("from={}&to={max}&step=3600000", max - 3_600_000),
        format!("from={}&to={max}&step=60000", max - 60_000),
        format!("from={}&to={max}", max - 1),
        format!("from=0&to={max}&step={}&format=csv", 3_600_000u64 * 1_000_000_000),
        format!("to={max}"),
    ];
    for query in &absurd {
        let response =
            http(collector.http, "GET", &format!("/api/hosts/hist/history?{query}"), &[], b"");
        assert!(
            response.status == 200 || response.status == 400,
            "{query}: {} {:?}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
        assert_alive(&collector);
    }
    assert_eq!(seqs(&collector, "hist"), vec![1]);
}

#[test]
fn path_traversal_never_serves_a_file_outside_the_embedded_assets() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("secret.txt"), "do-not-serve").unwrap();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let paths = [
        "/assets/../../../../etc/passwd",
        "/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/assets/..%2f..%2fsecret.txt",
        "//etc/passwd",
        "/../secret.txt",
        "/assets//app.js/../../secret.txt",
        "/assets/app.js%00.txt",
        "/assets/%252e%252e/etc/passwd",
        "/..\\..\\etc\\passwd",
        "/hostwatch.db",
        "/secret.txt",
    ];
    for path in paths {
        let response = http(collector.http, "GET", path, &[], b"");
        let body = String::from_utf8_lossy(&response.body);
        assert!(response.status == 404 || response.status == 400, "{path}: {}", response.status);
        assert!(!body.contains("root:") && !body.contains("do-not-serve"), "{path}: {body}");
    }
    // The real assets are still there, at their exact paths only.
    assert_eq!(http(collector.http, "GET", "/assets/app.js", &[], b"").status, 200);
    assert_alive(&collector);
}

/// Whether a CSV cell would start a spreadsheet formula (OWASP's CSV injection).
fn starts_formula(cell: &str) -> bool {
    let cell = cell.trim_start_matches('"');
    cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err()
}

#[test]
fn csv_exports_never_start_a_formula_from_host_names_or_broadcasts() {
    let dir = temp_dir();
    let collector =
        Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", "admin-csv"]);
    let evil = "=cmd|' /C calc'!A0";
    let mut agent = ProbeAgent::connect(collector.ws, &collector.token(), evil).expect("agent");
    let mut sample = probe_sample(1, now_ms());
    sample.temperatures = vec![protocol::Temperature { label: "@SUM(1)".into(), celsius: -5.0 }];
    assert_eq!(agent.store(vec![sample]), 1);
    let broadcast = http(
        collector.http,
        "POST",
        "/api/broadcast",
        &[("Authorization", "Bearer admin-csv")],
        br#"{"message": "=HYPERLINK(\"http://evil.example\",\"x\")"}"#,
    );
    assert_eq!(broadcast.status, 202);

    let id = "%3Dcmd%7C%27%20%2FC%20calc%27%21A0";
    for step in ["", "&step=1000", "&step=60000"] {
        let path = format!("/api/hosts/{id}/history?format=csv{step}");
        let response = http(collector.http, "GET", &path, &[], b"");
        assert_eq!(response.status, 200, "{path}");
        let disposition = response.header("content-disposition").expect("attachment");
        let name = disposition.split_once("filename=").map_or("", |(_, name)| name);
        assert!(!name.trim_matches('"').contains(['=', '|', '\'', '!', '"']), "{disposition}");
        let text = String::from_utf8_lossy(&response.body).into_owned();
        for cell in text.lines().flat_map(|line| line.split(',')) {
            assert!(!starts_formula(cell), "{path}: cell {cell:?} in\n{text}");
        }
    }
    assert_alive(&collector);
}

#[test]
fn a_ping_flood_on_live_is_answered_within_bounded_memory() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let pid = collector.child.id();
    let before = resident_bytes(pid);
    let mut socket = ws_connect(collector.ws, "/live", &[]).expect("viewer");
    // 20,000 pings of 125 bytes (the largest a control frame may carry), sent without reading
    // a single pong: the collector answers each, or drops the viewer, but never piles them up.
    let payload = vec![0x55u8; 125];
    let mut sent = 0;
    for _ in 0..20_000 {
        if socket.write(tungstenite::Message::Ping(payload.clone().into())).is_err() {
            break;
        }
        if socket.flush().is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 1000, "the flood got going ({sent} pings)");
    assert_alive(&collector);
    let after = resident_bytes(pid);
    eprintln!("figure: collector RSS {before} -> {after} bytes after {sent} pings on /live");
    assert!(
        after < before + 32 * 1024 * 1024,
        "resident memory {before} -> {after} bytes after {sent} pings"
    );
    // The flooding viewer is still served (or was closed with a reason); another one is.
    drop(socket);
    let mut viewer = ws_connect(collector.ws, "/live", &[]).expect("another viewer");
    viewer.send(tungstenite::Message::Ping(b"hi".to_vec().into())).expect("ping");
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        assert!(Instant::now() < deadline, "no pong");
        if let tungstenite::Message::Pong(p) = viewer.read().expect("read") {
            assert_eq!(&p[..], b"hi");
            break;
        }
    }
}

/// Whether a WebSocket upgrade to `/ingest` completes (a socket closed at once by a full
/// budget fails it).
fn upgrade_completes(addr: SocketAddr) -> bool {
    use tungstenite::client::IntoClientRequest;
    let Ok(stream) = TcpStream::connect(addr) else { return false };
    stream.set_read_timeout(Some(5 * SECOND)).expect("timeout");
    let request = format!("ws://{addr}/ingest").into_client_request().expect("request");
    match tungstenite::client::client(request, stream) {
        Ok(_) => true,
        // 401 without a token: the upgrade was read, so the socket had a place.
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            r.status().as_u16() == 401
        }
        Err(_) => false,
    }
}

#[test]
fn thousands_of_unfinished_handshakes_do_not_keep_agents_out() {
    // 500 stay under the pending budget (--max-pending-connections, 1024 by default); 5,000
    // (CI) overflow it, so the oldest of them are closed to make room for newer sockets.
    let count =
        if slow_tests_enabled("thousands_of_unfinished_handshakes (5,000)") { 5_000 } else { 500 };
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let pid = collector.child.id();
    let token = collector.token();
    let mut connected = ProbeAgent::connect(collector.ws, &token, "connected").expect("agent");
    assert_eq!(connected.store(vec![probe_sample(1, now_ms())]), 1);
    let before = resident_bytes(pid);
    // Half stop in the middle of an upgrade request, half in the middle of a request head on
    // the HTTP port: each holds a place until the 10 s head deadline, or is closed at once.
    let opened = Instant::now();
    let stuck: Vec<TcpStream> = (0..count)
        .filter_map(|i| {
            let addr = if i % 2 == 0 { collector.ws } else { collector.http };
            let mut stream = TcpStream::connect(addr).ok()?;
            let partial: &[u8] = if i % 2 == 0 {
                b"GET /ingest HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            } else {
                b"GET /api/hosts HTTP/1.1\r\nHost: x\r\n"
            };
            // A socket the collector already closed may refuse the write; it still counts.
            let _ = stream.write_all(partial);
            Some(stream)
        })
        .collect();
    assert!(stuck.len() * 10 >= count * 9, "opened {} of {count}", stuck.len());
    let flooded = Instant::now();
    // An agent already in is not disturbed: its batches are still stored and acknowledged.
    assert_eq!(connected.store(vec![probe_sample(2, now_ms())]), 2, "the agent stayed in");
    // A full budget closes its oldest socket for a newcomer: a new agent and /healthz get
    // through during the flood whatever its size.
    assert!(upgrade_completes(collector.ws), "a new agent gets a place during the flood");
    let mut during_flood =
        ProbeAgent::connect(collector.ws, &token, "during-flood").expect("a new agent");
    assert_eq!(during_flood.store(vec![probe_sample(1, now_ms())]), 1);
    assert_alive(&collector);
    let during = resident_bytes(pid);
    eprintln!(
        "figure: collector RSS {before} -> {during} bytes with {count} unfinished handshakes"
    );
    assert!(
        during < before + 128 * 1024 * 1024,
        "resident memory {before} -> {during} bytes with {count} unfinished handshakes"
    );
    // Every one of them is cut at the head deadline (or at once), not held.
    for mut stream in stuck {
        stream.set_read_timeout(Some(20 * SECOND)).expect("timeout");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    let closed = flooded.elapsed();
    eprintln!(
        "figure: all {count} closed {closed:?} after the last was opened ({:?} after the first)",
        opened.elapsed()
    );
    // The newest hold their places until the head deadline, 10 s after they were opened.
    assert!(closed < 15 * SECOND, "closed after {closed:?}");
    // Then new agents get in again, and the process serves.
    let mut new = ProbeAgent::connect(collector.ws, &token, "new").expect("a new agent");
    assert_eq!(new.store(vec![probe_sample(1, now_ms())]), 1);
    assert_eq!(connected.store(vec![probe_sample(3, now_ms())]), 3);
    assert_alive(&collector);
}
