//! Alerts and notifications (issue 10) through the real collector: `[[alert]]` rules on host
//! totals and on one mount, hysteresis and `for`, state across `kill -9`, silences, and
//! delivery to a real HTTP receiver of the test's own and to Python's aiosmtpd, a real SMTP
//! server (installed by `scripts/test.sh`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tests::*;

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-token-0123456789";

/// One request the receiver got, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    text: String,
    body: Value,
    status: u16,
}

/// A webhook receiver on 127.0.0.1:0 that answers every POST with its current status.
struct Hook {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl Hook {
    fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let (log, answer) = (received.clone(), status.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A broken request is the collector's bug; it shows as a missing delivery.
                let _ = serve(stream, &log, answer.load(Ordering::SeqCst));
            }
        });
        Self { addr, received, status }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Alert bodies it accepted (2xx), in order.
    fn delivered(&self) -> Vec<Value> {
        let received = self.received.lock().unwrap();
        received.iter().filter(|r| (200..300).contains(&r.status)).map(|r| r.body.clone()).collect()
    }

    /// Accepted bodies of `rule` on `host` in `state`.
    fn count(&self, rule: &str, host: &str, state: &str) -> usize {
        self.delivered()
            .iter()
            .filter(|b| b["rule"] == rule && b["host"] == host && b["state"] == state)
            .count()
    }

    fn attempts(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

fn serve(mut stream: TcpStream, log: &Mutex<Vec<Received>>, status: u16) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(&buffer[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buffer[..n]);
    }
    let body = serde_json::from_slice(&data[head_end..]).unwrap_or(Value::Null);
    let text = String::from_utf8_lossy(&data[head_end..]).to_string();
    log.lock().unwrap().push(Received { head, text, body, status });
    write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    Ok(())
}

/// Python's aiosmtpd, storing what it receives in a Maildir.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Smtp {
    /// Starts it with extra arguments (`--tlscert`, `--tlskey` for STARTTLS).
    fn start(dir: &Path, extra: &[&str]) -> Self {
        // The port is picked here, then handed to aiosmtpd (which cannot report one it chose).
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = dir.join(format!("maildir-{port}"));
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (scripts/test.sh installs it)");
        wait_for(Duration::from_secs(20), "aiosmtpd listening", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self { child, port, maildir }
    }

    /// The messages received so far.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        entries.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        // It may have exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn notify_test(config: &Path) -> (Option<i32>, String) {
    let output = Command::new(binary("hostwatch-collector"))
        .args(["notify-test", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    (output.status.code(), stdout + &String::from_utf8_lossy(&output.stderr))
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn webhook_table(name: &str, url: &str) -> String {
    format!("[[notify.webhook]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"2s\"\n")
}

/// A rule on `/var`'s used percentage.
fn var_rule(name: &str, threshold: &str, clear: u32, for_: &str) -> String {
    format!(
        "[[alert]]\nname = \"{name}\"\nmetric = \"fs_used_percent\"\nmount = \"/var\"\nop = \">\"\n\
         threshold = {threshold}\nclear = {clear}\nfor = \"{for_}\"\nsummary = \"{{host}}: {{mount}} at {{value}}%\"\n"
    )
}

/// A sample whose `/` is 99 % used and `/var` `var_percent` %.
fn disk_sample(seq: u64, ts_ms: u64, var_percent: u64) -> protocol::Sample {
    let fs = |mount: &str, percent: u64| protocol::Filesystem {
        mount_point: mount.into(),
        total_bytes: 1000,
        available_bytes: 1000 - percent * 10,
        free_bytes: Some(1000 - percent * 10),
        ..Default::default()
    };
    protocol::Sample {
        filesystems: vec![fs("/", 99), fs("/var", var_percent)],
        ..probe_sample(seq, ts_ms)
    }
}

/// Samples of `/var` at these percentages, one a second, ending now, from sequence `first`.
fn var_samples(first: u64, percents: &[u64]) -> Vec<protocol::Sample> {
    let start = now_ms() - 1000 * percents.len() as u64;
    percents
        .iter()
        .enumerate()
        .map(|(i, p)| disk_sample(first + i as u64, start + 1000 * (i as u64 + 1), *p))
        .collect()
}

/// Alert events of `/api/alerts?since=0` for `host`.
fn recent(collector: &Collector, host: &str) -> Vec<Value> {
    let (status, body) = collector.get_json("/api/alerts?since=0&limit=1000");
    assert_eq!(status, 200, "{body}");
    body["recent"].as_array().unwrap().iter().filter(|e| e["host"] == host).cloned().collect()
}

fn metric(collector: &Collector, line_start: &str) -> f64 {
    let response = http(collector.http, "GET", "/metrics", &[], b"");
    String::from_utf8_lossy(&response.body)
        .lines()
        .find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn a_rule_reaches_the_streams_the_api_the_webhook_and_the_mailbox_exactly_once() {
    let dir = temp_dir();
    let hook = Hook::start(200);
    let smtp = Smtp::start(dir.path(), &[]);
    std::fs::write(dir.path().join("hook.token"), "hook-secret-1\n").unwrap();
    let config = write_config(
        dir.path(),
        "collector.toml",
        &format!(
            "[[alert]]\nname = \"busy\"\nmetric = \"cpu_percent\"\nop = \">\"\nthreshold = -1\nfor = \"2s\"\n\
             severity = \"critical\"\nsummary = \"{{host}} busy at {{value}}%\"\n\
             {}bearer_token_file = \"{}\"\n\
             [notify.email]\nsmtp = \"smtp://127.0.0.1:{}\"\nstarttls = \"off\"\nfrom = \"hostwatch@example.com\"\nto = [\"ops@example.com\"]\n",
            webhook_table("hook", &hook.url()),
            dir.path().join("hook.token").display(),
            smtp.port
        ),
    );
    let collector =
        Collector::spawn(dir.path(), &["--no-self-monitor", "--config", config.to_str().unwrap()]);
    let mut feed = SseClient::connect(collector.http, "/events?types=alert", &[]);
    let mut live = ws_connect(collector.ws, "/live?types=alert", &[]).expect("/live");
    let spool = dir.path().join("spool");
    let mut agent =
        Agent::spawn(&collector.ingest_url(), &collector.token(), "busy-host", &spool, &[]);

    let fired = feed.until(WAIT, |e| e.data["rule"] == "busy");
    assert_eq!(fired.data["state"], "firing");
    assert_eq!(fired.data["severity"], "critical");
    // `{host}` is the host's name (the machine's own here), as people know it.
    let hostname = fired.data["hostname"].as_str().unwrap().to_owned();
    let summary = fired.data["summary"].as_str().unwrap();
    assert!(summary.starts_with(&format!("{hostname} busy at ")), "{:?}", fired.data);
    let over_ws = ws_until(&mut live, WAIT, |v| v["rule"] == "busy");
    assert_eq!(
        (over_ws["state"].as_str(), over_ws["host"].as_str()),
        (Some("firing"), Some("busy-host"))
    );
    let (_, active) = collector.get_json("/api/alerts");
    let busy =
        active.as_array().unwrap().iter().find(|a| a["rule"] == "busy").expect("firing").clone();
    assert_eq!(
        (busy["host"].as_str(), busy["severity"].as_str()),
        (Some("busy-host"), Some("critical"))
    );
    assert!(
        busy["since"].is_u64() && busy["value"].is_number(),
        "the fields it always had: {busy}"
    );

    wait_for(WAIT, "the webhook's delivery", || {
        (hook.count("busy", "busy-host", "firing") == 1).then_some(())
    });
    let body = &hook.delivered()[0];
    assert_eq!(
        (body["source"].as_str(), body["severity"].as_str()),
        (Some("hostwatch"), Some("critical"))
    );
    let head = hook.received.lock().unwrap()[0].head.clone();
    assert!(head.contains("Authorization: Bearer hook-secret-1\r\n"), "{head}");
    let mail = wait_for(WAIT, "the email in aiosmtpd's mailbox", || smtp.messages().pop());
    assert!(mail.contains(&format!("[FIRING] critical: {hostname} busy at")), "{mail}");
    assert!(mail.contains("To: ops@example.com"), "{mail}");

    // More samples keep the condition true: nothing is sent again.
    let samples_before = metric(&collector, "hostwatch_collector_samples_total ");
    wait_for(WAIT, "three more samples", || {
        (metric(&collector, "hostwatch_collector_samples_total ") >= samples_before + 3.0)
            .then_some(())
    });
    assert_eq!(hook.count("busy", "busy-host", "firing"), 1);
    assert_eq!(smtp.messages().len(), 1);
    let events: Vec<Value> =
        recent(&collector, "busy-host").into_iter().filter(|e| e["rule"] == "busy").collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        metric(&collector, "hostwatch_collector_notify_sent_total{channel=\"email\"} "),
        1.0
    );

    // The built-in agent-silent rule (no rule here watches silence): the agent stops, the
    // alert fires after five of its intervals (at least 10 s); it comes back, the alert resolves.
    assert!(agent.terminate().success());
    let silent = feed.until(WAIT, |e| e.data["rule"] == "agent-silent");
    assert_eq!(
        (silent.data["state"].as_str(), silent.data["severity"].as_str()),
        (Some("firing"), Some("critical"))
    );
    let _agent =
        Agent::spawn(&collector.ingest_url(), &collector.token(), "busy-host", &spool, &[]);
    let back = feed.until(WAIT, |e| e.data["rule"] == "agent-silent");
    assert_eq!(back.data["state"], "resolved");
    wait_for(WAIT, "agent-silent delivered", || {
        (hook.count("agent-silent", "busy-host", "resolved") == 1).then_some(())
    });
    assert_eq!(hook.count("agent-silent", "busy-host", "firing"), 1);
}

#[test]
fn a_mount_rule_fires_once_with_hysteresis_and_a_silence_holds_back_delivery() {
    let dir = temp_dir();
    let hook = Hook::start(200);
    let config = write_config(
        dir.path(),
        "collector.toml",
        &format!("{}{}", var_rule("var-full", "90", 80, "2s"), webhook_table("hook", &hook.url())),
    );
    let collector = Collector::spawn(
        dir.path(),
        &[
            "--no-self-monitor",
            "--agent-silent-intervals",
            "0",
            "--admin-token",
            ADMIN,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let token = collector.token();
    let mut a = ProbeAgent::connect(collector.ws, &token, "probe-a").unwrap();
    // `/` is 99 % full throughout, but the rule selects `/var`, which oscillates around 90.
    a.store(var_samples(1, &[95, 89, 95, 96, 97, 89, 91, 85, 92, 79]));
    wait_for(WAIT, "the resolved delivery", || {
        (hook.count("var-full", "probe-a", "resolved") == 1).then_some(())
    });
    assert_eq!(hook.count("var-full", "probe-a", "firing"), 1, "{:?}", hook.delivered());
    let delivered = hook.delivered();
    assert!(delivered.iter().all(|b| b["device"] == "/var"), "{delivered:?}");
    assert_eq!(delivered[0]["summary"], "probe-a: /var at 97%");
    let events = recent(&collector, "probe-a");
    let states: Vec<&str> = events.iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["resolved", "firing"], "newest first");
    assert_eq!(events[1]["mount"], "/var");
    // Paged: one event a page, older pages by `before`.
    let (_, page) = collector.get_json("/api/alerts?since=0&limit=1");
    assert_eq!(page["recent"].as_array().unwrap().len(), 1);
    let before = page["next_before"].as_u64().expect("a next page");
    let (_, older) = collector.get_json(&format!("/api/alerts?before={before}&limit=1"));
    assert_eq!(older["recent"][0]["state"], "firing");
    assert_eq!(collector.get_json("/api/alerts?since=5&until=5").0, 400);

    // A silence of probe-b: its alert fires and shows, but nothing is sent.
    let body = br#"{"host": "probe-b", "duration": "1h", "comment": "maintenance"}"#;
    assert_eq!(http(collector.http, "POST", "/api/silences", &[], body).status, 401);
    let auth = format!("Bearer {ADMIN}");
    let created = http(collector.http, "POST", "/api/silences", &[("Authorization", &auth)], body);
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_u64().unwrap();
    for bad in [
        &b"not json"[..],
        br#"{"duration": "1h"}"#,
        br#"{"host": "a\u001b[2J", "duration": "1h"}"#,
        br#"{"host": "a", "until_ms": 5}"#,
        br#"{"host": "a", "duration": "forever"}"#,
    ] {
        let refused =
            http(collector.http, "POST", "/api/silences", &[("Authorization", &auth)], bad);
        assert_eq!(refused.status, 400, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(
        http(collector.http, "DELETE", "/api/silences/abc", &[("Authorization", &auth)], b"")
            .status,
        404
    );
    assert_eq!(
        http(collector.http, "PUT", "/api/silences", &[("Authorization", &auth)], b"").status,
        405
    );
    assert_eq!(collector.get_json("/api/alerts?limit=0").0, 400);
    let (_, listed) = collector.get_json("/api/silences");
    assert!(listed.as_array().unwrap().iter().any(|s| s["id"] == id && s["active"] == true));
    let mut b = ProbeAgent::connect(collector.ws, &token, "probe-b").unwrap();
    b.store(var_samples(1, &[95, 96, 97]));
    let silenced = wait_for(WAIT, "probe-b firing", || {
        let (_, active) = collector.get_json("/api/alerts");
        active.as_array().unwrap().iter().find(|a| a["host"] == "probe-b").cloned()
    });
    assert_eq!(silenced["silenced"], true);
    // The event is stored a moment after the hub's state changes.
    let event = wait_for(WAIT, "probe-b's stored event", || recent(&collector, "probe-b").pop());
    assert_eq!(event["silenced"], true);
    // probe-a fires again, unsilenced: once it is delivered, probe-b's (queued before it) would
    // have been too.
    a.store(var_samples(11, &[95, 96, 97]));
    wait_for(WAIT, "probe-a's second firing", || {
        (hook.count("var-full", "probe-a", "firing") == 2).then_some(())
    });
    assert!(hook.delivered().iter().all(|b| b["host"] != "probe-b"), "{:?}", hook.delivered());
    let deleted = http(
        collector.http,
        "DELETE",
        &format!("/api/silences/{id}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(deleted.status, 200);
    assert_eq!(
        http(
            collector.http,
            "DELETE",
            &format!("/api/silences/{id}"),
            &[("Authorization", &auth)],
            b""
        )
        .status,
        404
    );
    // Unsilenced now: probe-b's resolution is delivered.
    b.store(var_samples(4, &[50]));
    wait_for(WAIT, "probe-b resolved", || {
        (hook.count("var-full", "probe-b", "resolved") == 1).then_some(())
    });
}

#[test]
fn firing_alerts_survive_kill_9_and_agent_silence_spans_a_restart() {
    let dir = temp_dir();
    let hook = Hook::start(200);
    // Down until after the restart: it gets what it missed then.
    let late = Hook::start(503);
    let config = write_config(
        dir.path(),
        "collector.toml",
        &format!(
            "{}{}{}",
            var_rule("var-full", "90", 90, "1s"),
            webhook_table("hook", &hook.url()),
            webhook_table("late", &late.url())
        ),
    );
    let args =
        ["--no-self-monitor", "--alerts", "silent for 2s", "--config", config.to_str().unwrap()];
    let mut collector = Collector::spawn(dir.path(), &args);
    let token = collector.token();
    let mut probe = ProbeAgent::connect(collector.ws, &token, "probe-k").unwrap();
    probe.store(var_samples(1, &[95, 95, 95]));
    wait_for(WAIT, "var-full delivered", || {
        (hook.count("var-full", "probe-k", "firing") == 1).then_some(())
    });
    // The probe sends nothing more: it falls silent.
    wait_for(WAIT, "silence delivered", || {
        (hook.count("silent for 2s", "probe-k", "firing") == 1).then_some(())
    });
    drop(probe);
    // Both deliveries are recorded (what a restart resends is what comes after).
    let silent_event = recent(&collector, "probe-k")[0]["id"].as_u64().unwrap();
    wait_for(WAIT, "the delivery recorded", || {
        (delivery_cursor(&collector.db, "hook") >= silent_event).then_some(())
    });
    assert!(late.attempts() >= 1);

    collector.child.kill().unwrap();
    collector.child.wait().unwrap();
    let collector = Collector::spawn(dir.path(), &args);
    let (_, active) = collector.get_json("/api/alerts");
    let rules: Vec<&str> = active
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["host"] == "probe-k")
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["silent for 2s", "var-full"], "both still firing after kill -9");
    // Longer than the silence rule: it does not fire a second time.
    let ticks = metric(&collector, "hostwatch_collector_uptime_seconds ");
    wait_for(WAIT, "three seconds of uptime", || {
        (metric(&collector, "hostwatch_collector_uptime_seconds ") >= ticks + 3.0).then_some(())
    });
    let mut probe = ProbeAgent::connect(collector.ws, &token, "probe-k").unwrap();
    assert_eq!(probe.welcome_last_seq, Some(3));
    probe.store(var_samples(4, &[95]));
    probe.store(var_samples(5, &[50]));
    wait_for(WAIT, "var-full resolved", || {
        (hook.count("var-full", "probe-k", "resolved") == 1).then_some(())
    });
    wait_for(WAIT, "silence resolved", || {
        (hook.count("silent for 2s", "probe-k", "resolved") == 1).then_some(())
    });
    // Each fired once and resolved once (the probe, idle again, may fall silent anew after).
    let states = |rule: &str| -> Vec<String> {
        let all = hook.delivered();
        all.iter()
            .filter(|b| b["rule"] == rule)
            .map(|b| b["state"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(states("var-full"), ["firing", "resolved"]);
    assert_eq!(states("silent for 2s")[..2], ["firing", "resolved"]);
    let (_, active) = collector.get_json("/api/alerts");
    assert!(active.as_array().unwrap().iter().all(|a| a["host"] != "probe-k"), "{active}");
    // The channel that was down before the restart gets everything, in order.
    late.status.store(200, Ordering::SeqCst);
    wait_for(WAIT, "the late channel's deliveries", || (late.delivered().len() >= 4).then_some(()));
    let seen: Vec<String> = late
        .delivered()
        .iter()
        .map(|b| format!("{} {}", b["rule"].as_str().unwrap(), b["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen[..4],
        ["var-full firing", "silent for 2s firing", "silent for 2s resolved", "var-full resolved"]
    );
}

/// A notification channel's delivery cursor, read from the database.
fn delivery_cursor(db: &Path, channel: &str) -> u64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row("SELECT delivered_eid FROM notify_cursor WHERE channel = ?1", [channel], |r| {
        r.get::<_, i64>(0)
    })
    .map_or(0, |v| v as u64)
}

#[test]
fn a_failing_webhook_is_retried_and_counted_while_ingest_and_other_channels_go_on() {
    let dir = temp_dir();
    let down = Hook::start(503);
    let up = Hook::start(200);
    // A receiver that accepts connections and never answers: each attempt ends at its timeout.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_url = format!("http://{}/hook", mute.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = mute.incoming().flatten().collect();
        drop(held);
    });
    let config = write_config(
        dir.path(),
        "collector.toml",
        &format!(
            "{}{}{}{}",
            var_rule("var-full", "90", 90, "0s"),
            webhook_table("down", &down.url()),
            webhook_table("mute", &mute_url),
            webhook_table("up", &up.url())
        ),
    );
    let collector = Collector::spawn(
        dir.path(),
        &[
            "--no-self-monitor",
            "--agent-silent-intervals",
            "0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let mut probe = ProbeAgent::connect(collector.ws, &collector.token(), "probe-f").unwrap();
    probe.store(var_samples(1, &[95]));
    wait_for(WAIT, "the healthy channel's delivery", || {
        (up.count("var-full", "probe-f", "firing") == 1).then_some(())
    });
    wait_for(WAIT, "retries of the failing channel", || {
        let failures =
            metric(&collector, "hostwatch_collector_notify_failures_total{channel=\"down\"} ");
        (failures >= 2.0 && down.attempts() >= 2).then_some(())
    });
    assert!(collector.log.contains("notify down: delivery failed"), "a log line says so");
    // Ingest is not held up: batches are acknowledged, and the healthy channel gets the next one.
    for seq in 2..6 {
        assert_eq!(probe.store(var_samples(seq, &[if seq == 5 { 50 } else { 95 }])), seq);
    }
    wait_for(WAIT, "the healthy channel's resolved", || {
        (up.count("var-full", "probe-f", "resolved") == 1).then_some(())
    });
    assert_eq!(down.delivered().len(), 0);
    // The receiver comes back: both notifications arrive, in order.
    down.status.store(200, Ordering::SeqCst);
    wait_for(WAIT, "delivery after recovery", || (down.delivered().len() == 2).then_some(()));
    let states: Vec<String> =
        down.delivered().iter().map(|b| b["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["firing", "resolved"]);
    assert_eq!(metric(&collector, "hostwatch_collector_notify_sent_total{channel=\"down\"} "), 2.0);
    assert!(collector.log.contains("notify down: delivering again"));
    wait_for(WAIT, "the mute receiver's timeouts", || {
        let failures =
            metric(&collector, "hostwatch_collector_notify_failures_total{channel=\"mute\"} ");
        (failures >= 1.0).then_some(())
    });
    assert!(
        collector
            .log
            .contains("notify mute: delivery failed (1 failures in a row): no answer within 2s")
    );
}

#[test]
fn bad_rules_are_refused_at_start_and_on_sighup_the_old_rules_stay() {
    let dir = temp_dir();
    let refused = |text: &str| {
        let config = write_config(dir.path(), "bad.toml", text);
        let output = Command::new(binary("hostwatch-collector"))
            .args(["--no-self-monitor", "--config", config.to_str().unwrap(), "--db"])
            .arg(dir.path().join("refused.db"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let err = refused(&var_rule("var-full", "90", 80, "2s").replace("op = \">\"", "op = \"=>\""));
    assert!(err.contains("alert \"var-full\".op"), "{err}");
    let err = refused(&var_rule("var-full", "90", 95, "2s"));
    assert!(err.contains("alert \"var-full\".clear"), "{err}");
    let err = refused("[[notify.webhook]]\nurl = \"gopher://x\"\n");
    assert!(err.contains("notify.webhook[1].url"), "{err}");

    let hook = Hook::start(200);
    let table = webhook_table("hook", &hook.url());
    let config = write_config(
        dir.path(),
        "collector.toml",
        &format!("{}{table}", var_rule("var-full", "90", 90, "0s")),
    );
    let collector = Collector::spawn(
        dir.path(),
        &[
            "--no-self-monitor",
            "--agent-silent-intervals",
            "0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    write_config(
        dir.path(),
        "collector.toml",
        &format!("{}{table}", var_rule("var-full", "\"high\"", 90, "0s")),
    );
    signal(&collector.child, "HUP");
    wait_for(WAIT, "the refusal in the log", || {
        collector.log.contains("SIGHUP: keeping the current alert rules").then_some(())
    });
    assert!(
        collector.log.contains("alert \\\"var-full\\\".threshold")
            || collector.log.contains("alert \"var-full\".threshold")
    );
    let mut probe = ProbeAgent::connect(collector.ws, &collector.token(), "probe-h").unwrap();
    probe.store(var_samples(1, &[95]));
    wait_for(WAIT, "the old rule firing", || {
        (hook.count("var-full", "probe-h", "firing") == 1).then_some(())
    });

    // A good reload: the rule that went away resolves, the new one is judged.
    write_config(
        dir.path(),
        "collector.toml",
        &format!("{}{table}", var_rule("var-half", "50", 50, "0s")),
    );
    signal(&collector.child, "HUP");
    wait_for(WAIT, "the removed rule resolved", || {
        (hook.count("var-full", "probe-h", "resolved") == 1).then_some(())
    });
    probe.store(var_samples(2, &[60]));
    wait_for(WAIT, "the new rule firing", || {
        (hook.count("var-half", "probe-h", "firing") == 1).then_some(())
    });
}

#[test]
fn notify_test_sends_on_every_channel_and_says_which_failed() {
    let dir = temp_dir();
    let hook = Hook::start(200);
    let smtp = Smtp::start(dir.path(), &[]);
    let chat: String = ["slack", "discord", "ntfy"]
        .iter()
        .map(|f| format!("{}format = \"{f}\"\n", webhook_table(&format!("chat-{f}"), &hook.url())))
        .collect();
    let channels = format!(
        "{chat}{}[notify.email]\nsmtp = \"smtp://127.0.0.1:{}\"\nstarttls = \"off\"\nfrom = \"hw@example.com\"\nto = \"ops@example.com\"\n",
        webhook_table("hook", &hook.url()),
        smtp.port
    );
    let config = write_config(dir.path(), "ok.toml", &channels);
    let output = Command::new(binary("hostwatch-collector"))
        .args(["notify-test", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("ok: hook") && stdout.contains("ok: email"), "{stdout}");
    let received = hook.received.lock().unwrap().clone();
    assert_eq!(received.len(), 4, "{received:?}");
    assert!(received.iter().any(|r| r.body["state"] == "test" && r.body["source"] == "hostwatch"));
    let slack = received.iter().find(|r| r.body["text"].is_string()).expect("Slack's {text}");
    assert!(slack.body["text"].as_str().unwrap().starts_with("[TEST] info: hostwatch test"));
    assert!(
        received
            .iter()
            .any(|r| r.body["content"].as_str().is_some_and(|c| c.contains("rule: notify-test")))
    );
    let ntfy = received.iter().find(|r| r.head.contains("\r\nTitle: ")).expect("ntfy's headers");
    assert!(
        ntfy.head.contains("\r\nPriority: 3\r\n") && ntfy.text.contains("rule: notify-test"),
        "{ntfy:?}"
    );
    let mail = wait_for(WAIT, "the test email", || smtp.messages().pop());
    assert!(mail.contains("hostwatch test notification"), "{mail}");

    // A receiver that is not there: the command fails and names the channel.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = write_config(
        dir.path(),
        "dead.toml",
        &format!("{channels}{}", webhook_table("dead", &format!("http://{closed}/x"))),
    );
    let output = Command::new(binary("hostwatch-collector"))
        .args(["notify-test", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok: chat-ntfy") && stdout.contains("FAILED: dead"), "{stdout}");

    // STARTTLS, required by default on smtp://: a server without it is refused; one with it
    // (aiosmtpd with a certificate of a private CA, trusted through ca_file) gets the message.
    let email = |port: u16, extra: &str| {
        format!(
            "[notify.email]\nsmtp = \"smtp://127.0.0.1:{port}\"\nfrom = \"hw@example.com\"\nto = \"ops@example.com\"\n{extra}"
        )
    };
    let config = write_config(dir.path(), "plain.toml", &email(smtp.port, ""));
    let (code, out) = notify_test(&config);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED: email"), "{out}");
    certificates(dir.path());
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let tls = Smtp::start(
        dir.path(),
        &["--tlscert", cert.to_str().unwrap(), "--tlskey", key.to_str().unwrap()],
    );
    let ca = format!("ca_file = \"{}\"\n", dir.path().join("ca.pem").display());
    let config = write_config(dir.path(), "starttls.toml", &email(tls.port, &ca));
    let (code, out) = notify_test(&config);
    assert_eq!(code, Some(0), "{out}");
    let mail = wait_for(WAIT, "the email over STARTTLS", || tls.messages().pop());
    assert!(mail.contains("hostwatch test notification"), "{mail}");
}

#[test]
fn with_redis_every_collector_judges_a_host_and_one_sends_its_notification() {
    let dir = temp_dir();
    let redis = RedisServer::start(dir.path());
    let hook = Hook::start(200);
    let config = write_config(
        dir.path(),
        "collector.toml",
        &format!(
            "[[alert]]\nname = \"busy\"\nmetric = \"cpu_percent\"\nop = \">\"\nthreshold = -1\n\
             for = \"2s\"\nsummary = \"{{host}} busy\"\n{}",
            webhook_table("hook", &hook.url())
        ),
    );
    let token = "alerts-redis-token";
    let url = redis.url();
    let config = config.to_str().unwrap();
    let args = ["--no-self-monitor", "--agent-token", token, "--config", config, "--redis", &url];
    let dirs: Vec<_> = (0..2).map(|_| temp_dir()).collect();
    let collectors: Vec<Collector> =
        dirs.iter().map(|d| Collector::spawn(d.path(), &args)).collect();
    let spool = dirs[0].path().join("spool");
    let _agent = Agent::spawn(&collectors[0].ingest_url(), token, "shared-host", &spool, &[]);

    // Both collectors judge the host from the same samples (B gets them through the stream),
    // record the alert and make the same notification; the first to claim it in Redis sends it.
    for collector in &collectors {
        wait_for(WAIT, "the alert recorded on each collector", || {
            recent(collector, "shared-host")
                .into_iter()
                .find(|e| e["rule"] == "busy" && e["state"] == "firing")
        });
    }
    let total = |name: &str| -> f64 {
        let line = format!("hostwatch_collector_notify_{name}_total{{channel=\"hook\"}} ");
        collectors.iter().map(|c| metric(c, &line)).sum()
    };
    wait_for(WAIT, "one sent and one left to the other collector", || {
        (total("sent") == 1.0 && total("deduplicated") == 1.0).then_some(())
    });
    assert_eq!(hook.count("busy", "shared-host", "firing"), 1, "one notification in all");
    assert!(
        collectors.iter().any(|c| c.log.contains("was sent by another collector")),
        "the other collector says why it did not send"
    );
}
