//! Black-box tests of the collector against hostile agents and clients: sequence poisoning, a
//! full disk, log injection, connection lock-out and request smuggling. Each is a defect a
//! probe of the real binary found; each test fails on the code before its fix.

use std::time::Duration;

use tests::*;

fn refusal(probe: &mut ProbeAgent) -> protocol::Refusal {
    match probe.receive() {
        Some(protocol::CollectorMessage::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn seqs(db: &std::path::Path, host: &str) -> Vec<u64> {
    stored_samples(db, host).into_iter().map(|(seq, _)| seq).collect()
}

#[test]
fn a_forged_sequence_number_cannot_silence_a_host() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let token = collector.token();
    let base = now_ms();
    let sample = |seq: u64| probe_sample(seq, now_ms());

    // The real agent of host "victim" stores 1..=5.
    let mut real = ProbeAgent::connect(collector.ws, &token, "victim").expect("real agent");
    assert_eq!(real.store((1..=5).map(sample).collect()), 5);
    drop(real);

    // Anyone with the shared token can connect as "victim". Even with the real agent's
    // instance id, a sequence number far ahead is refused, not acknowledged, not stored.
    let mut forger = ProbeAgent::connect(collector.ws, &token, "victim").expect("forger");
    assert_eq!(forger.welcome_last_seq, Some(5));
    forger.send(vec![sample(5 + 10_000_000)]).expect("send");
    let refused = refusal(&mut forger);
    assert_eq!(refused.reason, protocol::RefusalReason::Malformed);
    assert!(refused.message.contains("jumps"), "{}", refused.message);
    // As another agent state it numbers afresh, but u64::MAX is beyond any numbering.
    let mut forger =
        ProbeAgent::connect_instance(collector.ws, &token, "victim", 666).expect("forger");
    assert_eq!(forger.welcome_last_seq, None, "another instance numbers afresh");
    forger.send(vec![sample(u64::MAX)]).expect("send");
    let refused = refusal(&mut forger);
    assert!(refused.message.contains("sequence number"), "{}", refused.message);
    // A forged sample stored under another instance id, far ahead of the real numbering...
    let mut forger =
        ProbeAgent::connect_instance(collector.ws, &token, "victim", 666).expect("forger");
    assert_eq!(forger.store(vec![sample(base + 1_000_000)]), base + 1_000_000);
    drop(forger);

    // ...does not make the real agent's samples look like replays: they are all stored.
    let mut real = ProbeAgent::connect(collector.ws, &token, "victim").expect("real agent");
    let resume = real.welcome_last_seq;
    assert!(resume.is_none_or(|s| s < 6), "the real agent resumes from its own numbering");
    assert_eq!(real.store((6..=10).map(sample).collect()), 10);
    let stored = seqs(&collector.db, "victim");
    let real_seqs: Vec<u64> = stored.iter().copied().filter(|s| *s <= 10).collect();
    assert_eq!(real_seqs, (1..=10).collect::<Vec<_>>(), "every real sample, once");
    assert!(!stored.contains(&u64::MAX) && !stored.contains(&(5 + 10_000_000)));
    assert!(
        stored_samples(&collector.db, "victim").iter().all(|(seq, _)| *seq < i64::MAX as u64),
        "nothing wrapped"
    );

    // After a restart the real agent still resumes from its own samples.
    drop(real);
    let mut collector = collector;
    collector.terminate();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let real = ProbeAgent::connect(collector.ws, &token, "victim").expect("real agent");
    assert_eq!(real.welcome_last_seq, Some(10));
}

#[test]
fn the_shared_token_cannot_claim_a_host_that_has_its_own_token() {
    let dir = temp_dir();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "owned own-secret-token\n").expect("tokens file");
    let shared = "shared-secret-token";
    let collector = Collector::spawn(
        dir.path(),
        &[
            "--no-self-monitor",
            "--agent-token",
            shared,
            "--agent-tokens-file",
            tokens.to_str().expect("path"),
        ],
    );
    let mut impostor = ProbeAgent::connect(collector.ws, shared, "owned");
    match &mut impostor {
        Err(ProbeRefused::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::BadToken);
            assert!(refusal.message.contains("its own token"), "{}", refusal.message);
        }
        other => panic!("expected a refusal, got {:?}", other.as_ref().map(|_| "a welcome")),
    }
    let mut owner =
        ProbeAgent::connect(collector.ws, "own-secret-token", "owned").expect("the owner");
    assert_eq!(owner.store(vec![probe_sample(1, now_ms())]), 1);
    // The shared token still serves every other host.
    let mut other = ProbeAgent::connect(collector.ws, shared, "other").expect("other host");
    assert_eq!(other.store(vec![probe_sample(1, now_ms())]), 1);
}

#[test]
fn untrusted_text_is_escaped_in_the_log_and_control_characters_are_refused() {
    let dir = temp_dir();
    let admin = "admin-secret";
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", admin]);
    let token = collector.token();

    // A host name (from the agent token's holder) with CR/LF, ESC and NUL.
    let forged = "web\r\n2026-01-01 INFO forged line\u{1b}[31m\0";
    let mut socket =
        ws_connect(collector.ws, "/ingest", &[("Authorization", &format!("Bearer {token}"))])
            .expect("upgrade");
    let hello = protocol::AgentMessage::Hello(protocol::Hello {
        protocol_version: protocol::PROTOCOL_VERSION,
        host_id: "escaped-host".into(),
        hostname: forged.into(),
        interval_ms: 1000,
        ..Default::default()
    });
    socket
        .send(tungstenite::Message::binary(protocol::encode_agent_message(&hello)))
        .expect("hello");
    let _ = socket.read().expect("welcome");
    assert!(
        collector.log.shows("agent connected: web\\r\\n2026-01-01 INFO forged line\\x1b[31m\\0")
    );
    assert!(
        !collector.log.lines().iter().any(|l| l.starts_with("2026-01-01 INFO forged line")),
        "no forged line"
    );
    assert!(collector.log.lines().iter().all(|l| !l.contains('\u{1b}') && !l.contains('\0')));

    // A host id with a control character is refused outright.
    let mut socket =
        ws_connect(collector.ws, "/ingest", &[("Authorization", &format!("Bearer {token}"))])
            .expect("upgrade");
    let hello = protocol::AgentMessage::Hello(protocol::Hello {
        protocol_version: protocol::PROTOCOL_VERSION,
        host_id: "evil\nhost".into(),
        hostname: "x".into(),
        interval_ms: 1000,
        ..Default::default()
    });
    socket
        .send(tungstenite::Message::binary(protocol::encode_agent_message(&hello)))
        .expect("hello");
    let refused = loop {
        match socket.read().expect("answer") {
            tungstenite::Message::Binary(bytes) => {
                break protocol::decode_collector_message(&bytes).expect("decodes");
            }
            _ => continue,
        }
    };
    assert!(
        matches!(&refused, protocol::CollectorMessage::Refused(r) if r.message.contains("control")),
        "{refused:?}"
    );

    // So is a broadcast message with one; a plain one goes through.
    let auth = format!("Bearer {admin}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let response = http(
        collector.http,
        "POST",
        "/api/broadcast",
        &headers,
        br#"{"message":"deploy\r\n2026 INFO forged"}"#,
    );
    assert_eq!(response.status, 400);
    assert!(response.json()["error"].as_str().unwrap_or("").contains("control"));
    let response =
        http(collector.http, "POST", "/api/broadcast", &headers, br#"{"message":"deploy at 5"}"#);
    assert_eq!(response.status, 202);
}

/// CPU time of a process so far, in clock ticks (1/100 s), from `/proc/PID/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn a_full_disk_costs_little_cpu_says_why_and_loses_nothing() {
    if !slow_tests_enabled("a_full_disk_costs_little_cpu_says_why_and_loses_nothing") {
        return;
    }
    let dir = temp_dir();
    let disk = SmallDisk::mount(dir.path().join("small"), "8m");
    // Most of the disk is taken before the collector starts, so its first megabyte fills it.
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 7 * 1024 * 1024]).expect("ballast");
    let collector = Collector::spawn(disk.path(), &["--self-interval", "500ms"]);
    let spool = dir.path().join("spool");
    let agent = Agent::spawn(
        &collector.ingest_url(),
        &collector.token(),
        "disk-full-host",
        &spool,
        &["--interval", "100ms"],
    );
    wait_for(Duration::from_secs(20), "first samples", || {
        (!stored_samples(&collector.db, "disk-full-host").is_empty()).then_some(())
    });
    fill(&disk.path().join("filler"));
    let filled = now_ms();
    let reason = wait_for(Duration::from_secs(60), "/readyz to say not ready", || {
        let (status, body) = collector.get_json("/readyz");
        (status == 503).then(|| body["reason"].as_str().unwrap_or("").to_owned())
    });
    assert!(reason.contains("full"), "{reason}");
    let (_, stats) = collector.get_json("/api/stats");
    assert_eq!(stats["storage_ok"], false, "{stats}");
    let metrics = http(collector.http, "GET", "/metrics", &[], b"");
    assert!(String::from_utf8_lossy(&metrics.body).contains("hostwatch_collector_storage_up 0"));

    // Ten seconds of a full disk: little CPU, a bounded number of log lines, agents backing off.
    let (ticks, lines) = (cpu_ticks(collector.child.id()), collector.log.lines().len());
    let agent_lines = agent.log.lines().len();
    std::thread::sleep(Duration::from_secs(10));
    let used = cpu_ticks(collector.child.id()) - ticks;
    let logged = collector.log.lines().len() - lines;
    let agent_logged = agent.log.lines().len() - agent_lines;
    eprintln!(
        "full disk, 10 s: collector CPU {used} ticks (1/100 s), {logged} collector log lines, \
         {agent_logged} agent log lines"
    );
    assert!(used < 100, "{used} ticks of CPU in 10 s (a busy loop uses 1000)");
    assert!(
        logged < 60,
        "{logged} log lines in 10 s:\n{}",
        collector.log.lines()[lines..].join("\n")
    );
    assert!(agent_logged < 60, "{agent_logged} agent log lines in 10 s");
    assert_eq!(collector.get_json("/readyz").0, 503, "still not ready");

    // Space returns: every sample the agent took arrives, in order, none twice.
    std::fs::remove_file(disk.path().join("filler")).expect("remove filler");
    std::fs::remove_file(&ballast).expect("remove ballast");
    let resumed = now_ms();
    wait_for(Duration::from_secs(60), "readiness after space returned", || {
        (collector.get_json("/readyz").0 == 200).then_some(())
    });
    let stored = wait_for(Duration::from_secs(60), "the spooled samples", || {
        let stored = stored_samples(&collector.db, "disk-full-host");
        stored.last().is_some_and(|(_, ts)| *ts > resumed + 1000).then_some(stored)
    });
    let seqs: Vec<u64> = stored.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<u64> = (seqs[0]..=seqs[seqs.len() - 1]).collect();
    assert_eq!(seqs, expected, "no gap and nothing twice");
    let during = stored.iter().filter(|(_, ts)| (filled..resumed).contains(ts)).count();
    assert!(during >= 90, "the ten seconds of the outage are there ({during} samples)");
    assert!(collector.log.contains("storage recovered"));
}

/// Sends raw bytes to `addr` and returns what comes back until the server closes (or 10 s).
fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    // A reset after the answer is fine: what arrived is what counts.
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn silent_and_unauthenticated_connections_do_not_lock_agents_out() {
    use std::io::Read;
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--max-connections", "30"]);
    let token = collector.token();
    // 200 sockets that never say a word, on both ports, and 40 /live viewers without a token
    // (none is configured, so /live is open): more than --max-connections.
    let silent: Vec<std::net::TcpStream> = (0..200)
        .map(|i| {
            let addr = if i % 2 == 0 { collector.ws } else { collector.http };
            std::net::TcpStream::connect(addr).expect("connect")
        })
        .collect();
    let viewers: Vec<_> =
        (0..40).map(|_| ws_connect(collector.ws, "/live", &[]).expect("viewer")).collect();
    let mut agent = ProbeAgent::connect(collector.ws, &token, "not-locked-out").expect("agent");
    assert_eq!(agent.store(vec![probe_sample(1, now_ms())]), 1);
    assert_eq!(http(collector.http, "GET", "/healthz", &[], b"").status, 200);
    // Agents have a budget of their own: the 31st is refused with a reason, not the first.
    let more: Vec<_> = (0..29)
        .map(|i| ProbeAgent::connect(collector.ws, &token, &format!("agent-{i}")).expect("agent"))
        .collect();
    match ProbeAgent::connect(collector.ws, &token, "one-too-many") {
        Err(ProbeRefused::Http(503)) => {}
        other => panic!("expected 503 over --max-connections, got {:?}", other.is_ok()),
    }
    drop((more, viewers));
    // Silent connections are closed at the head deadline (10 s), not held for the idle 60 s.
    let started = std::time::Instant::now();
    for mut socket in silent {
        socket.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut byte = [0u8; 1];
        let read = socket.read(&mut byte);
        assert!(matches!(read, Ok(0) | Err(_)), "a silent connection was closed");
    }
    assert!(started.elapsed() < Duration::from_secs(15), "closed after {:?}", started.elapsed());
}

#[test]
fn conflicting_content_lengths_and_plain_requests_on_the_websocket_port_get_clear_answers() {
    let dir = temp_dir();
    let collector =
        Collector::spawn(dir.path(), &["--no-self-monitor", "--admin-token", "admin-token-1"]);
    let smuggle =
        b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-1\r\n\
Content-Length: 2\r\nContent-Length: 22\r\n\r\n{\"message\":\"smuggled\"}";
    let answer = raw_exchange(collector.http, smuggle);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("conflicting Content-Length"), "{answer}");
    let plus = b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n";
    assert!(raw_exchange(collector.http, plus).starts_with("HTTP/1.1 400 "));
    let both = b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert!(raw_exchange(collector.http, both).starts_with("HTTP/1.1 400 "));
    // A browser or curl pointed at the WebSocket port hears why nothing is there.
    let answer = raw_exchange(collector.ws, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer:?}");
    assert!(answer.contains("/ingest") && answer.contains("--http"), "{answer}");
    // Upgrades still work there.
    ws_connect(collector.ws, "/live", &[]).expect("an upgrade on the same port");
}

#[test]
fn a_subscriber_stalled_for_a_minute_gets_its_lagged_notice() {
    if !slow_tests_enabled("a_subscriber_stalled_for_a_minute_gets_its_lagged_notice") {
        return;
    }
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let mut probe = ProbeAgent::connect(collector.ws, &collector.token(), "flood").expect("probe");
    let mut stalled = SseClient::connect(collector.http, "/events?host=flood", &[]);
    let started = std::time::Instant::now();
    // Far more than the subscriber's queue (4096 events / 1 MiB) and the sockets' buffers hold,
    // while it reads nothing.
    let base = now_ms() - 200_000_000;
    for chunk in (1..=100_000u64).collect::<Vec<_>>().chunks(256) {
        probe.store(chunk.iter().map(|&seq| probe_sample(seq, base + seq * 1000)).collect());
    }
    std::thread::sleep(Duration::from_secs(60).saturating_sub(started.elapsed()));
    // It reads again: what was written arrives, then the notice, not a bare end of stream.
    let mut samples = 0;
    let notice = loop {
        match stalled.next_event() {
            Some(event) if event.event == "sample" => samples += 1,
            Some(event) if ["lagged", "shutdown", "resync"].contains(&event.event.as_str()) => {
                break event;
            }
            Some(_) => {} // The host's activity.
            None => panic!("the stream ended without a notice after {samples} samples"),
        }
    };
    assert_eq!(notice.event, "lagged", "{notice:?}");
    assert!(samples < 100_000, "it was dropped for lagging ({samples} samples)");
}

#[test]
fn the_shared_token_cannot_create_hosts_without_bound() {
    let dir = temp_dir();
    let collector = Collector::spawn(
        dir.path(),
        &["--no-self-monitor", "--max-new-hosts-per-minute", "20", "--max-hosts", "25"],
    );
    let token = collector.token();
    let mut refused = None;
    for i in 0..40 {
        match ProbeAgent::connect(collector.ws, &token, &format!("spam-{i}")) {
            Ok(_) => {}
            Err(ProbeRefused::Refused(refusal)) => {
                refused = Some((i, refusal));
                break;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let (at, refusal) = refused.expect("a refusal");
    assert_eq!(at, 20, "a burst of --max-new-hosts-per-minute, then a refusal");
    assert_eq!(refusal.reason, protocol::RefusalReason::Unavailable, "retry later");
    assert!(refusal.message.contains("new hosts a minute"), "{}", refusal.message);
    // Known hosts still connect.
    ProbeAgent::connect(collector.ws, &token, "spam-3").expect("a known host");
    let (_, hosts) = collector.get_json("/api/hosts");
    assert_eq!(hosts.as_array().map(Vec::len), Some(20));
}

#[test]
fn logins_are_throttled_and_the_cookie_holds_no_token() {
    let dir = temp_dir();
    let viewer = "viewer-secret-token";
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor", "--viewer-token", viewer]);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let login = http(collector.http, "POST", "/login", &form, format!("token={viewer}").as_bytes());
    assert_eq!(login.status, 303);
    let cookie = login.header("set-cookie").expect("cookie").to_owned();
    assert!(!cookie.contains(viewer), "the cookie is a session id, not the token: {cookie}");
    let session = cookie.split(';').next().expect("cookie pair").to_owned();
    assert_eq!(http(collector.http, "GET", "/api/hosts", &[("Cookie", &session)], b"").status, 200);
    // Guessing: five wrong tries a minute, then 429 with Retry-After, even for the right one.
    let statuses: Vec<u16> = (0..8)
        .map(|i| {
            http(collector.http, "POST", "/login", &form, format!("token=guess{i}").as_bytes())
                .status
        })
        .collect();
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429, 429, 429]);
    let blocked =
        http(collector.http, "POST", "/login", &form, format!("token={viewer}").as_bytes());
    assert_eq!(blocked.status, 429);
    assert!(blocked.header("retry-after").is_some());
    // The session still works: throttling stops guessing, not viewers.
    assert_eq!(http(collector.http, "GET", "/api/hosts", &[("Cookie", &session)], b"").status, 200);
}

#[test]
fn live_refuses_dns_rebinding_and_other_ports_of_this_host() {
    let dir = temp_dir();
    let collector = Collector::spawn(dir.path(), &["--no-self-monitor"]);
    let page = format!("http://127.0.0.1:{}", collector.http.port());
    assert!(ws_connect(collector.ws, "/live", &[("Origin", &page)]).is_ok(), "the page itself");
    let other_port = format!("http://127.0.0.1:{}", collector.http.port().wrapping_add(1));
    assert_eq!(ws_connect(collector.ws, "/live", &[("Origin", &other_port)]).err(), Some(403));
    let rebound = [("Host", "evil.example"), ("Origin", "http://evil.example")];
    assert_eq!(ws_connect(collector.ws, "/live", &rebound).err(), Some(403));
}
