//! Soak harness (issue 13; outside CI): simulated agents at 20× the default rate (a sample every
//! 50 ms, speaking the real protocol, see `tests::SimAgent`) and real `hostwatch-agent`s at 10×
//! (every 100 ms, the agent's shortest interval) against one `hostwatch-collector` with short
//! retention, for a set duration. Prints, every `--every` seconds, the collector's and the real
//! agents' resident memory, the database size (file and WAL) and the ingest rate, then a summary
//! comparing the first and last thirds of the run. Figures are recorded in RELIABILITY.md.
//!
//! ```sh
//! cargo run -p tests --example soak -- --sim 40 --real 2 --minutes 12 --every 30
//! ```
//!
//! Options (defaults): `--sim N` (40), `--real N` (2), `--minutes M` (10), `--every S` (30),
//! `--retention-raw D` (2m), `--retention-rollup D` (5m): the collector's retention, short so
//! that it applies within the run and the database size can level off.

use std::time::{Duration, Instant};

use tests::*;

struct Options {
    sim: usize,
    real: usize,
    minutes: f64,
    every: u64,
    retention_raw: String,
    retention_rollup: String,
}

fn options() -> Options {
    let mut options = Options {
        sim: 40,
        real: 2,
        minutes: 10.0,
        every: 30,
        retention_raw: "2m".into(),
        retention_rollup: "5m".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_else(|| usage(&pair[0]));
        let number = |v: &str| v.parse().unwrap_or_else(|_| usage(v));
        match pair[0].as_str() {
            "--sim" => options.sim = number(value) as usize,
            "--real" => options.real = number(value) as usize,
            "--minutes" => options.minutes = number(value),
            "--every" => options.every = (number(value) as u64).max(1),
            "--retention-raw" => options.retention_raw = value.into(),
            "--retention-rollup" => options.retention_rollup = value.into(),
            other => usage(other),
        }
    }
    options
}

fn usage(bad: &str) -> ! {
    eprintln!(
        "soak: bad argument {bad:?}; options: --sim N --real N --minutes M --every S \
         --retention-raw D --retention-rollup D"
    );
    std::process::exit(2)
}

const MIB: f64 = 1024.0 * 1024.0;

/// One line of figures.
struct Row {
    secs: u64,
    collector_rss: u64,
    agents_rss: Vec<u64>,
    db_bytes: u64,
    acked_per_s: f64,
    unacked: usize,
}

fn main() {
    let o = options();
    let dir = temp_dir();
    let mut collector = Collector::spawn(
        dir.path(),
        &[
            "--retention-raw",
            &o.retention_raw,
            "--retention-rollup",
            &o.retention_rollup,
            "--log-level",
            "info",
        ],
    );
    let token = collector.token();
    let sims: Vec<SimAgent> = (0..o.sim)
        .map(|i| {
            SimAgent::start(
                collector.ws,
                &token,
                &format!("soak-sim-{i:03}"),
                Duration::from_millis(50),
                100_000,
            )
        })
        .collect();
    let mut agents: Vec<Agent> = (0..o.real)
        .map(|i| {
            Agent::spawn(
                &collector.ingest_url(),
                &token,
                &format!("soak-real-{i}"),
                &dir.path().join(format!("spool-{i}")),
                &["--interval", "100ms"],
            )
        })
        .collect();
    println!(
        "soak: {} simulated agents every 50 ms (20x), {} real agents every 100 ms (10x), {:.1} min, \
         retention raw {} / rollups {}, collector pid {}",
        o.sim,
        o.real,
        o.minutes,
        o.retention_raw,
        o.retention_rollup,
        collector.child.id()
    );
    let start = Instant::now();
    let total = Duration::from_secs_f64(o.minutes * 60.0);
    let acked = |sims: &[SimAgent]| sims.iter().map(|s| s.report().acked).sum::<u64>();
    let (mut last_acked, mut last_at) = (acked(&sims), Instant::now());
    let mut rows = Vec::new();
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(o.every).min(total - start.elapsed()));
        let now_acked = acked(&sims);
        let row = Row {
            secs: start.elapsed().as_secs(),
            collector_rss: resident_bytes(collector.child.id()),
            agents_rss: agents.iter().map(|a| resident_bytes(a.child.id())).collect(),
            db_bytes: collector::storage::query::database_bytes(&collector.db),
            acked_per_s: (now_acked - last_acked) as f64 / last_at.elapsed().as_secs_f64(),
            unacked: sims.iter().map(|s| s.report().unacked).sum(),
        };
        (last_acked, last_at) = (now_acked, Instant::now());
        let agents_rss: Vec<String> =
            row.agents_rss.iter().map(|b| format!("{:.1}", *b as f64 / MIB)).collect();
        println!(
            "t={:>5}s collector_rss={:6.1}MiB agents_rss=[{}]MiB db={:6.1}MiB \
             sim_acked={:7.1}/s sim_unacked={}",
            row.secs,
            row.collector_rss as f64 / MIB,
            agents_rss.join(","),
            row.db_bytes as f64 / MIB,
            row.acked_per_s,
            row.unacked
        );
        rows.push(row);
        if let Ok(Some(status)) = collector.child.try_wait() {
            println!("soak: the collector exited: {status}");
            std::process::exit(1);
        }
    }
    let reports: Vec<SimReport> = sims.into_iter().map(SimAgent::stop).collect();
    let produced: u64 = reports.iter().map(|r| r.produced).sum();
    let dropped: usize = reports.iter().map(|r| r.dropped.len()).sum();
    let reconnects: usize = reports.iter().map(|r| r.connected.len().saturating_sub(1)).sum();
    let real_dropped: Vec<String> = (0..o.real)
        .map(|i| {
            collector
                .host(&format!("soak-real-{i}"))
                .map_or("?".into(), |h| h["dropped_samples"].to_string())
        })
        .collect();
    for agent in &mut agents {
        agent.terminate();
    }
    let third = (rows.len() / 3).max(1);
    let span = |pick: &dyn Fn(&Row) -> f64, rows: &[Row]| {
        let values: Vec<f64> = rows.iter().map(pick).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.1}–{:.1}", min / MIB, max / MIB)
    };
    let (first, last) = (&rows[..third], &rows[rows.len() - third..]);
    let collector_rss = |r: &Row| r.collector_rss as f64;
    let agent_rss = |r: &Row| r.agents_rss.iter().copied().max().unwrap_or(0) as f64;
    let db = |r: &Row| r.db_bytes as f64;
    println!(
        "soak summary after {:.1} min: collector RSS first third {} MiB, last third {} MiB; \
         largest agent RSS {} / {} MiB; database {} / {} MiB; simulated samples {produced} \
         produced, {dropped} dropped, {reconnects} reconnections; real agents' dropped_samples \
         {}",
        start.elapsed().as_secs_f64() / 60.0,
        span(&collector_rss, first),
        span(&collector_rss, last),
        span(&agent_rss, first),
        span(&agent_rss, last),
        span(&db, first),
        span(&db, last),
        real_dropped.join(",")
    );
}
