//! hostwatch beside the third-party programs operators already run (issue 14): Python's
//! `websockets` closing `/live` and `/ingest`, standard SSE details, and more below.
//!
//! The third-party programs are installed by `scripts/test.sh` (Debian packages, pip, npm);
//! without them a test fails and says what is missing, rather than passing unchecked.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::*;

const SECOND: Duration = Duration::from_secs(1);

/// A file of `tests/interop/`, the third-party clients' scripts.
fn interop_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop").join(name)
}

/// Runs a command to its end within `timeout` (killing it then) and returns its stdout; panics
/// with its stderr if it failed.
fn run_bounded(command: &mut Command, timeout: Duration) -> String {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let status = wait_exit(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        status.is_some_and(|s| s.success()),
        "{command:?} failed or timed out ({status:?}):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn websockets_clients_see_their_close_echoed_not_1006() {
    let python_ok = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(python_ok, "Python's websockets is missing: run scripts/test.sh, which installs it");
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let out = run_bounded(
        Command::new("python3")
            .arg(interop_file("ws_close.py"))
            .arg(collector.ws.to_string())
            .arg(collector.token()),
        60 * SECOND,
    );
    let codes: Value = serde_json::from_str(out.trim()).expect("the script's JSON");
    assert_eq!(codes["live_client_close"], 1000, "/live echoes the client's close: {codes}");
    assert_eq!(codes["live_text"], 1003, "/live answers a text message with 1003: {codes}");
    assert_eq!(codes["live_invalid_utf8"], 1007, "/live answers invalid UTF-8 with 1007: {codes}");
    assert_eq!(codes["ingest_client_close"], 1000, "/ingest echoes a close: {codes}");

    // An agent's close after the welcome is echoed too.
    let probe = ProbeAgent::connect(collector.ws, &collector.token(), "closer").expect("welcome");
    assert_eq!(probe.close(), Some(1000));
}

/// The head of `GET path` (status line and headers, one per line), read from a stream that may
/// go on (SSE).
fn response_head(addr: std::net::SocketAddr, path: &str) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(10 * SECOND)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("head line");
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            return head;
        }
        head.push(line);
    }
}

#[test]
fn events_headers_are_sent_once_and_notices_carry_no_id() {
    let dir = temp_dir();
    let mut collector = Collector::spawn(dir.path(), &[]);
    for path in ["/events", "/api/hosts"] {
        let head = response_head(collector.http, path);
        let cache_control: Vec<&String> =
            head.iter().filter(|l| l.to_ascii_lowercase().starts_with("cache-control:")).collect();
        assert_eq!(cache_control.len(), 1, "{path}: {head:?}");
    }

    let mut sse = SseClient::connect(collector.http, "/events", &[]);
    sse.until(10 * SECOND, |e| e.event == "sample");
    assert!(collector.terminate().success());
    let shutdown = sse.until(5 * SECOND, |e| e.event == "shutdown");
    assert_eq!(shutdown.id, None, "no id: line");
    assert_eq!(shutdown.data.get("id"), None, "no id in the JSON: {}", shutdown.data);
    assert_eq!(shutdown.data["type"], "shutdown");
}

/// Runs `openssl` in `dir`; panics with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn an_agent_trusts_a_self_signed_openssl_req_x509_certificate_given_as_ca_file() {
    let dir = temp_dir();
    // The README's command, for the name "localhost" only.
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "collector.key",
            "-out",
            "collector.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
    );
    // What webpki alone refuses (CaUsedAsEndEntity): openssl marks such a certificate a CA.
    let constraints = openssl(
        dir.path(),
        &["x509", "-in", "collector.pem", "-noout", "-ext", "basicConstraints"],
    );
    assert!(constraints.contains("CA:TRUE"), "{constraints}");
    let cert = dir.path().join("collector.pem");
    let key = dir.path().join("collector.key");
    let collector = Collector::spawn_tls(dir.path(), &cert, &key);
    let port = collector.ws.port();
    let ca_file = ["--ca-file", cert.to_str().unwrap()];
    let _agent = Agent::spawn(
        &format!("wss://localhost:{port}/ingest"),
        &collector.token(),
        "self-signed",
        &dir.path().join("spool"),
        &ca_file,
    );
    wait_for(10 * SECOND, "samples over wss:// with the self-signed certificate", || {
        (!stored_samples(&collector.db, "self-signed").is_empty()).then_some(())
    });

    // The exception is for that very certificate and its name: the same file, but an address
    // the certificate does not name, is refused with what to do about it.
    let mut wrong_name = Agent::spawn(
        &format!("wss://127.0.0.1:{port}/ingest"),
        &collector.token(),
        "wrong-name",
        &dir.path().join("spool2"),
        &ca_file,
    );
    // Without --ca-file it is refused as a CA: the message says to give it with --ca-file.
    let mut no_ca = Agent::spawn(
        &format!("wss://localhost:{port}/ingest"),
        &collector.token(),
        "no-ca",
        &dir.path().join("spool3"),
        &[],
    );
    assert!(wrong_name.log.shows("subjectAltName=IP:127.0.0.1"), "{:?}", wrong_name.log.lines());
    assert!(no_ca.log.shows("certificate with --ca-file"), "{:?}", no_ca.log.lines());
    assert!(stored_samples(&collector.db, "wrong-name").is_empty());
    assert!(stored_samples(&collector.db, "no-ca").is_empty());
    assert!(wrong_name.terminate().success() && no_ca.terminate().success());
}

/// A free loopback port, for a third-party server that cannot be told to bind port 0 and
/// report it. Another process could take it before the server binds it; the server then fails
/// to start and the test says so.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // Already exited children make these fail harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The scrape configuration the README shows, for a collector at `collector` and a scrape
/// interval of one second.
fn prometheus_config(collector: &str) -> String {
    format!(
        "global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: hostwatch-hosts
    metrics_path: /metrics
    http_sd_configs:
      - url: http://{collector}/api/prometheus/targets
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_host
      - source_labels: [__param_host]
        target_label: instance
      - target_label: __address__
        replacement: {collector}
"
    )
}

#[test]
fn prometheus_discovers_every_host_and_scrapes_each_as_its_own_instance() {
    const PROMETHEUS: &str = "/usr/bin/prometheus";
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: run scripts/test.sh, which installs Debian's prometheus package"
    );
    let dir = temp_dir();
    // Two hosts: the collector's own and an agent's.
    let collector = Collector::spawn(dir.path(), &[]);
    let _agent = Agent::spawn(
        &collector.ingest_url(),
        &collector.token(),
        "prometheus-host",
        &dir.path().join("spool"),
        &[],
    );
    let hosts: Vec<String> = wait_for(10 * SECOND, "both hosts in /api/hosts", || {
        let (_, hosts) = collector.get_json("/api/hosts");
        let ids: Vec<String> = hosts
            .as_array()?
            .iter()
            .filter(|h| !h["latest"].is_null())
            .filter_map(|h| h["id"].as_str().map(str::to_owned))
            .collect();
        (ids.len() == 2).then_some(ids)
    });

    // The discovery document and one host's exposition, as Prometheus will read them.
    let targets = http(collector.http, "GET", "/api/prometheus/targets", &[], b"").json();
    let mut listed: Vec<&str> = targets
        .as_array()
        .expect("target groups")
        .iter()
        .filter_map(|g| g["targets"][0].as_str())
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = hosts.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "{targets}");
    let one = http(collector.http, "GET", "/metrics?host=prometheus-host", &[], b"");
    assert_eq!(one.status, 200);
    let one = String::from_utf8(one.body).expect("UTF-8");
    assert!(one.lines().any(|l| l.starts_with("node_uname_info{")), "{one}");
    assert!(
        one.lines()
            .filter(|l| !l.starts_with("hostwatch_host_info{"))
            .all(|l| !l.contains("host=\"")),
        "no host label but in hostwatch_host_info:\n{one}"
    );
    let same = http(collector.http, "GET", "/metrics/hosts/prometheus-host", &[], b"");
    assert_eq!(same.status, 200);
    assert_eq!(http(collector.http, "GET", "/metrics?host=nobody", &[], b"").status, 404);

    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, prometheus_config(&collector.http.to_string())).expect("config");
    let port = free_port();
    let _prometheus = Killed(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting prometheus"),
    );
    let prometheus: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let query = "/api/v1/query?query=count%20by%20(instance)%20(node_uname_info)";
    let result = wait_for(60 * SECOND, "Prometheus to scrape every host", || {
        TcpStream::connect(prometheus).ok()?;
        let answer = http(prometheus, "GET", query, &[], b"").json();
        let result = answer["data"]["result"].as_array()?.clone();
        (result.len() == hosts.len()).then_some(result)
    });
    let mut instances: Vec<&str> =
        result.iter().filter_map(|r| r["metric"]["instance"].as_str()).collect();
    instances.sort_unstable();
    assert_eq!(instances, expected, "one instance per host: {result:?}");
    for series in &result {
        assert_eq!(series["value"][1], "1", "one node_uname_info per instance: {series}");
    }
    // node_exporter's memory and filesystem series, with its labels, for each instance.
    let query = "/api/v1/query?query=count%20by%20(instance)%20(node_memory_MemFree_bytes)";
    let memory = http(prometheus, "GET", query, &[], b"").json();
    assert_eq!(memory["data"]["result"].as_array().map(Vec::len), Some(hosts.len()), "{memory}");
    let query = "/api/v1/query?query=node_filesystem_size_bytes";
    let sizes = http(prometheus, "GET", query, &[], b"").json();
    let sizes = sizes["data"]["result"].as_array().cloned().unwrap_or_default();
    let labelled =
        |s: &Value, name: &str| s["metric"][name].as_str().is_some_and(|v| !v.is_empty());
    assert!(
        !sizes.is_empty() && sizes.iter().all(|s| labelled(s, "fstype") && labelled(s, "device")),
        "{sizes:?}"
    );
}

#[test]
fn fs_used_percent_of_root_is_dfs_use_percent() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let _agent = Agent::spawn(
        &collector.ingest_url(),
        &collector.token(),
        "df-host",
        &dir.path().join("spool"),
        &[],
    );
    let host = wait_for(10 * SECOND, "df-host's filesystems in the API", || {
        let (status, host) = collector.get_json("/api/hosts/df-host");
        (status == 200 && !host["latest"].is_null()).then_some(host)
    });
    let root = host["filesystems"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["mount_point"] == "/"))
        .unwrap_or_else(|| panic!("no / in {}", host["filesystems"]))
        .clone();
    let ours = root["used_percent"].as_f64().expect("used_percent");
    // df prints Use% rounded up to a whole percent.
    let df = run_bounded(Command::new("df").args(["--output=pcent", "/"]), 10 * SECOND);
    let theirs: f64 = df
        .lines()
        .nth(1)
        .and_then(|l| l.trim().trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("df's Use% in {df:?}"));
    assert!((theirs - ours).abs() <= 1.0, "df says {theirs}%, the API {ours}% ({root})");
    // Both free figures are there, and used is size minus free, as df's Used column.
    let (total, free, avail, used) = (
        root["total_bytes"].as_u64().expect("total"),
        root["free_bytes"].as_u64().expect("free"),
        root["avail_bytes"].as_u64().expect("avail"),
        root["used_bytes"].as_u64().expect("used"),
    );
    assert!(avail <= free && free <= total && used == total - free, "{root}");
    let latest = &host["latest"];
    assert!(latest["fs_free_bytes"].is_u64() && latest["fs_avail_bytes"].is_u64(), "{latest}");

    // The point's fs_used_percent, what the alert judges, is df's figure over every mount.
    let mounts: Vec<&str> = host["filesystems"]
        .as_array()
        .expect("filesystems")
        .iter()
        .filter_map(|f| f["mount_point"].as_str())
        .collect();
    let df = run_bounded(
        Command::new("df").args(["-B1", "--output=used,avail"]).args(&mounts),
        10 * SECOND,
    );
    let (used, avail) = df.lines().skip(1).fold((0u64, 0u64), |(used, avail), line| {
        let mut numbers = line.split_whitespace().map(|n| n.parse::<u64>().expect("df bytes"));
        (used + numbers.next().unwrap_or(0), avail + numbers.next().unwrap_or(0))
    });
    let theirs = used as f64 * 100.0 / (used + avail) as f64;
    let ours = latest["fs_used_percent"].as_f64().expect("fs_used_percent");
    assert!((theirs - ours).abs() <= 1.0, "df over {mounts:?}: {theirs}%, the point {ours}%");
}

/// The README's first nginx block, made to listen on `port` without TLS and to proxy to
/// `collector`.
fn nginx_server(port: u16, collector: &Collector) -> String {
    let server = tests::nginx::readme_block("server {");
    assert!(server.contains("listen 443 ssl;"), "the README's block changed shape:\n{server}");
    server
        .lines()
        .filter(|l| !l.trim_start().starts_with("ssl_certificate"))
        .map(|l| {
            l.replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port};"))
                .replace("127.0.0.1:8700", &collector.http.to_string())
                .replace("127.0.0.1:8701", &collector.ws.to_string())
                + "\n"
        })
        .collect()
}

/// What the EventSource client printed, line by line, as it prints it.
struct Printed(std::sync::mpsc::Receiver<Value>);

impl Printed {
    /// The next printed value, within `timeout`.
    fn next(&self, timeout: Duration) -> Value {
        self.0.recv_timeout(timeout).expect("the EventSource client went silent")
    }
}

#[test]
fn eventsource_through_the_readme_nginx_config_survives_a_collector_restart_without_a_gap() {
    let eventsource = interop_file("node_modules/eventsource");
    assert!(eventsource.exists(), "npm eventsource is missing: run scripts/test.sh (npm ci)");
    let dir = temp_dir();
    let options = ["--self-interval", "200ms"];
    let mut collector = Collector::spawn(dir.path(), &options);
    let port = free_port();
    let proxy: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let server = nginx_server(port, &collector);
    let _nginx = tests::nginx::Nginx::start(&dir.path().join("nginx"), proxy, &server);

    let mut node = Killed(
        Command::new("node")
            .arg(interop_file("eventsource.mjs"))
            .arg(format!("http://{proxy}/events"))
            .arg("60")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting node"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = node.0.stdout.take().expect("node's stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // The test may have finished reading; the rest is not needed.
            let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
    });
    let printed = Printed(rx);
    let mut ids: Vec<u64> = Vec::new();
    let mut everything = Vec::new();
    let mut read_ids = |count: usize, ids: &mut Vec<u64>| {
        let wanted = ids.len() + count;
        while ids.len() < wanted {
            let value = printed.next(20 * SECOND);
            assert_ne!(value["closed"], true, "EventSource gave up: {everything:?}");
            if let Some(id) = value["id"].as_u64() {
                ids.push(id);
            }
            everything.push(value);
        }
    };
    read_ids(5, &mut ids);

    // The collector restarts on the same ports. While it is away, nginx has nothing behind it.
    let (http, ws) = (collector.http.to_string(), collector.ws.to_string());
    assert!(collector.terminate().success());
    drop(collector);
    // An agent reaching a stopped collector through nginx gets its HTML 502 page: one log line
    // with the status, not the page.
    let mut agent = Agent::spawn(
        &format!("ws://{proxy}/ingest"),
        "any-token",
        "behind-nginx",
        &dir.path().join("spool"),
        &[],
    );
    assert!(agent.log.shows("HTTP 502 Bad Gateway at the upgrade"), "{:?}", agent.log.lines());
    assert!(
        agent.log.lines().iter().all(|l| !l.contains('<') && !l.contains("nginx/")),
        "the page is not copied: {:?}",
        agent.log.lines()
    );
    assert!(agent.terminate().success());
    // Long enough for EventSource to have met the proxy's answer a few times.
    std::thread::sleep(3 * SECOND);
    let collector = Collector::spawn_on(dir.path(), &http, &ws, &options);
    read_ids(10, &mut ids);
    drop(node);

    // Exactly what the collector stored from the first id on, as a direct resume replays it.
    let mut direct =
        SseClient::connect(collector.http, &format!("/events?since={}", ids[0] - 1), &[]);
    let last = *ids.last().expect("ids");
    let mut stored = Vec::new();
    while stored.last() != Some(&last) {
        let event = direct.until(10 * SECOND, |e| e.id.is_some());
        stored.push(event.id.and_then(|id| id.parse::<u64>().ok()).expect("numeric id"));
        assert!(stored.len() <= ids.len(), "the client missed events: {ids:?} vs {stored:?}");
    }
    assert_eq!(ids, stored, "no gap and no duplicate across the restart");
    let errors = everything.iter().filter(|v| v.get("error").is_some()).count();
    assert!(errors >= 2, "the client did reconnect through the outage: {everything:?}");
}
