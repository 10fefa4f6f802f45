//! TLS end to end: the collector serves https:// and wss:// with its certificate; an agent
//! trusting the private CA (`--ca-file`) connects, and one that does not refuses to.

use std::process::Command;
use std::time::Duration;

use tests::*;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn agents_and_browsers_reach_the_collector_over_tls() {
    let dir = temp_dir();
    certificates(dir.path());
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let collector = Collector::spawn_tls(dir.path(), &cert, &key);
    assert!(collector.log.shows("https://") && collector.log.shows("wss://"));
    let url = format!("wss://localhost:{}/ingest", collector.ws.port());
    let ca = dir.path().join("ca.pem");
    let _agent = Agent::spawn(
        &url,
        &collector.token(),
        "tls-host",
        &dir.path().join("spool"),
        &["--ca-file", ca.to_str().unwrap()],
    );
    wait_for(10 * SECOND, "samples over wss://", || {
        (!stored_samples(&collector.db, "tls-host").is_empty()).then_some(())
    });

    // The API over https://, verified against the CA.
    let api = format!("https://localhost:{}/api/hosts", collector.http.port());
    let curl = Command::new("curl")
        .args(["-sS", "--fail", "--cacert", ca.to_str().unwrap(), &api])
        .output()
        .expect("curl");
    assert!(curl.status.success(), "{}", String::from_utf8_lossy(&curl.stderr));
    assert!(String::from_utf8_lossy(&curl.stdout).contains("tls-host"));
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("http://{}/api/hosts", collector.http)])
        .output()
        .unwrap();
    assert!(!plain.status.success());

    // An agent that does not trust the certificate refuses it, says so once, and retries slowly.
    let mut untrusting =
        Agent::spawn(&url, &collector.token(), "doubter", &dir.path().join("spool2"), &[]);
    wait_for(10 * SECOND, "the certificate refusal", || {
        untrusting.log.contains("certificate").then_some(())
    });
    std::thread::sleep(3 * SECOND);
    let refusals = untrusting
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("ERROR") && l.contains("certificate"))
        .count();
    assert_eq!(refusals, 1, "{:?}", untrusting.log.lines());
    assert!(stored_samples(&collector.db, "doubter").is_empty());
    assert!(untrusting.terminate().success());
}
