//! Takes the page's screenshots shown in the README (`docs/screenshots/`): a real collector,
//! probe hosts with three hours of history, one with an alert firing and one offline, and
//! Debian's chromium through `tests/browser/screenshots.mjs`.
//!
//! ```sh
//! cargo run -p tests --example screenshots            # writes docs/screenshots/*.png
//! cargo run -p tests --example screenshots -- DIR     # somewhere else
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tests::*;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::args().nth(1).map_or_else(|| root.join("docs/screenshots"), PathBuf::from);
    std::fs::create_dir_all(&out).expect("creating the screenshot directory");
    let status = cargo().args(["build", "--bins", "--quiet"]).status().expect("cargo build");
    assert!(status.success(), "cargo build failed");
    let dir = temp_dir();
    let collector = Collector::spawn(
        dir.path(),
        &["--admin-token", "admin-secret", "--alerts", "load1 > 5 for 1s", "--no-self-monitor"],
    );
    let token = collector.token();
    let now = now_ms();
    let start = now - 3 * 3600 * 1000;
    let mut live = Vec::new();
    for (id, load, busy) in [("web-1", 0.8, 35), ("db-1", 9.0, 60), ("cache-1", 0.3, 12)] {
        let mut agent = ProbeAgent::connect_hello(collector.ws, &token, named_hello(id, id))
            .unwrap_or_else(|_| panic!("{id} refused"));
        // Every 2 s: close enough for the charts to draw lines, not gaps.
        let past: Vec<_> =
            (0..3 * 1800u64).map(|k| rich_sample(k + 1, start + k * 2000, load, busy)).collect();
        for batch in past.chunks(200) {
            agent.store(batch.to_vec());
        }
        live.push((agent, 3 * 1800u64, load, busy));
    }
    let mut old =
        ProbeAgent::connect_hello(collector.ws, &token, named_hello("old-box", "old-box"))
            .unwrap_or_else(|_| panic!("old-box refused"));
    old.store((1..=5).map(|s| rich_sample(s, now - 600_000 + s * 1000, 0.1, 3)).collect());
    old.close();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (agent, seq, load, busy) in live.iter_mut() {
                    *seq += 1;
                    let _ = agent.send(vec![rich_sample(*seq, now_ms(), *load, *busy)]);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let body = br#"{"message": "Maintenance window tonight at 22:00 UTC"}"#;
    http(
        collector.http,
        "POST",
        "/api/broadcast",
        &[("Authorization", "Bearer admin-secret")],
        body,
    );
    std::thread::sleep(Duration::from_secs(20)); // live points for the overview charts
    let status = Command::new("node")
        .arg(root.join("tests/browser/screenshots.mjs"))
        .env("HOSTWATCH_URL", format!("http://{}/", collector.http))
        .env("HOSTWATCH_HOST", "web-1")
        .env("HOSTWATCH_OUT", &out)
        .status()
        .expect("running node");
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    assert!(status.success(), "the screenshot script failed");
    println!("screenshots written to {}", out.display());
}
