//! The HTTP listener as the one port: agents' `/ingest` and browsers' `/live` upgrades on the
//! `--http` address beside the page and API, with `--ws` still serving agents installed with it.

use std::time::Duration;

use tests::*;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn agents_and_live_viewers_connect_on_the_http_port_and_ws_keeps_working() {
    let dir = temp_dir();
    let collector =
        Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", "admin-secret"]);
    let token = collector.token();
    // The printed agent command line names the one HTTP port.
    let printed = format!(":{}/ingest", collector.http.port());
    wait_for(10 * SECOND, "the agent command line", || {
        collector.stdout.contains(&printed).then_some(())
    });

    // An agent on the HTTP port: authenticated, stored, acknowledged.
    let mut probe =
        ProbeAgent::connect(collector.http, &token, "via-http").expect("ingest on --http");
    assert_eq!(probe.store(vec![probe_sample(1, now_ms())]), 1);
    assert_eq!(stored_samples(&collector.db, "via-http").len(), 1);
    assert_eq!(probe.close(), Some(1000), "a client's close is echoed");
    // The same checks as on --ws: a wrong token is refused at the upgrade.
    assert!(matches!(
        ProbeAgent::connect(collector.http, "wrong-token", "x"),
        Err(ProbeRefused::Http(401))
    ));
    // An agent installed with the --ws address keeps working.
    let mut old = ProbeAgent::connect(collector.ws, &token, "via-ws").expect("ingest on --ws");
    assert_eq!(old.store(vec![probe_sample(1, now_ms())]), 1);

    // The real agent binary, pointed at the HTTP port.
    let spool = dir.path().join("spool");
    let mut agent =
        Agent::spawn(&format!("ws://{}/ingest", collector.http), &token, "real-http", &spool, &[]);
    wait_for(20 * SECOND, "the agent's samples", || {
        (!stored_samples(&collector.db, "real-http").is_empty()).then_some(())
    });
    agent.terminate();

    // A viewer's /live on the HTTP port gets live events, with the same origin check.
    let mut live = ws_connect(collector.http, "/live?types=notification", &[]).expect("/live");
    let broadcast = http(
        collector.http,
        "POST",
        "/api/broadcast",
        &[("Authorization", "Bearer admin-secret")],
        br#"{"message": "one port"}"#,
    );
    assert_eq!(broadcast.status, 202);
    let message = ws_until(&mut live, 5 * SECOND, |m| m["type"] == "notification");
    assert_eq!(message["message"], "one port");
    let evil = ws_connect(collector.http, "/live", &[("Origin", "https://evil.example")]);
    assert_eq!(evil.err(), Some(403));
    // A plain request to a WebSocket endpoint hears what it needs.
    let plain = http(collector.http, "GET", "/ingest", &[], b"");
    assert_eq!(plain.status, 426);
    assert_eq!(plain.header("upgrade"), Some("websocket"));
    // The page and API are still on the same port.
    assert_eq!(http(collector.http, "GET", "/healthz", &[], b"").status, 200);
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("a gzip body");
    out
}

#[test]
fn json_csv_and_metrics_are_gzipped_for_clients_that_take_it() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut probe =
        ProbeAgent::connect(collector.http, &collector.token(), "zipped").expect("agent");
    let base = now_ms() - 60_000;
    for seq in 1..=30 {
        assert_eq!(probe.store(vec![probe_sample(seq, base + seq * 1000)]), seq);
    }
    let csv = format!("/api/hosts/zipped/history?from={}&to={}&format=csv", base, now_ms());
    for (path, kind) in [
        ("/api/series", "application/json"),
        (csv.as_str(), "text/csv"),
        ("/metrics", "text/plain"),
    ] {
        let plain = http(collector.http, "GET", path, &[], b"");
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("content-encoding"), None, "{path}: not asked for");
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "{path}");
        let gz = http(collector.http, "GET", path, &[("Accept-Encoding", "br, gzip")], b"");
        assert_eq!(gz.status, 200, "{path}");
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
        assert!(gz.header("content-type").is_some_and(|t| t.starts_with(kind)), "{path}");
        assert_eq!(gz.header("content-length"), Some(gz.body.len().to_string().as_str()));
        assert!(gz.body.len() < plain.body.len(), "{path}: gzip is smaller");
        let decoded = gunzip(&gz.body);
        if path == "/metrics" {
            // Counters move between two scrapes; the families are the same.
            let families = |text: &[u8]| -> Vec<String> {
                String::from_utf8_lossy(text)
                    .lines()
                    .filter(|l| l.starts_with("# TYPE"))
                    .map(str::to_owned)
                    .collect()
            };
            assert_eq!(families(&decoded), families(&plain.body));
        } else {
            assert_eq!(decoded, plain.body, "{path}: the same answer");
        }
        let refused = http(collector.http, "GET", path, &[("Accept-Encoding", "gzip;q=0")], b"");
        assert_eq!(refused.header("content-encoding"), None, "{path}: q=0 refuses gzip");
    }
    // Small answers are not worth it.
    let small =
        http(collector.http, "GET", "/api/hosts/nobody", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(small.header("content-encoding"), None);
    assert!(small.json()["error"].is_string());
}

/// Sends `request` on a fresh connection and returns everything the collector answers.
fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(20 * SECOND)).expect("timeout");
    // The collector may answer and close before reading an oversized request to its end.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn chunked_bodies_100_continue_and_duplicate_content_lengths() {
    use std::io::{BufRead, BufReader, Write};
    let dir = temp_dir();
    let collector =
        Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", "admin-secret"]);
    let mut sse = SseClient::connect(collector.http, "/events?types=notification", &[]);

    // curl sends a chunked body when told to; the broadcast reaches subscribers.
    let output = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "Transfer-Encoding: chunked", "-H", "Authorization: Bearer admin-secret"])
        .args(["--data-binary", r#"{"message": "sent in chunks"}"#])
        .arg(format!("http://{}/api/broadcast", collector.http))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "202", "{output:?}");
    let event = sse.until(5 * SECOND, |e| e.event == "notification");
    assert_eq!(event.data["message"], "sent in chunks");
    // Several chunks, extensions and a trailer, by hand.
    let chunked =
        b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-secret\r\n\
Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
5;x=y\r\n{\"mes\r\n14\r\nsage\": \"two chunks\"}\r\n0\r\nX-Trailer: t\r\n\r\n";
    let answer = raw_exchange(collector.http, chunked);
    assert!(answer.starts_with("HTTP/1.1 202 "), "{answer}");
    let event = sse.until(5 * SECOND, |e| e.event == "notification");
    assert_eq!(event.data["message"], "two chunks");
    // A chunked body over the body limit is refused like any other.
    let mut huge =
        b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        huge.extend_from_slice(format!("400\r\n{}\r\n", "a".repeat(1024)).as_bytes());
    }
    assert!(raw_exchange(collector.http, &huge).starts_with("HTTP/1.1 413 "));

    // Expect: 100-continue: the body goes only after the collector says so.
    let mut stream = std::net::TcpStream::connect(collector.http).expect("connect");
    stream.set_read_timeout(Some(10 * SECOND)).expect("timeout");
    let body = br#"{"message": "after continue"}"#;
    write!(
        stream,
        "POST /api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-secret\r\n\
Expect: 100-continue\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("head");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("100 Continue before the body");
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    reader.read_line(&mut line).expect("its blank line");
    assert_eq!(line, "\r\n");
    stream.write_all(body).expect("body");
    line.clear();
    reader.read_line(&mut line).expect("the answer");
    assert!(line.starts_with("HTTP/1.1 202 "), "{line}");
    let event = sse.until(5 * SECOND, |e| e.event == "notification");
    assert_eq!(event.data["message"], "after continue");
    // An expectation the collector cannot meet.
    let odd =
        b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n";
    assert!(raw_exchange(collector.http, odd).starts_with("HTTP/1.1 417 "));

    // Content-Length given twice, even with the same value, is refused.
    for (lengths, why) in
        [("2\r\nContent-Length: 2", "duplicate"), ("2\r\nContent-Length: 3", "conflicting")]
    {
        let request = format!(
            "POST /api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-secret\r\n\
Content-Length: {lengths}\r\n\r\n{{}}"
        );
        let answer = raw_exchange(collector.http, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains(&format!("{why} Content-Length")), "{answer}");
    }
}

#[test]
fn an_agent_reaches_the_http_port_over_tls() {
    let dir = temp_dir();
    certificates(dir.path());
    let (cert, key, ca) =
        (dir.path().join("server.pem"), dir.path().join("server.key"), dir.path().join("ca.pem"));
    let collector = Collector::spawn_tls(dir.path(), &cert, &key);
    // wss:// on the one HTTPS port, as the printed command line says.
    let url = format!("wss://localhost:{}/ingest", collector.http.port());
    let printed = format!("--collector wss://{}/ingest", collector.http);
    wait_for(10 * SECOND, "the agent command line", || {
        collector.stdout.contains(&printed).then_some(())
    });
    let mut agent = Agent::spawn(
        &url,
        &collector.token(),
        "tls-http",
        &dir.path().join("spool"),
        &["--ca-file", ca.to_str().unwrap()],
    );
    wait_for(10 * SECOND, "samples over wss:// on the HTTP port", || {
        (!stored_samples(&collector.db, "tls-http").is_empty()).then_some(())
    });
    assert!(agent.terminate().success());
}

/// Runs curl with `args`; returns (success, stdout, stderr).
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("curl").args(args).output().expect("curl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Ten `/events` streams in one curl run over HTTP/2 (`extra` picks TLS or prior knowledge):
/// each gets its `retry:` line and all ten share one connection.
fn ten_sse_streams_on_one_connection(extra: &[&str], url: &str) {
    let mut args: Vec<&str> = vec![
        "-sS",
        "--parallel",
        "--parallel-max",
        "10",
        "--max-time",
        "3",
        "-w",
        "%{http_version} %{num_connects}\n",
    ];
    args.extend_from_slice(extra);
    for _ in 0..10 {
        args.push(url);
    }
    let (_, stdout, stderr) = curl(&args);
    assert_eq!(stdout.matches("retry: 2000").count(), 10, "{stdout}\n{stderr}");
    let versions: Vec<&str> = stdout.lines().filter(|l| l.starts_with("2 ")).collect();
    assert_eq!(versions.len(), 10, "{stdout}\n{stderr}");
    let connects: u32 = versions.iter().map(|l| l[2..].trim().parse::<u32>().unwrap()).sum();
    assert_eq!(connects, 1, "all streams on one connection: {stdout}");
}

#[test]
fn http2_prior_knowledge_serves_the_api_and_multiplexes_sse() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let base = format!("http://{}", collector.http);
    let (ok, stdout, stderr) = curl(&[
        "-sS",
        "--fail",
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        &format!("{base}/api/hosts"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with('[') && stdout.ends_with("\n2"), "{stdout}");
    // SSE as an HTTP/2 stream (the ten-stream multiplexing check runs over TLS below: curl
    // 7.88 fails parallel transfers with prior knowledge before they reach the server).
    let (_, stdout, stderr) = curl(&[
        "-sS",
        "--http2-prior-knowledge",
        "--max-time",
        "2",
        "-w",
        "%{http_version}",
        &format!("{base}/events"),
    ]);
    assert!(stdout.starts_with("retry: 2000") && stdout.ends_with('2'), "{stdout}{stderr}");
    // HTTP/1.1 on the same port is unchanged.
    let (ok, stdout, stderr) = curl(&[
        "-sS",
        "--fail",
        "--http1.1",
        "-w",
        "\n%{http_version}",
        &format!("{base}/api/hosts"),
    ]);
    assert!(ok && stdout.ends_with("\n1.1"), "{stdout}{stderr}");
}

#[test]
fn http2_over_tls_by_alpn_serves_the_api_and_multiplexes_sse() {
    let dir = temp_dir();
    certificates(dir.path());
    let (cert, key, ca) =
        (dir.path().join("server.pem"), dir.path().join("server.key"), dir.path().join("ca.pem"));
    let collector = Collector::spawn_tls(dir.path(), &cert, &key);
    let base = format!("https://localhost:{}", collector.http.port());
    let ca = ca.to_str().unwrap();
    let (ok, stdout, stderr) = curl(&[
        "-sS",
        "--fail",
        "--http2",
        "--cacert",
        ca,
        "-w",
        "\n%{http_version}",
        &format!("{base}/api/hosts"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.ends_with("\n2"), "{stdout}");
    ten_sse_streams_on_one_connection(&["--http2", "--cacert", ca], &format!("{base}/events"));
    // A client offering only HTTP/1.1 still gets it.
    let (ok, stdout, stderr) = curl(&[
        "-sS",
        "--fail",
        "--http1.1",
        "--cacert",
        ca,
        "-w",
        "\n%{http_version}",
        &format!("{base}/api/hosts"),
    ]);
    assert!(ok && stdout.ends_with("\n1.1"), "{stdout}{stderr}");
}
