//! The agent as an operator meets it: nothing lost across collector outages and agent crashes,
//! a bounded spool that says what it dropped, clear configuration errors, and `--once`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tests::*;

const SECOND: Duration = Duration::from_secs(1);

/// Asserts that stored samples have consecutive sequence numbers and strictly increasing
/// timestamps: no gap, no duplicate.
fn assert_complete(samples: &[(u64, u64)]) {
    for pair in samples.windows(2) {
        let ((seq_a, ts_a), (seq_b, ts_b)) = (pair[0], pair[1]);
        assert_eq!(seq_b, seq_a + 1, "sequence gap between {seq_a} and {seq_b}");
        assert!(ts_b > ts_a, "timestamps must increase: {ts_a} then {ts_b}");
    }
}

#[test]
fn a_collector_outage_loses_nothing() {
    if !slow_tests_enabled("a_collector_outage_loses_nothing") {
        return;
    }
    let dir = temp_dir();
    let mut collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();
    let agent =
        Agent::spawn(&collector.ingest_url(), &token, "outage", &dir.path().join("spool"), &[]);
    wait_for(5 * SECOND, "3 stored samples", || {
        (stored_samples(&collector.db, "outage").len() >= 3).then_some(())
    });

    let (http, ws) = (collector.http.to_string(), collector.ws.to_string());
    assert!(collector.terminate().success());
    drop(collector);
    let outage_start = now_ms();
    std::thread::sleep(20 * SECOND);
    let outage_end = now_ms();
    let collector = Collector::spawn_on(dir.path(), &http, &ws, &["--no-self-monitor"]);

    // Backoff is capped at 30 s; the replay then arrives in batches.
    let samples = wait_for(45 * SECOND, "the outage replayed and live samples after it", || {
        let samples = stored_samples(&collector.db, "outage");
        samples.iter().any(|(_, ts)| *ts > outage_end + 2_000).then_some(samples)
    });
    assert_complete(&samples);
    // One point per interval across the outage: no gap longer than 1.5 intervals.
    let during: Vec<u64> =
        samples.iter().map(|s| s.1).filter(|ts| (outage_start..outage_end).contains(ts)).collect();
    assert!(during.len() >= 18, "{} points during a 20 s outage", during.len());
    // The sampler skips a tick it is late for rather than bunching two, so no two neighbours are
    // more than two intervals apart, however loaded the machine.
    for pair in samples.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(gap <= 2_000, "gap of {gap} ms between samples");
    }
    assert!(agent.log.shows("connected to"), "the agent reconnected");
    assert_eq!(collector.host("outage").expect("host")["dropped_samples"], 0);
}

#[test]
fn samples_spooled_before_kill_9_are_delivered_after_restart() {
    if !slow_tests_enabled("samples_spooled_before_kill_9_are_delivered_after_restart") {
        return;
    }
    let dir = temp_dir();
    let spool = dir.path().join("spool");
    let mut collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();
    let mut agent = Agent::spawn(&collector.ingest_url(), &token, "crashy", &spool, &[]);
    wait_for(5 * SECOND, "stored samples", || {
        (stored_samples(&collector.db, "crashy").len() >= 2).then_some(())
    });
    let (http, ws) = (collector.http.to_string(), collector.ws.to_string());
    assert!(collector.terminate().success());
    drop(collector);
    let outage_start = now_ms();

    // The agent spools for a while, then dies without any chance to clean up.
    std::thread::sleep(6 * SECOND);
    signal(&agent.child, "KILL");
    wait_exit(&mut agent.child, 5 * SECOND).expect("killed agent exits");
    let spooled_at_kill = now_ms();
    drop(agent);

    let collector = Collector::spawn_on(dir.path(), &http, &ws, &["--no-self-monitor"]);
    let _agent = Agent::spawn(&collector.ingest_url(), &token, "crashy", &spool, &[]);
    let samples = wait_for(20 * SECOND, "spooled and new samples", || {
        let samples = stored_samples(&collector.db, "crashy");
        samples.iter().any(|(_, ts)| *ts > spooled_at_kill + 1_000).then_some(samples)
    });
    // Every sequence number from the first to the last is there exactly once: what the killed
    // agent had spooled came back from disk and the restarted agent numbered on after it.
    assert_complete(&samples);
    let spooled =
        samples.iter().filter(|(_, ts)| (outage_start..spooled_at_kill).contains(ts)).count();
    assert!(spooled >= 5, "only {spooled} samples spooled during the outage before the kill");
}

#[test]
fn a_spool_smaller_than_the_outage_drops_the_oldest_and_says_so() {
    if !slow_tests_enabled("a_spool_smaller_than_the_outage_drops_the_oldest_and_says_so") {
        return;
    }
    let dir = temp_dir();
    let mut collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();
    let _agent = Agent::spawn(
        &collector.ingest_url(),
        &token,
        "small",
        &dir.path().join("spool"),
        &["--spool-max", "4"],
    );
    wait_for(5 * SECOND, "stored samples", || {
        (!stored_samples(&collector.db, "small").is_empty()).then_some(())
    });
    let (http, ws) = (collector.http.to_string(), collector.ws.to_string());
    assert!(collector.terminate().success());
    drop(collector);
    std::thread::sleep(12 * SECOND);
    let collector = Collector::spawn_on(dir.path(), &http, &ws, &["--no-self-monitor"]);
    let host = wait_for(45 * SECOND, "the dropped count at the collector", || {
        collector.host("small").filter(|h| {
            h["dropped_samples"].as_u64().is_some_and(|d| d > 0) && h["status"] == "online"
        })
    });
    let dropped = host["dropped_samples"].as_u64().unwrap();
    // The outage lasted 12 s or more; the spool kept 4 samples, so at least 8 were dropped.
    assert!(dropped >= 8, "dropped {dropped}");
    // The stored sequence has exactly one gap, right after what was stored before the outage,
    // exactly as long as the reported count: the oldest samples went, the newest four stayed.
    std::thread::sleep(2 * SECOND);
    let samples = stored_samples(&collector.db, "small");
    let gaps: Vec<u64> =
        samples.windows(2).map(|w| w[1].0 - w[0].0 - 1).filter(|g| *g > 0).collect();
    assert_eq!(gaps, vec![dropped], "one gap of the dropped count");
}

fn agent_command() -> Command {
    let mut command = Command::new(binary("hostwatch-agent"));
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

#[test]
fn bad_configuration_exits_2_with_a_message_naming_the_key() {
    let dir = temp_dir();
    let config = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let unknown_key = config("unknown.toml", "colector = \"ws://x/ingest\"\n");
    let bad_interval = config(
        "interval.toml",
        "collector = \"ws://x/ingest\"\ntoken = \"t\"\nhost_id = \"h\"\ninterval = \"often\"\n",
    );
    // (arguments, environment, the key the message must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--interval", "0"], vec![], "interval"),
        (
            vec!["--collector", "http://x:1/ingest", "--token", "t", "--host-id", "h"],
            vec![],
            "collector",
        ),
        (vec!["--host-id", "h", "--token", "t"], vec![], "collector"),
        (vec!["--collector", "ws://x/ingest", "--host-id", "h"], vec![], "token"),
        (
            vec![
                "--collector",
                "ws://x/ingest",
                "--host-id",
                "h",
                "--token-file",
                "/nonexistent/token",
            ],
            vec![],
            "token_file",
        ),
        (vec!["--config", &unknown_key], vec![], "colector"),
        (vec!["--config", &bad_interval], vec![], "interval"),
        (vec!["--config", "/nonexistent/agent.toml"], vec![], "config"),
        (vec!["--bogus"], vec![], "--bogus"),
        (
            vec!["--host-id", "h", "--token", "t"],
            vec![("HOSTWATCH_COLLECTOR", "ftp://x")],
            "HOSTWATCH_COLLECTOR",
        ),
        (
            vec![
                "--collector",
                "ws://x/ingest",
                "--token",
                "t",
                "--host-id",
                "h",
                "--spool-max",
                "lots",
            ],
            vec![],
            "spool_max",
        ),
    ];
    for (args, env, key) in cases {
        let output = agent_command().args(&args).envs(env.iter().copied()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line for {args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?}: {stderr:?} should name {key}");
    }
    let output = agent_command()
        .args([
            "--check-config",
            "--collector",
            "ws://x:8701/ingest",
            "--token",
            "secret",
            "--host-id",
            "h",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("secret"),
        "the token is never printed"
    );
}

#[test]
fn once_prints_one_sample_as_json() {
    let output = agent_command().arg("--once").arg("--host-id").arg("h").output().unwrap();
    assert!(output.status.success());
    let sample: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert!(
        sample["cpu"]["user_ticks"].is_u64() && sample["cpu"]["idle_ticks"].is_u64(),
        "{sample}"
    );
    assert!(sample["cores"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(sample["memory"]["total_bytes"].as_u64().is_some_and(|m| m > 0));
    assert!(
        sample["memory"]["used_bytes"].is_u64() && sample["memory"]["available_bytes"].is_u64()
    );
    assert!(sample["networks"].is_array());
    assert!(
        sample["filesystems"]
            .as_array()
            .is_some_and(|f| f.iter().any(|fs| fs["total_bytes"].as_u64() > Some(0)))
    );
    assert!(sample["disks"].is_array());
    assert!(
        sample["load"]["one"].is_number()
            && sample["uptime_seconds"].is_u64()
            && sample["process_count"].is_u64()
    );
    assert!(sample["ts_ms"].is_u64());
}

#[test]
fn sigterm_flushes_and_exits_0_within_5_s() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut agent = Agent::spawn(
        &collector.ingest_url(),
        &collector.token(),
        "term",
        &dir.path().join("spool"),
        &[],
    );
    wait_for(5 * SECOND, "stored samples", || {
        (!stored_samples(&collector.db, "term").is_empty()).then_some(())
    });
    let started = Instant::now();
    assert!(agent.terminate().success());
    assert!(started.elapsed() < 5 * SECOND, "stopped in {:?}", started.elapsed());
    assert!(agent.log.shows("stopped; 0 samples spooled"), "flushed everything before exiting");
}

#[test]
fn install_places_the_binary_a_private_config_and_a_hardened_unit() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let root = dir.path().join("root");
    let output = agent_command()
        .args(["install", "--collector", "ws://collector.example:8701/ingest", "--token-file"])
        .arg(&token)
        .args(["--interval", "2s", "--host-id", "web-7", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mode =
        |path: &str| std::fs::metadata(root.join(path)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("usr/local/bin/hostwatch-agent"), 0o755);
    assert_eq!(mode("etc/hostwatch/agent.toml"), 0o600);
    assert_eq!(mode("etc/systemd/system/hostwatch-agent.service"), 0o644);

    // The installed configuration is what was given, and it is valid.
    let config = root.join("etc/hostwatch/agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    for line in [
        "collector = \"ws://collector.example:8701/ingest\"",
        "token = \"s3cret-token\"",
        "interval = \"2s\"",
        "host_id = \"web-7\"",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    let check =
        agent_command().arg("--check-config").arg("--config").arg(&config).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    // The unit is the repository's, and systemd accepts it and rates it well.
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/hostwatch-agent.service")).unwrap();
    let repo_unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/hostwatch-agent.service"),
    )
    .unwrap();
    assert_eq!(unit, repo_unit);
    let exposure = verified_unit_exposure(
        &unit,
        "/usr/local/bin/hostwatch-agent",
        &root.join("usr/local/bin/hostwatch-agent"),
        dir.path(),
    );
    assert!(exposure <= 3.0, "exposure {exposure}");
}

#[test]
fn a_frozen_collector_is_detected_and_left() {
    if !slow_tests_enabled("a_frozen_collector_is_detected_and_left") {
        return;
    }
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let agent = Agent::spawn(
        &collector.ingest_url(),
        &collector.token(),
        "watchful",
        &dir.path().join("spool"),
        &[],
    );
    wait_for(5 * SECOND, "stored samples", || {
        (!stored_samples(&collector.db, "watchful").is_empty()).then_some(())
    });
    // A stopped process keeps its sockets open but answers nothing: only the agent's own
    // deadline can tell. At a 1 s interval it gives up after 3 s of silence.
    signal(&collector.child, "STOP");
    let result = std::panic::catch_unwind(|| {
        wait_for(15 * SECOND, "the agent to notice", || {
            agent.log.contains("nothing heard for").then_some(())
        })
    });
    signal(&collector.child, "CONT");
    result.expect("the agent noticed the silent collector");
    // It reconnects once the collector answers again, and loses nothing.
    let resumed = now_ms();
    let samples = wait_for(45 * SECOND, "samples after the pause", || {
        let samples = stored_samples(&collector.db, "watchful");
        samples.iter().any(|(_, ts)| *ts > resumed + 1_000).then_some(samples)
    });
    assert_complete(&samples);
}
