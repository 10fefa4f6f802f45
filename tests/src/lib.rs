//! Helpers for black-box tests of the real `hostwatch-collector` and `hostwatch-agent` binaries:
//! start them on free ports (port 0) with temporary state, talk to them over real sockets, and
//! stop them. Every wait has a hard timeout; a child is killed when its handle is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use async_tungstenite::tungstenite;

pub mod fanout;
pub mod nginx;

/// The workspace's target directory for this test build (`target/debug`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test> → target/debug
    exe.parent().and_then(Path::parent).expect("target dir").to_owned()
}

/// A `cargo` command for building from inside a test or benchmark. Cargo runs those with the
/// package's variables set (`CARGO_PKG_NAME` and others); build scripts such as ring's rerun
/// when those change, so passing them on would rebuild half the tree every time.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || ["CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"].contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// Path of a workspace binary, built (once per test process) so it is never stale.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut build = cargo();
        build.args(["build", "--quiet", "-p", "agent", "-p", "collector", "--bins"]);
        // A benchmark or example run with `--release` drives release binaries.
        if bin_dir().ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
    });
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Lines a child wrote to stderr, kept for assertions and for failure reports.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// All lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("log lock").clone()
    }

    /// Whether any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }

    /// Whether a line containing `needle` arrives within 5 s. A process's last lines reach the
    /// log from a reader thread, possibly after the process has been reaped: assertions about
    /// what was logged use this, not [`Log::contains`].
    pub fn shows(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn capture(
    stream: impl Read + Send + 'static,
    log: Log,
    name: String,
    lines_tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if std::env::var_os("HOSTWATCH_TEST_ECHO").is_some() {
                eprintln!("[{name}] {line}");
            }
            // Logged before it is announced, so a test woken by the announcement
            // finds the line in the log too.
            log.0.lock().expect("log lock").push(line.clone());
            if let Some(tx) = &lines_tx {
                // The test may have stopped listening; the line is still logged.
                let _ = tx.send(line);
            }
        }
    });
}

/// Checks a systemd unit with `systemd-analyze verify` (its `installed` binary path replaced by
/// `binary`, a copy written into `dir`) and returns the overall exposure
/// `systemd-analyze security --offline=true` rates it.
pub fn verified_unit_exposure(unit: &str, installed: &str, binary: &Path, dir: &Path) -> f64 {
    let name = Path::new(installed).file_name().expect("binary name").to_string_lossy();
    let checked = dir.join(format!("{name}.service"));
    std::fs::write(&checked, unit.replace(installed, binary.to_str().expect("UTF-8 path")))
        .expect("writing the unit");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&checked)
        .output()
        .expect("systemd-analyze");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&checked)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).expect("exposure line");
    line.split(": ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("exposure value")
}

/// Sends a signal to a child with `kill(1)` (this crate forbids unsafe code, so no libc).
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Waits for a child to exit, up to `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `hostwatch-collector`.
pub struct Collector {
    /// The process.
    pub child: Child,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its WebSocket address.
    pub ws: SocketAddr,
    /// Its database.
    pub db: PathBuf,
    /// Its stderr.
    pub log: Log,
    /// Its stdout.
    pub stdout: Log,
}

impl Collector {
    /// Starts a collector on free loopback ports with its database in `dir`.
    pub fn spawn(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_on(dir, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Starts a collector without self-monitoring that serves TLS on both listeners with the
    /// certificate `cert` and its key `key` (made by [`certificates`] or by a test).
    pub fn spawn_tls(dir: &Path, cert: &Path, key: &Path) -> Self {
        let (cert, key) = (cert.to_str().expect("cert path"), key.to_str().expect("key path"));
        Self::spawn(dir, &["--no-self-monitor", "--tls-cert", cert, "--tls-key", key])
    }

    /// Starts a collector on the given addresses (to restart one on its old ports).
    pub fn spawn_on(dir: &Path, http: &str, ws: &str, extra: &[&str]) -> Self {
        let db = dir.join("hostwatch.db");
        let mut child = Command::new(binary("hostwatch-collector"))
            .args(["--http", http, "--ws", ws, "--db"])
            .arg(&db)
            .args(extra)
            .env("HOSTWATCH_COLLECTOR_LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning hostwatch-collector");
        let log = Log::default();
        let stdout = Log::default();
        let (tx, rx) = mpsc::channel();
        capture(child.stderr.take().expect("stderr"), log.clone(), "collector".into(), Some(tx));
        capture(
            child.stdout.take().expect("stdout"),
            stdout.clone(),
            "collector stdout".into(),
            None,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let (http, ws) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addrs) = parse_listening(&line) {
                        break addrs;
                    }
                }
                Err(_) => {
                    // Reap it so the report says how it ended.
                    let status = child.try_wait().ok().flatten();
                    panic!(
                        "collector did not report its addresses (exit: {status:?}); log:\n{}",
                        log.lines().join("\n")
                    );
                }
            }
        };
        Self { child, http, ws, db, log, stdout }
    }

    /// The agent ingest URL.
    pub fn ingest_url(&self) -> String {
        format!("ws://{}/ingest", self.ws)
    }

    /// The token file the collector generated beside its database.
    pub fn token(&self) -> String {
        let path = PathBuf::from(format!("{}.agent-token", self.db.display()));
        std::fs::read_to_string(&path).expect("token file").trim().to_owned()
    }

    /// `GET path` on the HTTP address, parsed as JSON.
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let response = http(self.http, "GET", path, &[], b"");
        let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status, value)
    }

    /// The host with `id` from `/api/hosts`, if listed.
    pub fn host(&self, id: &str) -> Option<Value> {
        let (status, hosts) = self.get_json("/api/hosts");
        assert_eq!(status, 200);
        hosts.as_array()?.iter().find(|h| h["id"] == id).cloned()
    }

    /// Stops it with SIGTERM and returns its exit status (panics if it takes over 10 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        wait_exit(&mut self.child, Duration::from_secs(10))
            .expect("collector did not exit within 10 s of SIGTERM")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Already exited children make these fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- collector log ---\n{}", self.log.lines().join("\n"));
        }
    }
}

/// Reads the HTTP and WS addresses from the collector's "listening" log line.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let after = |marker: &str| -> Option<SocketAddr> {
        let rest = &line[line.find(marker)? + marker.len()..];
        let rest = &rest[rest.find("://")? + 3..];
        rest[..rest.find('/')?].parse().ok()
    };
    Some((after("page and API on ")?, after("WebSockets on ")?))
}

/// A running `hostwatch-agent`.
pub struct Agent {
    /// The process.
    pub child: Child,
    /// Its stderr.
    pub log: Log,
}

impl Agent {
    /// Starts an agent for `host_id` that pushes to `url` with `token`, spooling in `spool`.
    pub fn spawn(url: &str, token: &str, host_id: &str, spool: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(binary("hostwatch-agent"))
            .args(["--collector", url, "--host-id", host_id, "--log-level", "debug", "--spool-dir"])
            .arg(spool)
            .args(extra)
            .env("HOSTWATCH_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning hostwatch-agent");
        let log = Log::default();
        capture(
            child.stderr.take().expect("stderr"),
            log.clone(),
            format!("agent {host_id}"),
            None,
        );
        Self { child, log }
    }

    /// Stops it with SIGTERM and returns its exit status (panics if it takes over 10 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        wait_exit(&mut self.child, Duration::from_secs(10))
            .expect("agent did not exit within 10 s of SIGTERM")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Already exited children make these fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.log.lines().join("\n"));
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end (10 s timeout).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse { status, headers, body: raw[split + 4..].to_vec() }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `id:` field.
    pub id: Option<String>,
    /// `event:` field.
    pub event: String,
    /// `data:` field, parsed as JSON.
    pub data: Value,
}

/// A streaming SSE client on a real socket.
pub struct SseClient {
    reader: BufReader<TcpStream>,
    /// `retry:` value the server sent, if any.
    pub retry: Option<u64>,
}

impl SseClient {
    /// Opens `GET path` with optional extra headers such as `Last-Event-ID`.
    pub fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).expect("write");
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        assert!(status_line.contains(" 200 "), "SSE status: {status_line}");
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("content-type:") {
                content_type = line.to_ascii_lowercase();
            }
        }
        assert!(content_type.contains("text/event-stream"), "content type: {content_type}");
        Self { reader, retry: None }
    }

    /// The next event (comments and `retry:` are consumed on the way). `None` at end of stream.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(SseEvent { id, event, data });
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line
                .split_once(':')
                .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            match field {
                "id" => id = Some(value.to_owned()),
                "event" => event = value.to_owned(),
                "data" => data.push_str(value),
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
    }

    /// Reads events until one satisfies `pred`, up to `timeout`.
    pub fn until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&SseEvent) -> bool,
    ) -> SseEvent {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(Instant::now() < deadline, "no matching SSE event within {timeout:?}");
            let event = self.next_event().expect("SSE stream ended");
            if pred(&event) {
                return event;
            }
        }
    }
}

/// A WebSocket connection to `/live` (or anywhere), blocking.
pub type WsClient = tungstenite::WebSocket<TcpStream>;

/// Opens a WebSocket to `ws://addr{path}` with extra request headers. Returns the HTTP status
/// of a refused upgrade as `Err`.
pub fn ws_connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<WsClient, u16> {
    use tungstenite::client::IntoClientRequest;
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut request = format!("ws://{addr}{path}").into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            tungstenite::http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    match tungstenite::client::client(request, stream) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(err) => panic!("WebSocket handshake failed: {err}"),
    }
}

/// Reads text messages from a WebSocket until one, parsed as JSON, satisfies `pred`.
pub fn ws_until(
    socket: &mut WsClient,
    timeout: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        assert!(Instant::now() < deadline, "no matching WebSocket message within {timeout:?}");
        match socket.read().expect("WebSocket read") {
            tungstenite::Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).expect("JSON message");
                if pred(&value) {
                    return value;
                }
            }
            tungstenite::Message::Close(frame) => panic!("WebSocket closed: {frame:?}"),
            _ => {}
        }
    }
}

/// A temporary directory for one test's state.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("hostwatch-test-").tempdir().expect("temp dir")
}

/// Milliseconds since the Unix epoch, as the binaries stamp samples.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()
        as u64
}

/// Whether slow tests (outages of tens of seconds) should run: `HOSTWATCH_SLOW_TESTS=1`, which
/// `scripts/test.sh` and CI set. Prints why when they do not, so a skip is never silent.
pub fn slow_tests_enabled(test: &str) -> bool {
    let enabled = std::env::var("HOSTWATCH_SLOW_TESTS").is_ok_and(|v| v == "1");
    if !enabled {
        eprintln!("SKIPPED {test}: a slow test; set HOSTWATCH_SLOW_TESTS=1 (scripts/test.sh does)");
    }
    enabled
}

/// `(seq, ts_ms)` of every stored sample of a host, in sequence order, read from the database:
/// plain rows and compacted blocks (through the collector's storage code), a sample stored
/// twice listed twice.
pub fn stored_samples(db: &Path, host_id: &str) -> Vec<(u64, u64)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    collector::storage::query::stored_samples(&conn, host_id).expect("stored samples")
}

/// Why a probe agent was not admitted.
#[derive(Debug)]
pub enum ProbeRefused {
    /// The upgrade was refused with this HTTP status.
    Http(u16),
    /// The collector answered the hello with a refusal.
    Refused(protocol::Refusal),
}

/// A hand-driven agent speaking the wire protocol over a real WebSocket: for tests that need
/// exact control of sequence numbers, timestamps and acknowledgements.
pub struct ProbeAgent {
    socket: WsClient,
    /// The resume point the collector announced.
    pub welcome_last_seq: Option<u64>,
}

/// The instance id of [`ProbeAgent::connect`]'s hellos: one agent state, whatever the host.
pub const PROBE_INSTANCE: u64 = 7;

impl ProbeAgent {
    /// Connects to `/ingest` with `token` and introduces itself as `host_id`, instance
    /// [`PROBE_INSTANCE`].
    pub fn connect(ws: SocketAddr, token: &str, host_id: &str) -> Result<Self, ProbeRefused> {
        Self::connect_instance(ws, token, host_id, PROBE_INSTANCE)
    }

    /// Connects as `host_id` with the agent state `instance_id` (0: a version-1 agent's).
    pub fn connect_instance(
        ws: SocketAddr,
        token: &str,
        host_id: &str,
        instance_id: u64,
    ) -> Result<Self, ProbeRefused> {
        Self::connect_hello(ws, token, probe_hello(host_id, instance_id))
    }

    /// Connects with a hello of the test's own making (a hostname of its choice, say).
    pub fn connect_hello(
        ws: SocketAddr,
        token: &str,
        hello: protocol::Hello,
    ) -> Result<Self, ProbeRefused> {
        let mut socket =
            ws_connect(ws, "/ingest", &[("Authorization", &format!("Bearer {token}"))])
                .map_err(ProbeRefused::Http)?;
        let hello = protocol::AgentMessage::Hello(hello);
        socket
            .send(tungstenite::Message::binary(protocol::encode_agent_message(&hello)))
            .expect("send hello");
        match Self::read(&mut socket) {
            Some(protocol::CollectorMessage::Welcome(welcome)) => {
                Ok(Self { socket, welcome_last_seq: welcome.last_seq })
            }
            Some(protocol::CollectorMessage::Refused(refusal)) => {
                Err(ProbeRefused::Refused(refusal))
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    fn read(socket: &mut WsClient) -> Option<protocol::CollectorMessage> {
        loop {
            match socket.read().ok()? {
                tungstenite::Message::Binary(bytes) => {
                    return protocol::decode_collector_message(&bytes).ok();
                }
                tungstenite::Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Sends one batch.
    pub fn send(&mut self, samples: Vec<protocol::Sample>) -> Result<(), tungstenite::Error> {
        let batch = protocol::AgentMessage::Batch(protocol::Batch { dropped_total: 0, samples });
        self.socket.send(tungstenite::Message::binary(protocol::encode_agent_message(&batch)))
    }

    /// Waits for the next message from the collector (an ack, normally); `None` when the
    /// connection ends.
    pub fn receive(&mut self) -> Option<protocol::CollectorMessage> {
        Self::read(&mut self.socket)
    }

    /// Closes the connection with 1000 and returns the close code the collector answered
    /// with, or `None` if the connection ended without a close frame.
    pub fn close(mut self) -> Option<u16> {
        let frame = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "done".into(),
        };
        self.socket.close(Some(frame)).ok()?;
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    return Some(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends a batch and waits for its ack; returns the acknowledged sequence number.
    pub fn store(&mut self, samples: Vec<protocol::Sample>) -> u64 {
        self.send(samples).expect("send batch");
        match self.receive() {
            Some(protocol::CollectorMessage::Ack(ack)) => ack.seq,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

/// The hello [`ProbeAgent`] sends as `host_id` with the agent state `instance_id`.
pub fn probe_hello(host_id: &str, instance_id: u64) -> protocol::Hello {
    protocol::Hello {
        protocol_version: protocol::PROTOCOL_VERSION,
        agent_version: "probe".into(),
        host_id: host_id.into(),
        hostname: host_id.into(),
        os: "test".into(),
        kernel: "test".into(),
        arch: "x86_64".into(),
        cpu_model: "probe".into(),
        cpu_cores: 1,
        memory_total_bytes: 1 << 30,
        boot_time_seconds: 1,
        interval_ms: 1000,
        instance_id,
        kernel_build: "#1".into(),
    }
}

/// Reads an ingest socket until the collector closes it: its refusal, if it sent one, and the
/// close frame's code and reason.
pub fn refusal_and_close(
    socket: &mut WsClient,
) -> (Option<protocol::Refusal>, Option<(u16, String)>) {
    let (mut refusal, mut close) = (None, None);
    while let Ok(message) = socket.read() {
        match message {
            tungstenite::Message::Binary(bytes) => {
                if let Ok(protocol::CollectorMessage::Refused(r)) =
                    protocol::decode_collector_message(&bytes)
                {
                    refusal = Some(r);
                }
            }
            tungstenite::Message::Close(frame) => {
                close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            _ => {}
        }
    }
    (refusal, close)
}

/// A sample with the given sequence number and time, and gauges that make it recognizable.
pub fn probe_sample(seq: u64, ts_ms: u64) -> protocol::Sample {
    protocol::Sample {
        seq,
        ts_ms,
        memory: Some(protocol::Memory {
            total_bytes: 1 << 30,
            used_bytes: seq % 1000 * 1000,
            available_bytes: 1 << 29,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Resident memory of a process, in bytes.
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("VmRSS value")
        * 1024
}

/// A small tmpfs the test mounts and unmounts when dropped: as root (CI is), or through
/// `sudo -n` for a developer who may use sudo without a password.
pub struct SmallDisk(PathBuf);

/// `program` as root: itself when the test runs as root, else through `sudo -n`.
pub fn as_root(program: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if root {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", program]);
        sudo
    }
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `8m`) at `path`, created if missing.
    pub fn mount(path: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).expect("mount point");
        let status = as_root("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=1777"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a small tmpfs failed: the full-disk test needs root or password-less sudo"
        );
        Self(path)
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily, in case a process still has files open there; nothing to do on failure.
        let _ = as_root("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system under `path` with a file until it is full.
pub fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // Whatever fits of a last, smaller piece.
    while file.write_all(&chunk[..512]).is_ok() {}
}

/// What a [`SimAgent`] has done so far.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// Sequence numbers `1..=produced` were sampled.
    pub produced: u64,
    /// Sequence numbers dropped, oldest first, from a full buffer (reported to the collector in
    /// each batch's `dropped_total`, as the real agent does).
    pub dropped: Vec<u64>,
    /// Samples kept for want of an acknowledgement.
    pub unacked: usize,
    /// The highest acknowledged sequence number (0: none yet).
    pub acked: u64,
    /// When each connection attempt began.
    pub attempts: Vec<Instant>,
    /// When each welcome arrived.
    pub connected: Vec<Instant>,
    /// When each connection was lost.
    pub lost: Vec<Instant>,
    /// Samples sent a second time (unacknowledged when their connection was lost).
    pub resent: u64,
}

struct SimShared {
    report: Mutex<SimReport>,
    sampling: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
}

/// A simulated agent on a thread of its own, for tests that need many: it speaks the real
/// protocol over a real WebSocket, samples every interval ([`probe_sample`], sequence numbers
/// from 1), keeps every unacknowledged sample in a bounded buffer (the real agent's spool
/// without the disk: the oldest is dropped and counted when full), sends them in batches with at
/// most 8 unacknowledged, resends from the collector's welcome resume point after a reconnect,
/// and reconnects with the real agent's [`agent::backoff::Backoff`] (500 ms doubling to 30 s,
/// full jitter, reset by an ack; the first retry after a lost connection within
/// [`agent::backoff::RECONNECT_SPREAD`]).
pub struct SimAgent {
    /// Its host id.
    pub host: String,
    shared: Arc<SimShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Batches a [`SimAgent`] sends without their acknowledgement, at most (the real agent's window).
const SIM_WINDOW: usize = 8;

/// Silence after which a [`SimAgent`] with batches in flight gives its connection up.
const SIM_DEAD_AFTER: Duration = Duration::from_secs(10);

impl SimAgent {
    /// Starts an agent for `host` that pushes to `ws` (its `/ingest`) with `token`, sampling every
    /// `interval` and keeping at most `buffer_max` unacknowledged samples.
    pub fn start(
        ws: SocketAddr,
        token: &str,
        host: &str,
        interval: Duration,
        buffer_max: usize,
    ) -> Self {
        let shared = Arc::new(SimShared {
            report: Mutex::new(SimReport::default()),
            sampling: true.into(),
            stop: false.into(),
        });
        let (token, id, state) = (token.to_owned(), host.to_owned(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("sim {host}"))
            .stack_size(256 * 1024)
            .spawn(move || sim_run(ws, &token, &id, interval, buffer_max.max(1), &state))
            .expect("spawning a simulated agent");
        Self { host: host.to_owned(), shared, thread: Some(thread) }
    }

    /// What it has done so far.
    pub fn report(&self) -> SimReport {
        self.shared.report.lock().expect("report lock").clone()
    }

    /// Stops sampling; what is buffered is still delivered.
    pub fn stop_sampling(&self) {
        self.shared.sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops it and returns its final report.
    pub fn stop(mut self) -> SimReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Opens an agent connection as [`ProbeAgent`] does, but returns every failure (the collector
/// may be down) and the welcome's resume point.
fn sim_connect(
    ws: SocketAddr,
    token: &str,
    hello: &protocol::Hello,
) -> Result<(WsClient, Option<u64>), String> {
    use tungstenite::client::IntoClientRequest;
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let stream = TcpStream::connect_timeout(&ws, Duration::from_secs(5)).map_err(|e| text(&e))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| text(&e))?;
    stream.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| text(&e))?;
    let _ = stream.set_nodelay(true);
    let mut request = format!("ws://{ws}/ingest").into_client_request().map_err(|e| text(&e))?;
    let bearer = tungstenite::http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| text(&e))?;
    request.headers_mut().insert("Authorization", bearer);
    let (mut socket, _) = tungstenite::client::client(request, stream).map_err(|e| text(&e))?;
    let hello = protocol::AgentMessage::Hello(hello.clone());
    socket
        .send(tungstenite::Message::binary(protocol::encode_agent_message(&hello)))
        .map_err(|e| text(&e))?;
    loop {
        match socket.read().map_err(|e| text(&e))? {
            tungstenite::Message::Binary(bytes) => {
                return match protocol::decode_collector_message(&bytes) {
                    Ok(protocol::CollectorMessage::Welcome(welcome)) => {
                        Ok((socket, welcome.last_seq))
                    }
                    Ok(protocol::CollectorMessage::Refused(refusal)) => {
                        Err(format!("refused: {}", refusal.message))
                    }
                    Ok(other) => Err(format!("expected a welcome, got {other:?}")),
                    Err(err) => Err(err.to_string()),
                };
            }
            tungstenite::Message::Close(_) => return Err("closed before the welcome".into()),
            _ => {}
        }
    }
}

fn sim_run(
    ws: SocketAddr,
    token: &str,
    host: &str,
    interval: Duration,
    buffer_max: usize,
    shared: &SimShared,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut rng = fastrand::Rng::new();
    let mut hello = probe_hello(host, rng.u64(1..));
    hello.interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
    // The real agent's policy (agent/src/transport.rs).
    let mut backoff =
        agent::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut buffer: std::collections::VecDeque<protocol::Sample> = Default::default();
    let (mut next_seq, mut dropped_total, mut sent_upto, mut highest_sent) = (1u64, 0, 0, 0);
    let mut inflight = 0usize;
    let mut last_heard = Instant::now();
    let mut conn: Option<WsClient> = None;
    let mut retry_at = Instant::now();
    let mut next_sample = Instant::now();
    while !shared.stop.load(SeqCst) {
        let now = Instant::now();
        let mut report = shared.report.lock().expect("report lock").clone();
        if shared.sampling.load(SeqCst) && now >= next_sample {
            if buffer.len() >= buffer_max {
                if let Some(oldest) = buffer.pop_front() {
                    dropped_total += 1;
                    report.dropped.push(oldest.seq);
                }
            }
            buffer.push_back(probe_sample(next_seq, now_ms()));
            report.produced = next_seq;
            next_seq += 1;
            next_sample += interval;
            if next_sample < now {
                next_sample = now + interval;
            }
        }
        let mut lost = false;
        if conn.is_none() {
            if now >= retry_at {
                report.attempts.push(now);
                match sim_connect(ws, token, &hello) {
                    Ok((socket, last_seq)) => {
                        if let Some(last) = last_seq {
                            while buffer.front().is_some_and(|s| s.seq <= last) {
                                buffer.pop_front();
                            }
                            report.acked = report.acked.max(last);
                        }
                        sent_upto = last_seq.unwrap_or(0);
                        inflight = 0;
                        last_heard = Instant::now();
                        report.connected.push(last_heard);
                        conn = Some(socket);
                    }
                    Err(_) => retry_at = Instant::now() + backoff.next_delay(&mut rng),
                }
            } else {
                let until = retry_at.min(next_sample).saturating_duration_since(now);
                std::thread::sleep(until.min(Duration::from_millis(100)));
            }
        } else if let Some(socket) = conn.as_mut() {
            while inflight < SIM_WINDOW {
                let samples: Vec<protocol::Sample> = buffer
                    .iter()
                    .filter(|s| s.seq > sent_upto)
                    .take(protocol::Limits::MAX_SAMPLES_PER_BATCH)
                    .cloned()
                    .collect();
                let Some(last) = samples.last().map(|s| s.seq) else { break };
                report.resent += samples.iter().filter(|s| s.seq <= highest_sent).count() as u64;
                highest_sent = highest_sent.max(last);
                let batch =
                    protocol::AgentMessage::Batch(protocol::Batch { dropped_total, samples });
                let bytes = protocol::encode_agent_message(&batch);
                if socket.send(tungstenite::Message::binary(bytes)).is_err() {
                    lost = true;
                    break;
                }
                sent_upto = last;
                inflight += 1;
            }
            if !lost {
                let wait = next_sample
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(10), Duration::from_millis(250));
                let _ = socket.get_mut().set_read_timeout(Some(wait));
                match socket.read() {
                    Ok(tungstenite::Message::Binary(bytes)) => {
                        last_heard = Instant::now();
                        match protocol::decode_collector_message(&bytes) {
                            Ok(protocol::CollectorMessage::Ack(ack)) => {
                                while buffer.front().is_some_and(|s| s.seq <= ack.seq) {
                                    buffer.pop_front();
                                }
                                report.acked = report.acked.max(ack.seq);
                                inflight = inflight.saturating_sub(1);
                                backoff.reset();
                            }
                            // A refusal (the collector stopping, or unable to store) or anything
                            // unexpected ends the connection; the samples stay buffered.
                            _ => lost = true,
                        }
                    }
                    Ok(tungstenite::Message::Close(_)) => lost = true,
                    Ok(_) => last_heard = Instant::now(),
                    Err(tungstenite::Error::Io(err))
                        if matches!(
                            err.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        lost = inflight > 0 && last_heard.elapsed() > SIM_DEAD_AFTER;
                    }
                    Err(_) => lost = true,
                }
            }
        }
        if lost {
            conn = None;
            let now = Instant::now();
            report.lost.push(now);
            // As the real agent's transport does after losing a connection that worked.
            retry_at = now + backoff.after_loss(&mut rng);
        }
        report.unacked = buffer.len();
        *shared.report.lock().expect("report lock") = report;
    }
    if let Some(mut socket) = conn {
        let _ = socket.close(None);
        let _ = socket.flush();
    }
}

/// A sample of a probe host: CPU busy about `busy` % (between half and one and a half times it,
/// in a one-minute wave; counters derived from `ts_ms`, so samples of any spacing agree), two
/// mounts ("/" half full, "/data" 90 % full), one interface, one disk, one sensor, load `load`.
pub fn rich_sample(seq: u64, ts_ms: u64, load: f32, busy: u64) -> protocol::Sample {
    let ticks = ts_ms as f64 / 10.0; // 100 ticks a second since the epoch
    let period = 6000.0; // a minute of ticks
    let amplitude = period * busy.min(100 - busy.min(100)) as f64 / 200.0;
    let user = ticks * busy as f64 / 100.0 + amplitude * (ticks / period).sin();
    let core = protocol::CpuTimes {
        user_ticks: user as u64,
        idle_ticks: (ticks - user) as u64,
        ..Default::default()
    };
    let gib = 1u64 << 30;
    let mount = |mount_point: &str, total: u64, available: u64| protocol::Filesystem {
        mount_point: mount_point.into(),
        total_bytes: total,
        available_bytes: available,
        device: format!("/dev/{}", if mount_point == "/" { "sda1" } else { "sdb1" }),
        fs_type: "ext4".into(),
        free_bytes: Some(available),
    };
    protocol::Sample {
        seq,
        ts_ms,
        cpu: Some(core),
        cores: vec![core],
        load: Some(protocol::LoadAverage { one: load, five: load, fifteen: load }),
        memory: Some(protocol::Memory {
            total_bytes: 4 * gib,
            used_bytes: gib + seq % 100 * (1 << 20),
            available_bytes: 2 * gib,
            ..Default::default()
        }),
        networks: vec![protocol::NetworkInterface {
            name: "eth0".into(),
            rx_bytes: seq * 50_000,
            tx_bytes: seq * 20_000,
            rx_packets: seq * 40,
            tx_packets: seq * 30,
            ..Default::default()
        }],
        filesystems: vec![mount("/", 100 * gib, 50 * gib), mount("/data", 500 * gib, 50 * gib)],
        disks: vec![protocol::DiskIo {
            device: "sda".into(),
            read_bytes: seq * 4096,
            written_bytes: seq * 8192,
            ..Default::default()
        }],
        uptime_seconds: Some(10_000 + seq),
        process_count: Some(120),
        temperatures: vec![protocol::Temperature { label: "cpu".into(), celsius: 45.0 }],
        swap: None,
    }
}

/// A probe host's hello with a hostname of the test's choice.
pub fn named_hello(id: &str, hostname: &str) -> protocol::Hello {
    protocol::Hello { hostname: hostname.into(), ..probe_hello(id, PROBE_INSTANCE) }
}

/// Runs openssl in `dir`, panicking with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A private CA (`ca.pem`) and a certificate for localhost and 127.0.0.1 signed by it
/// (`server.pem`, key `server.key`), made with openssl in `dir`.
pub fn certificates(dir: &Path) {
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=hostwatch test CA",
        ],
    );
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key"]);
    openssl(
        dir,
        &["req", "-new", "-key", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// A `redis-server` (Debian's, 7.x) on a loopback port chosen for it, for the scale-out tests.
pub struct RedisServer {
    /// The process, `None` while killed.
    pub child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    persistent: bool,
}

impl RedisServer {
    /// Starts one in `dir` without persistence (`--save '' --appendonly no`).
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, false)
    }

    /// Starts one in `dir`; `persistent` keeps the data in an append-only file fsynced on every
    /// write, so a restart after `kill -9` finds the stream as it was.
    pub fn start_with(dir: &Path, persistent: bool) -> Self {
        // Redis cannot listen on port 0: take a free port from the kernel and release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self { child: None, port, dir: dir.to_owned(), persistent };
        server.restart();
        server
    }

    /// The URL collectors take with `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again) on its port; waits until it accepts connections.
    pub fn restart(&mut self) {
        let appendonly = if self.persistent { "yes" } else { "no" };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", appendonly, "--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server (Debian's redis-server package)");
        self.child = Some(child);
        wait_for(Duration::from_secs(10), "redis-server accepting connections", || {
            TcpStream::connect(("127.0.0.1", self.port)).ok().map(|_| ())
        });
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `(seq)` of every stored sample of each host in `hosts` on the database `db`.
pub fn stored_seqs(db: &Path, hosts: &[String]) -> Vec<Vec<u64>> {
    hosts.iter().map(|h| stored_samples(db, h).into_iter().map(|(seq, _)| seq).collect()).collect()
}

/// Why `seqs` is not every sequence number from its first to its last exactly once, if it is not.
pub fn not_exactly_once(seqs: &[u64]) -> Option<String> {
    let first = *seqs.first()?;
    let last = *seqs.last()?;
    if seqs.windows(2).any(|w| w[0] == w[1]) {
        return Some("a sequence number stored twice".into());
    }
    let missing: Vec<u64> = (first..=last).filter(|s| seqs.binary_search(s).is_err()).collect();
    (!missing.is_empty()).then(|| format!("missing {missing:?}"))
}
