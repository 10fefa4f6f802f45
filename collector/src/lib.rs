//! hostwatch-collector as a library: `main` parses the configuration and calls [`run`].
//!
//! Tasks and threads:
//! - the **storage** thread owns the SQLite writer ([`storage`]);
//! - the **hub** task owns all shared state and fans events out ([`fanout::hub`]);
//! - the **ws** listener serves agents (`/ingest`, [`ingest`]) and browsers (`/live`,
//!   [`fanout::live`]);
//! - the **http** listener serves the page, the API and `/events` ([`net::http`], [`api`]), and
//!   the same upgrades as `--ws`;
//! - the **self-monitor** thread samples this host ([`selfmon`]);
//! - each notification channel's sender: a task per webhook, a thread per email channel
//!   ([`notify`]);
//! - with `--redis`, a **publisher** and a **consumer** task replicate with the other
//!   collectors ([`replica`]);
//! - a **signal** thread turns SIGTERM/SIGINT into a graceful shutdown.

pub mod activity;
pub mod alerts;
pub mod api;
pub mod catalog;
pub mod config;
pub mod fanout;
pub mod ingest;
pub mod net;
pub mod notify;
pub mod replica;
pub mod selfmon;
pub mod storage;
pub mod untrusted;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub use agent::runtime::now_ms;

use crate::config::Config;
use crate::fanout::hub;
use crate::ingest::{auth, upgrade};
use crate::net::http::server::HttpLimits;
use crate::net::{budget, http, tls};
use crate::storage::{Readers, Storage};

/// The collector's executor for everything but ingest: the page, the API, SSE and `/live`
/// writers. smol's global executor runs a single thread unless an environment variable says
/// otherwise; [`start_executor`] runs this one on a thread per core.
static EXECUTOR: smol::Executor<'static> = smol::Executor::new();

/// The executor of agents' connections and the hub, on threads of their own: a woken agent
/// read waits behind the other agents, never behind a thousand SSE writers queued on
/// [`EXECUTOR`], so acks keep their latency during fan-out (the storage writer, which waits on
/// the hub's queue, has its own thread too). The kernel shares the cores between the two sets
/// of threads; the fan-out threads run at a lower priority ([`FANOUT_NICE`]).
static INGEST: smol::Executor<'static> = smol::Executor::new();

/// How much nicer than the rest of the collector the fan-out threads are: enough that a core
/// busy with SSE writes yields to an agent's batch at once, not so much that viewers starve
/// on a host that is busy with other work (each step of niceness is about 1.25× less weight).
const FANOUT_NICE: i32 = 5;

/// Spawns a task on the collector's executor (page, API, fan-out).
pub fn spawn<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> smol::Task<T> {
    EXECUTOR.spawn(future)
}

/// Spawns a task on the ingest executor (agents' connections and the hub).
pub fn spawn_ingest<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> smol::Task<T> {
    INGEST.spawn(future)
}

/// Starts both executors' threads, one per core each (the storage writer has its own thread
/// too), once per process: the executors are statics, so a second collector in the same
/// process (a test) shares them.
fn start_executor() -> anyhow::Result<()> {
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Ok(());
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    for index in 0..threads {
        // Detached: the threads serve the static executors for the life of the process, and
        // the collector ends by exiting, not by joining them.
        std::thread::Builder::new()
            .name(format!("ingest-{index}"))
            .spawn(|| smol::block_on(INGEST.run(std::future::pending::<()>())))
            .context("starting the ingest executor")?;
        std::thread::Builder::new()
            .name(format!("executor-{index}"))
            .spawn(|| {
                lower_priority(FANOUT_NICE);
                smol::block_on(EXECUTOR.run(std::future::pending::<()>()))
            })
            .context("starting the executor")?;
    }
    Ok(())
}

/// Makes the calling thread `nice` steps nicer (on Linux, niceness belongs to each thread).
/// A failure costs only the priority, so it is logged and ignored.
fn lower_priority(nice: i32) {
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(thread)).unwrap_or(0);
    if let Err(err) = rustix::process::setpriority_process(Some(thread), current + nice) {
        log::debug!("cannot lower the fan-out threads' priority: {err}");
    }
}

/// Limits of the collector's listeners.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Limits of each HTTP connection.
    pub http: HttpLimits,
    /// Most open HTTP connections (page, API and SSE together).
    pub max_http_connections: usize,
    /// Most agent connections (`--max-connections`).
    pub max_ws_connections: usize,
    /// Most connections that have not sent a complete request head or upgrade yet.
    pub max_pending_connections: usize,
    /// Most live subscribers (SSE and `/live` together).
    pub max_subscribers: usize,
    /// Time allowed for a TLS handshake, a WebSocket upgrade, and an agent's hello after it.
    pub handshake_timeout: Duration,
    /// An agent connection silent for this long (at least ten of its intervals) is closed.
    pub agent_idle_timeout: Duration,
    /// How long a live subscriber may leave a write unread. Longer than a response's write
    /// timeout: a viewer whose tab was in the background for a minute, or whose network
    /// stalled, must still get its `lagged` notice when it reads again, not a bare end of
    /// stream. Its queue is bounded meanwhile, so the wait costs at most that queue.
    pub subscriber_stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            http: HttpLimits::default(),
            max_http_connections: 4096,
            max_ws_connections: 20_000,
            max_pending_connections: 1024,
            max_subscribers: 2000,
            handshake_timeout: Duration::from_secs(10),
            agent_idle_timeout: Duration::from_secs(60),
            subscriber_stall_timeout: Duration::from_secs(120),
        }
    }
}

/// Counters kept outside the hub because connection tasks bump them on every message.
#[derive(Debug, Default)]
pub struct Metrics {
    ingest_bytes_total: AtomicU64,
}

impl Metrics {
    /// Counts bytes received from agents.
    pub fn ingest_bytes(&self, bytes: usize) {
        self.ingest_bytes_total.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes received from agents since start.
    pub fn ingest_bytes_total(&self) -> u64 {
        self.ingest_bytes_total.load(Ordering::Relaxed)
    }
}

/// What every connection task needs: cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    /// The hub's inbox.
    pub hub: async_channel::Sender<hub::Event>,
    /// The storage writer.
    pub storage: Storage,
    /// Read-only database connections.
    pub readers: Readers,
    /// Agent tokens; replaced on SIGHUP when per-host tokens are re-read.
    pub agent_auth: Arc<RwLock<Arc<auth::AgentAuth>>>,
    /// Viewer, admin and origin rules.
    pub access: Arc<crate::api::access::Access>,
    /// TLS for both listeners, if configured.
    pub tls: Option<futures_rustls::TlsAcceptor>,
    /// The same certificate for the `--http` listener, offering HTTP/2 by ALPN (`h2`).
    pub tls_http: Option<futures_rustls::TlsAcceptor>,
    /// Listener limits.
    pub limits: Arc<Limits>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Live subscribers now, checked against `limits.max_subscribers`.
    pub subscribers: Arc<AtomicUsize>,
    /// Connection budgets: open sockets, unauthenticated ones, agents.
    pub budget: Arc<budget::Budget>,
    /// Closes when the collector shuts down.
    pub shutdown: async_channel::Receiver<()>,
    /// The notification channels' counters, for `/metrics`.
    pub notify_stats: Arc<Vec<Arc<notify::ChannelStats>>>,
    /// Replication with the other collectors (`--redis`), if on.
    pub replica: Option<replica::Replica>,
    connections: Arc<AtomicU64>,
}

impl Ctx {
    /// The tag of this collector's live event ids: with `--redis` only, so a viewer moved to
    /// another collector is told to resync rather than resumed from another numbering.
    pub fn event_tag(&self) -> Option<&str> {
        self.replica.as_ref().map(|r| r.event_tag())
    }

    /// A fresh connection id.
    pub fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed)
    }

    /// The current agent tokens.
    pub fn agent_auth(&self) -> Arc<auth::AgentAuth> {
        // A poisoned lock only means a reload panicked half-way; the old value is still whole.
        self.agent_auth.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Runs the collector until SIGTERM or SIGINT; SIGHUP re-reads the per-host agent tokens and
/// the alert rules.
pub fn run(config: Config) -> anyhow::Result<()> {
    let shared = config.agent_token.as_ref().map(auth::resolve_agent_token).transpose()?;
    let per_host = match &config.agent_tokens_file {
        Some(path) => auth::read_agent_tokens(path)?,
        None => Vec::new(),
    };
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key, &[])?),
        None => None,
    };
    let tls_http = match &config.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key, &[b"h2", b"http/1.1"])?),
        None => None,
    };
    // Before the "listening" line: a SIGHUP right after it must find the handler in place, not
    // end the process (the default action).
    let signals = signal_channel()?;
    let (hub_tx, hub_rx) = async_channel::bounded(8192);
    let publish = hub_tx.clone();
    let (storage, storage_thread) =
        Storage::open(&config.db, config.policy.clone(), config.host_limits, move |stored| {
            // The hub only goes away at shutdown, when nobody is listening any more.
            let _ = publish.send_blocking(hub::Event::Stored(stored));
        })?;
    let hosts = storage.load_hosts().context("reading the hosts")?;
    let (firing, silences) = storage.load_alerts().context("reading the alert state")?;
    let (cursors, events) = storage
        .load_undelivered(now_ms().saturating_sub(notify::RETRY_FOR.as_millis() as u64), 100_000)
        .context("reading the notification cursors")?;
    let resume =
        notify::Resume { cursors, events, newest_eid: storage.next_event_id().saturating_sub(1) };
    let readers = Readers::open(&config.db, 4, config.policy.retention_raw)?;
    let replica = match &config.redis {
        Some(settings) => {
            Some(replica::Replica::start(settings.clone(), &storage, hub_tx.clone())?)
        }
        None => None,
    };
    let notifier = notify::Notifier::start(&config.notify, &storage, &resume, replica.as_ref())?;

    let http_listener = bind(config.http, "--http")?;
    let ws_listener = bind(config.ws, "--ws")?;
    let http_addr = http_listener.local_addr()?;
    let ws_addr = ws_listener.local_addr()?;

    let self_host = if config.self_monitor {
        match agent::sampler::read_host_id("/etc/machine-id".as_ref()) {
            Ok(id) if selfmon::host_has_an_agent(&hosts, &id) => {
                log::info!("self-monitoring off: an agent reports this host ({id})");
                None
            }
            Ok(id) => Some(id),
            Err(err) => {
                log::warn!("self-monitoring off: {err:#}");
                None
            }
        }
    } else {
        None
    };
    announce(shared.as_ref(), http_addr, ws_addr, &config);

    let (shutdown_tx, shutdown_rx) = async_channel::bounded::<()>(1);
    let agent_auth = Arc::new(auth::AgentAuth::new(shared.map(|s| s.token), per_host));
    let limits = Limits {
        max_subscribers: config.max_subscribers,
        max_ws_connections: config.max_connections,
        agent_idle_timeout: config.agent_idle_timeout,
        max_pending_connections: config.max_pending_connections,
        ..Limits::default()
    };
    let budget = budget::Budget::new(budget::Sizes {
        fd_limit: budget::raise_fd_limit(),
        max_agents: limits.max_ws_connections,
        max_pending: limits.max_pending_connections,
        max_http: limits.max_http_connections,
    });
    let ctx = Ctx {
        hub: hub_tx.clone(),
        storage: storage.clone(),
        readers,
        agent_auth: Arc::new(RwLock::new(agent_auth.clone())),
        access: Arc::new(
            crate::api::access::Access::new(
                config.viewer_token.as_ref().map(|s| s.expose().to_owned()),
                config.admin_token.as_ref().map(|s| s.expose().to_owned()),
            )
            .with_allowed_origins(config.allowed_origins.clone())
            .with_page(http_addr.port(), local_names()),
        ),
        tls,
        tls_http,
        limits: Arc::new(limits),
        metrics: Arc::new(Metrics::default()),
        subscribers: Arc::new(AtomicUsize::new(0)),
        budget: Arc::new(budget),
        shutdown: shutdown_rx,
        notify_stats: Arc::new(notifier.stats()),
        replica,
        connections: Arc::new(AtomicU64::new(1)),
    };
    start_executor()?;
    let setup = hub::AlertSetup { rules: config.alerts.clone(), firing, silences, notifier };
    let hub = hub::Hub::new(storage.clone(), hosts, self_host.clone(), setup);
    let ws_active = Arc::new(AtomicUsize::new(0));
    let http_active = Arc::new(AtomicUsize::new(0));

    smol::block_on(async {
        let hub_task = spawn_ingest(hub.run(hub_rx));
        let ticker = spawn(tick(hub_tx.clone()));
        let ws_task = spawn_ingest(upgrade::serve(ws_listener, ctx.clone(), ws_active.clone()));
        let http_task = spawn(http::serve(http_listener, ctx.clone(), http_active.clone()));
        let self_monitor = match &self_host {
            Some(id) => Some(selfmon::spawn(
                storage.clone(),
                hub_tx.clone(),
                id.clone(),
                config.self_interval,
                ctx.next_connection(),
            )?),
            None => None,
        };
        agent::runtime::systemd::ready(&format!("serving http://{http_addr}/ and ws://{ws_addr}/"));

        loop {
            let signal = signals.recv().await.unwrap_or(SIGTERM);
            if signal == SIGHUP {
                reload_agent_tokens(&ctx, &config).await;
                reload_alert_rules(&ctx).await;
                continue;
            }
            log::info!("received signal {signal}, shutting down");
            break;
        }
        agent::runtime::systemd::stopping();
        let deadline = Instant::now() + Duration::from_secs(4);
        // Stop accepting; SSE and /live streams see the hub end them.
        shutdown_tx.close();
        ws_task.await;
        http_task.await;
        // Agents get a close frame (1001) after their batch in flight is committed.
        hub_tx.send(hub::Event::Shutdown).await.ok();
        hub_task.await;
        // Agents get their close frames and SSE streams their `shutdown` event before exit.
        let open = || ws_active.load(Ordering::Relaxed) + http_active.load(Ordering::Relaxed);
        while open() > 0 && Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        drop(ticker);
        if let Some(thread) = self_monitor {
            // It notices the hub's close within one interval.
            let _ = smol::unblock(move || thread.join()).await;
        }
        anyhow::Ok(())
    })?;
    storage.stop();
    // The writer commits what it has queued, then stops.
    storage_thread.join().map_err(|_| anyhow::anyhow!("the storage thread panicked"))?;
    log::info!("stopped");
    Ok(())
}

/// Re-reads the per-host tokens file; connections whose token went away are closed. A file that
/// cannot be read or parsed leaves the current tokens in force.
async fn reload_agent_tokens(ctx: &Ctx, config: &Config) {
    let Some(path) = &config.agent_tokens_file else {
        log::info!("SIGHUP: no --agent-tokens-file to re-read");
        return;
    };
    let per_host = match auth::read_agent_tokens(path) {
        Ok(tokens) => tokens,
        Err(err) => {
            log::error!("SIGHUP: keeping the current agent tokens: {err:#}");
            return;
        }
    };
    let previous = ctx.agent_auth();
    let current = Arc::new(previous.reloaded(per_host));
    *ctx.agent_auth.write().unwrap_or_else(|e| e.into_inner()) = current.clone();
    log::info!("SIGHUP: re-read {}", path.display());
    // At shutdown the hub may be gone; then there is nobody left to close.
    let _ = ctx.hub.send(hub::Event::TokensReloaded { current, previous }).await;
}

/// Re-reads the configuration for its alert rules. A configuration with a bad rule (or any
/// other problem) leaves the current rules in force and says why. Notification channels and
/// every other setting keep their values until a restart.
async fn reload_alert_rules(ctx: &Ctx) {
    match Config::from_env() {
        Ok(config) => {
            log::info!("SIGHUP: {} alert rules in force", config.alerts.len());
            // At shutdown the hub may be gone; the rules no longer matter then.
            let _ = ctx.hub.send(hub::Event::ReloadRules(config.alerts)).await;
        }
        Err(err) => {
            log::error!("SIGHUP: keeping the current alert rules: bad configuration: {err}")
        }
    }
}

/// This host's names, as a browser may reach its page: the host name, short and in full.
fn local_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(name) = sysinfo::System::host_name() {
        if let Some((short, _)) = name.split_once('.') {
            names.push(short.to_owned());
        }
        names.push(name);
    }
    names
}

fn bind(addr: std::net::SocketAddr, flag: &str) -> anyhow::Result<smol::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} ({flag})"))?;
    smol::net::TcpListener::try_from(listener)
        .with_context(|| format!("cannot use the listener on {addr}"))
}

/// Tells the operator where to look and how agents connect. The token itself is printed only
/// when it was just generated (to stdout, never to the log).
fn announce(
    token: Option<&auth::ResolvedToken>,
    http: std::net::SocketAddr,
    ws: std::net::SocketAddr,
    config: &Config,
) {
    let tls = if config.tls.is_some() { "s" } else { "" };
    log::info!(
        "hostwatch-collector {} listening: page and API on http{tls}://{http}/ (events at \
         /events, agents at /ingest, browsers at /live), WebSockets on ws{tls}://{ws}/ too \
         (--ws: agents at /ingest, browsers at /live), database {}",
        env!("CARGO_PKG_VERSION"),
        config.db.display()
    );
    let host = if http.ip().is_unspecified() {
        sysinfo::System::host_name().unwrap_or_else(|_| "THIS-HOST".into())
    } else {
        http.ip().to_string()
    };
    // One port for everything; `--ws` stays for agents installed with it.
    let url = format!("ws{tls}://{host}:{}/ingest", http.port());
    let Some(token) = token else {
        println!("Agents connect with: hostwatch-agent --collector {url} --token-file FILE");
        let file =
            config.agent_tokens_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        println!("  (FILE holds the host's token from {file})");
        return;
    };
    match (&token.path, token.generated) {
        // Printed only to a terminal: under systemd stdout goes to the journal, and a secret
        // must never end up in a log.
        (Some(path), true) if std::io::stdout().is_terminal() => {
            println!(
                "Generated an agent token in {} (mode 0600). Start agents with:",
                path.display()
            );
            println!("  hostwatch-agent --collector {url} --token {}", token.token);
        }
        (Some(path), _) => {
            println!("Agents connect with: hostwatch-agent --collector {url} --token-file FILE");
            println!("  (FILE holds the token from {})", path.display());
        }
        (None, _) => {
            println!("Agents connect with: hostwatch-agent --collector {url} --token-file FILE")
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, as an async channel.
fn signal_channel() -> anyhow::Result<async_channel::Receiver<i32>> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    let (tx, rx) = async_channel::bounded(4);
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            // After the first signal the receiver may be gone; later signals then do nothing.
            let _ = tx.send_blocking(signal);
        }
    })?;
    Ok(rx)
}

async fn tick(hub: async_channel::Sender<hub::Event>) {
    loop {
        smol::Timer::after(Duration::from_secs(1)).await;
        if hub.send(hub::Event::Tick).await.is_err() {
            return;
        }
    }
}
