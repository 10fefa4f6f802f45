//! The README's deployment, run as written: Redis, three collectors with `--redis`, and nginx
//! with the README's `upstream hostwatch` configuration in front. Agents connect through nginx's
//! `/ingest`, viewers through its `/events`, `/live` and `/api`; every request sees every host,
//! and after a `kill -9` of one collector nginx's failover keeps requests answered and the
//! agents back on the others.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tests::nginx::{Nginx, readme_block};
use tests::*;

const SECOND: Duration = Duration::from_secs(1);

/// The README's nginx block for several collectors, listening on `addr` without TLS and with its
/// three upstream servers replaced by `collectors`' HTTP addresses.
fn deployment_config(addr: SocketAddr, collectors: &[Collector]) -> String {
    let block = readme_block("upstream hostwatch {");
    let placeholders = ["10.0.0.11:8700", "10.0.0.12:8700", "10.0.0.13:8700"];
    assert!(
        block.contains("listen 443 ssl;") && placeholders.iter().all(|p| block.contains(p)),
        "the README's deployment block changed shape:\n{block}"
    );
    block
        .lines()
        .filter(|l| !l.trim_start().starts_with("ssl_certificate"))
        .map(|l| {
            let mut line = l.replace("listen 443 ssl;", &format!("listen {addr};"));
            for (placeholder, collector) in placeholders.iter().zip(collectors) {
                line = line.replace(placeholder, &collector.http.to_string());
            }
            line + "\n"
        })
        .collect()
}

/// The hosts an SSE client sees samples of until it has seen all of `hosts`, counting only
/// samples dated from `since_ms` on.
fn sees_every_host(sse: &mut SseClient, hosts: &[String], since_ms: u64) {
    let mut seen = HashSet::new();
    sse.until(20 * SECOND, |e| {
        if e.event == "sample" && e.data["ts"].as_u64() >= Some(since_ms) {
            seen.insert(e.data["host"].as_str().unwrap_or_default().to_owned());
        }
        hosts.iter().all(|h| seen.contains(h))
    });
}

/// `GET /api/hosts` through the proxy answers 200 and lists every host in `hosts`.
fn lists_every_host(proxy: SocketAddr, hosts: &[String]) -> bool {
    let response = http(proxy, "GET", "/api/hosts", &[], b"");
    assert_eq!(response.status, 200, "GET /api/hosts through nginx");
    let listed = response.json();
    let ids: HashSet<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["id"].as_str()).collect())
        .unwrap_or_default();
    hosts.iter().all(|h| ids.contains(h.as_str()))
}

#[test]
fn three_collectors_on_redis_behind_the_readme_nginx_config_survive_a_kill() {
    let dir = temp_dir();
    let redis = RedisServer::start(dir.path());
    let token = "deployment-shared-token";
    let url = redis.url();
    let args = ["--no-self-monitor", "--agent-token", token, "--redis", &url];
    let dirs: Vec<_> = (0..3).map(|_| temp_dir()).collect();
    let mut collectors: Vec<Collector> =
        dirs.iter().map(|d| Collector::spawn(d.path(), &args)).collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    let _nginx =
        Nginx::start(&dir.path().join("nginx"), proxy, &deployment_config(proxy, &collectors));

    // Three real agents, all through nginx's /ingest: round-robin spreads them.
    let hosts: Vec<String> = (0..3).map(|i| format!("deploy-{i}")).collect();
    let ingest = format!("ws://{proxy}/ingest");
    let _agents: Vec<Agent> = hosts
        .iter()
        .map(|host| {
            let spool = dir.path().join(format!("spool-{host}"));
            Agent::spawn(&ingest, token, host, &spool, &["--interval", "250ms"])
        })
        .collect();

    // Through nginx: SSE sees every host live, /api/hosts lists every host whichever collector
    // answers, and a /live WebSocket streams samples.
    let mut sse = SseClient::connect(proxy, "/events", &[]);
    sees_every_host(&mut sse, &hosts, 0);
    wait_for(10 * SECOND, "every host listed through nginx", || {
        (0..3).all(|_| lists_every_host(proxy, &hosts)).then_some(())
    });
    let mut live = ws_connect(proxy, "/live", &[]).expect("/live through nginx");
    let sample = ws_until(&mut live, 10 * SECOND, |m| m["type"] == "sample");
    assert!(hosts.iter().any(|h| sample["host"] == h.as_str()), "{sample}");
    drop(live);
    let (_, ready) = collectors[2].get_json("/readyz");
    assert_eq!(ready["redis_up"], true, "{ready}");

    // kill -9 of one collector: nginx skips it, requests keep succeeding, and the agents it had
    // are back through nginx on the others.
    collectors[0].child.kill().expect("kill -9 collector A");
    collectors[0].child.wait().expect("reap A");
    let killed_at = now_ms();
    for _ in 0..6 {
        assert!(lists_every_host(proxy, &hosts), "every host listed after the kill");
        let ready = http(proxy, "GET", "/readyz", &[], b"");
        assert_eq!(ready.status, 200, "/readyz through nginx after the kill");
    }
    let mut sse = SseClient::connect(proxy, "/events", &[]);
    sees_every_host(&mut sse, &hosts, killed_at + 1000);
    let mut live = ws_connect(proxy, "/live", &[]).expect("/live through nginx after the kill");
    ws_until(&mut live, 10 * SECOND, |m| m["type"] == "sample");
    let (_, stats) = collectors[1].get_json("/api/stats");
    assert!(stats["redis"]["consumed_total"].as_u64() > Some(0), "stats: {stats}");
    drop(redis);
}
