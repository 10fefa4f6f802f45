//! The writer's maintenance (rollups, compaction, retention) on a database shaped like the
//! 10,000-agent hold's (issue 12): `--hosts` hosts at 1 Hz for `--minutes` closed minutes,
//! their rows interleaved in arrival order as the writer stores them, each row the collector's
//! own (the benchmark agents' sample, derived and inserted by the collector's code). Then runs
//! `Maintenance::run` until it has nothing left to do and prints what it took per host-minute,
//! with the slowest steps, its CPU time and the bytes it wrote. Every minute is old by the
//! time maintenance starts, so this is the path of a replayed backlog or of a restart catching
//! up; the steady state (a minute rolled up as it closes, folded two minutes later) is the
//! benchmark's `soak10k` phase. Repeatable under `valgrind --tool=callgrind` for a profile
//! (a build with symbols: `CARGO_PROFILE_RELEASE_STRIP=false
//! CARGO_PROFILE_RELEASE_DEBUG=line-tables-only`). `MAINT_PRAGMAS='PRAGMA cache_size=-65536'`
//! runs SQL on the connection before the fill, to try SQLite's settings. Figures are in
//! BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p tests --example maintenance -- --hosts 10000 --minutes 3
//! valgrind --tool=callgrind target/release/examples/maintenance --hosts 1000 --minutes 3
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use collector::catalog::DeviceKind;
use collector::storage::maintenance::{Maintenance, Policy};
use collector::storage::{INSERT_SAMPLE, block, derive, device, insert_sample, schema};
use rusqlite::{Connection, params};

fn main() {
    let mut hosts = 10_000usize;
    let mut minutes = 3u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--hosts", Some(v)) => hosts = v as usize,
            ("--minutes", Some(v)) => minutes = v,
            _ => {
                eprintln!("usage: maintenance [--hosts N] [--minutes M]");
                std::process::exit(2);
            }
        }
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("maintenance.db");
    let mut conn = Connection::open(&path).expect("opening the database");
    schema::configure(&conn).expect("configuring the database");
    schema::migrate(&mut conn).expect("creating the schema");
    if let Ok(pragmas) = std::env::var("MAINT_PRAGMAS") {
        conn.execute_batch(&pragmas).expect("pragmas");
    }

    // Closed minutes that ended more than COMPACT_AFTER ago, so all of them are due.
    let now = collector::now_ms();
    let first_minute = now / 60_000 * 60_000 - (minutes + 3) * 60_000;
    let filled = Instant::now();
    fill(&mut conn, hosts, first_minute, minutes);
    let rows = hosts as u64 * minutes * 60;
    let fill_s = filled.elapsed().as_secs_f64();
    eprintln!("filled {rows} rows ({hosts} hosts × {minutes} min) in {fill_s:.1} s");

    let mut maintenance = Maintenance::new(Policy::default(), &conn).expect("maintenance");
    let mut steps: Vec<Duration> = Vec::new();
    let cpu_before = cpu_seconds();
    let written_before = bytes_written();
    let started = Instant::now();
    let host_minutes = hosts as u64 * minutes;
    while maintenance.compacted_minutes() < host_minutes || maintenance.next_due() <= Instant::now()
    {
        let step = Instant::now();
        maintenance.run(&mut conn).expect("maintenance step");
        steps.push(step.elapsed());
        if started.elapsed() > Duration::from_secs(3600) {
            eprintln!("gave up after an hour");
            break;
        }
    }
    let total = started.elapsed();
    let (user, system) = cpu_seconds();
    let (user, system) = (user - cpu_before.0, system - cpu_before.1);
    let written = bytes_written().saturating_sub(written_before) as f64;
    steps.sort();
    let pct = |p: f64| steps[((steps.len() as f64 * p) as usize).min(steps.len() - 1)];
    println!(
        "maintenance of {host_minutes} host-minutes ({} compacted): {:.2} s, {:.3} ms per host-minute; \
         {} steps, p50 {:.1} / p99 {:.1} / max {:.1} ms; CPU {user:.2} s user, {system:.2} s system; \
         {:.0} KiB written per host-minute (WAL and checkpoints)",
        maintenance.compacted_minutes(),
        total.as_secs_f64(),
        total.as_secs_f64() * 1000.0 / host_minutes as f64,
        steps.len(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        steps.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        written / 1024.0 / host_minutes as f64,
    );
}

/// Inserts `hosts` hosts' samples for `minutes` minutes from `first_minute`, one a second each,
/// second by second, so a host's rows are spread over the table as the writer's are (the size
/// of the transactions changes nothing of that; 1,000 rows each, for speed).
fn fill(conn: &mut Connection, hosts: usize, first_minute: u64, minutes: u64) {
    {
        let tx = conn.transaction().expect("transaction");
        for h in 1..=hosts {
            tx.execute(
                "INSERT INTO hosts (id, host_id, hostname, first_seen_ms) VALUES (?1, ?2, ?2, ?3)",
                params![h as i64, format!("host-{h}"), first_minute as i64],
            )
            .expect("host");
        }
        tx.commit().expect("commit");
    }
    let mut ids: Vec<HashMap<(DeviceKind, String), u32>> = vec![HashMap::new(); hosts];
    let mut previous: Vec<Option<protocol::Sample>> = vec![None; hosts];
    let mut eid = 1u64;
    let mut pending = 0;
    let mut tx = conn.unchecked_transaction().expect("transaction");
    // Each agent samples at its own phase of the second, unrelated to its host id (the order
    // it registered in); within a second, the writer stores samples in the order of their
    // phases, as they arrive.
    let phase = |h: usize| (h as u64 * 7_919) % hosts as u64 * 1000 / hosts as u64;
    let mut order: Vec<usize> = (0..hosts).collect();
    order.sort_by_key(|h| (phase(*h), *h));
    for second in 0..minutes * 60 {
        for &h in &order {
            let ts = first_minute + second * 1000 + phase(h);
            let sample = tests::rich_sample(second + 1, ts, 0.5, 20);
            let point = derive::derive(previous[h].as_ref(), &sample);
            let readings = device::readings(previous[h].as_ref(), &sample);
            let mut values = Vec::with_capacity(readings.len());
            for r in readings {
                let id = *ids[h].entry((r.kind, r.name.clone())).or_insert_with(|| {
                    tx.execute(
                        "INSERT INTO devices (host, kind, name, first_seen_ms) VALUES (?1, ?2, ?3, ?4)",
                        params![h as i64 + 1, r.kind.code(), r.name, ts as i64],
                    )
                    .expect("device");
                    tx.last_insert_rowid() as u32
                });
                values.push((id, r.values));
            }
            let devices = block::encode_devices(&values);
            {
                let mut insert = tx.prepare_cached(INSERT_SAMPLE).expect("insert");
                insert_sample(&mut insert, eid, h as i64 + 1, second + 1, &point, Some(&devices))
                    .expect("insert sample");
            }
            eid += 1;
            previous[h] = Some(sample);
            pending += 1;
            if pending == 1000 {
                tx.commit().expect("commit");
                tx = conn.unchecked_transaction().expect("transaction");
                pending = 0;
            }
        }
    }
    tx.commit().expect("commit");
}

/// This process's user and system CPU seconds so far (`/proc/self/stat`, in clock ticks of
/// 1/100 s).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    // After the command's closing parenthesis: state is field 0, utime 11, stime 12.
    (ticks(11), ticks(12))
}

/// Bytes this process has written with write system calls so far (`wchar` of
/// `/proc/self/io`: what SQLite handed the kernel, page cache or not).
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
