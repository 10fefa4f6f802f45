//! Storage: the only module that touches SQLite.
//!
//! One writer thread owns the read-write connection and is fed [`Command`]s over a bounded
//! channel. It drains whatever is queued into one transaction (batched commits), and only after
//! the commit succeeds does it answer the callers (so an agent's `Ack` always means durable)
//! and hand the stored events to the hub for live fan-out. Readers ([`query::Reader`]) use their
//! own read-only connections; WAL lets them read while the writer writes.
//!
//! Idempotency: samples are keyed by (host, seq). Agents send each host's samples in increasing
//! sequence order, and the host's highest stored sequence number is committed in the same
//! transaction as its samples, so anything at or below it is a duplicate and skipped.

pub mod admission;
pub mod alerts;
pub mod block;
pub mod derive;
pub mod device;
pub mod health;
pub mod maintenance;
mod progress;
pub mod query;
pub mod removal;
pub mod replica;
pub mod rows;
pub mod schema;
pub mod timing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use protocol::{Batch, Hello, Sample};
use rusqlite::{Connection, OptionalExtension, params};

pub use derive::Point;

use crate::activity::Record;

/// Most commands folded into one transaction.
const MAX_COMMANDS_PER_TRANSACTION: usize = 1024;

/// Commands queued for the writer before senders wait.
const QUEUE_DEPTH: usize = 4096;

/// A request to the writer thread.
pub enum Command {
    /// Make sure a host exists, update its facts, and say where its agent should resume.
    Register {
        /// The agent's hello (boxed: it is most of the size of every queued command).
        hello: Box<Hello>,
        /// Whether a new host counts against the shared token's host limits.
        limited: bool,
        /// Where to send the answer.
        reply: async_channel::Sender<Result<Registration, StoreError>>,
    },
    /// Store a batch of a registered host's samples.
    Store {
        /// The host, from its [`Registration`].
        host_key: i64,
        /// The samples.
        batch: Batch,
        /// Who sent them, which decides whether they go to the replication outbox.
        source: Source,
        /// Where to send the answer, after the commit.
        reply: async_channel::Sender<Result<StoreResult, StoreError>>,
    },
    /// Store a batch another collector stored, from the stream: the host is found by its id
    /// (registered when it is new here, also after it was removed here), and nothing of the
    /// stored agent state (instance, resume point) is changed by an entry of another instance
    /// that is older than what is stored ([`store`]).
    StoreReplica {
        /// The hello of the agent that sent the samples to the other collector.
        hello: Arc<Hello>,
        /// Whether the hello differs from the last one the consumer saw for this host (its
        /// facts are then updated here and the hub told).
        changed: bool,
        /// The samples.
        batch: Batch,
        /// Where to send the answer, after the commit.
        reply: async_channel::Sender<Result<StoreResult, StoreError>>,
    },
    /// Record an activity event (agent connected, alert, broadcast…) and publish it.
    Activity(Record),
    /// Add or delete a silence; answered after the commit.
    Silence {
        /// What to change.
        change: alerts::SilenceChange,
        /// The silence added or deleted (`None`: no such id).
        reply: async_channel::Sender<Result<Option<alerts::Silence>, StoreError>>,
    },
    /// A notification channel delivered (or gave up on) alert events up to this id.
    NotifyDelivered {
        /// The channel's name.
        channel: String,
        /// The alert event's id.
        eid: u64,
    },
    /// Remove a host: rename it to a tombstone (maintenance deletes its rows in steps) and
    /// record its `host_removed` activity, in one transaction.
    RemoveHost {
        /// The host id.
        host_id: String,
        /// The `host_removed` event.
        activity: Record,
        /// Whether the host was stored, after the commit.
        reply: async_channel::Sender<Result<bool, StoreError>>,
    },
    /// The replication outbox's entries up to this id are in the stream: delete them.
    ReplicaPublished {
        /// The newest published entry's id.
        up_to: i64,
    },
    /// Keep a replication setting (this collector's id, the stream position consumed).
    ReplicaState {
        /// Its name.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// Answer once everything queued before it is committed (readiness checks).
    Ping(async_channel::Sender<()>),
    /// Finish the current transaction and stop.
    Stop,
}

/// Why the storage did not store something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The input is invalid; sending it again will not help.
    Refused(String),
    /// The database failed or the writer stopped; nothing of the request was kept, and the
    /// same request may succeed later.
    Unavailable(String),
    /// Refused for now (too many new hosts a minute); the same request may succeed later.
    Busy(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Refused(why) | StoreError::Unavailable(why) | StoreError::Busy(why) => {
                f.write_str(why)
            }
        }
    }
}

/// Who sent a batch to store.
#[derive(Debug, Clone)]
pub enum Source {
    /// An agent of this collector. With replication on, its hello: what is newly stored goes to
    /// the replication outbox (with the hello, so every entry stands on its own), in the same
    /// transaction.
    Local(Option<Arc<Hello>>),
    /// Another collector, through the stream, of the agent instance `instance_id`: never
    /// published again; a sample not stored yet is stored also below the host's resume point
    /// (it fills a hole an outage left, when the agent moved between collectors), and an older
    /// instance's samples never move the resume point.
    Replica {
        /// The instance id of the agent that sent them.
        instance_id: u64,
    },
}

/// Where a registered host stands.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The host's key in the database.
    pub host_key: i64,
    /// Highest stored sequence number, where the agent resumes.
    pub last_seq: Option<u64>,
}

/// The outcome of a stored batch.
#[derive(Debug, Clone, Copy)]
pub struct StoreResult {
    /// Everything of the host up to here is durably stored.
    pub acked_seq: Option<u64>,
    /// The replication outbox entry holding what this batch newly stored, if one was written.
    pub outbox_id: Option<i64>,
}

/// What the writer hands to the hub after each commit.
#[derive(Debug, Clone)]
pub enum Stored {
    /// A newly stored sample.
    Sample {
        /// Its live event id.
        eid: u64,
        /// Its host.
        host_id: Arc<str>,
        /// Its derived values.
        point: Arc<Point>,
        /// The sample as the agent sent it (cumulative counters), for `/metrics`.
        sample: Arc<Sample>,
        /// The host's agent-side dropped count as of this sample.
        dropped_total: u64,
        /// It came from another collector through the stream (its agent is not connected
        /// here).
        replicated: bool,
        /// Stored below the host's resume point: a hole an outage left, filled from the stream
        /// late (history, not the present: alerts do not judge it).
        late: bool,
    },
    /// A host first stored here from the stream, or whose agent's hello changed there: the
    /// hub lists it (before its samples, which follow in the same publication).
    Host {
        /// The agent's hello.
        hello: Box<Hello>,
    },
    /// A newly stored activity event.
    Activity {
        /// Its live event id.
        eid: u64,
        /// The event.
        activity: Record,
    },
}

/// A host as stored, for the hub's initial state.
#[derive(Debug, Clone)]
pub struct HostRecord {
    /// The agent's hello facts.
    pub hello: Hello,
    /// Newest stored sample's time.
    pub last_seen_ms: Option<u64>,
    /// Samples the agent reported dropped.
    pub dropped_total: u64,
    /// Newest stored point.
    pub latest: Option<Point>,
    /// Newest stored sample as the agent sent it.
    pub latest_sample: Option<Arc<Sample>>,
}

/// How many hosts the shared agent token may create ([`admission`]).
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// `--max-hosts`.
    pub max_hosts: usize,
    /// `--max-new-hosts-per-minute`.
    pub new_per_minute: u32,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self { max_hosts: 100_000, new_per_minute: 600 }
    }
}

/// A cheap handle to the writer thread.
#[derive(Clone)]
pub struct Storage {
    tx: async_channel::Sender<Command>,
    path: PathBuf,
    next_event_id: u64,
    health: Arc<health::Health>,
    timings: Arc<timing::WriterTimings>,
}

/// Writer-side knowledge of a host, cached between batches.
struct HostState {
    host_id: Arc<str>,
    /// The agent instance whose numbering `last_seq` is.
    instance_id: u64,
    /// When a local agent last registered it (unix ms; 0: not since the writer loaded it): a
    /// batch from the stream of another instance only takes the host over with samples newer
    /// than that, so a backlog of the agent's previous state never displaces the live agent.
    registered_ms: u64,
    /// The host's numbering started afresh (a local agent of another instance than stored):
    /// its samples may already be here from the stream, so each is looked up until one is new.
    check_copies: bool,
    last_seq: Option<u64>,
    /// Time of the newest stored sample, which bounds how far the next may jump.
    last_seen_ms: Option<u64>,
    dropped_total: u64,
    previous: Option<Arc<Sample>>,
    /// Row ids of the host's devices by kind and name, loaded on its first batch.
    devices: Option<HashMap<(crate::catalog::DeviceKind, String), u32>>,
}

/// The highest sequence number a sample may have: a sequence number is stored as SQLite's
/// signed 64-bit integer and never wraps. Agents number from their clock's milliseconds at
/// their first start, so every real agent is far below this.
const MAX_SEQ: u64 = i64::MAX as u64;

/// How far ahead of the collector's clock, in milliseconds, a sequence number may be. An
/// agent's first sequence number is its clock's milliseconds and then grows by at most ten a
/// second (the shortest interval is 100 ms), so no real agent's is ever ahead of its clock; a
/// day covers a wrong clock.
const MAX_SEQ_AHEAD_OF_CLOCK_MS: u64 = 24 * 3600 * 1000;

/// How many sequence numbers a host's next sample may skip beyond the last stored one, at
/// least: an agent whose spool overflowed during an outage skips the samples it dropped, at
/// most ten a second of the outage (see [`sequence_window`]); this slack covers the difference
/// between the agent's clock and the collector's.
const MIN_SEQ_WINDOW: u64 = 10_000;

/// The most sequence numbers a host may skip after its newest stored sample, dated
/// `last_seen_ms`, at `now_ms`: ten a second of the time since, plus [`MIN_SEQ_WINDOW`]. A
/// forged sample far ahead would otherwise make every real sample of the host look like a
/// replay and be dropped for good.
fn sequence_window(last_seen_ms: Option<u64>, now_ms: u64) -> u64 {
    let elapsed_ms = last_seen_ms.map_or(u64::MAX, |seen| now_ms.saturating_sub(seen));
    MIN_SEQ_WINDOW.saturating_add(elapsed_ms / 100)
}

/// Why a batch's sequence numbers are refused, if they are: beyond what SQLite stores, ahead of
/// any real agent's numbering, or jumping past the host's window. Duplicates are not refused
/// (they are skipped as replays).
fn refused_sequence(
    samples: &[Sample],
    last_seq: Option<u64>,
    last_seen_ms: Option<u64>,
    now_ms: u64,
) -> Option<String> {
    let window = sequence_window(last_seen_ms, now_ms);
    let ceiling = MAX_SEQ.min(now_ms.saturating_add(MAX_SEQ_AHEAD_OF_CLOCK_MS));
    let mut last = last_seq;
    for sample in samples {
        if last.is_some_and(|l| sample.seq <= l) {
            continue;
        }
        if sample.seq > ceiling {
            return Some(format!(
                "sequence number {} is beyond any agent's numbering (at most {ceiling} now)",
                sample.seq
            ));
        }
        if let Some(l) = last.filter(|l| sample.seq - l > window) {
            return Some(format!(
                "sequence number {} jumps {} past the last stored one, {l} (at most {window} \
                 now); an agent whose state was reset must send a new instance id \
                 (hostwatch-agent 0.1 and later of protocol version 2 do)",
                sample.seq,
                sample.seq - l
            ));
        }
        last = Some(sample.seq);
    }
    None
}

impl Storage {
    /// Opens (creating and migrating) the database and starts the writer thread. `publish`
    /// receives every committed event, in order.
    pub fn open(
        path: &Path,
        policy: maintenance::Policy,
        hosts: HostLimits,
        publish: impl Fn(Vec<Stored>) + Send + 'static,
    ) -> anyhow::Result<(Self, std::thread::JoinHandle<()>)> {
        let mut conn = open_connection(path)?;
        schema::migrate(&mut conn)?;
        let (tx, rx) = async_channel::bounded(QUEUE_DEPTH);
        let health = Arc::new(health::Health::default());
        let timings = Arc::new(timing::WriterTimings::default());
        let mut writer = Writer::new(conn, policy, hosts, health.clone(), timings.clone())?;
        let next_event_id = writer.next_eid;
        let handle = std::thread::Builder::new()
            .name("storage".into())
            .spawn(move || writer.run(rx, publish))
            .context("spawning the storage thread")?;
        Ok((Self { tx, path: path.to_owned(), next_event_id, health, timings }, handle))
    }

    /// What the writer's transactions and maintenance steps took, as histograms.
    pub fn timings(&self) -> &timing::WriterTimings {
        &self.timings
    }

    /// Whether the storage can commit, as the writer last found it.
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    /// The id the first event stored after opening gets: every older event is in the database.
    pub fn next_event_id(&self) -> u64 {
        self.next_event_id
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Registers a host and returns where its agent resumes. A new host counts against the
    /// shared token's limits ([`admission`]) when `limited`.
    pub async fn register(&self, hello: Hello, limited: bool) -> Result<Registration, StoreError> {
        let (reply, answer) = async_channel::bounded(1);
        self.send(Command::Register { hello: Box::new(hello), limited, reply }).await?;
        answer.recv().await.map_err(|_| stopped())?
    }

    /// Registers a host from a plain thread (self-monitoring, not limited).
    pub fn register_blocking(&self, hello: Hello) -> Result<Registration, StoreError> {
        smol::block_on(self.register(hello, false))
    }

    /// Stores a batch; resolves after the commit.
    pub async fn store(&self, host_key: i64, batch: Batch) -> Result<StoreResult, StoreError> {
        self.store_from(host_key, batch, Source::Local(None)).await
    }

    /// Stores a batch from `source`; resolves after the commit.
    pub async fn store_from(
        &self,
        host_key: i64,
        batch: Batch,
        source: Source,
    ) -> Result<StoreResult, StoreError> {
        let answer = self.queue_store(host_key, batch, source).await?;
        answer.recv().await.map_err(|_| stopped())?
    }

    /// Queues a batch and returns where its answer comes after the commit, without waiting for
    /// it: a replica stores a run of entries with one wait, and the writer folds them into one
    /// transaction.
    pub async fn queue_store(
        &self,
        host_key: i64,
        batch: Batch,
        source: Source,
    ) -> Result<async_channel::Receiver<Result<StoreResult, StoreError>>, StoreError> {
        let (reply, answer) = async_channel::bounded(1);
        self.send(Command::Store { host_key, batch, source, reply }).await?;
        Ok(answer)
    }

    /// Queues a batch another collector stored (from the stream) and returns where its answer
    /// comes after the commit; the host is found by its id ([`Command::StoreReplica`]).
    pub async fn queue_store_replica(
        &self,
        hello: Arc<Hello>,
        changed: bool,
        batch: Batch,
    ) -> Result<async_channel::Receiver<Result<StoreResult, StoreError>>, StoreError> {
        let (reply, answer) = async_channel::bounded(1);
        self.send(Command::StoreReplica { hello, changed, batch, reply }).await?;
        Ok(answer)
    }

    /// Deletes the replication outbox's entries up to `up_to`, which are in the stream now.
    pub async fn replica_published(&self, up_to: i64) {
        // A stopped writer (shutdown) deletes nothing; the next start publishes them again,
        // and replicas skip what they stored already.
        let _ = self.send(Command::ReplicaPublished { up_to }).await;
    }

    /// Keeps a replication setting.
    pub async fn set_replica_state(&self, key: &'static str, value: String) {
        // As above: at shutdown the newest position is lost, and replicas re-read a little.
        let _ = self.send(Command::ReplicaState { key, value }).await;
    }

    /// Stores a batch from a plain thread (self-monitoring); blocks until the commit.
    pub fn store_blocking(&self, host_key: i64, batch: Batch) -> Result<StoreResult, StoreError> {
        smol::block_on(self.store(host_key, batch))
    }

    /// Resolves once the writer has committed everything queued before this call: proof that
    /// storage is alive and keeping up.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let (reply, answer) = async_channel::bounded(1);
        self.send(Command::Ping(reply)).await?;
        answer.recv().await.map_err(|_| stopped())
    }

    /// Queues an activity event without waiting; it is published after its commit. Gives the
    /// event back when the queue is full.
    pub fn try_activity(&self, activity: Record) -> Result<(), Record> {
        match self.tx.try_send(Command::Activity(activity)) {
            Ok(()) => Ok(()),
            Err(async_channel::TrySendError::Full(Command::Activity(a))) => Err(a),
            // A stopped writer (shutdown) has no use for it.
            Err(_) => Ok(()),
        }
    }

    /// Removes a host (renamed to a tombstone at once, its rows deleted in small steps by
    /// maintenance) and records `activity`; resolves after the commit with whether the host
    /// was stored.
    pub async fn remove_host(&self, host_id: String, activity: Record) -> Result<bool, StoreError> {
        let (reply, answer) = async_channel::bounded(1);
        self.send(Command::RemoveHost { host_id, activity, reply }).await?;
        answer.recv().await.map_err(|_| stopped())?
    }

    /// Asks the writer to commit what it has and stop.
    pub fn stop(&self) {
        // A writer that is already gone has nothing left to commit.
        let _ = self.tx.send_blocking(Command::Stop);
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        self.tx.send(command).await.map_err(|_| stopped())
    }

    /// Adds or deletes a silence; resolves after the commit with the silence added or deleted.
    pub async fn change_silences(
        &self,
        change: alerts::SilenceChange,
    ) -> Result<Option<alerts::Silence>, StoreError> {
        let (reply, answer) = async_channel::bounded(1);
        self.send(Command::Silence { change, reply }).await?;
        answer.recv().await.map_err(|_| stopped())?
    }

    /// Records a channel's delivery of alert events up to `eid` (waits for room in the queue;
    /// called by the channels' senders, never by the hub).
    pub async fn notify_delivered(&self, channel: &str, eid: u64) {
        // A stopped writer (shutdown) records nothing more; the next start sends again.
        let _ = self.send(Command::NotifyDelivered { channel: channel.to_owned(), eid }).await;
    }

    /// Reads every notification channel's cursor and the alert events after the oldest of them
    /// (at or after `since_ms`, at most `limit`), for resending what was not delivered.
    pub fn load_undelivered(
        &self,
        since_ms: u64,
        limit: usize,
    ) -> anyhow::Result<(HashMap<String, u64>, Vec<alerts::AlertEvent>)> {
        let conn = query::open_read_only(&self.path)?;
        let cursors: HashMap<String, u64> = alerts::notify_cursors(&conn)?.into_iter().collect();
        let oldest = cursors.values().copied().min();
        let events = match oldest {
            Some(after) => alerts::undelivered(&conn, after, since_ms, limit)?,
            None => Vec::new(),
        };
        Ok((cursors, events))
    }

    /// Reads the alerts that were firing and the silences, for the hub's initial state.
    pub fn load_alerts(
        &self,
    ) -> anyhow::Result<(Vec<crate::alerts::Persisted>, Vec<alerts::Silence>)> {
        let conn = query::open_read_only(&self.path)?;
        Ok((alerts::load_firing(&conn)?, alerts::load_silences(&conn)?))
    }

    /// Reads every stored host, with its newest point, for the hub's initial state.
    pub fn load_hosts(&self) -> anyhow::Result<Vec<HostRecord>> {
        let conn = query::open_read_only(&self.path)?;
        query::load_hosts(&conn)
    }
}

/// A pool of read-only connections; queries run on the blocking thread pool, never on the
/// async executor.
#[derive(Clone)]
pub struct Readers {
    take: async_channel::Receiver<query::Reader>,
    give: async_channel::Sender<query::Reader>,
}

impl Readers {
    /// Opens `count` readers on the database, whose raw samples are kept for `raw_retention`.
    pub fn open(path: &Path, count: usize, raw_retention: Duration) -> anyhow::Result<Self> {
        let (give, take) = async_channel::bounded(count);
        for _ in 0..count {
            let reader = query::Reader::open(path, raw_retention)?;
            give.try_send(reader).expect("the pool has room for every reader");
        }
        Ok(Self { take, give })
    }

    /// Runs `query` on a free reader, waiting for one if all are busy.
    pub async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&query::Reader) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let reader = self.take.recv().await.context("the reader pool is closed")?;
        let (reader, result) = smol::unblock(move || {
            let result = query(&reader);
            (reader, result)
        })
        .await;
        // The pool always has room for the reader it lent.
        let _ = self.give.try_send(reader);
        result
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("storage stopped".into())
}

/// Opens a read-write connection with the project's settings.
fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    schema::configure(&conn)?;
    Ok(conn)
}

/// What the writer does next.
enum Next {
    Command(Command),
    Idle,
    Closed,
}

struct Writer {
    conn: Connection,
    hosts: HashMap<i64, HostState>,
    next_eid: u64,
    maintenance: maintenance::Maintenance,
    /// Shared with the [`Storage`] handles; only the writer changes it.
    health: Arc<health::Health>,
    /// Durations of transactions and maintenance steps, for `/metrics`.
    timings: Arc<timing::WriterTimings>,
    /// When a failed maintenance step may run again.
    maintenance_retry: health::Retry,
    /// The shared token's host limits.
    admission: admission::Admission,
    /// Which host rows are behind the progress kept in `hosts`.
    progress: progress::Progress,
}

/// A caller waiting for an answer, and the answer it will get after the commit.
type Reply<T> = (async_channel::Sender<Result<T, StoreError>>, Result<T, StoreError>);

/// Replies and events of one transaction, released only after it commits.
#[derive(Default)]
struct Outcome {
    store_replies: Vec<Reply<StoreResult>>,
    register_replies: Vec<Reply<Registration>>,
    silence_replies: Vec<Reply<Option<alerts::Silence>>>,
    remove_replies: Vec<Reply<bool>>,
    /// Keys of the hosts removed in this transaction.
    removed: Vec<i64>,
    events: Vec<Stored>,
    stored_times: Vec<(i64, u64)>,
    /// Hosts whose progress this transaction logged.
    progressed: Vec<i64>,
    pings: Vec<async_channel::Sender<()>>,
}

impl Writer {
    fn new(
        mut conn: Connection,
        policy: maintenance::Policy,
        limits: HostLimits,
        health: Arc<health::Health>,
        timings: Arc<timing::WriterTimings>,
    ) -> anyhow::Result<Self> {
        let known = count_hosts(&conn)?;
        let admission = admission::Admission::new(limits.max_hosts, limits.new_per_minute, known);
        let progress = progress::Progress::new(&mut conn);
        let maintenance = maintenance::Maintenance::new(policy, &conn)?;
        let max_sample: Option<i64> =
            conn.query_row("SELECT max(eid) FROM samples", [], |r| r.get(0))?;
        let max_activity: Option<i64> =
            conn.query_row("SELECT max(eid) FROM activity", [], |r| r.get(0))?;
        let max_block: Option<i64> =
            conn.query_row("SELECT max(last_eid) FROM blocks", [], |r| r.get(0))?;
        let next_eid =
            max_sample.unwrap_or(0).max(max_activity.unwrap_or(0)).max(max_block.unwrap_or(0))
                as u64
                + 1;
        Ok(Self {
            conn,
            hosts: HashMap::new(),
            next_eid,
            maintenance,
            health,
            timings,
            maintenance_retry: health::Retry::default(),
            admission,
            progress,
        })
    }

    fn run(&mut self, rx: async_channel::Receiver<Command>, publish: impl Fn(Vec<Stored>)) {
        let mut stopping = false;
        while !stopping {
            let first = match self.next_command(&rx) {
                Next::Command(command) => command,
                Next::Idle => continue,
                Next::Closed => break,
            };
            let mut commands = vec![first];
            while commands.len() < MAX_COMMANDS_PER_TRANSACTION {
                match rx.try_recv() {
                    Ok(command) => commands.push(command),
                    Err(_) => break,
                }
            }
            stopping = commands.iter().any(|c| matches!(c, Command::Stop));
            // Only a commit that wrote proves the disk takes writes: one of pings alone
            // succeeds on a full disk too.
            let writes = commands.iter().any(|c| !matches!(c, Command::Ping(_) | Command::Stop));
            let samples: usize = commands
                .iter()
                .map(|c| match c {
                    Command::Store { batch, .. } | Command::StoreReplica { batch, .. } => {
                        batch.samples.len()
                    }
                    _ => 0,
                })
                .sum();
            let started = Instant::now();
            let next_eid = self.next_eid;
            let mut outcome = Outcome::default();
            let applied = self.apply(commands, &mut outcome);
            let elapsed = started.elapsed();
            // A transaction of pings alone writes nothing: it would only dilute the figures.
            if writes {
                self.timings.commit_seconds.observe_duration(elapsed);
                self.timings.commit_samples.observe(samples as f64);
            }
            match applied {
                Ok(()) => {
                    self.progress.committed();
                    if writes {
                        self.health.succeeded();
                    }
                    if elapsed > Duration::from_secs(1) {
                        log::warn!("storage: a transaction took {elapsed:.1?}");
                    }
                    for (reply, result) in outcome.register_replies {
                        // The caller may have gone (its agent disconnected); nothing to tell then.
                        let _ = reply.try_send(result);
                    }
                    for (reply, result) in outcome.store_replies {
                        // As above: an agent that left will get its ack from the welcome instead.
                        let _ = reply.try_send(result);
                    }
                    for (reply, result) in outcome.silence_replies {
                        // An API client that went away needs no answer.
                        let _ = reply.try_send(result);
                    }
                    for (reply, result) in outcome.remove_replies {
                        // A request that gave up waiting needs no answer.
                        let _ = reply.try_send(result);
                    }
                    if !outcome.removed.is_empty() {
                        for &host in &outcome.removed {
                            self.hosts.remove(&host);
                            self.maintenance.removed(host);
                            self.progress.removed(host);
                            log::info!("storage: host {host} removed; its rows go in small steps");
                        }
                        // A removed host no longer counts against --max-hosts.
                        if let Ok(known) = count_hosts(&self.conn) {
                            self.admission.set_known(known);
                        }
                    }
                    for ping in outcome.pings {
                        // A readiness check that gave up waiting needs no answer.
                        let _ = ping.try_send(());
                    }
                    for (host, ts) in outcome.stored_times {
                        self.maintenance.note(host, ts);
                    }
                    if !outcome.events.is_empty() {
                        publish(outcome.events);
                    }
                }
                Err(err) => {
                    // Logged once per run of failures, with the count when it ends.
                    self.health.failed("transaction failed, nothing of it was acknowledged", &err);
                    // The cached host state may describe rows that were rolled back.
                    self.hosts.clear();
                    self.progress.failed();
                    if let Ok(known) = count_hosts(&self.conn) {
                        self.admission.set_known(known);
                    }
                    self.next_eid = next_eid;
                    self.maintenance.reset(&self.conn);
                    let error = StoreError::Unavailable(format!("storage failed: {err:#}"));
                    for (reply, _) in outcome.register_replies {
                        let _ = reply.try_send(Err(error.clone()));
                    }
                    for (reply, _) in outcome.store_replies {
                        let _ = reply.try_send(Err(error.clone()));
                    }
                    for (reply, _) in outcome.silence_replies {
                        let _ = reply.try_send(Err(error.clone()));
                    }
                    for (reply, _) in outcome.remove_replies {
                        let _ = reply.try_send(Err(error.clone()));
                    }
                }
            }
        }
        log::debug!("storage: writer stopped");
    }

    /// Waits for the next command, running maintenance whenever it is due and no command is
    /// waiting: ingest always goes first, maintenance fills the gaps in small steps.
    fn next_command(&mut self, rx: &async_channel::Receiver<Command>) -> Next {
        match rx.try_recv() {
            Ok(command) => return Next::Command(command),
            Err(async_channel::TryRecvError::Closed) => return Next::Closed,
            Err(async_channel::TryRecvError::Empty) => {}
        }
        let due = self.maintenance_due();
        if Instant::now() >= due {
            let started = Instant::now();
            let ran = self.maintenance.run(&mut self.conn);
            self.timings.maintenance_seconds.observe_duration(started.elapsed());
            match ran {
                Ok(()) => self.maintenance_retry.succeeded(),
                Err(err) => {
                    // A full disk fails every step: wait longer each time (and log once), so
                    // maintenance never spins.
                    self.health.failed("maintenance failed", &err);
                    self.maintenance_retry.failed(Instant::now());
                    self.maintenance.reset(&self.conn);
                }
            }
            return Next::Idle;
        }
        smol::block_on(async {
            let command = async {
                match rx.recv().await {
                    Ok(command) => Next::Command(command),
                    Err(_) => Next::Closed,
                }
            };
            let timer = async {
                smol::Timer::at(due).await;
                Next::Idle
            };
            futures_lite::FutureExt::or(command, timer).await
        })
    }

    /// When maintenance may run next: when it has work due, but not before a failed step's
    /// retry time.
    fn maintenance_due(&self) -> Instant {
        let due = self.maintenance.next_due();
        self.maintenance_retry.not_before().map_or(due, |retry| retry.max(due))
    }

    /// Applies commands in one transaction, collecting replies and events in `outcome`. On
    /// failure the transaction is rolled back and every reply in `outcome` must become an error.
    fn apply(&mut self, commands: Vec<Command>, outcome: &mut Outcome) -> anyhow::Result<()> {
        let tx = match self.conn.transaction() {
            Ok(tx) => tx,
            Err(err) => {
                for command in commands {
                    collect_reply(command, outcome);
                }
                return Err(err.into());
            }
        };
        if let Err(err) = self.progress.begin(&tx) {
            for command in commands {
                collect_reply(command, outcome);
            }
            return Err(err);
        }
        let mut failure = None;
        for command in commands {
            if failure.is_some() {
                collect_reply(command, outcome);
                continue;
            }
            let result = match command {
                Command::Register { hello, limited, reply } => {
                    let result =
                        register(&tx, &mut self.hosts, &mut self.admission, &hello, limited);
                    let (answer, err) = match result {
                        Ok(answer) => (answer, None),
                        Err(err) => (Err(StoreError::Unavailable(format!("{err:#}"))), Some(err)),
                    };
                    outcome.register_replies.push((reply, answer));
                    err
                }
                Command::Store { host_key, reply, .. }
                    if outcome.removed.contains(&host_key)
                        || self.maintenance.is_removing(host_key) =>
                {
                    // An agent that registered just before its host was removed: it reconnects
                    // and registers as a fresh host.
                    let why = "this host was removed; reconnect to be stored as a new host";
                    outcome.store_replies.push((reply, Err(StoreError::Busy(why.into()))));
                    None
                }
                Command::StoreReplica { hello, changed, batch, reply } => {
                    let raw_cutoff = self.maintenance.raw_cutoff(crate::now_ms());
                    let result = store_replica(
                        &tx,
                        &mut self.hosts,
                        &mut self.admission,
                        &mut self.next_eid,
                        Replicated { hello: &hello, changed, raw_cutoff },
                        batch,
                        outcome,
                    );
                    let (answer, err) = split(result);
                    outcome.store_replies.push((reply, answer));
                    err
                }
                Command::Store { host_key, batch, source, reply } => {
                    let result = store(
                        &tx,
                        &mut self.hosts,
                        &mut self.next_eid,
                        host_key,
                        batch,
                        &source,
                        outcome,
                    );
                    let (answer, err) = split(result);
                    outcome.store_replies.push((reply, answer));
                    err
                }
                Command::Activity(activity) => {
                    record_activity(&tx, &mut self.next_eid, activity, outcome)
                }
                Command::RemoveHost { host_id, activity, reply } => {
                    // Its alerts end with it (a restart must not bring them back).
                    let marked = removal::mark(&tx, &host_id)
                        .and_then(|key| alerts::forget_host(&tx, &host_id).map(|()| key))
                        .and_then(|key| match key {
                            // Its key may be a new host's once its row is gone.
                            Some(key) => progress::forget(&tx, key).map(|()| Some(key)),
                            None => Ok(None),
                        });
                    match marked {
                        Ok(key) => {
                            outcome.removed.extend(key);
                            outcome.remove_replies.push((reply, Ok(key.is_some())));
                            record_activity(&tx, &mut self.next_eid, activity, outcome)
                        }
                        Err(err) => {
                            let err = anyhow::Error::from(err).context("removing a host");
                            let error = StoreError::Unavailable(format!("{err:#}"));
                            outcome.remove_replies.push((reply, Err(error)));
                            Some(err)
                        }
                    }
                }
                Command::Silence { change, reply } => match alerts::change_silences(&tx, change) {
                    Ok(answer) => {
                        outcome.silence_replies.push((reply, Ok(answer)));
                        None
                    }
                    Err(err) => {
                        outcome.silence_replies.push((reply, Err(stopped())));
                        Some(anyhow::Error::from(err).context("changing silences"))
                    }
                },
                Command::NotifyDelivered { channel, eid } => {
                    alerts::notify_delivered(&tx, &channel, eid)
                        .err()
                        .map(|e| anyhow::Error::from(e).context("recording a delivery"))
                }
                Command::ReplicaPublished { up_to } => replica::published(&tx, up_to)
                    .err()
                    .map(|e| anyhow::Error::from(e).context("deleting published outbox entries")),
                Command::ReplicaState { key, value } => replica::set_state(&tx, key, &value)
                    .err()
                    .map(|e| anyhow::Error::from(e).context("keeping the replication state")),
                Command::Ping(reply) => {
                    outcome.pings.push(reply);
                    None
                }
                Command::Stop => None,
            };
            failure = result;
        }
        if let Some(err) = failure {
            // Dropping the transaction rolls it back.
            return Err(err);
        }
        self.progress.save(&tx, &outcome.progressed, &self.hosts)?;
        match tx.commit() {
            Ok(()) => Ok(()),
            Err(err) => Err(anyhow::Error::from(err).context("committing")),
        }
    }
}

/// Separates a command's answer from a fatal storage error that must abort the transaction.
/// Refusals of bad input are answers; SQLite errors are fatal.
fn split<T>(
    result: Result<Result<T, String>, anyhow::Error>,
) -> (Result<T, StoreError>, Option<anyhow::Error>) {
    match result {
        Ok(answer) => (answer.map_err(StoreError::Refused), None),
        Err(err) => (Err(StoreError::Unavailable(format!("{err:#}"))), Some(err)),
    }
}

/// Inserts an activity event; it is published after the commit. An error aborts the transaction.
fn record_activity(
    tx: &rusqlite::Transaction<'_>,
    next_eid: &mut u64,
    activity: Record,
    outcome: &mut Outcome,
) -> Option<anyhow::Error> {
    let eid = *next_eid;
    let json = serde_json::Value::Object(activity.activity.fields()).to_string();
    let result = tx
        .prepare_cached(
            "INSERT INTO activity (eid, ts_ms, kind, host, json) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                eid as i64,
                activity.ts_ms as i64,
                activity.activity.kind(),
                activity.host.as_deref(),
                json
            ])
        })
        .and_then(|_| alerts::on_activity(tx, &activity));
    match result {
        Ok(_) => {
            *next_eid += 1;
            outcome.events.push(Stored::Activity { eid, activity });
            None
        }
        Err(err) => Some(anyhow::Error::from(err).context("recording activity")),
    }
}

fn collect_reply(command: Command, outcome: &mut Outcome) {
    match command {
        Command::Register { reply, .. } => outcome.register_replies.push((reply, Err(stopped()))),
        Command::Store { reply, .. } | Command::StoreReplica { reply, .. } => {
            outcome.store_replies.push((reply, Err(stopped())))
        }
        Command::Silence { reply, .. } => outcome.silence_replies.push((reply, Err(stopped()))),
        Command::RemoveHost { reply, .. } => outcome.remove_replies.push((reply, Err(stopped()))),
        Command::Activity(_)
        | Command::NotifyDelivered { .. }
        | Command::ReplicaPublished { .. }
        | Command::ReplicaState { .. }
        | Command::Ping(_)
        | Command::Stop => {}
    }
}

fn count_hosts(conn: &Connection) -> anyhow::Result<usize> {
    let sql = format!("SELECT count(*) FROM hosts WHERE {}", removal::NOT_REMOVED);
    let known: i64 = conn.query_row(&sql, [], |r| r.get(0))?;
    Ok(known.max(0) as usize)
}

fn register(
    tx: &rusqlite::Transaction<'_>,
    hosts: &mut HashMap<i64, HostState>,
    admission: &mut admission::Admission,
    hello: &Hello,
    limited: bool,
) -> anyhow::Result<Result<Registration, StoreError>> {
    let known =
        tx.prepare_cached("SELECT 1 FROM hosts WHERE host_id = ?1")?.exists([&hello.host_id])?;
    if !known {
        match admission.admit(limited, Instant::now()) {
            Ok(()) => {}
            Err(admission::Refusal::Full(why)) => return Ok(Err(StoreError::Refused(why))),
            Err(admission::Refusal::Busy(why)) => return Ok(Err(StoreError::Busy(why))),
        }
    }
    upsert_facts(tx, hello)?;
    type Row = (i64, Option<i64>, i64, Option<Vec<u8>>, Option<i64>, i64);
    let (host_key, last_seq, dropped_total, last_sample, last_seen_ms, stored_instance): Row = tx
        .prepare_cached(
            "SELECT id, last_seq, dropped_total, last_sample, last_seen_ms, instance_id
             FROM hosts WHERE host_id = ?1",
        )?
        .query_row([&hello.host_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?;
    let mut previous =
        last_sample.and_then(|bytes| postcard::from_bytes::<Sample>(&bytes).ok()).map(Arc::new);
    let mut last_seq = last_seq.map(|s| s as u64);
    let mut last_seen_ms = last_seen_ms.map(|t| t.max(0) as u64);
    let mut dropped_total = dropped_total.max(0) as u64;
    // The row may be behind the writer's memory, which is what was stored (progress.rs).
    if let Some(known) = hosts.get(&host_key) {
        last_seq = known.last_seq;
        last_seen_ms = known.last_seen_ms;
        dropped_total = known.dropped_total;
        previous = known.previous.clone();
    }
    let last_seq = match stored_instance == hello.instance_id as i64 {
        true => last_seq,
        false => {
            // Another agent state: its numbering is its own, so it resumes from nothing (it
            // sends what its spool holds). An agent reinstalled without its state is stored
            // again instead of being ignored, and a connection that forged samples under this
            // host's id with another instance id cannot make the real agent's look like replays.
            tx.prepare_cached("UPDATE hosts SET instance_id = ?1, last_seq = NULL WHERE id = ?2")?
                .execute(params![hello.instance_id as i64, host_key])?;
            progress::forget(tx, host_key)?;
            log::info!(
                "host {}: agent instance {:016x} replaces {:016x}; its sequence numbers start afresh",
                crate::untrusted::escaped(&hello.host_id),
                hello.instance_id,
                stored_instance as u64
            );
            None
        }
    };
    hosts.insert(
        host_key,
        HostState {
            host_id: hello.host_id.as_str().into(),
            instance_id: hello.instance_id,
            registered_ms: crate::now_ms(),
            check_copies: stored_instance != hello.instance_id as i64,
            last_seq,
            last_seen_ms,
            dropped_total,
            previous,
            devices: None,
        },
    );
    Ok(Ok(Registration { host_key, last_seq }))
}

/// Inserts a host's row, or updates the facts its hello carries (never its agent state).
fn upsert_facts(tx: &rusqlite::Transaction<'_>, hello: &Hello) -> rusqlite::Result<()> {
    let now = crate::now_ms() as i64;
    tx.prepare_cached(
        "INSERT INTO hosts (host_id, hostname, os, kernel, arch, cpu_model, cpu_cores, memory_total_bytes,
                            boot_time_seconds, agent_version, interval_ms, first_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (host_id) DO UPDATE SET hostname = ?2, os = ?3, kernel = ?4, arch = ?5, cpu_model = ?6,
             cpu_cores = ?7, memory_total_bytes = ?8, boot_time_seconds = ?9, agent_version = ?10, interval_ms = ?11",
    )?
    .execute(params![
        hello.host_id,
        hello.hostname,
        hello.os,
        hello.kernel,
        hello.arch,
        hello.cpu_model,
        hello.cpu_cores,
        hello.memory_total_bytes as i64,
        hello.boot_time_seconds as i64,
        hello.agent_version,
        hello.interval_ms,
        now
    ])?;
    Ok(())
}

/// The INSERT of one raw sample, bound by [`insert_sample`] (the benchmark's raw SQLite run uses
/// both, so it inserts exactly what the collector does).
pub const INSERT_SAMPLE: &str = "INSERT INTO samples (eid, host, seq, ts_ms, cpu_percent, cores, mem_used, mem_total, mem_available,
     swap_used, swap_total, load1, load5, load15, net_rx_bps, net_tx_bps, disk_read_bps, disk_write_bps,
     fs_used, fs_total, processes, uptime, temp_max, devices, fs_free, fs_avail, fs_used_pct)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,
         ?25, ?26, ?27)";

/// Inserts one sample's derived point with [`INSERT_SAMPLE`]; per-core values are whole
/// percents, `devices` the per-device values ([`block::encode_devices`]), if any.
pub fn insert_sample(
    insert: &mut rusqlite::CachedStatement<'_>,
    eid: u64,
    host_key: i64,
    seq: u64,
    point: &Point,
    devices: Option<&[u8]>,
) -> rusqlite::Result<usize> {
    let cores: Vec<u8> =
        point.cpu_cores_percent.iter().map(|p| p.round().clamp(0.0, 100.0) as u8).collect();
    insert.execute(params![
        eid as i64,
        host_key,
        seq as i64,
        point.ts as i64,
        point.cpu_percent,
        (!cores.is_empty()).then_some(cores),
        point.memory_used_bytes.map(|v| v as i64),
        point.memory_total_bytes.map(|v| v as i64),
        point.memory_available_bytes.map(|v| v as i64),
        point.swap_used_bytes.map(|v| v as i64),
        point.swap_total_bytes.map(|v| v as i64),
        point.load1,
        point.load5,
        point.load15,
        point.net_rx_bytes_per_second,
        point.net_tx_bytes_per_second,
        point.disk_read_bytes_per_second,
        point.disk_write_bytes_per_second,
        point.fs_used_bytes.map(|v| v as i64),
        point.fs_total_bytes.map(|v| v as i64),
        point.processes,
        point.uptime_seconds.map(|v| v as i64),
        point.temperature_celsius,
        devices,
        point.fs_free_bytes.map(|v| v as i64),
        point.fs_avail_bytes.map(|v| v as i64),
        point.fs_used_percent,
    ])
}

/// Devices one host may have in history: a sample's lists are bounded by the protocol's
/// limits, but an agent renaming its interfaces every second must not grow `devices` without
/// end. Past the bound, new devices' values are not stored (the host totals still are).
const MAX_DEVICES_PER_HOST: usize = 4096;

/// The row ids of a reading's devices, adding devices seen for the first time to `devices`
/// (in the caller's transaction, so a rollback forgets them too).
fn device_values(
    tx: &rusqlite::Transaction<'_>,
    host_key: i64,
    ids: &mut HashMap<(crate::catalog::DeviceKind, String), u32>,
    readings: Vec<device::Reading>,
    ts_ms: u64,
) -> anyhow::Result<Vec<(u32, Vec<Option<i64>>)>> {
    let mut out = Vec::with_capacity(readings.len());
    for reading in readings {
        let key = (reading.kind, reading.name);
        let id = match ids.get(&key) {
            Some(id) => *id,
            None if ids.len() >= MAX_DEVICES_PER_HOST => {
                log::debug!(
                    "host {host_key}: {MAX_DEVICES_PER_HOST} devices already; {:?} {} is not kept",
                    key.0,
                    crate::untrusted::escaped(&key.1)
                );
                continue;
            }
            None => {
                tx.prepare_cached(
                    "INSERT INTO devices (host, kind, name, first_seen_ms) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![host_key, key.0.code(), key.1, ts_ms as i64])?;
                let id = u32::try_from(tx.last_insert_rowid()).context("device ids overflow")?;
                ids.insert(key, id);
                id
            }
        };
        out.push((id, reading.values));
    }
    Ok(out)
}

/// A host's devices by kind and name.
fn load_devices(
    tx: &rusqlite::Transaction<'_>,
    host_key: i64,
) -> anyhow::Result<HashMap<(crate::catalog::DeviceKind, String), u32>> {
    let mut stmt = tx.prepare_cached("SELECT id, kind, name FROM devices WHERE host = ?1")?;
    let rows = stmt.query_map([host_key], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut devices = HashMap::new();
    for row in rows {
        let (id, kind, name) = row?;
        if let (Some(kind), Ok(id)) =
            (crate::catalog::DeviceKind::from_code(kind), u32::try_from(id))
        {
            devices.insert((kind, name), id);
        }
    }
    Ok(devices)
}
/// The writer's state of host `host_key`, loaded from the database when it is not cached (it
/// was evicted after a failed transaction); `None` for a key that is not a stored host (or is a
/// removed host's tombstone).
fn host_state<'h>(
    tx: &rusqlite::Transaction<'_>,
    hosts: &'h mut HashMap<i64, HostState>,
    host_key: i64,
) -> anyhow::Result<Option<&'h mut HostState>> {
    if let std::collections::hash_map::Entry::Vacant(slot) = hosts.entry(host_key) {
        let row = tx
            .prepare_cached(&format!(
                "SELECT host_id, last_seq, dropped_total, last_sample, last_seen_ms, instance_id
                 FROM hosts WHERE id = ?1 AND {}",
                removal::NOT_REMOVED
            ))?
            .query_row([host_key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .optional()?;
        let Some((host_id, last_seq, dropped_total, last_sample, last_seen_ms, instance)) = row
        else {
            return Ok(None);
        };
        slot.insert(HostState {
            host_id: host_id.into(),
            instance_id: instance as u64,
            registered_ms: 0,
            check_copies: false,
            last_seq: last_seq.map(|s| s as u64),
            last_seen_ms: last_seen_ms.map(|t| t.max(0) as u64),
            dropped_total: dropped_total as u64,
            previous: last_sample.and_then(|b| postcard::from_bytes(&b).ok()).map(Arc::new),
            devices: None,
        });
    }
    Ok(hosts.get_mut(&host_key))
}

/// Whether a batch of agent instance `instance_id` is of a newer agent state than the one
/// stored for `host`: another instance, with samples later than any stored. An older
/// instance's batch (a backlog another collector published late) is not.
fn newer_instance(host: &HostState, instance_id: u64, batch: &Batch) -> bool {
    let newest_here = host.last_seen_ms.unwrap_or(0).max(host.registered_ms);
    host.instance_id != instance_id && batch.samples.first().is_some_and(|s| s.ts_ms > newest_here)
}

/// Whether sample (`seq`, `ts_ms`) of a host is stored already, raw or in its minute's block.
/// `block` caches the last block read: a batch's samples are mostly of one minute.
fn already_stored(
    tx: &rusqlite::Transaction<'_>,
    host_key: i64,
    seq: u64,
    ts_ms: u64,
    block: &mut Option<(u64, Vec<(u64, u64)>)>,
) -> anyhow::Result<bool> {
    let raw = tx
        .prepare_cached("SELECT 1 FROM samples WHERE host = ?1 AND ts_ms = ?2 AND seq = ?3")?
        .exists(params![host_key, ts_ms as i64, seq as i64])?;
    if raw {
        return Ok(true);
    }
    let minute = ts_ms - ts_ms % 60_000;
    if block.as_ref().is_none_or(|(m, _)| *m != minute) {
        let rows = rows::block_rows(tx, host_key, minute, minute + 60_000)?;
        *block = Some((minute, rows.iter().map(|r| (r.seq, r.ts)).collect()));
    }
    Ok(block.as_ref().is_some_and(|(_, rows)| rows.contains(&(seq, ts_ms))))
}

/// What a replicated batch comes with.
struct Replicated<'a> {
    hello: &'a Hello,
    changed: bool,
    /// Samples older than this (raw retention) are not stored from the stream: their minutes
    /// may be rolled up and pruned here already.
    raw_cutoff: u64,
}

/// Stores a batch from the stream ([`Command::StoreReplica`]): finds the host by its id,
/// registering it when it is new here (not limited by the shared token: its origin admitted
/// it), and stores what is not stored yet.
fn store_replica(
    tx: &rusqlite::Transaction<'_>,
    hosts: &mut HashMap<i64, HostState>,
    admission: &mut admission::Admission,
    next_eid: &mut u64,
    replicated: Replicated<'_>,
    mut batch: Batch,
    outcome: &mut Outcome,
) -> anyhow::Result<Result<StoreResult, String>> {
    let hello = replicated.hello;
    let key: Option<i64> = tx
        .prepare_cached("SELECT id FROM hosts WHERE host_id = ?1")?
        .query_row([&hello.host_id], |r| r.get(0))
        .optional()?;
    let (host_key, new) = match key {
        Some(key) => (key, false),
        None => {
            match admission.admit(false, Instant::now()) {
                Ok(()) => {}
                Err(admission::Refusal::Full(why) | admission::Refusal::Busy(why)) => {
                    return Ok(Err(why));
                }
            }
            upsert_facts(tx, hello)?;
            let key = tx.last_insert_rowid();
            tx.prepare_cached("UPDATE hosts SET instance_id = ?1 WHERE id = ?2")?
                .execute(params![hello.instance_id as i64, key])?;
            (key, true)
        }
    };
    let Some(host) = host_state(tx, hosts, host_key)? else {
        return Ok(Err(format!("unknown host key {host_key}")));
    };
    let current =
        host.instance_id == hello.instance_id || newer_instance(host, hello.instance_id, &batch);
    if new || (replicated.changed && current) {
        if !new {
            upsert_facts(tx, hello)?;
        }
        // Before the samples, in the same publication: the hub lists the host first.
        outcome.events.push(Stored::Host { hello: Box::new(hello.clone()) });
    }
    batch.samples.retain(|s| s.ts_ms >= replicated.raw_cutoff);
    let source = Source::Replica { instance_id: hello.instance_id };
    store(tx, hosts, next_eid, host_key, batch, &source, outcome)
}

fn store(
    tx: &rusqlite::Transaction<'_>,
    hosts: &mut HashMap<i64, HostState>,
    next_eid: &mut u64,
    host_key: i64,
    batch: Batch,
    source: &Source,
    outcome: &mut Outcome,
) -> anyhow::Result<Result<StoreResult, String>> {
    let Some(host) = host_state(tx, hosts, host_key)? else {
        return Ok(Err(format!("unknown host key {host_key}")));
    };
    if batch.samples.windows(2).any(|w| w[0].seq >= w[1].seq) {
        return Ok(Err("samples of a batch must have strictly increasing sequence numbers".into()));
    }
    // A batch from the stream was checked by the collector that took it from its agent;
    // here its numbering may be far from what this collector has of the host.
    let replica = match source {
        Source::Local(_) => None,
        Source::Replica { instance_id } => Some(*instance_id),
    };
    if replica.is_some() && batch.samples.iter().any(|s| s.seq > MAX_SEQ) {
        return Ok(Err(format!("a sequence number past {MAX_SEQ}")));
    }
    if replica.is_none()
        && let Some(why) =
            refused_sequence(&batch.samples, host.last_seq, host.last_seen_ms, crate::now_ms())
    {
        return Ok(Err(why));
    }
    // Whether the batch's samples may move the host's resume point: a local agent's always;
    // the stream's when they are of the stored instance, or of a newer one, which the host
    // then takes (as a local agent with a new instance id does). An older instance's only
    // fill what is missing.
    let advances = match replica {
        None => true,
        Some(instance) if instance == host.instance_id => true,
        Some(instance) if newer_instance(host, instance, &batch) => {
            tx.prepare_cached("UPDATE hosts SET instance_id = ?1, last_seq = NULL WHERE id = ?2")?
                .execute(params![instance as i64, host_key])?;
            progress::forget(tx, host_key)?;
            log::info!(
                "host {}: agent instance {instance:016x} (from the stream) replaces {:016x}",
                crate::untrusted::escaped(&host.host_id),
                host.instance_id
            );
            host.instance_id = instance;
            host.last_seq = None;
            true
        }
        Some(_) => false,
    };
    // Stored as SQLite's signed integer: a count past it is absurd, and must not wrap.
    let batch_dropped = batch.dropped_total.min(MAX_SEQ);
    if host.devices.is_none() {
        host.devices = Some(load_devices(tx, host_key)?);
    }
    let mut insert = tx.prepare_cached(INSERT_SAMPLE)?;
    let mut newest: Option<Arc<Sample>> = None;
    // The sample before a filled one, for its rates: the batch's previous one, when stored.
    let mut filled: Option<Arc<Sample>> = None;
    let mut block = None;
    let publish = match source {
        Source::Local(hello) => hello.as_ref(),
        Source::Replica { .. } => None,
    };
    let mut fresh: Vec<Arc<Sample>> = Vec::new();
    for sample in batch.samples {
        let ahead = advances && host.last_seq.is_none_or(|last| sample.seq > last);
        let fill = !ahead
            && replica.is_some()
            && !already_stored(tx, host_key, sample.seq, sample.ts_ms, &mut block)?;
        if !ahead && !fill {
            filled = None;
            continue; // Already stored: a replay after a lost ack, or a peer's copy.
        }
        // Numbering afresh (a new agent instance here): what a peer stored of this instance
        // already, from the stream, moves the resume point instead of being stored twice.
        if ahead
            && host.check_copies
            && already_stored(tx, host_key, sample.seq, sample.ts_ms, &mut block)?
        {
            host.last_seq = Some(sample.seq);
            newest = Some(Arc::new(sample));
            continue;
        }
        let sample = Arc::new(sample);
        let before = match ahead {
            true => newest.as_deref().or(host.previous.as_deref()),
            false => filled.as_deref(),
        };
        let point = derive::derive(before, &sample);
        let readings = device::readings(before, &sample);
        let ids = host.devices.get_or_insert_with(HashMap::new);
        let devices = device_values(tx, host_key, ids, readings, sample.ts_ms)?;
        let devices = (!devices.is_empty()).then(|| block::encode_devices(&devices));
        let eid = *next_eid;
        insert_sample(&mut insert, eid, host_key, sample.seq, &point, devices.as_deref())?;
        *next_eid += 1;
        outcome.stored_times.push((host_key, sample.ts_ms));
        outcome.events.push(Stored::Sample {
            eid,
            host_id: host.host_id.clone(),
            point: Arc::new(point),
            sample: sample.clone(),
            dropped_total: batch_dropped,
            replicated: replica.is_some(),
            late: !ahead,
        });
        if publish.is_some() {
            fresh.push(sample.clone());
        }
        match ahead {
            true => {
                host.check_copies = false;
                host.last_seq = Some(sample.seq);
                newest = Some(sample);
            }
            false => filled = Some(sample),
        }
    }
    if let Some(sample) = newest {
        host.dropped_total = host.dropped_total.max(batch_dropped);
        host.last_seen_ms = Some(host.last_seen_ms.unwrap_or(0).max(sample.ts_ms));
        host.previous = Some(sample);
        progress::log(tx, host_key, host)?;
        outcome.progressed.push(host_key);
    } else if advances && batch_dropped > host.dropped_total {
        host.dropped_total = batch_dropped;
        progress::log(tx, host_key, host)?;
        outcome.progressed.push(host_key);
    }
    let outbox_id = match publish {
        Some(hello) if !fresh.is_empty() => {
            let entry = crate::replica::entry::encode(hello, batch_dropped, &fresh)
                .context("encoding a replication entry")?;
            Some(replica::insert(tx, &entry)?)
        }
        _ => None,
    };
    Ok(Ok(StoreResult { acked_seq: host.last_seq, outbox_id }))
}
