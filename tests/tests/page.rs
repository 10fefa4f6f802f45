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

/// Runs a browser script of `tests/browser/` with `env`: its stdin piped, its stdout lines sent
/// to the returned channel (progress goes to stderr, shown with the test's output).
fn browser_script(
    script: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut command = Command::new("node");
    command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("browser").join(script));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut node = command
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
    (node, lines)
}

/// Waits for a browser script to exit and fails the test if it failed.
fn assert_script_passed(node: &mut std::process::Child, screenshot: &Path) {
    let status = wait_exit(node, Duration::from_secs(20)).expect("the browser script did not exit");
    assert!(
        status.success(),
        "browser script failed: {status:?}; screenshot at {}",
        screenshot.display()
    );
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
    let url = format!("http://{}/", collector.http);
    let (mut node, lines) = browser_script(
        "page.test.mjs",
        &[
            ("HOSTWATCH_URL", url.as_ref()),
            ("HOSTWATCH_HOST_ID", host["id"].as_str().unwrap().as_ref()),
            ("HOSTWATCH_HOSTNAME", host["hostname"].as_str().unwrap().as_ref()),
            ("HOSTWATCH_SCREENSHOT", screenshot.as_os_str()),
        ],
    );
    let mut seen = Vec::new();
    read_until(&lines, "PHASE1 OK", Duration::from_secs(60), &mut seen);

    // Restart the collector on the same ports; the open page must reconnect on its own.
    let (http, ws) = (collector.http.to_string(), collector.ws.to_string());
    assert!(collector.terminate().success());
    drop(collector);
    let _collector = Collector::spawn_on(dir.path(), &http, &ws, &[]);
    node.stdin.as_mut().unwrap().write_all(b"RESTARTED\n").unwrap();
    read_until(&lines, "PHASE2 OK", Duration::from_secs(60), &mut seen);
    assert_script_passed(&mut node, &screenshot);
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
        // Without self-monitoring: this machine's own mounts (a full tmpfs of another test, say)
        // must not compete with the probes' in the fullest-mount sort.
        Collector::spawn(
            dir.path(),
            &["--admin-token", admin, "--alerts", "load1 > 5 for 1s", "--no-self-monitor"],
        );
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
            rich_sample(seq, start + i * 10_000, 0.5, 30)
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
    let gone_sample = |s: u64| {
        let mut sample = rich_sample(s, now - 10_000 + s * 1000, 0.1, 5);
        sample.filesystems.truncate(1); // "/" only, half full: A's "/data" is the fullest mount
        sample
    };
    agent_gone.store((1..=3).map(gone_sample).collect());
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
                if agent_a.send(vec![rich_sample(seq, ts, 0.5, 30)]).is_err()
                    || agent_b.send(vec![rich_sample(seq_b, ts, 9.0, 70)]).is_err()
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
    let url = format!("http://{}/", collector.http);
    let (mut node, lines) = browser_script(
        "past.test.mjs",
        &[
            ("HOSTWATCH_URL", url.as_ref()),
            ("HOSTWATCH_ADMIN", admin.as_ref()),
            ("HOSTWATCH_A", a.as_ref()),
            ("HOSTWATCH_B", b.as_ref()),
            ("HOSTWATCH_GONE", gone.as_ref()),
            ("HOSTWATCH_GONE_NAME", hostile.as_ref()),
            ("HOSTWATCH_BROADCAST", broadcast.as_ref()),
            ("HOSTWATCH_SCREENSHOT", screenshot.as_os_str()),
        ],
    );
    let mut seen = Vec::new();
    read_until(&lines, "READY_FOR_OUTAGE", Duration::from_secs(100), &mut seen);
    // The removed host is gone from the API as well.
    assert!(collector.host(gone).is_none(), "the removed host is still listed");
    stop.store(true, Ordering::Relaxed);
    assert!(collector.terminate().success());
    node.stdin.as_mut().unwrap().write_all(b"DOWN\n").unwrap();
    read_until(&lines, "DONE", Duration::from_secs(30), &mut seen);
    assert_script_passed(&mut node, &screenshot);
    let _ = feeder.join();
}

#[test]
fn the_pages_files_are_sent_compressed_when_asked_with_build_time_etags() {
    use std::io::Read;
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &[]);
    let header = |r: &HttpResponse, name: &str| {
        r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    for path in [
        "/",
        "/assets/app.js",
        "/assets/detail.js",
        "/assets/style.css",
        "/assets/uPlot.iife.min.js",
    ] {
        let plain = http(collector.http, "GET", path, &[], b"");
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(header(&plain, "content-encoding"), None, "{path}");
        let gz = http(collector.http, "GET", path, &[("Accept-Encoding", "gzip, br")], b"");
        assert_eq!(gz.status, 200, "{path}");
        assert_eq!(header(&gz, "content-encoding").as_deref(), Some("gzip"), "{path}");
        assert_eq!(header(&gz, "vary").as_deref(), Some("Accept-Encoding"), "{path}");
        assert!(gz.body.len() < plain.body.len(), "{path}: gzip is not smaller");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..]).read_to_end(&mut unpacked).unwrap();
        assert_eq!(unpacked, plain.body, "{path}: the gzip copy is another file");
        // Each representation has its own validator, and each revalidates to 304.
        let (tag, gz_tag) = (header(&plain, "etag").unwrap(), header(&gz, "etag").unwrap());
        assert_ne!(tag, gz_tag, "{path}");
        let again = http(collector.http, "GET", path, &[("If-None-Match", &tag)], b"");
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty(), "{path}");
        let again = http(
            collector.http,
            "GET",
            path,
            &[("If-None-Match", &gz_tag), ("Accept-Encoding", "gzip")],
            b"",
        );
        assert_eq!(again.status, 304, "{path}");
        // A gzip refused with q=0 gets the plain file.
        let refused = http(collector.http, "GET", path, &[("Accept-Encoding", "gzip;q=0")], b"");
        assert_eq!(header(&refused, "content-encoding"), None, "{path}");
    }
}
