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
