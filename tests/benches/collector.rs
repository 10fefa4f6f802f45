//! Collector benchmark: measures `hostwatch-collector` against the collector targets of SPEC.md
//! ("Performance targets") and prints each figure next to its target. Like the agent's footprint
//! benchmark it measures and never asserts: a missed target is a figure, not a failure.
//!
//! ```sh
//! cargo bench -p tests --bench collector                      # every phase, about 13 minutes
//! cargo bench -p tests --bench collector -- ingest history    # only the phases named
//! ```
//!
//! It builds the collector with `cargo build --release -p collector` (into `$CARGO_TARGET_DIR`
//! when that is set) and runs every phase against a fresh `hostwatch-collector --no-self-monitor`
//! on loopback ports, with a fresh database in a temporary directory. The clients are async tasks
//! in this process, on a smol executor with one thread per core, so they share the machine with
//! the collector; the output shows how much CPU each used.
//!
//! 1. `ingest`: probe agents on 100 connections send batches of 256 samples as fast as the acks
//!    come back (2 batches in flight each); acknowledged samples per second.
//! 2. `raw`: the same number of rows inserted straight into SQLite with the collector's schema,
//!    statement, values and settings (WAL, `synchronous=FULL`); the collector's rate as a share
//!    of it.
//! 3. `idle`: 5,000 agent connections that send their hello and then nothing; the growth of the
//!    collector's resident memory per connection.
//! 4. `fanout`: 1,000 SSE subscribers while ten agents send 100, then 1,000 samples per second;
//!    samples delivered to each subscriber and latency from a sample's timestamp to its arrival.
//!    Then `fanout-ref`: issue 12's fan-out comparison (`tests/src/fanout.rs`): 100 agents at 1 Hz
//!    to 1,000 viewers, then the rate doubled every 5 s until p99 passes 100 ms, against
//!    hostwatch (SSE) and the reference broadcasters of `bench/ref-broadcaster/` (Node's `ws`,
//!    Python's `websockets`; `npm ci` there first) in the same run: deliveries per second and per
//!    CPU-second of the broadcaster process, p50/p99/max and the saturation rate of each.
//! 5. `scale`: 2,000, 5,000, then 10,000 agents at 1 Hz and one SSE subscriber; latency from a
//!    sample's timestamp to its arrival at the subscriber. Each point runs three times, each
//!    with a fresh collector, and every run's p50/p99/max, ack p99 and the writer's slow
//!    transactions (from `hostwatch_collector_commit_seconds`) are printed side by side.
//! 6. `history`: 24 h of 1 s samples of one host, then `GET /api/hosts/{id}/history` at a
//!    60 s step (1,440 points, from the rollups) and a 90 s step (from raw points).
//! 7. `storage`: 24 h of one realistic host at 1 s (4 cores, 3 interfaces, 4 mounts, 2 disks,
//!    3 sensors, counters with noise and bursts, timestamps with jitter) through ingest, until
//!    every minute is compacted; bytes per stored value and per host-day from SQLite's `dbstat`,
//!    beside schema 1's bytes for the same samples; the history of that day at a 60 s step, and
//!    30 days at a 1 h step (the 29 days before it are copies of its hourly rollups).
//! 8. `page`: 1,000 agents at 1 Hz, the overview open in Debian's chromium (playwright-core,
//!    `tests/browser/page.bench.mjs`) for 60 s: frames per second and frame intervals, the
//!    longest main-thread task, and the page's JS heap at the start and the end.
//! 9. `replication`: the same total load on one collector, then on three collectors sharing
//!    one Redis (`--redis`): acknowledged samples per second, CPU per collector and Redis, ack
//!    times, and the first collector's samples' arrival on its own SSE and on the third's.
//! 10. `soak10k`, only when named (it takes about 11 minutes): 10,000 agents at 1 Hz held for
//!     10 minutes, so the first rollups, compactions, checkpoints and retention steps happen
//!     inside the window; latency, ack p99 and the writer's histograms for each minute.
//!
//! Sizes can be changed with `HOSTWATCH_BENCH_*` environment variables (defaults in brackets):
//! `INGEST_CONNECTIONS` [100], `INGEST_WINDOW` [2], `INGEST_SECONDS` [20], `IDLE_CONNECTIONS`
//! [5000], `IDLE_PORT` [ws; `http` for agents upgrading on the --http port], `SUBSCRIBERS` [1000], `FANOUT_RATES` [100,1000], `FANOUT_SECONDS` [10],
//! `SCALE_AGENTS` [2000,5000,10000], `SCALE_SECONDS` [20], `SCALE_REPEATS` [3],
//! `SOAK_AGENTS` [10000], `SOAK_MINUTES` [10], `HISTORY_REPEATS` [20],
//! `STORAGE_HOURS` [24] (the quick check in CI-sized runs: `HOSTWATCH_BENCH_STORAGE_HOURS=1`),
//! `PAGE_HOSTS` [1000], `PAGE_SECONDS` [60], `REPLICATION_AGENTS` [300], `REPLICATION_RATE` [3000],
//! `REPLICATION_SECONDS` [20]; and for `fanout-ref`, `HOSTWATCH_BENCH_REF_AGENTS`
//! [100], `_VIEWERS` [1000], `_STEPS` [8], `_STEP_SECONDS` [5], `_FIRST_HZ` [1].
//! `HOSTWATCH_BENCH_COLLECTOR=PATH` runs that collector binary instead of building one (a build
//! with symbols, for `perf`).
//!
//! Exit status: 0 when every phase it ran was measured, targets met or not; 1 when a phase could
//! not be measured (the table then says why).

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use collector::storage::derive::{Point, derive};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use protocol::{AgentMessage, CollectorMessage, Sample};
use rusqlite::{Connection, params};
use smol::channel::{Receiver, Sender};
use smol::net::TcpStream;
use smol::{Executor, Timer};

/// Samples per batch: the protocol's maximum, as an agent replaying its spool sends them.
const BATCH: usize = protocol::Limits::MAX_SAMPLES_PER_BATCH;
/// Time given to every phase to settle before its measured window starts.
const WARM_UP: Duration = Duration::from_secs(3);
/// Longest wait for any single answer from the collector.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Handshakes (TCP, WebSocket upgrade, hello, welcome) in progress at once while connecting.
const CONNECTING_AT_ONCE: usize = 64;
/// Longest time to open all connections of a phase.
const CONNECT_BUDGET: Duration = Duration::from_secs(180);

const PHASES: [&str; 11] = [
    "ingest",
    "raw",
    "idle",
    "fanout",
    "fanout-ref",
    "scale",
    "history",
    "storage",
    "page",
    "replication",
    "soak10k",
];
/// Phases run only when named: the 10-minute hold would double the default run.
const ON_REQUEST: [&str; 1] = ["soak10k"];

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; anything else not starting with `-` names a phase.
    let named: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if let Some(unknown) = named.iter().find(|n| !PHASES.contains(&n.as_str())) {
        eprintln!("unknown phase {unknown:?}; the phases are {}", PHASES.join(", "));
        return ExitCode::from(2);
    }
    let wanted = |phase: &str| {
        (named.is_empty() && !ON_REQUEST.contains(&phase)) || named.iter().any(|n| n == phase)
    };
    print_machine();
    let binary = match build_collector() {
        Ok(binary) => binary,
        Err(err) => {
            eprintln!("cannot build the collector: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = Runtime::new(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut table = Table::default();
    let mut ingest = None;
    if wanted("ingest") {
        table.phase("ingest", || {
            let (figures, rows) = durable_ingest(&runtime, &binary)?;
            ingest = Some(figures);
            Ok(rows)
        });
    }
    if wanted("raw") {
        table.phase("raw", || raw_sqlite(ingest.as_ref()));
    }
    if wanted("idle") {
        table.phase("idle", || idle_memory(&runtime, &binary));
    }
    if wanted("fanout") {
        table.phase("fanout", || fan_out(&runtime, &binary));
    }
    if wanted("fanout-ref") {
        table.phase("fanout-ref", || fan_out_against_references(&binary));
    }
    if wanted("scale") {
        table.phase("scale", || latency_at_scale(&runtime, &binary));
    }
    if wanted("history") {
        table.phase("history", || history_query(&binary));
    }
    if wanted("storage") {
        table.phase("storage", || storage_footprint(&binary));
    }
    if wanted("page") {
        table.phase("page", || page_overview(&runtime, &binary));
    }
    if wanted("replication") {
        table.phase("replication", || replication(&runtime, &binary));
    }
    if wanted("soak10k") {
        table.phase("soak10k", || soak(&runtime, &binary));
    }
    drop(runtime);
    table.print();
    if table.failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: durable ingest

/// What the ingest phase measured; the raw SQLite phase inserts the same rows.
struct Ingest {
    connections: usize,
    window: usize,
    /// Samples acknowledged in the measured window.
    acked: u64,
    rate: f64,
}

/// Many connections, each sending full batches as fast as acks come back; an ack means the
/// batch is committed, so acknowledged samples per second is the durable ingest rate.
fn durable_ingest(runtime: &Runtime, binary: &Path) -> anyhow::Result<(Ingest, Vec<Row>)> {
    let connections = knob("INGEST_CONNECTIONS", 100);
    let window = knob("INGEST_WINDOW", 2);
    let seconds = knob("INGEST_SECONDS", 20) as u64;
    let collector = CollectorProcess::start(binary, &[])?;
    println!(
        "ingest: {connections} connections, {window} batches of {BATCH} samples in flight each, \
         {}s warm-up, {seconds}s measured",
        WARM_UP.as_secs()
    );
    let (agents, failures) = connect_all(runtime, &collector, "bench-ingest", connections, 1000);
    ensure!(
        failures.is_empty(),
        "{} of {connections} agents not admitted: {}",
        failures.len(),
        failures[0]
    );
    // Timestamps 1 s apart reaching back 12 h, like an agent replaying its spool after an
    // outage, so rates are derived and maintenance sees realistic data.
    let first_ts = tests::now_ms() - 12 * 3_600_000;
    let acked = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + WARM_UP + Duration::from_secs(seconds);
    let tasks: Vec<_> = agents
        .into_iter()
        .map(|agent| runtime.spawn(pump_batches(agent, window, first_ts, until, acked.clone())))
        .collect();
    std::thread::sleep(WARM_UP);
    let (before, started, cpu) =
        (acked.load(Ordering::Relaxed), Instant::now(), CpuWindow::start(collector.pid()));
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let (after, elapsed) = (acked.load(Ordering::Relaxed), started.elapsed());
    let cpu = cpu.finish();
    let errors: Vec<String> =
        smol::block_on(join_all(tasks)).into_iter().filter_map(Result::err).collect();
    let rss = tests::resident_bytes(collector.pid());
    let warnings = collector.stop();
    let acked = after - before;
    let rate = acked as f64 / elapsed.as_secs_f64();
    println!(
        "  acknowledged {acked} samples in {:.1}s: {} samples/s",
        elapsed.as_secs_f64(),
        group(rate)
    );
    println!("  {cpu}");
    println!("  collector RSS at the end: {:.1} MiB", rss as f64 / 1048576.0);
    report_problems(&errors, &warnings);
    ensure!(acked > 0, "no batch was acknowledged");
    let figures = Ingest { connections, window, acked, rate };
    let rows = vec![Row::new(
        "durable ingest (samples/s acked)",
        group(rate),
        ">= 100,000",
        Some(rate >= 100_000.0),
    )];
    Ok((figures, rows))
}

/// Sends batches on one connection, keeping `window` unacknowledged, until `until`; then waits
/// for the last acks and closes. Counts acknowledged samples into `acked`.
async fn pump_batches(
    mut agent: Agent,
    window: usize,
    first_ts: u64,
    until: Instant,
    acked: Arc<AtomicU64>,
) -> Result<(), String> {
    // Last sequence number of each batch in flight, oldest first.
    let mut in_flight = VecDeque::new();
    loop {
        while in_flight.len() < window && Instant::now() < until {
            let samples: Vec<Sample> = (0..BATCH)
                .map(|_| {
                    let seq = agent.take_seq();
                    bench_sample(seq, first_ts + seq * 1000)
                })
                .collect();
            agent.send_batch(samples).await?;
            in_flight.push_back(agent.next_seq - 1);
        }
        if in_flight.is_empty() {
            break;
        }
        match within(ANSWER_TIMEOUT, agent.receive()).await {
            Some(Ok(CollectorMessage::Ack(ack))) => {
                while in_flight.front().is_some_and(|&last| last <= ack.seq) {
                    in_flight.pop_front();
                    acked.fetch_add(BATCH as u64, Ordering::Relaxed);
                }
            }
            Some(Ok(other)) => {
                return Err(format!("{}: expected an ack, got {other:?}", agent.host_id));
            }
            Some(Err(err)) => return Err(format!("{}: {err}", agent.host_id)),
            None => return Err(format!("{}: no ack within {ANSWER_TIMEOUT:?}", agent.host_id)),
        }
    }
    agent.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 2: raw SQLite

/// One result of inserting rows straight into SQLite.
struct RawRun {
    rows_per_transaction: usize,
    rows: u64,
    rate: f64,
}

/// Inserts the rows the ingest phase acknowledged straight into a fresh database with the
/// collector's schema: once with one batch per transaction and once with every batch the ingest
/// phase had in flight in one transaction (the most the collector's writer could fold into one).
/// Only the transactions are timed; building and deriving the rows is not SQLite's work.
fn raw_sqlite(ingest: Option<&Ingest>) -> anyhow::Result<Vec<Row>> {
    // Without an ingest phase in this run, the default ingest shape and a fixed row count.
    let (rows, hosts, window, collector_rate) = match ingest {
        Some(i) => (i.acked, i.connections, i.window, Some(i.rate)),
        None => (2_000_000, 100, 2, None),
    };
    let largest = hosts * window * BATCH;
    println!("raw: {rows} rows over {hosts} hosts, straight into SQLite");
    let mut runs = Vec::new();
    for rows_per_transaction in [BATCH, largest] {
        let run = insert_rows(rows, hosts, rows_per_transaction)?;
        println!(
            "  {:>6} rows per transaction: {} rows in {:.1}s of transactions: {} rows/s",
            run.rows_per_transaction,
            run.rows,
            run.rows as f64 / run.rate,
            group(run.rate)
        );
        runs.push(run);
    }
    let mut table = Vec::new();
    for run in &runs {
        table.push(Row::new(
            &format!(
                "raw SQLite insert, {} rows/tx (rows/s)",
                group(run.rows_per_transaction as f64)
            ),
            group(run.rate),
            "-",
            None,
        ));
    }
    let best = runs.iter().map(|r| r.rate).fold(0.0, f64::max);
    if let Some(rate) = collector_rate {
        let share = rate / best * 100.0;
        let shares: Vec<String> = runs
            .iter()
            .map(|r| {
                format!("{:.0} % of the {}-row run", rate / r.rate * 100.0, r.rows_per_transaction)
            })
            .collect();
        // The faster run is the reference: the collector is free to batch as it likes.
        println!("  collector / raw: {} (the faster run is the figure)", shares.join(", "));
        table.push(Row::new(
            "collector / raw SQLite",
            format!("{share:.0} %"),
            ">= 50 %",
            Some(share >= 50.0),
        ));
    }
    Ok(table)
}

/// One `samples` row as the collector computes it.
struct SampleRow {
    eid: i64,
    host: i64,
    seq: i64,
    point: Point,
    /// Per-device values, encoded as the collector stores them in a plain row.
    devices: Option<Vec<u8>>,
}

/// Inserts `rows` rows spread over `hosts` hosts in batches of [`BATCH`] (a host's batch is
/// consecutive samples, as an agent sends them), `rows_per_transaction` to a transaction.
fn insert_rows(rows: u64, hosts: usize, rows_per_transaction: usize) -> anyhow::Result<RawRun> {
    let dir = tempfile::Builder::new().prefix("hostwatch-bench-raw-").tempdir()?;
    let mut conn = Connection::open(dir.path().join("raw.db"))?;
    // The collector's own connection setup and migration: WAL, synchronous=FULL, foreign keys.
    collector::storage::schema::configure(&conn)?;
    collector::storage::schema::migrate(&mut conn)?;
    for host in 1..=hosts {
        conn.execute(
            "INSERT INTO hosts (id, host_id, hostname, first_seen_ms) VALUES (?1, ?2, ?2, 0)",
            params![host as i64, format!("bench-raw-{host}")],
        )?;
    }
    let first_ts = tests::now_ms() - 12 * 3_600_000;
    let mut previous: Vec<Option<Sample>> = vec![None; hosts];
    let mut next_seq = vec![1u64; hosts];
    let (mut eid, mut host, mut inserted) = (1i64, 0usize, 0u64);
    let mut timed = Duration::ZERO;
    let budget = Instant::now() + Duration::from_secs(120);
    while inserted < rows && Instant::now() < budget {
        let mut pending = Vec::with_capacity(rows_per_transaction);
        while pending.len() < rows_per_transaction && inserted + (pending.len() as u64) < rows {
            for _ in 0..BATCH {
                let seq = next_seq[host];
                next_seq[host] += 1;
                let sample = bench_sample(seq, first_ts + seq * 1000);
                let point = derive(previous[host].as_ref(), &sample);
                let readings =
                    collector::storage::device::readings(previous[host].as_ref(), &sample);
                // The collector numbers devices by their rows in `devices`; any numbers will do.
                let values: Vec<(u32, Vec<Option<i64>>)> = readings
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (i as u32 + 1, r.values))
                    .collect();
                let devices = (!values.is_empty())
                    .then(|| collector::storage::block::encode_devices(&values));
                previous[host] = Some(sample);
                pending.push(SampleRow {
                    eid,
                    host: host as i64 + 1,
                    seq: seq as i64,
                    point,
                    devices,
                });
                eid += 1;
            }
            host = (host + 1) % hosts;
        }
        let started = Instant::now();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(collector::storage::INSERT_SAMPLE)?;
            for row in &pending {
                insert_row(&mut insert, row)?;
            }
        }
        tx.commit()?;
        timed += started.elapsed();
        inserted += pending.len() as u64;
    }
    Ok(RawRun { rows_per_transaction, rows: inserted, rate: inserted as f64 / timed.as_secs_f64() })
}

/// Binds a row with the collector's own binding.
fn insert_row(
    insert: &mut rusqlite::CachedStatement<'_>,
    row: &SampleRow,
) -> rusqlite::Result<usize> {
    collector::storage::insert_sample(
        insert,
        row.eid as u64,
        row.host,
        row.seq as u64,
        &row.point,
        row.devices.as_deref(),
    )
}

// ---------------------------------------------------------------------------------------------
// Phase 3: memory per idle agent connection

/// Opens many agent connections that say hello and then stay silent, and divides the growth of
/// the collector's resident memory by their number.
fn idle_memory(runtime: &Runtime, binary: &Path) -> anyhow::Result<Vec<Row>> {
    let count = knob("IDLE_CONNECTIONS", 5000);
    // `HOSTWATCH_BENCH_IDLE_PORT=http`: the agents upgrade on the --http port (one port for
    // everything, as the README's agent command line has it) instead of --ws.
    let on_http = std::env::var("HOSTWATCH_BENCH_IDLE_PORT").is_ok_and(|p| p == "http");
    let mut collector = CollectorProcess::start(binary, &[])?;
    if on_http {
        collector.ws = collector.http;
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = tests::resident_bytes(collector.pid());
    let started = Instant::now();
    // A 60 s interval in the hello: the collector closes an agent silent for ten intervals (at
    // least 60 s), and connecting thousands takes a while; the measurement must not race that.
    let (agents, failures) = connect_all(runtime, &collector, "bench-idle", count, 60_000);
    let connecting = started.elapsed();
    // Registrations, activity rows and hub bookkeeping settle within a moment.
    std::thread::sleep(Duration::from_secs(3));
    let after = tests::resident_bytes(collector.pid());
    let stats = collector.stats();
    let welcomed = agents.len();
    println!(
        "idle: {welcomed} of {count} connections welcomed on --{} in {:.1}s; the collector counts {} agents",
        if on_http { "http" } else { "ws" },
        connecting.as_secs_f64(),
        stats["agents_connected"]
    );
    let per_connection = after.saturating_sub(before) as f64 / welcomed.max(1) as f64 / 1024.0;
    println!(
        "  RSS {:.1} MiB before, {:.1} MiB after: {per_connection:.1} KiB per connection",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    println!("  {}", memory_details(collector.pid()));
    drop(agents);
    let warnings = collector.stop();
    report_problems(&failures, &warnings);
    ensure!(welcomed > 0, "no connection was welcomed");
    Ok(vec![
        Row::new(
            if on_http {
                "memory per idle agent connection on --http (KiB)"
            } else {
                "memory per idle agent connection (KiB)"
            },
            format!("{per_connection:.1}"),
            "<= 16",
            Some(per_connection <= 16.0),
        ),
        Row::new("idle connections welcomed", format!("{welcomed} / {count}"), "-", None),
    ])
}

// ---------------------------------------------------------------------------------------------
// Phase 4: fan-out to 1,000 subscribers

/// Opens many SSE subscribers, has a few agents send samples at a steady rate, and checks that
/// every subscriber receives every stored sample, and how late. Runs once per rate in
/// `FANOUT_RATES`, each with a fresh collector.
fn fan_out(runtime: &Runtime, binary: &Path) -> anyhow::Result<Vec<Row>> {
    let subscribers = knob("SUBSCRIBERS", 1000);
    let seconds = knob("FANOUT_SECONDS", 10) as u64;
    let rates = std::env::var("HOSTWATCH_BENCH_FANOUT_RATES").unwrap_or_else(|_| "100,1000".into());
    let mut rows = Vec::new();
    for rate in rates.split(',') {
        let rate: u64 = rate.trim().parse().context("HOSTWATCH_BENCH_FANOUT_RATES")?;
        rows.extend(fan_out_at(runtime, binary, subscribers, rate, seconds)?);
    }
    Ok(rows)
}

/// One fan-out run: `subscribers` SSE streams, ten agents sending `rate` samples per second
/// together for `seconds`.
fn fan_out_at(
    runtime: &Runtime,
    binary: &Path,
    subscribers: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Vec<Row>> {
    let agents = 10;
    let collector = CollectorProcess::start(binary, &[])?;
    println!(
        "fanout: {subscribers} SSE subscribers; {agents} agents sending {rate} samples/s together for {seconds}s"
    );
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let audience = Arc::new(Audience::default());
    audience.to_ms.store(u64::MAX, Ordering::Relaxed);
    let readers: Vec<_> = (0..subscribers)
        .map(|_| runtime.spawn(subscribe(collector.http, stopped.clone(), audience.clone(), false)))
        .collect();
    let deadline = Instant::now() + CONNECT_BUDGET;
    let streaming = || audience.streaming.load(Ordering::Relaxed);
    while streaming() < subscribers && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let counted = collector.stats()["subscribers"].as_u64().unwrap_or(0);
    println!("  {} subscribers streaming; the collector counts {counted}", streaming());

    let (senders, failures) = connect_all(runtime, &collector, "bench-fanout", agents, 1000);
    ensure!(!senders.is_empty(), "no agent was admitted: {}", failures.join("; "));
    let period = Duration::from_secs_f64(senders.len() as f64 / rate as f64);
    let (agents_stop, agents_stopped) = smol::channel::bounded::<()>(1);
    let cpu = CpuWindow::start(collector.pid());
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, agent)| {
            let offset = period.mul_f64(i as f64 / agents as f64);
            let recording = Arc::new(AtomicBool::new(true));
            runtime.spawn(steady_agent(agent, period, offset, agents_stopped.clone(), recording))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    drop(agents_stop);
    let cpu = cpu.finish();
    let sent: Vec<Steady> = smol::block_on(join_all(tasks));
    let acked: u64 = sent.iter().map(|s| s.acked).sum();
    let unacked: u64 = sent.iter().map(|s| s.sent - s.acked).sum();
    let sent_total = acked + unacked;
    let mut acks: Vec<u32> = sent.iter().flat_map(|s| s.ack_ms.iter().copied()).collect();
    let ack = Percentiles::of(&mut acks);

    // Every stored sample is owed to every subscriber. Wait until they have them all, or
    // nothing has arrived for 5 s (lagged subscribers, a stuck collector), at most 60 s.
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (u64::MAX, Instant::now());
    loop {
        let stored = collector.stored_samples()?;
        let total = audience.delivered.load(Ordering::Relaxed);
        if total >= stored * streaming() as u64 || Instant::now() > drain_deadline {
            break;
        }
        if total != last.0 {
            last = (total, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stop);
    let seen: Vec<Seen> = smol::block_on(join_all(readers));
    let stored = collector.stored_samples()?;
    let stats = collector.stats();
    let warnings = collector.stop();

    let mut delivered: Vec<u64> = seen.iter().map(|s| s.samples).collect();
    delivered.sort_unstable();
    // Nothing undelivered: every sample an agent sent reached every subscriber within the
    // phase. A sample the collector did not even read before the agents gave up counts as
    // undelivered too (a real agent would resend it, later still).
    let complete = seen.iter().filter(|s| s.error.is_none() && s.samples >= sent_total).count();
    // The rate counts as offered when the agents sent at least 90 % of it: a tick that comes
    // late (a saturated machine, a collector slow to read) is skipped, not made up for.
    let intended = rate * seconds;
    let offered = sent_total * 10 >= intended * 9;
    let lagged = seen.iter().filter(|s| s.lagged > 0).count();
    let failed = seen.iter().filter(|s| s.error.is_some()).count();
    let mut latencies: Vec<u32> =
        seen.iter().flat_map(|s| s.latencies_ms.iter().copied()).collect();
    let latency = Percentiles::of(&mut latencies);
    println!(
        "  {sent_total} samples sent, {stored} stored ({acked} acknowledged within 10 s of the \
         end); delivered per subscriber: min {} / median {} / max {}",
        delivered.first().unwrap_or(&0),
        delivered.get(delivered.len() / 2).unwrap_or(&0),
        delivered.last().unwrap_or(&0)
    );
    println!(
        "  the agents sent {sent_total} of the {intended} samples intended ({}); late ticks are \
         skipped",
        if offered { "the rate was offered" } else { "the rate was NOT offered" }
    );
    println!(
        "  {complete} of {subscribers} subscribers got every sample sent; {lagged} were told they \
         lagged, {failed} failed otherwise; the collector counts {} dropped as lagged",
        stats["subscribers_lagged_total"]
    );
    println!("  latency from sample ts to arrival: {latency}");
    println!("  agent send -> ack: {ack}");
    println!("  {cpu}");
    let errors: Vec<String> = seen.iter().filter_map(|s| s.error.clone()).collect();
    report_problems(&errors, &warnings);
    ensure!(stored > 0, "no sample was stored");
    Ok(vec![
        Row::new(
            &format!("fan-out at {rate}/s: subscribers with every sample"),
            format!("{complete} / {subscribers}"),
            &format!("{subscribers} / {subscribers}"),
            Some(complete == subscribers && subscribers >= 1000 && offered),
        ),
        Row::new(
            &format!("fan-out at {rate}/s: samples stored / sent / intended"),
            format!("{stored} / {sent_total} / {intended}"),
            "sent >= 90 % of intended",
            Some(offered),
        ),
        Row::new(&format!("fan-out at {rate}/s: ts -> arrival (ms)"), latency.short(), "-", None),
    ])
}

/// What the subscribers of a phase share.
#[derive(Default)]
struct Audience {
    /// Samples stamped in `[from_ms, to_ms)` (unix ms), the measured window, have their latency
    /// recorded, however late they arrive.
    from_ms: AtomicU64,
    to_ms: AtomicU64,
    /// Subscribers whose stream has started.
    streaming: AtomicUsize,
    /// Sample events delivered to all of them, to see when they have drained.
    delivered: AtomicU64,
    /// Whether each recorded latency also keeps its sample's `ts` (for figures per minute).
    timeline: AtomicBool,
}

/// What one SSE subscriber saw.
#[derive(Default)]
struct Seen {
    samples: u64,
    /// Arrival minus the sample's `ts`, for samples that arrived while recording.
    latencies_ms: Vec<u32>,
    /// The `ts` of each of `latencies_ms`, when the audience keeps a timeline.
    stamps_ms: Vec<u64>,
    /// Times the collector dropped it as too slow (`lagged`).
    lagged: u32,
    error: Option<String>,
}

/// How a stream ended.
enum Ended {
    /// The phase is over.
    Stopped,
    /// The collector sent `lagged` and closed the stream.
    Lagged,
    /// Anything else: the collector closed the stream or a read failed.
    Broken(String),
}

/// One SSE subscriber to `/events?types=sample` on a raw socket: counts sample events and
/// records how late they arrive until `stopped` closes. With `resume`, it reconnects after a
/// `lagged` with the last event id it saw, as a browser does; otherwise a `lagged` ends it.
async fn subscribe(
    http: SocketAddr,
    stopped: Receiver<()>,
    audience: Arc<Audience>,
    resume: bool,
) -> Seen {
    subscribe_to(http, "types=sample".into(), stopped, audience, resume).await
}

/// [`subscribe`] to `/events?{query}`.
async fn subscribe_to(
    http: SocketAddr,
    query: String,
    stopped: Receiver<()>,
    audience: Arc<Audience>,
    resume: bool,
) -> Seen {
    let mut seen = Seen::default();
    let mut last_id = None;
    loop {
        let (stream, buffer) = match within(ANSWER_TIMEOUT, open_sse(http, &query, last_id)).await {
            Some(Ok(opened)) => opened,
            Some(Err(err)) => {
                seen.error = Some(err);
                return seen;
            }
            None => {
                seen.error = Some("no SSE response in time".into());
                return seen;
            }
        };
        if seen.lagged == 0 {
            audience.streaming.fetch_add(1, Ordering::Relaxed);
        }
        match read_events(stream, buffer, &stopped, &audience, &mut seen, &mut last_id).await {
            Ended::Stopped => return seen,
            Ended::Lagged if resume => {}
            Ended::Lagged => return seen,
            Ended::Broken(err) => {
                seen.error = Some(err);
                return seen;
            }
        }
    }
}

/// Reads one SSE stream until it ends or `stopped` closes, tallying into `seen`.
async fn read_events(
    mut stream: TcpStream,
    mut buffer: Vec<u8>,
    stopped: &Receiver<()>,
    audience: &Audience,
    seen: &mut Seen,
    last_id: &mut Option<u64>,
) -> Ended {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut lagged = false;
    loop {
        // A frame ends with a blank line; handle every complete one in the buffer.
        let mut start = 0;
        while let Some(end) = find(&buffer[start..], b"\n\n") {
            let (id, frame) = sse_frame(&buffer[start..start + end]);
            start += end + 2;
            *last_id = id.or(*last_id);
            match frame {
                Frame::Sample { ts } => {
                    seen.samples += 1;
                    audience.delivered.fetch_add(1, Ordering::Relaxed);
                    let window = audience.from_ms.load(Ordering::Relaxed)
                        ..audience.to_ms.load(Ordering::Relaxed);
                    if window.contains(&ts) {
                        seen.latencies_ms.push(tests::now_ms().saturating_sub(ts) as u32);
                        if audience.timeline.load(Ordering::Relaxed) {
                            seen.stamps_ms.push(ts);
                        }
                    }
                }
                Frame::Lagged => {
                    seen.lagged += 1;
                    lagged = true;
                }
                Frame::Other => {}
            }
        }
        buffer.drain(..start);
        let read = async { Some(stream.read(&mut chunk).await) };
        let stop = async {
            // Resolves when the phase closes the channel.
            let _ = stopped.recv().await;
            None
        };
        match read.or(stop).await {
            Some(Ok(0)) if lagged => return Ended::Lagged,
            Some(Ok(0)) => return Ended::Broken("the collector ended the stream".into()),
            Some(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            Some(Err(err)) => return Ended::Broken(format!("reading the stream: {err}")),
            None => return Ended::Stopped,
        }
    }
}

/// Opens `GET /events?types=sample` (resuming after `last_id`, if any) and returns the stream
/// after the response head, with any bytes of the body already read.
async fn open_sse(
    http: SocketAddr,
    query: &str,
    last_id: Option<u64>,
) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = TcpStream::connect(http).await.map_err(|e| format!("connect: {e}"))?;
    let resume = last_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    let request = format!(
        "GET /events?{query} HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n{resume}\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("request: {e}"))?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("response: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]);
            let status = head.lines().next().unwrap_or("").to_owned();
            if !status.contains(" 200 ") {
                return Err(format!("SSE refused: {status}"));
            }
            return Ok((stream, buffer.split_off(end + 4)));
        }
        if buffer.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
    }
}

/// The part of an SSE frame the benchmark cares about.
enum Frame {
    Sample { ts: u64 },
    Lagged,
    Other,
}

/// Reads an SSE frame's `id:`, `event:` and, for samples, the `ts` of its JSON `data:`. A byte
/// scan, not a JSON parse: a thousand subscribers must not make the benchmark the bottleneck.
fn sse_frame(frame: &[u8]) -> (Option<u64>, Frame) {
    let (mut id, mut kind, mut data): (Option<u64>, &[u8], &[u8]) = (None, b"message", b"");
    for line in frame.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"id: ") {
            id = std::str::from_utf8(rest).ok().and_then(|v| v.trim().parse().ok());
        } else if let Some(rest) = line.strip_prefix(b"event: ") {
            kind = rest;
        } else if let Some(rest) = line.strip_prefix(b"data: ") {
            data = rest;
        }
    }
    let frame = match kind {
        b"sample" => json_u64(data, b"\"ts\":").map_or(Frame::Other, |ts| Frame::Sample { ts }),
        b"lagged" => Frame::Lagged,
        _ => Frame::Other,
    };
    (id, frame)
}

/// The unsigned integer right after `key` in `json`.
fn json_u64(json: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(json, key)? + key.len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&json[at..at + digits]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What one steadily sending agent did.
#[derive(Default)]
struct Steady {
    sent: u64,
    acked: u64,
    /// Samples sent while recording.
    sent_recorded: u64,
    /// Send-to-ack times of samples sent while recording.
    ack_ms: Vec<u32>,
    /// When each of `ack_ms`'s samples was sent (unix ms).
    ack_sent_ms: Vec<u64>,
    error: Option<String>,
}

/// Sends one sample stamped with the send time every `period` (the first after `offset`),
/// reading acks in between, until `stopped` closes; then waits a little for the last acks.
async fn steady_agent(
    mut agent: Agent,
    period: Duration,
    offset: Duration,
    stopped: Receiver<()>,
    recording: Arc<AtomicBool>,
) -> Steady {
    enum Step {
        Send,
        Message(Result<CollectorMessage, String>),
        Stop,
    }
    let mut steady = Steady::default();
    // Sequence number and send time of each sample not yet acknowledged.
    let mut unacked: VecDeque<(u64, Instant, bool)> = VecDeque::new();
    let mut next = Instant::now() + offset;
    let mut stopping: Option<Instant> = None;
    loop {
        let tick = async {
            match stopping {
                Some(_) => std::future::pending().await,
                None => {
                    Timer::at(next).await;
                    Step::Send
                }
            }
        };
        let message = async { Step::Message(agent.receive().await) };
        let stop = async {
            match stopping {
                Some(give_up) => {
                    Timer::at(give_up).await;
                }
                None => {
                    // Resolves when the phase closes the channel.
                    let _ = stopped.recv().await;
                }
            }
            Step::Stop
        };
        match tick.or(message).or(stop).await {
            Step::Send => {
                // A late tick (a busy machine) is not made up for: a real agent samples on time.
                next = (next + period).max(Instant::now());
                let seq = agent.take_seq();
                let sample = bench_sample(seq, tests::now_ms());
                if let Err(err) = agent.send_batch(vec![sample]).await {
                    steady.error = Some(err);
                    break;
                }
                steady.sent += 1;
                let recorded = recording.load(Ordering::Relaxed);
                steady.sent_recorded += u64::from(recorded);
                unacked.push_back((seq, Instant::now(), recorded));
            }
            Step::Message(Ok(CollectorMessage::Ack(ack))) => {
                while let Some(&(seq, sent_at, recorded)) = unacked.front() {
                    if seq > ack.seq {
                        break;
                    }
                    unacked.pop_front();
                    steady.acked += 1;
                    if recorded {
                        let took = sent_at.elapsed().as_millis() as u32;
                        steady.ack_ms.push(took);
                        steady.ack_sent_ms.push(tests::now_ms().saturating_sub(u64::from(took)));
                    }
                }
                if stopping.is_some() && unacked.is_empty() {
                    break;
                }
            }
            Step::Message(Ok(other)) => {
                steady.error = Some(format!("{}: unexpected {other:?}", agent.host_id));
                break;
            }
            Step::Message(Err(err)) => {
                steady.error = Some(format!("{}: {err}", agent.host_id));
                break;
            }
            Step::Stop if stopping.is_none() && !unacked.is_empty() => {
                stopping = Some(Instant::now() + Duration::from_secs(10));
            }
            Step::Stop => break,
        }
    }
    agent.close().await;
    steady
}

// ---------------------------------------------------------------------------------------------
// Phase 4b: fan-out against the reference broadcasters

/// `tests::fanout`'s comparison at full size (or `HOSTWATCH_BENCH_REF_*`): hostwatch, Node's
/// `ws` and Python's `websockets` in the same run, one after the other.
fn fan_out_against_references(binary: &Path) -> anyhow::Result<Vec<Row>> {
    use tests::fanout::{Broadcaster, Sizes, compare, print_table};
    let sizes = Sizes::from_env(Sizes::full())?;
    let broadcasters = [
        Broadcaster::Hostwatch(binary.to_owned()),
        Broadcaster::NodeWs,
        Broadcaster::PythonWebsockets,
    ];
    let reports = compare(&sizes, &broadcasters);
    println!();
    print_table(&reports);
    let mut rows = Vec::new();
    for (name, report) in reports {
        let report = report.with_context(|| name.clone())?;
        let Some(first) = report.steps.first() else { continue };
        // Deliveries per CPU-second at the highest rate that held (the first step if none did).
        let best = report.steps.iter().take_while(|s| s.held()).last().unwrap_or(first);
        rows.push(Row::new(
            &format!("fan-out vs references: {name} at {:.0}/s (ms)", first.rate),
            format!(
                "p50 {} / p99 {} / max {}; {:.0} deliveries/s, {:.0} per CPU-s",
                first.p50_ms,
                first.p99_ms,
                first.max_ms,
                first.deliveries_per_second(),
                first.deliveries_per_cpu_second()
            ),
            "-",
            None,
        ));
        rows.push(Row::new(
            &format!("fan-out vs references: {name} saturation rate"),
            format!(
                "{}; {:.0} deliveries per CPU-s at {:.0}/s",
                report.saturation_text(),
                best.deliveries_per_cpu_second(),
                best.rate
            ),
            "-",
            None,
        ));
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Phase 5: agent-to-browser latency at scale

/// Agent-to-browser latency at each number of agents in `SCALE_AGENTS`, the largest last, each
/// point `SCALE_REPEATS` times with a fresh collector, every run's figures side by side.
fn latency_at_scale(runtime: &Runtime, binary: &Path) -> anyhow::Result<Vec<Row>> {
    let seconds = knob("SCALE_SECONDS", 20) as u64;
    let repeats = knob("SCALE_REPEATS", 3).max(1);
    let counts =
        std::env::var("HOSTWATCH_BENCH_SCALE_AGENTS").unwrap_or_else(|_| "2000,5000,10000".into());
    let mut rows = Vec::new();
    let mut reached_most = 0;
    let mut summary = Vec::new();
    for count in counts.split(',') {
        let count: usize = count.trim().parse().context("HOSTWATCH_BENCH_SCALE_AGENTS")?;
        let mut runs = Vec::new();
        for repeat in 1..=repeats {
            println!("scale: {count} agents, run {repeat} of {repeats}");
            let run = latency_at(runtime, binary, count, seconds, seconds)?;
            reached_most = reached_most.max(run.reached);
            runs.push(run);
        }
        let reached = runs.iter().map(|r| r.reached).min().unwrap_or(0);
        let each =
            |f: &dyn Fn(&ScaleRun) -> String| runs.iter().map(f).collect::<Vec<_>>().join(" | ");
        let latency = each(&|r| r.latency_text());
        let acks = each(&|r| r.ack.p99.to_string());
        let commits = each(&|r| r.commits.clone());
        summary.push(format!(
            "  {count:>6} agents  latency p50/p99/max per run: {latency}\n  {:>6}         ack p99 per run: {acks}\n  {:>6}         writer per run: {commits}",
            "", ""
        ));
        let (target_text, met) = if count >= 10_000 {
            let all =
                runs.iter().all(|r| r.reached >= 10_000 && r.delivered && r.latency.p99 <= 100);
            ("p99 <= 100 in every run", Some(all))
        } else {
            ("(p99 <= 100 at 10,000)", None)
        };
        let name =
            format!("agent-to-browser at {} agents, {repeats} runs (ms)", group(reached as f64));
        rows.push(Row::new(&name, latency, target_text, met));
        rows.push(Row::new(
            &format!("  send -> ack p99 at {} agents (ms)", group(reached as f64)),
            acks,
            "-",
            None,
        ));
    }
    println!(
        "scale: every run side by side (p50 / p99 / max ms; writer: transactions over 100 ms / over 500 ms / longest bucket)"
    );
    for line in summary {
        println!("{line}");
    }
    rows.insert(
        0,
        Row::new(
            "agents at 1 Hz reached (connected)",
            group(reached_most as f64),
            ">= 10,000",
            Some(reached_most >= 10_000),
        ),
    );
    Ok(rows)
}

/// What one run of agents at 1 Hz measured.
struct ScaleRun {
    /// Agents the collector counted connected.
    reached: u64,
    /// Whether at most 1 % of the window's samples went undelivered.
    delivered: bool,
    missing: u64,
    sent: u64,
    latency: Percentiles,
    ack: Percentiles,
    /// The writer's transactions in the window, from its histogram, in short.
    commits: String,
}

impl ScaleRun {
    fn latency_text(&self) -> String {
        if self.delivered {
            format!("{}/{}/{}", self.latency.p50, self.latency.p99, self.latency.max)
        } else {
            format!("{} of {} lost", self.missing, self.sent)
        }
    }
}

/// The 10,000-agent hold (`soak10k`): `SOAK_AGENTS` agents at 1 Hz for `SOAK_MINUTES`, with the
/// latency, the ack time and the writer's histograms printed for each minute.
fn soak(runtime: &Runtime, binary: &Path) -> anyhow::Result<Vec<Row>> {
    let agents = knob("SOAK_AGENTS", 10_000);
    let minutes = knob("SOAK_MINUTES", 10).max(1) as u64;
    let run = latency_at(runtime, binary, agents, minutes * 60, 60)?;
    let met = run.reached >= 10_000 && run.delivered && run.latency.p99 <= 100;
    Ok(vec![Row::new(
        &format!("hold of {} agents for {minutes} min (ms)", group(run.reached as f64)),
        run.latency_text(),
        "p99 <= 100",
        Some(met),
    )])
}

/// Connects `target` agents sending one sample a second, each stamped with its send time, and
/// measures with one SSE subscriber how late the samples of a window of `seconds` arrive; with
/// `slice` shorter than `seconds`, also for each slice of the window.
fn latency_at(
    runtime: &Runtime,
    binary: &Path,
    target: usize,
    seconds: u64,
    slice: u64,
) -> anyhow::Result<ScaleRun> {
    let collector = CollectorProcess::start(binary, &[])?;
    println!("scale: up to {target} agents at 1 Hz, one SSE subscriber, {seconds}s measured");
    let (stop_reader, reader_stopped) = smol::channel::bounded::<()>(1);
    let audience = Arc::new(Audience::default());
    let sliced = slice < seconds;
    audience.timeline.store(sliced, Ordering::Relaxed);
    // Like a browser, it resumes with Last-Event-ID if the collector drops it as too slow.
    let reader = runtime.spawn(subscribe(collector.http, reader_stopped, audience.clone(), true));
    let (stop_agents, agents_stopped) = smol::channel::bounded::<()>(1);
    // Agents record their ack times in the same window as the subscriber its arrivals.
    let recording = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    // Agents start sending as soon as they are welcomed, spread evenly over the second as
    // agents started at different times would be.
    let connected = connect_stream(runtime, &collector, "bench-scale", target, 1000);
    while let Ok((i, result)) = connected.recv_blocking() {
        match result {
            Ok(agent) => {
                let offset = Duration::from_secs(1).mul_f64((i % 1000) as f64 / 1000.0);
                let (stopped, recording) = (agents_stopped.clone(), recording.clone());
                let task = steady_agent(agent, Duration::from_secs(1), offset, stopped, recording);
                tasks.push(runtime.spawn(task));
            }
            Err(err) => failures.push(err),
        }
    }
    let ramp = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let reached = collector.stats()["agents_connected"].as_u64().unwrap_or(0);
    println!(
        "  {} of {target} agents welcomed in {:.1}s ({} failed); the collector counts {reached} connected",
        tasks.len(),
        ramp.as_secs_f64(),
        failures.len()
    );
    let cpu = CpuWindow::start(collector.pid());
    let first = collector.writer();
    audience.to_ms.store(u64::MAX, Ordering::Relaxed);
    let from_ms = tests::now_ms();
    audience.from_ms.store(from_ms, Ordering::Relaxed);
    recording.store(true, Ordering::Relaxed);
    // The writer's histograms at the end of each slice.
    let mut writer_at = vec![first.clone()];
    let window_end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < window_end {
        let left = window_end.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(Duration::from_secs(slice)));
        if sliced {
            let now = collector.writer();
            let slices = writer_at.len();
            println!(
                "  minute {slices}: writer {}",
                now.since(writer_at.last().expect("a first scrape")).text()
            );
            writer_at.push(now);
        }
    }
    recording.store(false, Ordering::Relaxed);
    audience.to_ms.store(tests::now_ms(), Ordering::Relaxed);
    let last = collector.writer();
    let cpu = cpu.finish();
    let still = collector.stats()["agents_connected"].as_u64().unwrap_or(0);
    let rss = tests::resident_bytes(collector.pid());
    drop(stop_agents);
    let steady: Vec<Steady> = smol::block_on(join_all(tasks));
    // The window's samples may still be on their way: wait until none has arrived for 3 s.
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    let mut last_seen = (u64::MAX, Instant::now());
    while Instant::now() < drain_deadline && last_seen.1.elapsed() < Duration::from_secs(3) {
        let delivered = audience.delivered.load(Ordering::Relaxed);
        if delivered != last_seen.0 {
            last_seen = (delivered, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stop_reader);
    let mut seen = smol::block_on(reader);
    let warnings = collector.stop();

    if sliced {
        // Latency and ack time of the samples stamped in each slice.
        let slice_ms = slice * 1000;
        let count = seconds.div_ceil(slice) as usize;
        let mut latency = vec![Vec::new(); count];
        for (&ts, &ms) in seen.stamps_ms.iter().zip(&seen.latencies_ms) {
            let i = (ts.saturating_sub(from_ms) / slice_ms) as usize;
            latency[i.min(count - 1)].push(ms);
        }
        let mut acks = vec![Vec::new(); count];
        for s in &steady {
            for (&at, &ms) in s.ack_sent_ms.iter().zip(&s.ack_ms) {
                let i = (at.saturating_sub(from_ms) / slice_ms) as usize;
                acks[i.min(count - 1)].push(ms);
            }
        }
        println!(
            "  per minute of the window (ms): agent-to-browser p50 / p99 / max; send -> ack p99; writer"
        );
        for (i, (mut latency, mut acks)) in latency.into_iter().zip(acks).enumerate() {
            let writer = match (writer_at.get(i), writer_at.get(i + 1)) {
                (Some(before), Some(after)) => after.since(before).text(),
                _ => "-".into(),
            };
            let latency = Percentiles::of(&mut latency);
            let ack = Percentiles::of(&mut acks);
            println!(
                "    minute {:>2}: {} over {} samples; ack p99 {}; writer {writer}",
                i + 1,
                latency.short(),
                latency.count,
                ack.p99
            );
        }
    }

    let sent: u64 = steady.iter().map(|s| s.sent_recorded).sum();
    let latency = Percentiles::of(&mut seen.latencies_ms);
    let mut acks: Vec<u32> = steady.iter().flat_map(|s| s.ack_ms.iter().copied()).collect();
    let ack = Percentiles::of(&mut acks);
    let writer = last.since(&first);
    println!(
        "  window: {sent} samples sent, {} of them received by the subscriber (resumed after \
         `lagged` {} times); {still} agents still connected at its end",
        latency.count, seen.lagged
    );
    println!("  agent-to-browser latency (ts -> SSE arrival): {latency}");
    println!("  agent send -> ack: {ack}");
    println!("  writer in the window: {}", writer.text());
    println!("  collector RSS {:.1} MiB; {cpu}", rss as f64 / 1048576.0);
    let mut problems = failures;
    problems.extend(steady.iter().filter_map(|s| s.error.clone()));
    problems.extend(seen.error.clone());
    report_problems(&problems, &warnings);
    // Undelivered samples count as infinitely late: with more than 1 % missing there is no p99.
    let missing = sent.saturating_sub(latency.count as u64);
    let delivered = missing as f64 <= sent as f64 * 0.01;
    Ok(ScaleRun { reached, delivered, missing, sent, latency, ack, commits: writer.short() })
}

/// The storage writer's histograms as `/metrics` exports them.
#[derive(Clone, Default)]
struct WriterFigures {
    commits: Histogram,
    samples: Histogram,
    maintenance: Histogram,
}

/// One Prometheus histogram read back: cumulative `(le, count)` with `+Inf` last, and the sum.
#[derive(Clone, Default)]
struct Histogram {
    buckets: Vec<(f64, u64)>,
    sum: f64,
}

impl Histogram {
    /// Reads family `name` from an exposition (empty when it is not there).
    fn parse(body: &str, name: &str) -> Self {
        let prefix = format!("{name}_bucket{{le=\"");
        let buckets = body
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, count.parse().ok()?))
            })
            .collect();
        let sum = body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_sum "))?.parse().ok())
            .unwrap_or(0.0);
        Self { buckets, sum }
    }

    fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.1)
    }

    /// What was observed after `before` was read.
    fn since(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, count)| {
                let earlier = before.buckets.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
                (le, count.saturating_sub(earlier))
            })
            .collect();
        Histogram { buckets, sum: self.sum - before.sum }
    }

    /// Observations above `bound`.
    fn above(&self, bound: f64) -> u64 {
        let at = self.buckets.iter().find(|b| b.0 >= bound).map_or(0, |b| b.1);
        self.count().saturating_sub(at)
    }

    /// The upper bound of the bucket holding the longest observation, as text.
    fn longest(&self) -> String {
        let count = self.count();
        match self.buckets.iter().find(|b| count > 0 && b.1 == count) {
            Some((le, _)) if le.is_infinite() => "> 8 s".into(),
            Some((le, _)) => format!("<= {le} s"),
            None => "-".into(),
        }
    }
}

impl WriterFigures {
    fn since(&self, before: &WriterFigures) -> WriterFigures {
        WriterFigures {
            commits: self.commits.since(&before.commits),
            samples: self.samples.since(&before.samples),
            maintenance: self.maintenance.since(&before.maintenance),
        }
    }

    /// Transactions over 100 ms / over 500 ms / the longest one's bucket.
    fn short(&self) -> String {
        let c = &self.commits;
        format!("{}/{}/{}", c.above(0.1), c.above(0.5), c.longest())
    }

    fn text(&self) -> String {
        let (c, m) = (&self.commits, &self.maintenance);
        let mean = |h: &Histogram| h.sum * 1000.0 / h.count().max(1) as f64;
        format!(
            "{} transactions (mean {:.1} ms, {:.0} samples each; over 100 ms: {}, over 500 ms: \
             {}, longest {}), {} maintenance steps (mean {:.1} ms, over 100 ms: {}, longest {})",
            c.count(),
            mean(c),
            self.samples.sum / c.count().max(1) as f64,
            c.above(0.1),
            c.above(0.5),
            c.longest(),
            m.count(),
            mean(m),
            m.above(0.1),
            m.longest()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 6: history query

/// Stores 24 h of one host at 1 s through ingest, waits for the rollups, then times the 24 h
/// history request at a 60 s step (rollups) and a 90 s step (raw points).
fn history_query(binary: &Path) -> anyhow::Result<Vec<Row>> {
    const DAY_MS: u64 = 86_400_000;
    let repeats = knob("HISTORY_REPEATS", 20);
    // Raw samples are kept 24 h by default; the range starts a few minutes more than 24 h ago,
    // and samples outside the raw retention are neither rolled up nor kept. One more hour of
    // retention keeps the whole day.
    let collector = CollectorProcess::start(binary, &["--retention-raw", "25h"])?;
    let to = (tests::now_ms() / 60_000 - 5) * 60_000;
    let from = to - DAY_MS;
    let host = "bench-history";
    println!("history: 86,400 samples of one host at 1 s over 24 h, sent through ingest");
    let started = Instant::now();
    smol::block_on(async {
        let mut agent = Agent::connect(collector.ws, &collector.token, host, 1000)
            .await
            .map_err(anyhow::Error::msg)?;
        let samples = (0..DAY_MS / 1000).map(|i| bench_sample(i + 1, from + i * 1000));
        send_all(&mut agent, samples.collect(), 4).await.map_err(anyhow::Error::msg)?;
        agent.close().await;
        anyhow::Ok(())
    })?;
    println!("  stored in {:.1}s", started.elapsed().as_secs_f64());

    let path = |step: u64| format!("/api/hosts/{host}/history?from={from}&to={to}&step={step}");
    let rolled = Instant::now();
    let deadline = rolled + Duration::from_secs(180);
    loop {
        let response = tests::http(collector.http, "GET", &path(60_000), &[], b"");
        let points = response.json()["points"].as_array().cloned().unwrap_or_default();
        if points.len() == 1440 && points.iter().all(|p| p["samples"] == 60) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "rollups incomplete after 180 s: {} points, status {}",
            points.len(),
            response.status
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("  rollups complete {:.1}s after the last ack", rolled.elapsed().as_secs_f64());
    let mut rows = Vec::new();
    for (step, note) in [(60_000, "1-minute rollups"), (90_000, "raw points")] {
        let mut times = Vec::with_capacity(repeats);
        let (mut points, mut bytes) = (0, 0);
        for _ in 0..repeats {
            let started = Instant::now();
            let response = tests::http(collector.http, "GET", &path(step), &[], b"");
            times.push(started.elapsed());
            ensure!(response.status == 200, "history answered {}", response.status);
            points = response.json()["points"].as_array().map_or(0, Vec::len);
            bytes = response.body.len();
        }
        times.sort();
        let (median, max) = (ms(times[times.len() / 2]), ms(*times.last().expect("repeats > 0")));
        println!(
            "  step={step} ({note}): {points} points, {} KiB of JSON; over {repeats} requests median {median:.1} ms, max {max:.1} ms",
            bytes / 1024
        );
        let name = format!("24 h history, step {} s, {points} points (ms)", step / 1000);
        let (target, met) = if step == 60_000 {
            // The median is the figure; the maximum is printed beside it.
            ("median <= 50", Some(points <= 1500 && median <= 50.0))
        } else {
            ("- (comparison)", None)
        };
        rows.push(Row::new(&name, format!("median {median:.1}, max {max:.1}"), target, met));
    }
    let warnings = collector.stop();
    report_problems(&[], &warnings);
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Phase 7: bytes per stored value

/// A small deterministic random source (xorshift64*), so every run stores the same samples.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A host as an agent samples it each second: 4 cores, 3 interfaces, 4 mounts, 2 disks and 3
/// sensors, with the noise, bursts and idle stretches real hosts have.
struct RealisticHost {
    noise: Noise,
    cores: Vec<protocol::CpuTimes>,
    networks: Vec<protocol::NetworkInterface>,
    filesystems: Vec<protocol::Filesystem>,
    disks: Vec<protocol::DiskIo>,
    temperatures: Vec<protocol::Temperature>,
    memory_used: u64,
    load: f32,
    processes: u32,
}

impl RealisticHost {
    fn new() -> Self {
        let interface =
            |name: &str| protocol::NetworkInterface { name: name.into(), ..Default::default() };
        let mount = |mount_point: &str, total_gib: u64, used_gib: u64| protocol::Filesystem {
            mount_point: mount_point.into(),
            total_bytes: total_gib << 30,
            available_bytes: (total_gib - used_gib) << 30,
            device: format!("/dev/{}", mount_point.trim_start_matches('/')),
            fs_type: "ext4".into(),
            free_bytes: Some(((total_gib - used_gib) << 30) + (total_gib << 30) / 20),
        };
        let disk = |device: &str| protocol::DiskIo {
            device: device.into(),
            reads_completed: Some(0),
            writes_completed: Some(0),
            io_time_ms: Some(0),
            ..Default::default()
        };
        let sensor =
            |label: &str, celsius: f32| protocol::Temperature { label: label.into(), celsius };
        Self {
            noise: Noise(0x9e37_79b9_7f4a_7c15),
            cores: vec![protocol::CpuTimes::default(); 4],
            networks: vec![interface("eth0"), interface("eth1"), interface("wg0")],
            filesystems: vec![
                mount("/", 100, 41),
                mount("/var", 200, 120),
                mount("/home", 500, 230),
                mount("/boot", 1, 0),
            ],
            disks: vec![disk("nvme0n1"), disk("sda")],
            temperatures: vec![
                sensor("coretemp Package id 0", 45.0),
                sensor("nvme Composite", 38.9),
                sensor("acpitz temp1", 27.8),
            ],
            memory_used: 6 << 30,
            load: 0.8,
            processes: 212,
        }
    }

    /// The sample of second `seq` (from 1), taken about a second after the one before.
    fn sample(&mut self, seq: u64, ts_ms: u64) -> Sample {
        let n = &mut self.noise;
        for core in &mut self.cores {
            // Mostly light work, now and then a busy second.
            let busy = if n.chance(5) { 50 + n.below(50) } else { 2 + n.below(18) };
            let iowait = n.below(3);
            core.user_ticks += busy * 2 / 3;
            core.system_ticks += busy - busy * 2 / 3;
            core.iowait_ticks += iowait;
            core.idle_ticks += 100 - busy.min(97) - iowait;
        }
        let cpu =
            self.cores.iter().fold(protocol::CpuTimes::default(), |a, c| protocol::CpuTimes {
                user_ticks: a.user_ticks + c.user_ticks,
                system_ticks: a.system_ticks + c.system_ticks,
                idle_ticks: a.idle_ticks + c.idle_ticks,
                iowait_ticks: a.iowait_ticks + c.iowait_ticks,
                ..Default::default()
            });
        // Memory in pages, a random walk; the page cache grows and shrinks with it.
        let step = n.below(129) as i64 - 64;
        self.memory_used = (self.memory_used as i64 + step * 4096).clamp(2 << 30, 12 << 30) as u64;
        // Interfaces: a busy one with bursts, a quiet one, a VPN idle much of the time.
        let rates = [
            if n.chance(2) { 500_000 + n.below(2_000_000) } else { 5_000 + n.below(30_000) },
            200 + n.below(800),
            if n.chance(40) { 0 } else { n.below(4_000) },
        ];
        for (net, rate) in self.networks.iter_mut().zip(rates) {
            let tx = rate / 4 + n.below(rate / 8 + 1);
            net.rx_bytes += rate;
            net.tx_bytes += tx;
            net.rx_packets += rate / 900 + u64::from(rate > 0);
            net.tx_packets += tx / 600 + u64::from(tx > 0);
            // No errors: a healthy host's error counters stand still.
        }
        // Logs and packages fill / and /var slowly; /home and /boot hardly change.
        for (index, fs) in self.filesystems.iter_mut().enumerate() {
            let written = match index {
                0 => n.below(3) * 4096,
                1 if n.chance(20) => n.below(64) * 4096,
                _ => 0,
            };
            fs.available_bytes -= written.min(fs.available_bytes);
            fs.free_bytes = fs.free_bytes.map(|f| f - written.min(f));
        }
        for (index, disk) in self.disks.iter_mut().enumerate() {
            let (reads, writes) = match index {
                0 => (
                    if n.chance(10) { n.below(200) } else { 0 },
                    if n.chance(60) { n.below(40) } else { 0 },
                ),
                _ => (
                    if n.chance(2) { n.below(50) } else { 0 },
                    if n.chance(5) { n.below(10) } else { 0 },
                ),
            };
            disk.read_bytes += reads * (4096 + n.below(16) * 4096);
            disk.written_bytes += writes * (4096 + n.below(8) * 4096);
            disk.reads_completed = disk.reads_completed.map(|c| c + reads);
            disk.writes_completed = disk.writes_completed.map(|c| c + writes);
            disk.io_time_ms = disk.io_time_ms.map(|t| t + (reads + writes) / 2);
        }
        // Sensors: coretemp in whole degrees, the others in millidegrees, drifting.
        let coretemp = &mut self.temperatures[0].celsius;
        *coretemp = (*coretemp + n.below(3) as f32 - 1.0).clamp(38.0, 80.0);
        for (sensor, (low, high)) in
            self.temperatures[1..].iter_mut().zip([(35.0, 50.0), (26.0, 30.0)])
        {
            let drift = (n.below(3) as f32 - 1.0) * 0.1;
            sensor.celsius = ((sensor.celsius + drift) * 10.0).round() / 10.0;
            sensor.celsius = sensor.celsius.clamp(low, high);
        }
        if seq % 5 == 0 {
            self.load = (self.load + (n.below(21) as f32 - 10.0) / 100.0).clamp(0.0, 4.0);
        }
        if seq % 10 == 0 {
            // The agent counts processes every 10 s.
            self.processes = (self.processes as i64 + n.below(7) as i64 - 3).clamp(150, 300) as u32;
        }
        let total = 16u64 << 30;
        Sample {
            seq,
            ts_ms,
            cpu: Some(cpu),
            cores: self.cores.clone(),
            load: Some(protocol::LoadAverage {
                one: (self.load * 100.0).round() / 100.0,
                five: ((self.load * 0.9) * 100.0).round() / 100.0,
                fifteen: ((self.load * 0.8) * 100.0).round() / 100.0,
            }),
            memory: Some(protocol::Memory {
                total_bytes: total,
                used_bytes: self.memory_used,
                available_bytes: total - self.memory_used,
                free_bytes: Some((total - self.memory_used) / 3),
                buffers_bytes: Some(300 << 20),
                cached_bytes: Some((total - self.memory_used) / 2),
            }),
            swap: Some(protocol::Swap { total_bytes: 2 << 30, used_bytes: 128 << 20 }),
            networks: self.networks.clone(),
            filesystems: self.filesystems.clone(),
            disks: self.disks.clone(),
            uptime_seconds: Some(1_000_000 + ts_ms / 1000 % 1_000_000),
            process_count: Some(self.processes),
            temperatures: self.temperatures.clone(),
        }
    }
}

/// Values stored for a sample: host totals and cores, device fields, and of the host totals
/// and cores those schema 1 kept too.
fn stored_values(previous: Option<&Sample>, sample: &Sample) -> (u64, u64, u64) {
    let point = derive(previous, sample);
    let host_values = collector::storage::rows::host_values(&point);
    let host = host_values.iter().flatten().count() as u64;
    let schema1 = host_values[..collector::catalog::SCHEMA_1_HOST_SERIES].iter().flatten().count()
        as u64
        + point.cpu_cores_percent.len() as u64;
    let devices: u64 = collector::storage::device::readings(previous, sample)
        .iter()
        .map(|r| r.values.iter().flatten().count() as u64)
        .sum();
    (host + point.cpu_cores_percent.len() as u64, devices, schema1)
}

/// Bytes of each table and index, from SQLite's `dbstat`.
fn table_bytes(db: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt =
        conn.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")?;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores `hours` of a realistic host at 1 s, lets maintenance compact it, and measures what it
/// costs on disk; then the history of that day and of 30 days.
fn storage_footprint(binary: &Path) -> anyhow::Result<Vec<Row>> {
    const DAY_MS: u64 = 86_400_000;
    let hours = knob("STORAGE_HOURS", 24).clamp(1, 24) as u64;
    let repeats = knob("HISTORY_REPEATS", 20);
    let collector = CollectorProcess::start(binary, &["--retention-raw", "25h"])?;
    let to = (tests::now_ms() / 60_000 - 5) * 60_000;
    let from = to - hours * 3_600_000;
    let host = "bench-storage";
    let count = hours * 3600;
    println!(
        "storage: {count} samples of one realistic host at 1 s (4 cores, 3 interfaces, 4 mounts, 2 disks, 3 sensors)"
    );
    let mut generator = RealisticHost::new();
    let mut noise = Noise(7);
    let samples: Vec<Sample> = (0..count)
        // An agent's ticks are a few milliseconds late now and then.
        .map(|i| generator.sample(i + 1, from + i * 1000 + noise.below(4)))
        .collect();
    let (mut host_values, mut device_values, mut schema1_values) = (0u64, 0u64, 0u64);
    for (index, sample) in samples.iter().enumerate() {
        let previous = index.checked_sub(1).map(|i| &samples[i]);
        let (h, d, s) = stored_values(previous, sample);
        host_values += h;
        device_values += d;
        schema1_values += s;
    }
    let values = host_values + device_values;
    let started = Instant::now();
    smol::block_on(async {
        let mut agent = Agent::connect(collector.ws, &collector.token, host, 1000)
            .await
            .map_err(anyhow::Error::msg)?;
        send_all(&mut agent, samples.clone(), 4).await.map_err(anyhow::Error::msg)?;
        agent.close().await;
        anyhow::Ok(())
    })?;
    let sent = started.elapsed();
    println!(
        "  stored in {:.1}s ({} samples/s through one connection)",
        sent.as_secs_f64(),
        group(count as f64 / sent.as_secs_f64())
    );
    // Every minute rolled up and compacted: no plain rows left.
    let compacting = Instant::now();
    let deadline = compacting + Duration::from_secs(600);
    loop {
        let conn =
            Connection::open_with_flags(&collector.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let plain: i64 = conn.query_row("SELECT count(*) FROM samples", [], |r| r.get(0))?;
        if plain == 0 {
            break;
        }
        ensure!(Instant::now() < deadline, "{plain} rows still not compacted after 600 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "  rolled up and compacted {:.1}s after the last ack",
        compacting.elapsed().as_secs_f64()
    );
    let tables = table_bytes(&collector.db)?;
    let bytes_of = |names: &[&str]| -> u64 {
        tables
            .iter()
            .filter(|(n, _)| {
                names.iter().any(|w| n == w || n.starts_with(&format!("sqlite_autoindex_{w}_")))
            })
            .map(|(_, b)| *b)
            .sum()
    };
    let raw_tier = bytes_of(&["blocks", "blocks_last_eid", "samples", "samples_host_ts"]);
    let rollups = bytes_of(&["rollup_1m", "rollup_1h", "device_rollup_1m", "device_rollup_1h"]);
    let host_rollups = bytes_of(&["rollup_1m", "rollup_1h"]);
    let everything: u64 = tables.iter().map(|(_, b)| *b).sum();
    let per_day = |bytes: u64| bytes as f64 * 24.0 / hours as f64;
    println!(
        "  {} values stored ({} host totals and cores, {} device fields), {:.1} per sample",
        group(values as f64),
        group(host_values as f64),
        group(device_values as f64),
        values as f64 / count as f64
    );
    for (name, bytes) in tables.iter().take(8) {
        println!("    {name:<28} {:>12} bytes", group(*bytes as f64));
    }
    println!(
        "  v2: blocks {:.2} bytes per value; with every rollup and index {:.2} bytes per value, {:.1} MB per host-day",
        raw_tier as f64 / values as f64,
        everything as f64 / values as f64,
        per_day(everything) / 1e6
    );

    // Schema 1 for the same samples: a wide row per sample, host totals only.
    let schema1_dir = tempfile::Builder::new().prefix("hostwatch-bench-schema1-").tempdir()?;
    let schema1_db = schema1_dir.path().join("schema1.db");
    {
        let mut conn = Connection::open(&schema1_db)?;
        conn.execute_batch(collector::storage::schema::schema_1_sql())?;
        conn.execute(
            "INSERT INTO hosts (id, host_id, hostname, first_seen_ms) VALUES (1, 'h', 'h', 0)",
            [],
        )?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(SCHEMA_1_INSERT)?;
            for (index, sample) in samples.iter().enumerate() {
                let previous = index.checked_sub(1).map(|i| &samples[i]);
                let p = derive(previous, sample);
                let cores: Vec<u8> =
                    p.cpu_cores_percent.iter().map(|c| c.round().clamp(0.0, 100.0) as u8).collect();
                insert.execute(params![
                    index as i64 + 1,
                    1,
                    sample.seq as i64,
                    p.ts as i64,
                    p.cpu_percent,
                    (!cores.is_empty()).then_some(cores),
                    p.memory_used_bytes.map(|v| v as i64),
                    p.memory_total_bytes.map(|v| v as i64),
                    p.memory_available_bytes.map(|v| v as i64),
                    p.swap_used_bytes.map(|v| v as i64),
                    p.swap_total_bytes.map(|v| v as i64),
                    p.load1,
                    p.load5,
                    p.load15,
                    p.net_rx_bytes_per_second,
                    p.net_tx_bytes_per_second,
                    p.disk_read_bytes_per_second,
                    p.disk_write_bytes_per_second,
                    p.fs_used_bytes.map(|v| v as i64),
                    p.fs_total_bytes.map(|v| v as i64),
                    p.processes,
                    p.uptime_seconds.map(|v| v as i64),
                    p.temperature_celsius,
                ])?;
            }
        }
        tx.commit()?;
    }
    let schema1 = table_bytes(&schema1_db)?;
    let schema1_raw: u64 = schema1
        .iter()
        .filter(|(n, _)| n == "samples" || n == "samples_host_ts")
        .map(|(_, b)| *b)
        .sum();
    println!(
        "  schema 1, same samples: {} bytes of rows and index for its {} values (host totals only): {:.2} bytes per value, {:.1} MB per host-day with the same host rollups",
        group(schema1_raw as f64),
        group(schema1_values as f64),
        schema1_raw as f64 / schema1_values as f64,
        per_day(schema1_raw + host_rollups) / 1e6
    );
    println!(
        "  of which rollups (host and device, 1 min and 1 h): {} bytes",
        group(rollups as f64)
    );

    // Queries: the day at 60 s steps; 30 days at 1 h steps (29 earlier days are copies of this
    // day's hourly rollups, written straight into the database).
    {
        let conn = Connection::open(&collector.db)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        for table in ["rollup_1h", "device_rollup_1h"] {
            for day in 1..30u64 {
                let columns: Vec<String> = conn
                    .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let select: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        if c == "bucket_ms" {
                            format!("bucket_ms - {}", day * DAY_MS)
                        } else {
                            c.clone()
                        }
                    })
                    .collect();
                conn.execute(
                    &format!(
                        "INSERT OR IGNORE INTO {table} ({}) SELECT {} FROM {table} WHERE bucket_ms >= ?1",
                        columns.join(", "),
                        select.join(", ")
                    ),
                    [(from / 3_600_000 * 3_600_000) as i64],
                )?;
            }
        }
    }
    let mut rows = vec![
        Row::new(
            "storage v2, bytes per stored value (all tiers)",
            format!("{:.2}", everything as f64 / values as f64),
            "<= 2",
            Some(everything as f64 / values as f64 <= 2.0),
        ),
        Row::new(
            "storage v2, bytes per value of the raw tier",
            format!("{:.2}", raw_tier as f64 / values as f64),
            "-",
            None,
        ),
        Row::new(
            "storage v2, MB per host-day (all tiers)",
            format!("{:.1}", per_day(everything) / 1e6),
            "-",
            None,
        ),
        Row::new(
            "schema 1, bytes per value (host totals only)",
            format!("{:.2}", schema1_raw as f64 / schema1_values as f64),
            "- (comparison)",
            None,
        ),
        Row::new(
            "schema 1, MB per host-day",
            format!("{:.1}", per_day(schema1_raw + host_rollups) / 1e6),
            "- (comparison)",
            None,
        ),
    ];
    let month_from = to - 30 * DAY_MS;
    for (name, query_from, step, series) in [
        (
            format!("{hours} h history, step 60 s, host totals (ms)"),
            from,
            60_000u64,
            "&series=host",
        ),
        (format!("{hours} h history, step 60 s, all series (ms)"), from, 60_000, ""),
        (
            "30 days history, step 1 h, host totals (ms)".to_owned(),
            month_from,
            3_600_000,
            "&series=host",
        ),
        ("30 days history, step 1 h, all series (ms)".to_owned(), month_from, 3_600_000, ""),
    ] {
        let limit = 1500;
        let path =
            format!("/api/hosts/{host}/history?from={query_from}&to={to}&step={step}{series}");
        let mut times = Vec::with_capacity(repeats);
        let (mut points, mut bytes) = (0, 0);
        for _ in 0..repeats {
            let started = Instant::now();
            let response = tests::http(collector.http, "GET", &path, &[], b"");
            times.push(started.elapsed());
            ensure!(response.status == 200, "history answered {}", response.status);
            let body = response.json();
            points = body["points"].as_array().map_or(0, Vec::len);
            bytes = response.body.len();
        }
        times.sort();
        let (median, max) = (ms(times[times.len() / 2]), ms(*times.last().expect("repeats > 0")));
        println!(
            "  {name}: {points} points, {} KiB of JSON; median {median:.1} ms, max {max:.1} ms",
            bytes / 1024
        );
        rows.push(Row::new(
            &name,
            format!("median {median:.1}, max {max:.1}"),
            "median <= 50",
            Some(points <= limit && median <= 50.0),
        ));
    }
    let warnings = collector.stop();
    report_problems(&[], &warnings);
    Ok(rows)
}

/// Schema 1's INSERT of a raw sample (no device values).
const SCHEMA_1_INSERT: &str = "INSERT INTO samples (eid, host, seq, ts_ms, cpu_percent, cores, mem_used, mem_total, mem_available,
     swap_used, swap_total, load1, load5, load15, net_rx_bps, net_tx_bps, disk_read_bps, disk_write_bps,
     fs_used, fs_total, processes, uptime, temp_max)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)";

/// Sends every sample in full batches, keeping `window` batches unacknowledged.
async fn send_all(agent: &mut Agent, samples: Vec<Sample>, window: usize) -> Result<(), String> {
    let mut batches = samples.chunks(BATCH).map(<[Sample]>::to_vec);
    let mut in_flight = VecDeque::new();
    loop {
        while in_flight.len() < window {
            let Some(batch) = batches.next() else { break };
            let last = batch.last().map_or(0, |s| s.seq);
            agent.send_batch(batch).await?;
            in_flight.push_back(last);
        }
        if in_flight.is_empty() {
            return Ok(());
        }
        match within(ANSWER_TIMEOUT, agent.receive()).await {
            Some(Ok(CollectorMessage::Ack(ack))) => {
                in_flight.retain(|&last| last > ack.seq);
            }
            Some(Ok(other)) => return Err(format!("expected an ack, got {other:?}")),
            Some(Err(err)) => return Err(err),
            None => return Err(format!("no ack within {ANSWER_TIMEOUT:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 8: the page with many hosts

/// `PAGE_HOSTS` agents at 1 Hz and the overview open in chromium for `PAGE_SECONDS`.
fn page_overview(runtime: &Runtime, binary: &Path) -> anyhow::Result<Vec<Row>> {
    let hosts = knob("PAGE_HOSTS", 1000);
    let seconds = knob("PAGE_SECONDS", 60) as u64;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/page.bench.mjs");
    ensure!(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/test.sh (or npm ci in tests/browser) first"
    );
    let collector = CollectorProcess::start(binary, &[])?;
    println!("page: {hosts} agents at 1 Hz, the overview open in chromium for {seconds}s");
    let (stop_agents, agents_stopped) = smol::channel::bounded::<()>(1);
    let recording = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    let connected = connect_stream(runtime, &collector, "bench-page", hosts, 1000);
    while let Ok((i, result)) = connected.recv_blocking() {
        match result {
            Ok(agent) => {
                let offset = Duration::from_secs(1).mul_f64((i % 1000) as f64 / 1000.0);
                let task = steady_agent(
                    agent,
                    Duration::from_secs(1),
                    offset,
                    agents_stopped.clone(),
                    recording.clone(),
                );
                tasks.push(runtime.spawn(task));
            }
            Err(err) => failures.push(err),
        }
    }
    let cpu = CpuWindow::start(collector.pid());
    let output = Command::new("node")
        .arg(&script)
        .env("HOSTWATCH_URL", format!("http://{}/", collector.http))
        .env("HOSTWATCH_BENCH_HOSTS", tasks.len().to_string())
        .env("HOSTWATCH_BENCH_SECONDS", seconds.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("running node")?;
    let cpu = cpu.finish();
    drop(stop_agents);
    let steady: Vec<Steady> = smol::block_on(join_all(tasks));
    let warnings = collector.stop();
    let mut problems = failures;
    problems.extend(steady.iter().filter_map(|s| s.error.clone()));
    report_problems(&problems, &warnings);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("PAGE_BENCH "));
    ensure!(
        output.status.success() && line.is_some(),
        "the browser script failed ({})",
        output.status
    );
    let r: serde_json::Value = serde_json::from_str(line.unwrap_or("{}"))?;
    let ms = |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |v| format!("{v:.1}"));
    let mib = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / 1048576.0;
    println!(
        "  {} cards ({} with charts drawn); {} long tasks; collector {cpu}",
        r["cards"], r["charts"], r["long_tasks"]
    );
    Ok(vec![
        Row::new(
            &format!("page: frames per second, {} hosts", group(steady.len() as f64)),
            format!("{:.1}", r["fps"].as_f64().unwrap_or(0.0)),
            "-",
            None,
        ),
        Row::new(
            "page: frame interval (ms)",
            format!(
                "p50 {} / p99 {} / max {}",
                ms(&r["frame_ms"]["p50"]),
                ms(&r["frame_ms"]["p99"]),
                ms(&r["frame_ms"]["max"])
            ),
            "-",
            None,
        ),
        Row::new("page: longest main-thread task (ms)", ms(&r["longest_task_ms"]), "-", None),
        Row::new(
            "page: JS heap start -> end (MiB)",
            format!("{:.1} -> {:.1}", mib(&r["heap_start_bytes"]), mib(&r["heap_end_bytes"])),
            "-",
            None,
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Phase 9: the cost of replication over Redis

/// The same total load (`REPLICATION_AGENTS` agents sending `REPLICATION_RATE` samples a second
/// together for `REPLICATION_SECONDS`) on one collector, then spread over three collectors on
/// one Redis (Debian's redis-server): acknowledged samples per second, CPU per collector and
/// Redis, ack times, and how late the first collector's samples reach the third collector's
/// SSE subscriber beside their arrival at the first's own.
fn replication(runtime: &Runtime, binary: &Path) -> anyhow::Result<Vec<Row>> {
    let agents = knob("REPLICATION_AGENTS", 300);
    let rate = knob("REPLICATION_RATE", 3000) as u64;
    let seconds = knob("REPLICATION_SECONDS", 20) as u64;
    ensure!(agents >= 3, "HOSTWATCH_BENCH_REPLICATION_AGENTS must be at least 3");
    println!("replication: {agents} agents sending {rate} samples/s together for {seconds}s");
    let one = replication_run(runtime, binary, None, agents, rate, seconds)?;
    let dir = tempfile::Builder::new().prefix("hostwatch-bench-redis-").tempdir()?;
    let redis = tests::RedisServer::start(dir.path());
    let three = replication_run(runtime, binary, Some(&redis), agents, rate, seconds)?;
    drop(redis);
    let cpu = |run: &ReplicationRun| {
        run.cpu.iter().map(|c| format!("{c:.0}")).collect::<Vec<_>>().join(" / ")
    };
    Ok(vec![
        Row::new(
            "replication: acked samples/s, 1 collector | 3 on Redis",
            format!("{:.0} | {:.0}", one.acked_per_second, three.acked_per_second),
            "same",
            Some(three.acked_per_second >= one.acked_per_second * 0.95),
        ),
        Row::new(
            "replication: CPU % per collector, 1 | 3 (A / B / C)",
            format!("{} | {} (Redis {:.0})", cpu(&one), cpu(&three), three.redis_cpu),
            "-",
            None,
        ),
        Row::new(
            "replication: send -> ack (ms), 1 | 3",
            format!("{} | {}", one.ack.short(), three.ack.short()),
            "-",
            None,
        ),
        Row::new("replication: A's samples on A (ms)", three.local.short(), "-", None),
        Row::new("replication: A's samples on C (ms)", three.replicated.short(), "-", None),
        Row::new(
            "replication: every sample stored on every collector",
            if three.complete { "yes" } else { "no" },
            "yes",
            Some(three.complete),
        ),
    ])
}

/// What one replication run measured.
struct ReplicationRun {
    acked_per_second: f64,
    /// CPU of each collector over the window, % of one core.
    cpu: Vec<f64>,
    redis_cpu: f64,
    ack: Percentiles,
    /// Sample `ts` to arrival at the first collector's subscriber, for the first's hosts.
    local: Percentiles,
    /// The same samples' arrival at the last collector's subscriber.
    replicated: Percentiles,
    /// Every collector stored as many samples as were acknowledged anywhere.
    complete: bool,
}

/// One run: one collector without Redis, or three on `redis`, the agents spread evenly.
fn replication_run(
    runtime: &Runtime,
    binary: &Path,
    redis: Option<&tests::RedisServer>,
    agents: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<ReplicationRun> {
    let url = redis.map(tests::RedisServer::url);
    let collectors = match &url {
        None => vec![CollectorProcess::start(binary, &[])?],
        Some(url) => (0..3)
            .map(|_| CollectorProcess::start(binary, &["--redis", url]))
            .collect::<anyhow::Result<_>>()?,
    };
    println!(
        "  {} collector(s){}",
        collectors.len(),
        if redis.is_some() { " on Redis" } else { "" }
    );
    let share = agents / collectors.len();
    let first_hosts: Vec<String> = (0..share).map(|i| format!("bench-rep-0-{i}")).collect();
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let audiences: Vec<Arc<Audience>> = (0..2).map(|_| Arc::new(Audience::default())).collect();
    let query = format!("types=sample&host={}", first_hosts.join(","));
    let watched = [collectors.first(), collectors.last()];
    let readers: Vec<_> = watched
        .iter()
        .zip(&audiences)
        .filter_map(|(c, audience)| Some((c.as_ref()?.http, audience.clone())))
        .map(|(http, audience)| {
            audience.to_ms.store(u64::MAX, Ordering::Relaxed);
            runtime.spawn(subscribe_to(http, query.clone(), stopped.clone(), audience, false))
        })
        .collect();
    let mut senders = Vec::new();
    for (index, collector) in collectors.iter().enumerate() {
        let prefix = format!("bench-rep-{index}");
        let (connected, failures) = connect_all(runtime, collector, &prefix, share, 1000);
        ensure!(failures.is_empty(), "{prefix}: {}", failures.join("; "));
        senders.extend(connected);
    }
    std::thread::sleep(WARM_UP);
    let count = senders.len();
    let period = Duration::from_secs_f64(count as f64 / rate as f64);
    let (agents_stop, agents_stopped) = smol::channel::bounded::<()>(1);
    let hz = clock_ticks_per_second();
    let ticks: Vec<u64> =
        collectors.iter().map(|c| process_ticks(&format!("/proc/{}/stat", c.pid()))).collect();
    let redis_stat = redis.and_then(|r| r.child.as_ref()).map(|c| format!("/proc/{}/stat", c.id()));
    let redis_ticks = redis_stat.as_deref().map_or(0, process_ticks);
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, agent)| {
            let offset = period.mul_f64(i as f64 / count as f64);
            let recording = Arc::new(AtomicBool::new(true));
            runtime.spawn(steady_agent(agent, period, offset, agents_stopped.clone(), recording))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    drop(agents_stop);
    let elapsed = started.elapsed().as_secs_f64();
    let percent =
        |before: u64, stat: &str| (process_ticks(stat) - before) as f64 / hz / elapsed * 100.0;
    let cpu: Vec<f64> = collectors
        .iter()
        .zip(&ticks)
        .map(|(c, &before)| percent(before, &format!("/proc/{}/stat", c.pid())))
        .collect();
    let redis_cpu = redis_stat.as_deref().map_or(0.0, |stat| percent(redis_ticks, stat));
    let sent: Vec<Steady> = smol::block_on(join_all(tasks));
    let acked: u64 = sent.iter().map(|s| s.acked).sum();
    let mut acks: Vec<u32> = sent.iter().flat_map(|s| s.ack_ms.iter().copied()).collect();
    let ack = Percentiles::of(&mut acks);
    // Replicas converge within moments; wait until every collector stored what was
    // acknowledged anywhere, or nothing moved for 5 s (at most 60 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (Vec::new(), Instant::now());
    let stored = loop {
        let stored: Vec<u64> =
            collectors.iter().map(|c| c.stored_samples()).collect::<anyhow::Result<_>>()?;
        if stored.iter().all(|&n| n >= acked) || Instant::now() > deadline {
            break stored;
        }
        if stored != last.0 {
            last = (stored, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break stored;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(1));
    drop(stop);
    let mut seen: Vec<Seen> = smol::block_on(join_all(readers));
    let mut latency = |index: usize| {
        seen.get_mut(index)
            .map_or_else(Percentiles::default, |s| Percentiles::of(&mut s.latencies_ms))
    };
    let (local, replicated) = (latency(0), latency(1));
    let errors: Vec<String> = seen.iter().filter_map(|s| s.error.clone()).collect();
    let mut warnings = Vec::new();
    for collector in collectors {
        warnings.extend(collector.stop());
    }
    println!(
        "    {acked} samples acked ({:.0}/s), stored per collector: {stored:?}",
        acked as f64 / elapsed
    );
    println!("    CPU % per collector: {cpu:.0?}; Redis {redis_cpu:.0} %");
    println!("    send -> ack: {ack}");
    println!("    first collector's samples on the first collector: {local}");
    if redis.is_some() {
        println!("    first collector's samples on the third collector: {replicated}");
    }
    report_problems(&errors, &warnings);
    ensure!(acked > 0, "no sample was acknowledged");
    Ok(ReplicationRun {
        acked_per_second: acked as f64 / elapsed,
        cpu,
        redis_cpu,
        ack,
        local,
        replicated,
        complete: stored.iter().all(|&n| n >= acked),
    })
}

// ---------------------------------------------------------------------------------------------
// The collector process

/// A `hostwatch-collector` started for one phase, with its own temporary database; stopped and
/// its directory deleted when dropped.
struct CollectorProcess {
    child: Child,
    db: PathBuf,
    http: SocketAddr,
    ws: SocketAddr,
    token: String,
    /// Warnings and errors it logged (the first 20), and how many there were.
    warnings: Arc<Mutex<(Vec<String>, usize)>>,
    _dir: tempfile::TempDir,
}

impl CollectorProcess {
    /// Starts the collector on loopback ports with `extra` arguments and waits for its addresses.
    fn start(binary: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("hostwatch-bench-").tempdir()?;
        let db = dir.path().join("hostwatch.db");
        let mut child = Command::new(binary)
            .args(["--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--no-self-monitor"])
            // Every phase connects thousands of new hosts at once with the shared token.
            .args(["--max-new-hosts-per-minute", "100000000", "--db"])
            .arg(&db)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let warnings = Arc::new(Mutex::new((Vec::new(), 0)));
        let (lines_tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let kept = warnings.clone();
        // Drains stderr for the collector's whole life (a full pipe would block its logging).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Plain lines carry the level; under systemd a journald priority prefix.
                let warning = line.contains(" WARN ") || line.contains(" ERROR ");
                if warning || line.starts_with("<3>") || line.starts_with("<4>") {
                    let mut kept = kept.lock().expect("warnings lock");
                    kept.1 += 1;
                    if kept.0.len() < 20 {
                        kept.0.push(line.clone());
                    }
                }
                // Only the first lines are awaited; later sends find nobody, which is fine.
                let _ = lines_tx.send(line);
            }
        });
        let mut process = Self {
            child,
            db: db.clone(),
            http: ([0, 0, 0, 0], 0).into(),
            ws: ([0, 0, 0, 0], 0).into(),
            token: String::new(),
            warnings,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line =
                lines.recv_timeout(left).context("the collector did not report its addresses")?;
            if let (Some(http), Some(ws)) =
                (address_after(&line, "page and API on "), address_after(&line, "WebSockets on "))
            {
                (process.http, process.ws) = (http, ws);
                break;
            }
        }
        let token_file = format!("{}.agent-token", db.display());
        process.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading {token_file}"))?
            .trim()
            .to_owned();
        Ok(process)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The writer's histograms from `GET /metrics` (empty if it could not be read).
    fn writer(&self) -> WriterFigures {
        let response = tests::http(self.http, "GET", "/metrics", &[], b"");
        let body = String::from_utf8_lossy(&response.body);
        WriterFigures {
            commits: Histogram::parse(&body, "hostwatch_collector_commit_seconds"),
            samples: Histogram::parse(&body, "hostwatch_collector_commit_samples"),
            maintenance: Histogram::parse(&body, "hostwatch_collector_maintenance_seconds"),
        }
    }

    /// `GET /api/stats`.
    fn stats(&self) -> serde_json::Value {
        tests::http(self.http, "GET", "/api/stats", &[], b"").json()
    }

    /// Samples in its database, read through a read-only connection of our own.
    fn stored_samples(&self) -> anyhow::Result<u64> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = Connection::open_with_flags(&self.db, flags)?;
        Ok(conn.query_row("SELECT count(*) FROM samples", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Stops it with SIGTERM (SIGKILL after 10 s) and returns the warnings it logged.
    fn stop(mut self) -> Vec<String> {
        self.terminate();
        let (mut kept, count) = self.warnings.lock().expect("warnings lock").clone();
        if count > kept.len() {
            kept.push(format!("… and {} more", count - kept.len()));
        }
        kept
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // `kill` the command: this crate forbids unsafe code, so no libc.
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("  (the collector took over 10 s to stop after SIGTERM; killed)");
        // It may have exited in between; then there is nothing to kill.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The address in `http://ADDR/` after `marker` in a log line.
fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let rest = &rest[rest.find("://")? + 3..];
    rest[..rest.find('/')?].parse().ok()
}

/// Runs `cargo build --release -p collector` and returns the binary's path, beside this
/// benchmark's own executable (`target/release/deps/..` → `target/release/`), which follows
/// `CARGO_TARGET_DIR`. `HOSTWATCH_BENCH_COLLECTOR=PATH` uses that binary instead and builds
/// nothing (for profiling a build with symbols).
fn build_collector() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HOSTWATCH_BENCH_COLLECTOR") {
        return Ok(PathBuf::from(path));
    }
    let mut command = tests::cargo();
    command.args(["build", "--release", "-p", "collector"]);
    let status = command.status().context("running cargo build")?;
    ensure!(status.success(), "cargo build --release -p collector failed");
    let exe = std::env::current_exe()?;
    let release = exe.parent().and_then(Path::parent).context("no target directory")?;
    let binary = release.join("hostwatch-collector");
    ensure!(binary.exists(), "{} is missing", binary.display());
    Ok(binary)
}

// ---------------------------------------------------------------------------------------------
// Probe agents

type Socket = WebSocketStream<TcpStream>;

/// A hand-driven agent on one WebSocket, like `tests::ProbeAgent` but async, so thousands fit
/// on a few threads.
struct Agent {
    socket: Socket,
    host_id: String,
    next_seq: u64,
}

impl Agent {
    /// Connects to `/ingest`, sends the hello and waits for the welcome.
    async fn connect(
        ws: SocketAddr,
        token: &str,
        host_id: &str,
        interval_ms: u32,
    ) -> Result<Self, String> {
        let tcp = TcpStream::connect(ws).await.map_err(|e| format!("connect: {e}"))?;
        // As the real agent does: small batches must not wait for Nagle.
        tcp.set_nodelay(true).map_err(|e| format!("set_nodelay: {e}"))?;
        let mut request =
            format!("ws://{ws}/ingest").into_client_request().map_err(|e| e.to_string())?;
        let bearer =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert("Authorization", bearer);
        // Acks are tiny: a small read buffer keeps ten thousand clients' memory down.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (socket, _) = async_tungstenite::client_async_with_config(request, tcp, Some(config))
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
        let mut agent = Self { socket, host_id: host_id.to_owned(), next_seq: 1 };
        let hello = AgentMessage::Hello(hello(host_id, interval_ms));
        agent.send(&hello).await?;
        match agent.receive().await? {
            CollectorMessage::Welcome(welcome) => {
                agent.next_seq = welcome.last_seq.map_or(1, |s| s + 1);
                Ok(agent)
            }
            CollectorMessage::Refused(refusal) => Err(format!("refused: {refusal:?}")),
            other => Err(format!("expected a welcome, got {other:?}")),
        }
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    async fn send(&mut self, message: &AgentMessage) -> Result<(), String> {
        let bytes = protocol::encode_agent_message(message);
        self.socket.send(Message::binary(bytes)).await.map_err(|e| format!("send: {e}"))
    }

    async fn send_batch(&mut self, samples: Vec<Sample>) -> Result<(), String> {
        self.send(&AgentMessage::Batch(protocol::Batch { dropped_total: 0, samples })).await
    }

    /// The next message from the collector. Cancel-safe: the stream keeps partial frames.
    async fn receive(&mut self) -> Result<CollectorMessage, String> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    return protocol::decode_collector_message(&bytes).map_err(|e| e.to_string());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("closed by the collector: {frame:?}"));
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(format!("read: {err}")),
                None => return Err("connection ended".into()),
            }
        }
    }

    /// Closes politely, without waiting long for a collector that is busy or gone.
    async fn close(mut self) {
        // The connection is being abandoned either way.
        let _ = within(Duration::from_secs(2), self.socket.close(None)).await;
    }
}

/// Connects `count` agents named `{prefix}-{i}`, [`CONNECTING_AT_ONCE`] at a time, and hands
/// each result over as soon as it is known.
fn connect_stream(
    runtime: &Runtime,
    collector: &CollectorProcess,
    prefix: &str,
    count: usize,
    interval_ms: u32,
) -> Receiver<(usize, Result<Agent, String>)> {
    let (results, connected) = smol::channel::unbounded();
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + CONNECT_BUDGET;
    for _ in 0..CONNECTING_AT_ONCE.min(count) {
        let (next, results, token, prefix, ws) = (
            next.clone(),
            results.clone(),
            collector.token.clone(),
            prefix.to_owned(),
            collector.ws,
        );
        // Detached: it ends by itself when every index is taken or the budget is spent.
        runtime
            .spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    let result = if Instant::now() > deadline {
                        Err("connection budget spent".to_owned())
                    } else {
                        let host = format!("{prefix}-{i}");
                        within(ANSWER_TIMEOUT, Agent::connect(ws, &token, &host, interval_ms))
                            .await
                            .unwrap_or_else(|| Err("no welcome in time".into()))
                    };
                    if results.send((i, result)).await.is_err() {
                        return;
                    }
                }
            })
            .detach();
    }
    connected
}

/// Connects `count` agents and returns the admitted ones and the reasons of the others.
fn connect_all(
    runtime: &Runtime,
    collector: &CollectorProcess,
    prefix: &str,
    count: usize,
    interval_ms: u32,
) -> (Vec<Agent>, Vec<String>) {
    let connected = connect_stream(runtime, collector, prefix, count, interval_ms);
    let (mut agents, mut failures) = (Vec::new(), Vec::new());
    while let Ok((_, result)) = connected.recv_blocking() {
        match result {
            Ok(agent) => agents.push(agent),
            Err(err) => failures.push(err),
        }
    }
    (agents, failures)
}

fn hello(host_id: &str, interval_ms: u32) -> protocol::Hello {
    protocol::Hello {
        protocol_version: protocol::PROTOCOL_VERSION,
        agent_version: "bench".into(),
        host_id: host_id.into(),
        hostname: host_id.into(),
        os: "Linux (bench)".into(),
        kernel: "6.1.0".into(),
        arch: "x86_64".into(),
        cpu_model: "bench".into(),
        cpu_cores: 2,
        memory_total_bytes: 4 << 30,
        boot_time_seconds: 1_700_000_000,
        interval_ms,
        instance_id: 1,
        kernel_build: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0-1".into(),
    }
}

/// A sample shaped like the agent's on a small 2-core VM (every area but temperatures filled),
/// with counters growing with `seq`, so the collector derives real rates and percentages.
fn bench_sample(seq: u64, ts_ms: u64) -> Sample {
    let cpu = |share: u64| protocol::CpuTimes {
        user_ticks: seq * 30 * share,
        nice_ticks: seq,
        system_ticks: seq * 10 * share,
        idle_ticks: seq * 150,
        iowait_ticks: seq / 2,
        irq_ticks: 0,
        softirq_ticks: seq / 4,
        steal_ticks: seq / 8,
    };
    Sample {
        seq,
        ts_ms,
        cpu: Some(cpu(2)),
        cores: vec![cpu(1), cpu(1)],
        load: Some(protocol::LoadAverage { one: 0.42, five: 0.35, fifteen: 0.3 }),
        memory: Some(protocol::Memory {
            total_bytes: 4 << 30,
            used_bytes: (1 << 30) + seq % 1000 * 4096,
            available_bytes: 3 << 30,
            free_bytes: Some(1 << 30),
            buffers_bytes: Some(100 << 20),
            cached_bytes: Some((1 << 30) + seq % 1000 * 4096),
        }),
        swap: Some(protocol::Swap { total_bytes: 1 << 30, used_bytes: 0 }),
        networks: vec![protocol::NetworkInterface {
            name: "eth0".into(),
            rx_bytes: seq * 12_345,
            tx_bytes: seq * 6_789,
            rx_packets: seq * 40,
            tx_packets: seq * 30,
            rx_errors: 0,
            tx_errors: 0,
        }],
        filesystems: vec![protocol::Filesystem {
            mount_point: "/".into(),
            total_bytes: 250 << 30,
            available_bytes: 180 << 30,
            device: "/dev/vda1".into(),
            fs_type: "ext4".into(),
            free_bytes: Some(192 << 30),
        }],
        disks: vec![protocol::DiskIo {
            device: "vda".into(),
            read_bytes: seq * 4096,
            written_bytes: seq * 16_384,
            reads_completed: Some(seq),
            writes_completed: Some(seq * 3),
            io_time_ms: Some(seq * 7),
        }],
        uptime_seconds: Some(100_000 + seq),
        process_count: Some(150),
        temperatures: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// CPU time of the collector's threads and of this process over a window, and the time the
/// collector's threads were ready to run but waited for a CPU (the machine is shared).
struct CpuWindow {
    pid: u32,
    started: Instant,
    threads: Vec<(String, u64)>,
    collector: u64,
    bench: u64,
    waited_ns: u64,
}

impl CpuWindow {
    fn start(pid: u32) -> Self {
        Self {
            pid,
            started: Instant::now(),
            threads: thread_ticks(pid),
            collector: process_ticks(&format!("/proc/{pid}/stat")),
            bench: process_ticks("/proc/self/stat"),
            waited_ns: run_queue_wait_ns(pid),
        }
    }

    /// The window's CPU use: totals and the collector's busiest threads, as % of one core.
    fn finish(self) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let hz = clock_ticks_per_second();
        let percent = |ticks: u64| ticks as f64 / hz / seconds * 100.0;
        let collector = process_ticks(&format!("/proc/{}/stat", self.pid)) - self.collector;
        let bench = process_ticks("/proc/self/stat") - self.bench;
        let before = by_name(self.threads);
        let mut busiest: Vec<(String, u64)> = by_name(thread_ticks(self.pid))
            .into_iter()
            .map(|(name, ticks)| {
                let start = before.iter().find(|(n, _)| *n == name).map_or(0, |(_, t)| *t);
                (name, ticks.saturating_sub(start))
            })
            .filter(|(_, ticks)| *ticks > 0)
            .collect();
        busiest.sort_by_key(|b| std::cmp::Reverse(b.1));
        let busiest: Vec<String> =
            busiest.iter().take(5).map(|(n, t)| format!("{n} {:.0} %", percent(*t))).collect();
        let waited = run_queue_wait_ns(self.pid).saturating_sub(self.waited_ns) as f64 / 1e9;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        format!(
            "CPU (% of one core): collector {:.0} % (busiest threads: {}), benchmark clients {:.0} %; \
             the collector's threads waited for a CPU {:.0} % of the time (load average {})",
            percent(collector),
            busiest.join(", "),
            percent(bench),
            waited / seconds * 100.0,
            load.split(' ').next().unwrap_or("?")
        )
    }
}

/// Time the threads of `pid` spent ready to run but waiting for a CPU, in nanoseconds (second
/// field of `/proc/PID/task/TID/schedstat`).
fn run_queue_wait_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Thread CPU summed by name (the blocking pool's threads share one name).
fn by_name(threads: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let mut sums: Vec<(String, u64)> = Vec::new();
    for (name, ticks) in threads {
        match sums.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += ticks,
            None => sums.push((name, ticks)),
        }
    }
    sums
}

/// `utime + stime` of a process, all threads, in clock ticks.
fn process_ticks(stat: &str) -> u64 {
    std::fs::read_to_string(stat).ok().and_then(|s| stat_ticks(&s)).unwrap_or(0)
}

/// Name and `utime + stime` of every thread of `pid`.
fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = stat[stat.find('(')? + 1..stat.rfind(')')?].to_owned();
            // The blocking pool's threads are numbered; count them as one.
            let name = name
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .trim_end_matches('-')
                .to_owned();
            Some((name, stat_ticks(&stat)?))
        })
        .collect()
}

/// Fields 14 and 15 (`utime`, `stime`) of a `stat` line; the name in parentheses may hold spaces.
fn stat_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `RssAnon`, `RssFile` and thread count of a process, to explain its RSS.
fn memory_details(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).map_or("?".to_owned(), |l| {
            l[name.len()..].split_whitespace().collect::<Vec<_>>().join(" ")
        })
    };
    format!(
        "RssAnon {}, RssFile {}, threads {}",
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:")
    )
}

/// Percentiles of a set of millisecond figures.
#[derive(Default)]
struct Percentiles {
    count: usize,
    p50: u32,
    p99: u32,
    max: u32,
}

impl Percentiles {
    fn of(values: &mut [u32]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let at =
            |p: f64| values[((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1];
        Self { count: values.len(), p50: at(0.50), p99: at(0.99), max: at(1.0) }
    }

    fn short(&self) -> String {
        format!("p50 {} / p99 {} / max {}", self.p50, self.p99, self.max)
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms over {} events (1 ms resolution)", self.short(), self.count)
    }
}

// ---------------------------------------------------------------------------------------------
// Plumbing

/// A smol executor with one thread per core for the clients; its threads stop when it is dropped.
struct Runtime {
    executor: Arc<Executor<'static>>,
    stop: Option<Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Runtime {
    fn new(threads: usize) -> Self {
        let executor = Arc::new(Executor::new());
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let threads = (0..threads)
            .map(|i| {
                let (executor, stopped) = (executor.clone(), stopped.clone());
                std::thread::Builder::new()
                    .name(format!("bench-client-{i}"))
                    .spawn(move || {
                        // Runs tasks until the runtime closes the channel.
                        smol::block_on(executor.run(async {
                            let _ = stopped.recv().await;
                        }))
                    })
                    .expect("spawning an executor thread")
            })
            .collect();
        Self { executor, stop: Some(stop), threads }
    }

    fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> smol::Task<T> {
        self.executor.spawn(future)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            // A thread that panicked has already printed why.
            let _ = thread.join();
        }
    }
}

/// `future`'s output, or `None` if it takes longer than `limit`.
async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    async { Some(future.await) }
        .or(async {
            Timer::after(limit).await;
            None
        })
        .await
}

/// Awaits every task, in order.
async fn join_all<T>(tasks: Vec<smol::Task<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await);
    }
    results
}

/// A benchmark size from `HOSTWATCH_BENCH_{name}`, or its default.
fn knob(name: &str, default: usize) -> usize {
    let var = format!("HOSTWATCH_BENCH_{name}");
    match std::env::var(&var) {
        Ok(value) => value.parse().unwrap_or_else(|_| panic!("{var}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// Prints the first few client errors and collector warnings of a phase, if any.
fn report_problems(errors: &[String], warnings: &[String]) {
    if !errors.is_empty() {
        println!("  {} client errors, for example: {}", errors.len(), errors[0]);
    }
    for warning in warnings.iter().take(5) {
        println!("  collector: {warning}");
    }
    if warnings.len() > 5 {
        println!("  collector: … {} more warnings", warnings.len() - 5);
    }
}

/// `1234567.8` as `1,234,568`.
fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One line of the final table.
struct Row {
    figure: String,
    value: String,
    target: String,
    met: Option<bool>,
}

impl Row {
    fn new(figure: &str, value: impl Into<String>, target: &str, met: Option<bool>) -> Self {
        Self { figure: figure.to_owned(), value: value.into(), target: target.to_owned(), met }
    }
}

/// The final table; a phase that could not be measured becomes a line saying why.
#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    failed: bool,
}

impl Table {
    /// Runs a phase and keeps its rows, or a row saying why it could not be measured.
    fn phase(&mut self, name: &str, run: impl FnOnce() -> anyhow::Result<Vec<Row>>) {
        println!();
        match run() {
            Ok(rows) => self.rows.extend(rows),
            Err(err) => {
                println!("  {name}: NOT MEASURED: {err:#}");
                self.rows.push(Row::new(
                    &format!("{name}: not measured"),
                    format!("{err:#}"),
                    "-",
                    None,
                ));
                self.failed = true;
            }
        }
    }

    fn print(&self) {
        let header = Row::new("figure", "value", "SPEC target", None);
        let cells = |r: &Row| {
            let met = match (r.met, r.figure == "figure") {
                (_, true) => "met",
                (Some(true), _) => "yes",
                (Some(false), _) => "NO",
                (None, _) => "",
            };
            [r.figure.clone(), r.value.clone(), r.target.clone(), met.to_owned()]
        };
        let all: Vec<[String; 4]> = std::iter::once(&header).chain(&self.rows).map(cells).collect();
        let widths: Vec<usize> =
            (0..4).map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        println!();
        for (i, row) in all.iter().enumerate() {
            let line: Vec<String> =
                row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            println!("{}", line.join("  ").trim_end());
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                println!("{}", rule.join("  "));
            }
        }
    }
}

/// Prints the command, the date, the commit and the machine, so a result can be placed.
fn print_machine() {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("?")
        .trim_matches('"')
        .to_owned();
    let memory =
        read("/proc/meminfo").lines().find(|l| l.starts_with("MemTotal:")).map_or(0, |l| {
            l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        });
    let files = read("/proc/self/limits")
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map_or("?".to_owned(), |l| l.split_whitespace().nth(3).unwrap_or("?").to_owned());
    let dirty = if run("git", &["status", "--porcelain"]).is_empty() {
        ""
    } else {
        " (uncommitted changes)"
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(|d| format!("CARGO_TARGET_DIR={d} "))
        .unwrap_or_default();
    let extra = if args.is_empty() { String::new() } else { format!(" -- {}", args.join(" ")) };
    println!("hostwatch collector benchmark");
    println!("command:  {target_dir}cargo bench -p tests --bench collector{extra}");
    println!("date:     {}", run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    println!("commit:   {}{dirty}", run("git", &["rev-parse", "--short", "HEAD"]));
    println!(
        "machine:  {} cores ({model}), {:.1} GiB RAM, {os}, kernel {}, open files limit {files}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory as f64 / 1048576.0,
        read("/proc/sys/kernel/osrelease").trim()
    );
    println!("load:     {}", read("/proc/loadavg").trim());
    let knobs: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HOSTWATCH_BENCH_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !knobs.is_empty() {
        println!("sizes:    {}", knobs.join(" "));
    }
}
