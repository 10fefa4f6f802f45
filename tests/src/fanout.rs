//! Fan-out comparison (issue 12): the same workload against hostwatch and two reference
//! broadcasters (`bench/ref-broadcaster/`: Node's `ws`, Python's `websockets`), in one run.
//!
//! `agents` publishers send sample events at `first_hz` each to one broadcaster while `viewers`
//! read them; then the rate is doubled step by step until p99 (sample `ts` to arrival) passes
//! 100 ms or an event goes undelivered: the saturation rate. Each step lasts `step_seconds`,
//! then waits until every viewer has every event (or nothing arrived for 2 s, at most 10 s).
//! Hostwatch gets postcard samples on `/ingest` and is read on SSE `/events?types=sample`, as the
//! collector benchmark's `fanout` phase reads it; the references get JSON text messages on
//! `/publish` and are read on `/live`. The broadcaster's CPU is `utime + stime` from
//! `/proc/PID/stat` over each step and its drain.
//!
//! Used by `cargo bench -p tests --bench collector -- fanout-ref` (full size) and by the
//! `fanout_ref` integration test (quick size, dev profile), so the code runs in CI.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use smol::channel::Receiver;
use smol::net::TcpStream;
use smol::{Executor, Timer};

/// The p99 past which a broadcaster counts as saturated.
pub const SATURATION_P99_MS: u32 = 100;

/// The workload's sizes.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Publishers.
    pub agents: usize,
    /// Readers of every event.
    pub viewers: usize,
    /// Most rate steps (the first at `first_hz`, each next one double).
    pub steps: usize,
    /// Length of each step's sending window.
    pub step_seconds: f64,
    /// Events per second per agent in the first step.
    pub first_hz: f64,
}

impl Sizes {
    /// Issue 12's workload: 100 agents at 1 Hz to 1,000 viewers, then doubled up to 7 times.
    pub fn full() -> Self {
        Self { agents: 100, viewers: 1000, steps: 8, step_seconds: 5.0, first_hz: 1.0 }
    }

    /// CI's size: enough to run every line, a few seconds per broadcaster.
    pub fn quick() -> Self {
        Self { agents: 5, viewers: 20, steps: 2, step_seconds: 1.5, first_hz: 2.0 }
    }

    /// `default` with `HOSTWATCH_BENCH_REF_{AGENTS,VIEWERS,STEPS,STEP_SECONDS,FIRST_HZ}` applied.
    pub fn from_env(default: Self) -> anyhow::Result<Self> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
            let var = format!("HOSTWATCH_BENCH_REF_{name}");
            match std::env::var(&var) {
                Ok(value) => {
                    value.parse().map_err(|_| anyhow::anyhow!("{var}={value:?} is not a number"))
                }
                Err(_) => Ok(default),
            }
        }
        Ok(Self {
            agents: var("AGENTS", default.agents)?,
            viewers: var("VIEWERS", default.viewers)?,
            steps: var("STEPS", default.steps)?,
            step_seconds: var("STEP_SECONDS", default.step_seconds)?,
            first_hz: var("FIRST_HZ", default.first_hz)?,
        })
    }
}

/// One of the compared broadcasters.
#[derive(Clone, Debug)]
pub enum Broadcaster {
    /// `hostwatch-collector` at this path.
    Hostwatch(PathBuf),
    /// `node bench/ref-broadcaster/ws.mjs`.
    NodeWs,
    /// `python3 bench/ref-broadcaster/broadcaster.py`.
    PythonWebsockets,
}

impl Broadcaster {
    /// The name printed in tables.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hostwatch(_) => "hostwatch (SSE)",
            Self::NodeWs => "Node ws",
            Self::PythonWebsockets => "Python websockets",
        }
    }
}

/// One rate step against one broadcaster.
#[derive(Clone, Debug)]
pub struct Step {
    /// Events per second offered, all agents together.
    pub rate: f64,
    /// Events the agents sent in the step.
    pub sent: u64,
    /// Viewers connected during the step.
    pub viewers: usize,
    /// Events delivered to viewers (`sent * viewers` when complete).
    pub delivered: u64,
    /// Wall time of the step's sending window.
    pub seconds: f64,
    /// The broadcaster's CPU over the step and its drain.
    pub cpu_seconds: f64,
    /// Sample `ts` to arrival at a viewer, over every delivery of the step.
    pub p50_ms: u32,
    /// As `p50_ms`.
    pub p99_ms: u32,
    /// As `p50_ms`.
    pub max_ms: u32,
}

impl Step {
    /// Every event reached every viewer.
    pub fn complete(&self) -> bool {
        self.sent > 0 && self.delivered == self.sent * self.viewers as u64
    }

    /// Complete, with p99 within [`SATURATION_P99_MS`].
    pub fn held(&self) -> bool {
        self.complete() && self.p99_ms <= SATURATION_P99_MS
    }

    /// Deliveries over the sending window.
    pub fn deliveries_per_second(&self) -> f64 {
        self.delivered as f64 / self.seconds
    }

    /// Deliveries per second of the broadcaster's CPU.
    pub fn deliveries_per_cpu_second(&self) -> f64 {
        self.delivered as f64 / self.cpu_seconds.max(1e-9)
    }
}

/// Every step run against one broadcaster.
#[derive(Clone, Debug)]
pub struct Report {
    /// The broadcaster's name.
    pub name: &'static str,
    /// The steps run, the last one the first that did not hold (if any).
    pub steps: Vec<Step>,
}

impl Report {
    /// The first step's rate at which p99 passed 100 ms or an event went undelivered; `None`
    /// when every step held.
    pub fn saturation_rate(&self) -> Option<f64> {
        self.steps.iter().find(|s| !s.held()).map(|s| s.rate)
    }

    /// The highest rate that held.
    pub fn held_rate(&self) -> Option<f64> {
        self.steps.iter().take_while(|s| s.held()).last().map(|s| s.rate)
    }

    /// The saturation rate, as printed.
    pub fn saturation_text(&self) -> String {
        match (self.saturation_rate(), self.held_rate()) {
            (Some(at), Some(held)) => format!("{at:.0}/s (held {held:.0}/s)"),
            (Some(at), None) => format!("{at:.0}/s (held none)"),
            (None, Some(held)) => format!("> {held:.0}/s (not reached)"),
            (None, None) => "-".into(),
        }
    }
}

/// Runs the workload against each broadcaster in turn, printing as it goes.
pub fn compare(
    sizes: &Sizes,
    broadcasters: &[Broadcaster],
) -> Vec<(String, anyhow::Result<Report>)> {
    let executor = Arc::new(Executor::new());
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let threads: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|i| {
            let (executor, stopped) = (executor.clone(), stopped.clone());
            std::thread::Builder::new()
                .name(format!("fanout-client-{i}"))
                .spawn(move || smol::block_on(executor.run(async move { stopped.recv().await })))
                .expect("spawning an executor thread")
        })
        .collect();
    let reports =
        broadcasters.iter().map(|b| (b.name().to_owned(), run_one(&executor, sizes, b))).collect();
    drop(stop);
    for thread in threads {
        // A thread that panicked has already printed why.
        let _ = thread.join();
    }
    reports
}

/// Prints the comparison's table.
pub fn print_table(reports: &[(String, anyhow::Result<Report>)]) {
    println!(
        "{:<18}  {:>9}  {:>10}  {:>14}  {:>15}  {:>17}  saturation rate",
        "broadcaster", "events/s", "deliveries", "deliveries/s", "per CPU-second", "p50/p99/max ms"
    );
    for (name, report) in reports {
        match report {
            Ok(report) => {
                for step in &report.steps {
                    println!(
                        "{name:<18}  {:>9.0}  {:>10}  {:>14.0}  {:>15.0}  {:>17}  {}",
                        step.rate,
                        format!("{}/{}", step.delivered, step.sent * step.viewers as u64),
                        step.deliveries_per_second(),
                        step.deliveries_per_cpu_second(),
                        format!("{}/{}/{}", step.p50_ms, step.p99_ms, step.max_ms),
                        report.saturation_text()
                    );
                }
            }
            Err(err) => println!("{name:<18}  NOT MEASURED: {err:#}"),
        }
    }
}

/// What every viewer and agent of one broadcaster's run shares.
#[derive(Default)]
struct Shared {
    /// Events per second per agent, as `f64` bits; 0 pauses the agents.
    hz: AtomicU64,
    /// Events stamped in `[from_ms, to_ms)` belong to the current step.
    from_ms: AtomicU64,
    to_ms: AtomicU64,
    sent: AtomicU64,
    delivered: AtomicU64,
    viewers: AtomicUsize,
    latencies: std::sync::Mutex<Vec<u32>>,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    fn in_step(&self, ts: u64) -> bool {
        (self.from_ms.load(Ordering::Relaxed)..self.to_ms.load(Ordering::Relaxed)).contains(&ts)
    }

    /// Waits until `count` reaches `want`, an error is reported or `deadline` passes.
    fn wait_connected(
        &self,
        count: &AtomicUsize,
        want: usize,
        deadline: Instant,
        what: &str,
    ) -> anyhow::Result<()> {
        while count.load(Ordering::Relaxed) < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            if !self.errors.lock().expect("errors lock").is_empty() {
                break;
            }
        }
        let got = count.load(Ordering::Relaxed);
        if got < want {
            bail!(
                "{got} of {want} {what} connected: {:?}",
                self.errors.lock().expect("errors lock")
            );
        }
        Ok(())
    }

    fn error(&self, err: String) {
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < 20 {
            errors.push(err);
        }
    }
}

/// A started broadcaster process, killed when dropped.
struct Process {
    child: Child,
    /// Where agents publish (`/ingest` of hostwatch, `/publish` of a reference).
    publish: SocketAddr,
    /// Where viewers read.
    view: SocketAddr,
    token: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bench/ref-broadcaster/` of the repository.
pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/ref-broadcaster")
}

fn start(broadcaster: &Broadcaster) -> anyhow::Result<Process> {
    let (mut command, dir) = match broadcaster {
        Broadcaster::Hostwatch(binary) => {
            let dir = tempfile::Builder::new().prefix("hostwatch-fanout-ref-").tempdir()?;
            let mut command = Command::new(binary);
            command
                .args(["--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--no-self-monitor"])
                .args(["--max-new-hosts-per-minute", "100000000", "--db"])
                .arg(dir.path().join("hostwatch.db"));
            (command, Some(dir))
        }
        Broadcaster::NodeWs => {
            let mut command = Command::new("node");
            command.arg(reference_dir().join("ws.mjs")).arg("0");
            (command, None)
        }
        Broadcaster::PythonWebsockets => {
            let mut command = Command::new("python3");
            command.arg(reference_dir().join("broadcaster.py")).arg("0");
            (command, None)
        }
    };
    let hostwatch = dir.is_some();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(if hostwatch { Stdio::null() } else { Stdio::piped() })
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    // Hostwatch logs its addresses on stderr, a reference prints its port on stdout; both are
    // drained for the process's life so a full pipe never blocks it.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr_tx = lines_tx.clone();
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = stderr_tx.send(line);
        }
    });
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let (publish, view) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill();
            bail!(
                "{} did not report its address (exit {status:?}): {}",
                broadcaster.name(),
                seen.join(" | ")
            );
        };
        if hostwatch {
            if let (Some(http), Some(ws)) =
                (address_after(&line, "page and API on "), address_after(&line, "WebSockets on "))
            {
                break (ws, http);
            }
        } else if let Some(addr) = address_after(&line, "listening on ") {
            break (addr, addr);
        }
        if seen.len() < 10 {
            seen.push(line);
        }
    };
    let token = match &dir {
        Some(dir) => {
            let file = dir.path().join("hostwatch.db.agent-token");
            std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .trim()
                .to_owned()
        }
        None => String::new(),
    };
    Ok(Process { child, publish, view, token, _dir: dir })
}

/// The address in the URL after `marker` (hostwatch's `page and API on http://ADDR/`), or the
/// bare address after it (a reference's `listening on ADDR`).
fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let rest = rest.find("://").map_or(rest, |at| &rest[at + 3..]);
    rest.split(|c: char| c.is_whitespace() || c == '/').next()?.parse().ok()
}

fn run_one(
    executor: &Arc<Executor<'static>>,
    sizes: &Sizes,
    broadcaster: &Broadcaster,
) -> anyhow::Result<Report> {
    let hostwatch = matches!(broadcaster, Broadcaster::Hostwatch(_));
    let process = start(broadcaster)?;
    println!(
        "fanout-ref: {}: {} agents, {} viewers, up to {} steps of {} s from {} Hz per agent",
        broadcaster.name(),
        sizes.agents,
        sizes.viewers,
        sizes.steps,
        sizes.step_seconds,
        sizes.first_hz
    );
    let shared = Arc::new(Shared::default());
    shared.to_ms.store(0, Ordering::Relaxed);
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let mut tasks = Vec::new();
    for _ in 0..sizes.viewers {
        let (shared, stopped, addr) = (shared.clone(), stopped.clone(), process.view);
        tasks.push(executor.spawn(async move {
            let result = if hostwatch {
                sse_viewer(addr, &shared, &stopped).await
            } else {
                ws_viewer(addr, &shared, &stopped).await
            };
            if let Err(err) = result {
                shared.error(format!("viewer: {err}"));
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    shared.wait_connected(&shared.viewers, sizes.viewers, deadline, "viewers")?;
    let agents_ready = Arc::new(AtomicUsize::new(0));
    for i in 0..sizes.agents {
        let (shared, stopped, ready) = (shared.clone(), stopped.clone(), agents_ready.clone());
        let (addr, token) = (process.publish, process.token.clone());
        tasks.push(executor.spawn(async move {
            let host = format!("fanout-ref-{i}");
            if let Err(err) = agent(addr, &token, &host, hostwatch, &shared, &stopped, &ready).await
            {
                shared.error(format!("{host}: {err}"));
            }
        }));
    }
    shared.wait_connected(&agents_ready, sizes.agents, deadline, "agents")?;

    let mut steps = Vec::new();
    let mut hz = sizes.first_hz;
    for _ in 0..sizes.steps {
        let step = run_step(&shared, &process, sizes, hz);
        println!(
            "  {:.0} events/s: {} of {} deliveries, {:.0}/s, {:.0} per CPU-second (CPU {:.2} s), p50/p99/max {}/{}/{} ms",
            step.rate,
            step.delivered,
            step.sent * step.viewers as u64,
            step.deliveries_per_second(),
            step.deliveries_per_cpu_second(),
            step.cpu_seconds,
            step.p50_ms,
            step.p99_ms,
            step.max_ms
        );
        let held = step.held();
        steps.push(step);
        if !held {
            break;
        }
        hz *= 2.0;
    }
    drop(stop);
    let leftover: Vec<_> = tasks;
    smol::block_on(async {
        for task in leftover {
            // Viewers and agents end when `stop` closes; a stuck one is abandoned after 5 s.
            task.or(async {
                Timer::after(Duration::from_secs(5)).await;
            })
            .await;
        }
    });
    let errors = shared.errors.lock().expect("errors lock").clone();
    for err in errors.iter().take(5) {
        println!("  client error: {err}");
    }
    drop(process);
    Ok(Report { name: broadcaster.name(), steps })
}

fn run_step(shared: &Shared, process: &Process, sizes: &Sizes, hz: f64) -> Step {
    let pid = process.child.id();
    let viewers = shared.viewers.load(Ordering::Relaxed);
    shared.sent.store(0, Ordering::Relaxed);
    shared.delivered.store(0, Ordering::Relaxed);
    shared.latencies.lock().expect("latencies lock").clear();
    let cpu_before = process_ticks(pid);
    let started = Instant::now();
    shared.from_ms.store(crate::now_ms(), Ordering::Relaxed);
    shared.to_ms.store(u64::MAX, Ordering::Relaxed);
    shared.hz.store(hz.to_bits(), Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(sizes.step_seconds));
    shared.hz.store(0f64.to_bits(), Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    // An agent in the middle of a send stamps it before the pause shows; let those land.
    std::thread::sleep(Duration::from_millis(20));
    shared.to_ms.store(crate::now_ms() + 1, Ordering::Relaxed);
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (u64::MAX, Instant::now());
    loop {
        let owed = shared.sent.load(Ordering::Relaxed) * viewers as u64;
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if delivered >= owed || Instant::now() > drain_deadline {
            break;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu_seconds = (process_ticks(pid) - cpu_before) as f64 / clock_ticks_per_second();
    let mut latencies = std::mem::take(&mut *shared.latencies.lock().expect("latencies lock"));
    latencies.sort_unstable();
    let at = |p: f64| {
        if latencies.is_empty() {
            return 0;
        }
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    Step {
        rate: hz * sizes.agents as f64,
        sent: shared.sent.load(Ordering::Relaxed),
        viewers,
        delivered: shared.delivered.load(Ordering::Relaxed),
        seconds,
        cpu_seconds,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// Records one event a viewer received.
fn arrived(shared: &Shared, ts: u64) {
    if shared.in_step(ts) {
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        let late = crate::now_ms().saturating_sub(ts) as u32;
        shared.latencies.lock().expect("latencies lock").push(late);
    }
}

/// The unsigned integer right after `"ts":` in a JSON text.
fn json_ts(json: &[u8]) -> Option<u64> {
    let key = b"\"ts\":";
    let at = find(json, key)? + key.len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&json[at..at + digits]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads hostwatch's `GET /events?types=sample` until `stopped` closes.
async fn sse_viewer(
    http: SocketAddr,
    shared: &Shared,
    stopped: &Receiver<()>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(http).await.map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /events?types=sample HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("request: {e}"))?;
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut head = true;
    loop {
        if head {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                let status =
                    String::from_utf8_lossy(&buffer[..end]).lines().next().unwrap_or("").to_owned();
                if !status.contains(" 200 ") {
                    return Err(format!("SSE refused: {status}"));
                }
                buffer.drain(..end + 4);
                head = false;
                shared.viewers.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !head {
            let mut start = 0;
            while let Some(end) = find(&buffer[start..], b"\n\n") {
                let frame = &buffer[start..start + end];
                start += end + 2;
                if find(frame, b"event: lagged").is_some() {
                    return Err("hostwatch said lagged".into());
                }
                if find(frame, b"event: sample").is_some() {
                    if let Some(ts) = json_ts(frame) {
                        arrived(shared, ts);
                    }
                }
            }
            buffer.drain(..start);
        }
        let read = async { Some(stream.read(&mut chunk).await) };
        let stop = async {
            // Resolves when the run closes the channel.
            let _ = stopped.recv().await;
            None
        };
        match read.or(stop).await {
            Some(Ok(0)) => return Err("the collector ended the stream".into()),
            Some(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            Some(Err(err)) => return Err(format!("reading the stream: {err}")),
            None => return Ok(()),
        }
    }
}

type Socket = WebSocketStream<TcpStream>;

async fn ws_open(addr: SocketAddr, path: &str, token: &str) -> Result<Socket, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("set_nodelay: {e}"))?;
    let mut request =
        format!("ws://{addr}{path}").into_client_request().map_err(|e| e.to_string())?;
    if !token.is_empty() {
        let bearer =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert("Authorization", bearer);
    }
    let (socket, _) = async_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| format!("upgrade {path}: {e}"))?;
    Ok(socket)
}

/// Reads a reference's `/live` until `stopped` closes.
async fn ws_viewer(
    addr: SocketAddr,
    shared: &Shared,
    stopped: &Receiver<()>,
) -> Result<(), String> {
    let mut socket = ws_open(addr, "/live", "").await?;
    shared.viewers.fetch_add(1, Ordering::Relaxed);
    loop {
        let read = async { Some(socket.next().await) };
        let stop = async {
            // Resolves when the run closes the channel.
            let _ = stopped.recv().await;
            None
        };
        match read.or(stop).await {
            Some(Some(Ok(Message::Text(text)))) => {
                if let Some(ts) = json_ts(text.as_bytes()) {
                    arrived(shared, ts);
                }
            }
            Some(Some(Ok(Message::Close(frame)))) => return Err(format!("closed: {frame:?}")),
            Some(Some(Ok(_))) => {}
            Some(Some(Err(err))) => return Err(format!("read: {err}")),
            Some(None) => return Err("connection ended".into()),
            None => return Ok(()),
        }
    }
}

/// One publisher: sends an event stamped with the send time every `1 / hz` while `hz` is not 0,
/// reading (and discarding: acks, pings) whatever comes back, until `stopped` closes.
async fn agent(
    addr: SocketAddr,
    token: &str,
    host: &str,
    hostwatch: bool,
    shared: &Shared,
    stopped: &Receiver<()>,
    ready: &AtomicUsize,
) -> Result<(), String> {
    let mut socket = ws_open(addr, if hostwatch { "/ingest" } else { "/publish" }, token).await?;
    let mut seq = 1;
    if hostwatch {
        let mut hello = crate::probe_hello(host, 1);
        hello.agent_version = "fanout-ref".into();
        let bytes = protocol::encode_agent_message(&protocol::AgentMessage::Hello(hello));
        socket.send(Message::binary(bytes)).await.map_err(|e| format!("hello: {e}"))?;
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => match protocol::decode_collector_message(&bytes) {
                Ok(protocol::CollectorMessage::Welcome(welcome)) => {
                    seq = welcome.last_seq.map_or(1, |s| s + 1);
                }
                other => return Err(format!("expected a welcome, got {other:?}")),
            },
            other => return Err(format!("expected a welcome, got {other:?}")),
        }
    }
    ready.fetch_add(1, Ordering::Relaxed);
    // Agents start spread over the first period, not all at once.
    let offset = fastrand::f64();
    let mut next: Option<Instant> = None;
    enum Step {
        Tick,
        Read(Option<Result<Message, String>>),
        Stop,
    }
    loop {
        let hz = f64::from_bits(shared.hz.load(Ordering::Relaxed));
        let tick = async {
            if hz > 0.0 {
                let at = *next
                    .get_or_insert_with(|| Instant::now() + Duration::from_secs_f64(offset / hz));
                Timer::at(at).await;
            } else {
                next = None;
                Timer::after(Duration::from_millis(10)).await;
            }
            Step::Tick
        };
        let read = async { Step::Read(socket.next().await.map(|r| r.map_err(|e| e.to_string()))) };
        let stop = async {
            // Resolves when the run closes the channel.
            let _ = stopped.recv().await;
            Step::Stop
        };
        match tick.or(read).or(stop).await {
            Step::Tick => {
                let Some(at) = next else { continue };
                if Instant::now() < at || hz <= 0.0 {
                    continue;
                }
                // A late tick is not made up for, as a real agent samples on time.
                next = Some((at + Duration::from_secs_f64(1.0 / hz)).max(Instant::now()));
                let ts = crate::now_ms();
                let message = if hostwatch {
                    let sample = crate::probe_sample(seq, ts);
                    let batch = protocol::AgentMessage::Batch(protocol::Batch {
                        dropped_total: 0,
                        samples: vec![sample],
                    });
                    Message::binary(protocol::encode_agent_message(&batch))
                } else {
                    Message::text(format!(
                        "{{\"type\":\"sample\",\"host_id\":\"{host}\",\"seq\":{seq},\"ts\":{ts},\
                         \"memory\":{{\"total_bytes\":1073741824,\"used_bytes\":{},\"available_bytes\":536870912}}}}",
                        seq % 1000 * 1000
                    ))
                };
                seq += 1;
                socket.send(message).await.map_err(|e| format!("send: {e}"))?;
                if shared.in_step(ts) {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Step::Read(Some(Ok(Message::Close(frame)))) => {
                return Err(format!("closed: {frame:?}"));
            }
            Step::Read(Some(Ok(_))) => {}
            Step::Read(Some(Err(err))) => return Err(format!("read: {err}")),
            Step::Read(None) => return Err("connection ended".into()),
            Step::Stop => {
                let _ = socket.close(None).await;
                return Ok(());
            }
        }
    }
}

fn process_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let Some(close) = stat.rfind(')') else { return 0 };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
