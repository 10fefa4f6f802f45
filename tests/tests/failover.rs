//! An agent given several collector addresses: when its collector dies it moves to the next
//! one, and every sample it produced is stored on one of them; a bad address in the list is
//! refused at startup, naming it.

use std::process::Command;
use std::time::Duration;

use tests::*;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn an_agent_moves_to_the_next_collector_when_its_collector_dies() {
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let token = "failover-shared-token";
    let shared = ["--no-self-monitor", "--agent-token", token];
    let mut a = Collector::spawn(dir_a.path(), &shared);
    let b = Collector::spawn(dir_b.path(), &shared);
    let list = format!("{},{}", a.ingest_url(), b.ingest_url());
    let agent = Agent::spawn(
        &list,
        token,
        "failover",
        &dir_a.path().join("spool"),
        &["--interval", "200ms"],
    );
    wait_for(10 * SECOND, "samples stored on the first collector", || {
        (stored_samples(&a.db, "failover").len() >= 5).then_some(())
    });
    assert!(stored_samples(&b.db, "failover").is_empty(), "the agent keeps its first collector");

    a.child.kill().expect("kill -9 the first collector");
    a.child.wait().expect("reap it");
    let on_a = stored_samples(&a.db, "failover");
    let last_on_a = on_a.last().expect("samples on A").0;
    let on_b = wait_for(15 * SECOND, "samples stored on the second collector", || {
        let on_b = stored_samples(&b.db, "failover");
        on_b.iter().any(|(seq, _)| *seq > last_on_a + 5).then_some(on_b)
    });
    wait_for(5 * SECOND, "the move logged", || {
        agent.log.contains(&format!("connected to {}", b.ingest_url())).then_some(())
    });
    assert!(agent.log.contains("moving from collector"), "the agent says why it moved");

    // Nothing twice on one collector, and the union has every sequence number up to B's last.
    for (name, samples) in [("A", &on_a), ("B", &on_b)] {
        let mut seqs: Vec<u64> = samples.iter().map(|s| s.0).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), samples.len(), "a sample stored twice on {name}");
    }
    let mut union: Vec<u64> = on_a.iter().chain(on_b.iter()).map(|s| s.0).collect();
    union.sort_unstable();
    union.dedup();
    let first = union[0];
    let last = *union.last().unwrap();
    let missing: Vec<u64> = (first..=last).filter(|s| union.binary_search(s).is_err()).collect();
    assert!(missing.is_empty(), "sequence numbers on neither collector: {missing:?}");
    assert!(on_b.first().unwrap().0 <= last_on_a + 1, "B continues where A stopped");
    drop(agent);
}

#[test]
fn a_bad_address_in_the_list_is_refused_at_startup() {
    let output = Command::new(binary("hostwatch-agent"))
        .env_clear()
        .args([
            "--collector",
            "ws://127.0.0.1:1/ingest,http://127.0.0.1:2/ingest",
            "--token",
            "t",
            "--host-id",
            "h",
        ])
        .output()
        .expect("running hostwatch-agent");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("collector: address 2: \"http://127.0.0.1:2/ingest\""),
        "stderr: {stderr}"
    );
}
