//! Several collectors on one Redis (`--redis`): three collectors and thirty real agents spread
//! across them. Every collector lists every host and streams every host's samples live; after a
//! `kill -9` of one collector its agents move to the others, and every sequence number of every
//! host ends up stored exactly once on every surviving collector.

use std::collections::HashSet;
use std::time::Duration;

use tests::*;

const SECOND: Duration = Duration::from_secs(1);
const AGENTS: usize = 30;

#[test]
fn three_collectors_share_every_host_and_survive_a_kill() {
    let redis_dir = temp_dir();
    let redis = RedisServer::start(redis_dir.path());
    let token = "scaleout-shared-token";
    let url = redis.url();
    let args = ["--no-self-monitor", "--agent-token", token, "--redis", &url];
    let dirs: Vec<_> = (0..3).map(|_| temp_dir()).collect();
    let mut collectors: Vec<Collector> =
        dirs.iter().map(|d| Collector::spawn(d.path(), &args)).collect();
    let urls: Vec<String> = collectors.iter().map(Collector::ingest_url).collect();
    let mut sse = SseClient::connect(collectors[2].http, "/events", &[]);

    // Agent i starts on collector i % 3 and knows the other two as well.
    let hosts: Vec<String> = (0..AGENTS).map(|i| format!("scale-{i:02}")).collect();
    let agents: Vec<Agent> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let list: Vec<&str> = (0..3).map(|k| urls[(i + k) % 3].as_str()).collect();
            let spool = dirs[i % 3].path().join(format!("spool-{i}"));
            Agent::spawn(&list.join(","), token, host, &spool, &["--interval", "250ms"])
        })
        .collect();

    // An SSE client on C sees live samples of all thirty hosts, ten of them stored on C.
    let mut seen = HashSet::new();
    sse.until(30 * SECOND, |e| {
        if e.event == "sample" {
            seen.insert(e.data["host"].as_str().unwrap_or_default().to_owned());
        }
        seen.len() == AGENTS
    });
    for collector in &collectors {
        wait_for(10 * SECOND, "every host listed on every collector", || {
            let (status, listed) = collector.get_json("/api/hosts");
            assert_eq!(status, 200);
            let ids: HashSet<&str> =
                listed.as_array()?.iter().filter_map(|h| h["id"].as_str()).collect();
            hosts.iter().all(|h| ids.contains(h.as_str())).then_some(())
        });
        let (_, ready) = collector.get_json("/readyz");
        assert_eq!(
            (ready["ready"].as_bool(), ready["redis_up"].as_bool()),
            (Some(true), Some(true))
        );
    }

    // kill -9 of A: its agents are back on B or C within 15 s.
    collectors[0].child.kill().expect("kill -9 collector A");
    collectors[0].child.wait().expect("reap A");
    let on_a: Vec<(usize, u64)> = (0..AGENTS)
        .step_by(3)
        .map(|i| (i, stored_samples(&collectors[0].db, &hosts[i]).last().map_or(0, |s| s.0)))
        .collect();
    wait_for(15 * SECOND, "A's agents storing on B or C", || {
        on_a.iter()
            .all(|(i, last)| {
                [&collectors[1], &collectors[2]].iter().any(|c| {
                    stored_samples(&c.db, &hosts[*i]).last().is_some_and(|s| s.0 > last + 2)
                })
            })
            .then_some(())
    });

    // Once the agents stop, B and C hold every host's samples, each exactly once, and the same.
    drop(agents);
    let survivors = [&collectors[1], &collectors[2]];
    let converged = wait_for(15 * SECOND, "B and C converging", || {
        let b = stored_seqs(&survivors[0].db, &hosts);
        let c = stored_seqs(&survivors[1].db, &hosts);
        (b == c).then_some(b)
    });
    for (host, seqs) in hosts.iter().zip(&converged) {
        assert!(seqs.len() > 4, "host {host}: only {} samples", seqs.len());
        if let Some(why) = not_exactly_once(seqs) {
            panic!("host {host} on B and C: {why}");
        }
    }
    let (_, stats) = survivors[1].get_json("/api/stats");
    assert!(stats["redis"]["consumed_total"].as_u64() > Some(0), "stats: {stats}");
    drop(redis);
}

/// Redis killed for 30 s and restarted: both collectors keep storing their own agents' samples
/// and say Redis is gone (still ready), then publish their backlog and converge.
#[test]
fn collectors_work_alone_while_redis_is_away_and_converge_when_it_returns() {
    if !slow_tests_enabled("collectors_work_alone_while_redis_is_away_and_converge_when_it_returns")
    {
        return;
    }
    let redis_dir = temp_dir();
    // With its append-only file, as a deployment runs it: a restart keeps the stream.
    let mut redis = RedisServer::start_with(redis_dir.path(), true);
    let token = "scaleout-redis-token";
    let url = redis.url();
    let args = ["--no-self-monitor", "--agent-token", token, "--redis", &url];
    let dirs: Vec<_> = (0..2).map(|_| temp_dir()).collect();
    let collectors: Vec<Collector> =
        dirs.iter().map(|d| Collector::spawn(d.path(), &args)).collect();
    let hosts: Vec<String> = (0..4).map(|i| format!("away-{i}")).collect();
    let agents: Vec<Agent> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let spool = dirs[i % 2].path().join(format!("spool-{i}"));
            Agent::spawn(
                &collectors[i % 2].ingest_url(),
                token,
                host,
                &spool,
                &["--interval", "250ms"],
            )
        })
        .collect();
    wait_for(15 * SECOND, "every host replicated", || {
        let a = stored_seqs(&collectors[0].db, &hosts);
        let b = stored_seqs(&collectors[1].db, &hosts);
        a.iter().chain(&b).all(|s| s.len() >= 3).then_some(())
    });

    redis.kill();
    for collector in &collectors {
        wait_for(10 * SECOND, "redis_up false in /readyz", || {
            let (status, ready) = collector.get_json("/readyz");
            (status == 200 && ready["ready"] == true && ready["redis_up"] == false).then_some(())
        });
        assert!(collector.log.contains("redis: lost"), "the loss is logged");
        let metrics = http(collector.http, "GET", "/metrics", &[], b"");
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        assert!(text.contains("hostwatch_collector_redis_up 0"), "metrics: {text}");
    }
    let before: Vec<usize> =
        (0..4).map(|i| stored_samples(&collectors[i % 2].db, &hosts[i]).len()).collect();
    std::thread::sleep(30 * SECOND);
    for i in 0..4 {
        let now = stored_samples(&collectors[i % 2].db, &hosts[i]).len();
        assert!(now > before[i] + 50, "host {}: {} then {now} stored alone", hosts[i], before[i]);
    }

    redis.restart();
    for collector in &collectors {
        wait_for(15 * SECOND, "redis_up true again", || {
            let (_, stats) = collector.get_json("/api/stats");
            (stats["redis_up"] == true).then_some(())
        });
    }
    drop(agents);
    let converged = wait_for(20 * SECOND, "both collectors converging", || {
        let a = stored_seqs(&collectors[0].db, &hosts);
        let b = stored_seqs(&collectors[1].db, &hosts);
        (a == b).then_some(a)
    });
    for (host, seqs) in hosts.iter().zip(&converged) {
        if let Some(why) = not_exactly_once(seqs) {
            panic!("host {host}: {why}");
        }
    }
    assert!(collectors.iter().all(|c| c.log.contains("again")), "the return is logged");
}

/// Reads live text messages from `/live` until one that is not a ping, as JSON.
fn live_json(live: &mut WsClient) -> serde_json::Value {
    loop {
        match live.read().expect("/live message") {
            tungstenite::Message::Text(text) => {
                return serde_json::from_str(text.as_str()).expect("JSON event");
            }
            tungstenite::Message::Close(frame) => panic!("/live closed: {frame:?}"),
            _ => {}
        }
    }
}

/// A viewer moved from collector A to B by a load balancer brings A's `Last-Event-ID`: B's
/// numbering is its own database's, so B answers `resync` first, never a silent skip or repeat;
/// back on A the same id resumes with exactly the events that followed it.
#[test]
fn a_viewer_moved_to_another_collector_is_told_to_resync() {
    let redis_dir = temp_dir();
    let redis = RedisServer::start(redis_dir.path());
    let token = "scaleout-ids-token";
    let url = redis.url();
    let args = ["--no-self-monitor", "--agent-token", token, "--redis", &url];
    let dirs: Vec<_> = (0..2).map(|_| temp_dir()).collect();
    let collectors: Vec<Collector> =
        dirs.iter().map(|d| Collector::spawn(d.path(), &args)).collect();
    let _agents: Vec<Agent> = (0..2)
        .map(|i| {
            let spool = dirs[i].path().join("spool");
            let host = format!("moved-{i}");
            Agent::spawn(
                &collectors[i].ingest_url(),
                token,
                &host,
                &spool,
                &["--interval", "250ms"],
            )
        })
        .collect();
    let (a, b) = (&collectors[0], &collectors[1]);

    // On A: ids are `{number}.{tag}`, the JSON keeps the numeric id and names the collector.
    let mut sse = SseClient::connect(a.http, "/events", &[]);
    let mut seen = Vec::new();
    while seen.len() < 8 {
        let event = sse.until(20 * SECOND, |e| e.id.is_some());
        seen.push(event);
    }
    drop(sse);
    let ids: Vec<String> = seen.iter().map(|e| e.id.clone().unwrap()).collect();
    let (number, tag) = ids[2].split_once('.').expect("a tagged id");
    assert!(!tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric()), "{}", ids[2]);
    for event in &seen {
        let id = event.id.as_deref().unwrap();
        assert_eq!(event.data["id"].as_u64().map(|n| format!("{n}.{tag}")).as_deref(), Some(id));
        assert_eq!(event.data["collector"].as_str(), Some(tag), "{:?}", event.data);
    }

    // On B with A's id: `resync` first (B's own numbering would skip or repeat silently).
    let mut moved = SseClient::connect(b.http, "/events", &[("Last-Event-ID", &ids[2])]);
    let first = moved.next_event().expect("an event on B");
    assert_eq!((first.event.as_str(), first.id.as_deref()), ("resync", None), "{first:?}");
    let next = moved.until(20 * SECOND, |e| e.id.is_some());
    let b_tag = next.id.as_deref().and_then(|id| id.split_once('.')).map(|(_, t)| t.to_owned());
    assert!(b_tag.as_deref().is_some_and(|t| t != tag), "B's ids name B: {next:?}");
    drop(moved);
    let mut live = ws_connect(b.ws, &format!("/live?since={}", ids[2]), &[]).expect("/live");
    assert_eq!(live_json(&mut live)["type"], "resync");
    drop(live);

    // Back on A with its own id: exactly the events that followed it, in order.
    let mut back = SseClient::connect(a.http, "/events", &[("Last-Event-ID", &ids[2])]);
    for expected in &ids[3..] {
        let event = back.until(20 * SECOND, |e| e.id.is_some() || e.event == "resync");
        assert_eq!(event.id.as_ref(), Some(expected), "resumed on A: {event:?}");
    }
    drop(back);
    // A plain number is taken as this collector's own (clients that keep only the JSON's id).
    let mut live = ws_connect(a.ws, &format!("/live?since={number}"), &[]).expect("/live");
    let event = live_json(&mut live);
    assert_eq!(event["id"].as_u64().map(|n| format!("{n}.{tag}")), Some(ids[3].clone()));
    assert_eq!(event["collector"].as_str(), Some(tag));
    drop(redis);
}

/// A host connected to two collectors at once (a flapping network, or two agents with one host
/// id) is served by the newest connection: B's welcome claims the host in the stream, and A
/// closes its older connection with the same refusal as a local replacement; B's stays.
#[test]
fn a_host_connected_to_two_collectors_is_served_by_the_newest() {
    let redis_dir = temp_dir();
    let redis = RedisServer::start(redis_dir.path());
    let token = "scaleout-claim-token";
    let url = redis.url();
    let args = ["--no-self-monitor", "--agent-token", token, "--redis", &url];
    let dirs: Vec<_> = (0..2).map(|_| temp_dir()).collect();
    let collectors: Vec<Collector> =
        dirs.iter().map(|d| Collector::spawn(d.path(), &args)).collect();
    let (a, b) = (&collectors[0], &collectors[1]);
    let mut on_a = ProbeAgent::connect(a.ws, token, "twin").expect("welcomed by A");
    assert_eq!(on_a.store(vec![probe_sample(1, now_ms())]), 1);
    let mut on_b = ProbeAgent::connect(b.ws, token, "twin").expect("welcomed by B");
    match on_a.receive() {
        Some(protocol::CollectorMessage::Refused(refusal)) => {
            assert_eq!(refusal.reason, protocol::RefusalReason::Replaced);
        }
        other => panic!("expected A's connection to be replaced, got {other:?}"),
    }
    assert!(on_a.receive().is_none(), "A closed the connection");
    wait_for(5 * SECOND, "A logging the replacement", || {
        a.log.contains("closing the connection from").then_some(())
    });
    assert_eq!(on_b.store(vec![probe_sample(2, now_ms())]), 2);
    assert_eq!(on_b.store(vec![probe_sample(3, now_ms())]), 3);
    assert!(!b.log.contains("closing the connection from"), "B kept its connection");
    drop(redis);
}

/// Samples of `seqs` at 1 s apart, the first at `start_ms`.
fn probe_run(seqs: std::ops::RangeInclusive<u64>, start_ms: u64) -> Vec<protocol::Sample> {
    let first = *seqs.start();
    seqs.map(|seq| probe_sample(seq, start_ms + (seq - first) * 1000)).collect()
}

#[test]
fn a_backlog_published_late_fills_its_hole_and_moves_no_agent_state() {
    let redis_dir = temp_dir();
    let mut redis = RedisServer::start_with(redis_dir.path(), true);
    let token = "scaleout-backlog-token";
    let url = redis.url();
    let admin = "scaleout-admin";
    let args =
        ["--no-self-monitor", "--agent-token", token, "--admin-token", admin, "--redis", &url];
    let dirs: Vec<_> = (0..2).map(|_| temp_dir()).collect();
    let collectors: Vec<Collector> =
        dirs.iter().map(|d| Collector::spawn(d.path(), &args)).collect();
    let (a, b) = (&collectors[0], &collectors[1]);
    let (mover, reinstalled) = ("mover".to_owned(), "reinstalled".to_owned());
    let hosts = [mover.clone(), reinstalled.clone()];
    let old = now_ms() - 120_000;

    // Both hosts' first samples reach both collectors while Redis is up.
    let mut mover_on_a = ProbeAgent::connect(a.ws, token, &mover).expect("welcomed by A");
    assert_eq!(mover_on_a.store(probe_run(1..=5, old)), 5);
    let mut old_instance = ProbeAgent::connect(a.ws, token, &reinstalled).expect("welcomed");
    assert_eq!(old_instance.store(probe_run(1..=5, old)), 5);
    wait_for(10 * SECOND, "B holding both hosts' first samples", || {
        (stored_seqs(&b.db, &hosts) == [vec![1, 2, 3, 4, 5], vec![1, 2, 3, 4, 5]]).then_some(())
    });

    // Redis goes away; A stores (and acks) more of both on its own.
    redis.kill();
    for collector in &collectors {
        wait_for(10 * SECOND, "redis_up false", || {
            let (_, ready) = collector.get_json("/readyz");
            (ready["redis_up"] == false).then_some(())
        });
    }
    assert_eq!(mover_on_a.store(probe_run(6..=10, old + 5_000)), 10);
    assert_eq!(old_instance.store(probe_run(6..=10, old + 5_000)), 10);
    drop(mover_on_a);
    drop(old_instance);

    // The mover's agent moves to B, which knows it up to 5 and gets what came after A's acks;
    // the other host's agent is reinstalled (a new instance, numbering afresh) and goes to B.
    let mut mover_on_b = ProbeAgent::connect(b.ws, token, &mover).expect("welcomed by B");
    assert_eq!(mover_on_b.welcome_last_seq, Some(5));
    assert_eq!(mover_on_b.store(probe_run(11..=15, old + 10_000)), 15);
    let mut new_instance =
        ProbeAgent::connect_instance(b.ws, token, &reinstalled, 8).expect("welcomed by B");
    assert_eq!(new_instance.welcome_last_seq, None);
    let recent = now_ms() - 10_000;
    assert_eq!(new_instance.store(probe_run(1..=3, recent)), 3);

    // Redis returns: A's backlog (6 to 10 of both) reaches B below B's resume point.
    redis.restart();
    wait_for(20 * SECOND, "the mover converging on both", || {
        let on_a = stored_seqs(&a.db, std::slice::from_ref(&mover));
        let on_b = stored_seqs(&b.db, std::slice::from_ref(&mover));
        (on_a == on_b && on_a[0].len() == 15).then_some(())
    });
    let mover_seqs = &stored_seqs(&b.db, std::slice::from_ref(&mover))[0];
    assert_eq!(not_exactly_once(mover_seqs), None, "mover on B: {mover_seqs:?}");
    wait_for(20 * SECOND, "the old instance's backlog on B", || {
        let samples = stored_samples(&b.db, &reinstalled);
        (samples.len() == 13).then_some(())
    });
    // The old instance's backlog moved nothing: the new instance's next sample is stored and
    // acknowledged as its own, here and on A (which took the new instance from the stream).
    assert_eq!(new_instance.store(probe_run(4..=4, recent + 3_000)), 4);
    let want: Vec<(u64, u64)> = {
        let mut want: Vec<_> = probe_run(1..=10, old).iter().map(|s| (s.seq, s.ts_ms)).collect();
        want.extend(probe_run(1..=4, recent).iter().map(|s| (s.seq, s.ts_ms)));
        want.sort_unstable();
        want
    };
    for collector in &collectors {
        wait_for(10 * SECOND, "both instances' samples, each once", || {
            (stored_samples(&collector.db, &reinstalled) == want).then_some(())
        });
    }
    drop(new_instance);
    drop(mover_on_b);
    // The new instance's agent moves on to A, which holds its samples from the stream: what it
    // sends again is acknowledged there, not stored a second time.
    let mut on_a = ProbeAgent::connect_instance(a.ws, token, &reinstalled, 8).expect("welcomed");
    assert_eq!(on_a.store(probe_run(1..=4, recent)), 4);
    assert_eq!(stored_samples(&a.db, &reinstalled), want, "each once on A");
    drop(on_a);

    // A host removed on B while its agent (on A) is silent comes back with its next batch.
    let mut remote = ProbeAgent::connect(a.ws, token, "remote").expect("welcomed by A");
    assert_eq!(remote.store(probe_run(1..=3, now_ms() - 3_000)), 3);
    wait_for(15 * SECOND, "remote offline on B", || {
        b.host("remote").filter(|h| h["status"] == "offline").map(|_| ())
    });
    let auth = format!("Bearer {admin}");
    let removed = http(b.http, "DELETE", "/api/hosts/remote", &[("Authorization", &auth)], b"");
    assert_eq!(removed.status, 202, "{}", String::from_utf8_lossy(&removed.body));
    assert!(b.host("remote").is_none(), "removed from B");
    assert_eq!(remote.store(probe_run(4..=6, now_ms())), 6);
    wait_for(10 * SECOND, "remote back on B with its new samples", || {
        let seqs = stored_seqs(&b.db, &["remote".to_owned()]);
        (seqs[0] == [4, 5, 6] && b.host("remote").is_some()).then_some(())
    });

    // An operator's broadcast on A reaches B's viewers and activity feed too.
    let mut viewer = SseClient::connect(b.http, "/events?types=notification", &[]);
    let body = br#"{"message": "maintenance at noon"}"#;
    let sent = http(a.http, "POST", "/api/broadcast", &[("Authorization", &auth)], body);
    assert_eq!(sent.status, 202);
    assert_eq!(sent.json()["replicated"], true, "{}", String::from_utf8_lossy(&sent.body));
    let event = viewer.until(10 * SECOND, |e| e.event == "notification");
    assert_eq!(event.data["message"], "maintenance at noon", "{:?}", event.data);
    assert!(event.data["from"].as_str().unwrap().contains("through collector"), "{:?}", event.data);

    // A silence made on B holds on A too (A serves the host and sends its notifications), and
    // deleting it on A deletes it on B.
    let body = br#"{"host": "remote", "duration": "1h", "comment": "disk swap"}"#;
    let made = http(b.http, "POST", "/api/silences", &[("Authorization", &auth)], body);
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let copy = wait_for(10 * SECOND, "the silence on A", || {
        let (_, silences) = a.get_json("/api/silences");
        silences.as_array()?.iter().find(|s| s["host"] == "remote").cloned()
    });
    assert_eq!(
        (copy["comment"].as_str(), copy["active"].as_bool()),
        (Some("disk swap"), Some(true))
    );
    assert!(
        copy["origin"].as_str().is_some_and(|o| o.ends_with(&format!(":{}", made.json()["id"])))
    );
    let path = format!("/api/silences/{}", copy["id"]);
    assert_eq!(http(a.http, "DELETE", &path, &[("Authorization", &auth)], b"").status, 200);
    wait_for(10 * SECOND, "the silence gone from B", || {
        let (_, silences) = b.get_json("/api/silences");
        silences.as_array()?.is_empty().then_some(())
    });
    drop(redis);
}
