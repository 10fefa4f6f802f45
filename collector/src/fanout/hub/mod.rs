//! The hub: one dispatcher task that owns the collector's shared state — hosts and their status,
//! connected agents, subscribers, the ring of recent events and the counters — fed by a closed
//! [`Event`] enum over a bounded channel. Nothing else holds this state; other tasks ask the hub.
//!
//! Fan-out never waits: each subscriber has its own queue bounded in events and bytes, filled
//! with `try_send`. A subscriber whose queue is full is dropped and told it lagged; it can
//! reconnect with the last event id it saw and resume from the ring or the database.
//!
//! Architecture invariant: the hub never blocks and never touches SQLite.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use protocol::{Hello, Sample};

use crate::activity::{Activity, Alert, AlertCause, AlertDevice, AlertState, Record, Selector};
use crate::alerts::{Alerts, Change, Subject};
use crate::fanout::events::{Filter, LiveEvent};
use crate::ingest::auth::{AgentAuth, AgentCredential};
use crate::notify::{Notification, Notifier};
use crate::replica::StreamPos;
use crate::storage::alerts::Silence;
use crate::storage::{HostRecord, Point, Storage, Stored};
use crate::untrusted::escaped;

mod query;

pub use query::Query;

/// Most events a subscriber may have queued.
pub const SUBSCRIBER_QUEUE_EVENTS: usize = 4096;
/// Most bytes of events a subscriber may have queued.
pub const SUBSCRIBER_QUEUE_BYTES: usize = 1024 * 1024;
/// Recent events kept for subscribers that resume, at most (and [`RING_BYTES`]).
const RING_EVENTS: usize = 20_000;
const RING_BYTES: usize = 16 * 1024 * 1024;

/// Why the collector closes an agent's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A newer connection for the same host replaced this one.
    Replaced,
    /// The collector is shutting down.
    ShuttingDown,
    /// The agent's token was revoked.
    Revoked,
}

/// A request to the hub.
pub enum Event {
    /// An agent completed its hello.
    AgentConnected {
        /// Connection id.
        conn: u64,
        /// The agent's hello.
        hello: Hello,
        /// The token it was admitted with.
        credential: AgentCredential,
        /// Peer address, for display.
        addr: String,
        /// Closes the connection when sent a reason.
        close: async_channel::Sender<CloseReason>,
        /// Where this collector's claim of the host is in the Redis stream (`--redis`).
        claim: Option<StreamPos>,
    },
    /// Another collector welcomed an agent of this host (its claim in the Redis stream): a
    /// connection of it here older than that claim is closed as replaced, so a host connected
    /// to two collectors at once is served by the newest connection only.
    ClaimedElsewhere {
        /// The host.
        host_id: String,
        /// The claiming agent's instance id, for the log.
        instance_id: u64,
        /// The claiming collector's id, for the log.
        collector: String,
        /// The claim's stream position.
        pos: StreamPos,
    },
    /// An agent's connection ended.
    AgentDisconnected {
        /// Connection id.
        conn: u64,
        /// The host it served.
        host_id: String,
        /// Why, for the activity feed.
        reason: String,
    },
    /// The storage committed these.
    Stored(Vec<Stored>),
    /// A browser subscribes to live events.
    Subscribe {
        /// What it wants.
        request: SubscribeRequest,
        /// Where to send the subscription.
        reply: async_channel::Sender<Subscription>,
    },
    /// A subscriber went away.
    Unsubscribe {
        /// Its id.
        id: u64,
    },
    /// The per-host agent tokens were re-read: close connections whose token went away.
    TokensReloaded {
        /// The tokens now in force.
        current: Arc<AgentAuth>,
        /// The tokens before.
        previous: Arc<AgentAuth>,
    },
    /// Broadcast a notification to every subscriber (and the activity feed).
    Broadcast {
        /// The message.
        message: String,
        /// Who sent it, for the feed.
        from: String,
    },
    /// New alert rules (SIGHUP): alerts of rules that are gone resolve.
    ReloadRules(Vec<crate::alerts::Rule>),
    /// A silence was stored.
    Silenced(Silence),
    /// A silence was deleted.
    Unsilenced(u64),
    /// Forget an offline host that is being removed (`DELETE /api/hosts/{id}`).
    RemoveHost {
        /// The host id.
        id: String,
        /// The forgotten host, or why it may not be removed.
        reply: async_channel::Sender<Result<RemovedHost, RemoveRefusal>>,
    },
    /// The storage could not commit a removal: know the host again.
    RestoreHost(RemovedHost),
    /// A question about the hub's state, answered on its reply channel.
    Query(Query),
    /// Once a second: status changes and rates.
    Tick,
    /// Close every agent and subscriber and stop.
    Shutdown,
}

/// What a subscriber asks for.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// Event filter.
    pub filter: Filter,
    /// Resume after this event id.
    pub since: Option<u64>,
    /// The resume id named another collector (`--redis`): resync, as for an id past the newest.
    pub since_elsewhere: bool,
    /// `sse` or `websocket`.
    pub transport: &'static str,
    /// Peer address.
    pub addr: String,
}

/// A live subscription, held by the subscriber's writer.
pub struct Subscription {
    /// Subscriber id, for [`Event::Unsubscribe`].
    pub id: u64,
    /// New events, in id order, each counted in `queued_bytes` for its [`LiveEvent::size`].
    pub events: async_channel::Receiver<Arc<LiveEvent>>,
    /// Recent events after the requested id that were already in the ring.
    pub backlog: Vec<Arc<LiveEvent>>,
    /// When the ring did not reach back far enough: resume from the database after this id.
    pub from_database_after: Option<u64>,
    /// Bytes queued in `events`; the writer subtracts what it takes.
    pub queued_bytes: Arc<AtomicUsize>,
    /// Set when the hub dropped this subscriber for being too slow.
    pub lagged: Arc<AtomicBool>,
    /// Set when the hub stopped because the collector is shutting down.
    pub shutting_down: Arc<AtomicBool>,
    /// The requested id is newer than any event this collector ever stored, or names another
    /// collector (it comes from another database): the subscriber should reload its data; it
    /// streams from now.
    pub resync: bool,
}

/// A host the hub forgot for its removal, kept by the remover until the storage committed it.
pub struct RemovedHost {
    /// The host id.
    pub id: String,
    /// Its host name, for the `host_removed` event.
    pub hostname: String,
    host: Host,
}

/// Why a host may not be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveRefusal {
    /// No such host.
    Unknown,
    /// Its agent is connected; the status it has (`online` or `stale`).
    Connected(&'static str),
}

struct Host {
    hello: Hello,
    /// The host name, shared by every sample event.
    name: Arc<str>,
    status: &'static str,
    last_seen_ms: Option<u64>,
    last_sample_at: Option<Instant>,
    connected_at: Option<Instant>,
    connected_since_ms: Option<u64>,
    conn: Option<u64>,
    dropped_total: u64,
    latest: Option<Arc<Point>>,
    latest_sample: Option<Arc<Sample>>,
    samples: u64,
    /// When a sample of it last came from another collector (its agent is connected there).
    replicated_at: Option<Instant>,
    /// The newest other collector's claim of it read from the stream (`--redis`): a connection
    /// here whose own claim is older when the hub hears of it (the claims crossed during its
    /// welcome) is closed as replaced at once.
    claimed_elsewhere: Option<StreamPos>,
}

impl Host {
    /// A host as first heard of: offline, nothing seen yet.
    fn new(hello: Hello) -> Self {
        Self {
            name: Arc::from(hello.hostname.as_str()),
            hello,
            status: "offline",
            last_seen_ms: None,
            last_sample_at: None,
            connected_at: None,
            connected_since_ms: None,
            conn: None,
            dropped_total: 0,
            latest: None,
            latest_sample: None,
            samples: 0,
            replicated_at: None,
            claimed_elsewhere: None,
        }
    }
}

struct Agent {
    host_id: String,
    addr: String,
    since_ms: u64,
    credential: AgentCredential,
    close: async_channel::Sender<CloseReason>,
    /// Its claim's stream position (`--redis`), if published.
    claim: Option<StreamPos>,
}

struct Subscriber {
    tx: async_channel::Sender<Arc<LiveEvent>>,
    filter: Filter,
    queued_bytes: Arc<AtomicUsize>,
    lagged: Arc<AtomicBool>,
    shutting_down: Arc<AtomicBool>,
    transport: &'static str,
    addr: String,
    since_ms: u64,
    sent: u64,
}

/// The hub's state. Owned by [`run`]'s task.
pub struct Hub {
    hosts: HashMap<String, Host>,
    agents: HashMap<u64, Agent>,
    subscribers: HashMap<u64, Subscriber>,
    /// Recent events, with the bytes each was counted for.
    ring: VecDeque<Arc<LiveEvent>>,
    ring_bytes: usize,
    next_subscriber: u64,
    storage: Storage,
    self_host: Option<String>,
    started: Instant,
    samples_total: u64,
    per_second: VecDeque<u64>,
    this_second: u64,
    lagged_total: u64,
    pending_activity: VecDeque<Record>,
    watchdog: agent::runtime::systemd::Watchdog,
    /// The newest event id stored before this start, for subscribers resuming after it.
    newest_at_start: u64,
    alerts: Alerts,
    /// Every stored silence (expired ones too, until storage drops them).
    silences: Vec<Silence>,
    notifier: Notifier,
}

/// What the hub starts its alerts with.
pub struct AlertSetup {
    /// The rules.
    pub rules: Vec<crate::alerts::Rule>,
    /// Alerts firing when the collector last stopped.
    pub firing: Vec<crate::alerts::Persisted>,
    /// Stored silences.
    pub silences: Vec<Silence>,
    /// The notification channels.
    pub notifier: Notifier,
}

/// Activity events waiting for room in the storage queue, at most.
const PENDING_ACTIVITY: usize = 10_000;

impl Hub {
    /// Creates the hub with the hosts already in the database (all offline until they connect).
    pub fn new(
        storage: Storage,
        hosts: Vec<HostRecord>,
        self_host: Option<String>,
        setup: AlertSetup,
    ) -> Self {
        let newest_at_start = storage.next_event_id().saturating_sub(1);
        let now_ms = crate::now_ms();
        let mut alerts = Alerts::new(setup.rules);
        // Every known host can fall silent, counted from this start at the earliest.
        for record in &hosts {
            alerts.watch(
                &record.hello.host_id,
                &record.hello.hostname,
                record.last_seen_ms,
                u64::from(record.hello.interval_ms.max(100)),
                now_ms,
            );
        }
        let orphans = alerts.restore(setup.firing);
        let hosts = hosts
            .into_iter()
            .map(|record| {
                let host = Host {
                    last_seen_ms: record.last_seen_ms,
                    dropped_total: record.dropped_total,
                    latest: record.latest.map(Arc::new),
                    latest_sample: record.latest_sample,
                    ..Host::new(record.hello)
                };
                (host.hello.host_id.clone(), host)
            })
            .collect();
        let mut hub = Self {
            hosts,
            agents: HashMap::new(),
            subscribers: HashMap::new(),
            ring: VecDeque::new(),
            ring_bytes: 0,
            next_subscriber: 1,
            storage,
            self_host,
            started: Instant::now(),
            samples_total: 0,
            per_second: VecDeque::new(),
            this_second: 0,
            lagged_total: 0,
            pending_activity: VecDeque::new(),
            watchdog: agent::runtime::systemd::Watchdog::from_env(),
            newest_at_start,
            alerts,
            silences: setup.silences,
            notifier: setup.notifier,
        };
        // Alerts of rules no longer configured end: the feed says so and their state goes.
        for orphan in orphans {
            log::info!(
                "alert {} on {}: its rule is no longer configured, resolving it",
                orphan.rule,
                escaped(&orphan.host)
            );
            let alert = Alert {
                rule: orphan.rule,
                state: AlertState::Resolved,
                value: orphan.value,
                since_ms: orphan.since_ms,
                device: (!orphan.device.is_empty())
                    .then_some(AlertDevice { name: orphan.device, selector: None }),
                silenced: true,
                cause: AlertCause::RuleRemoved { reason: "rule removed".into() },
            };
            hub.record(Some(&orphan.host), Activity::Alert(Box::new(alert)));
        }
        hub
    }

    /// Whether a silence covers `rule` on `host` now.
    fn silenced(&self, host: &str, rule: &str) -> bool {
        let hostname = self.hosts.get(host).map_or("", |h| h.hello.hostname.as_str());
        let now = crate::now_ms();
        self.silences.iter().any(|s| s.covers(host, hostname, rule, now))
    }

    /// Runs the hub until [`Event::Shutdown`] or until every sender is gone.
    pub async fn run(mut self, events: async_channel::Receiver<Event>) {
        while let Ok(event) = events.recv().await {
            if matches!(event, Event::Shutdown) {
                self.shutdown();
                return;
            }
            self.handle(event);
            self.flush_activity();
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::AgentConnected { conn, hello, credential, addr, close, claim } => {
                self.agent_connected(conn, hello, credential, addr, close, claim)
            }
            Event::ClaimedElsewhere { host_id, instance_id, collector, pos } => {
                self.claimed_elsewhere(&host_id, instance_id, &collector, pos)
            }
            Event::AgentDisconnected { conn, host_id, reason } => {
                self.agent_disconnected(conn, host_id, reason)
            }
            Event::Stored(stored) => self.stored(stored),
            Event::Subscribe { request, reply } => {
                let subscription = self.subscribe(request);
                // A subscriber that left before its answer simply never starts.
                let _ = reply.try_send(subscription);
            }
            Event::Unsubscribe { id } => {
                self.subscribers.remove(&id);
            }
            Event::TokensReloaded { current, previous } => {
                self.tokens_reloaded(&current, &previous)
            }
            Event::Broadcast { message, from } => {
                self.record(None, Activity::Notification { message, from });
            }
            Event::ReloadRules(rules) => {
                let changes = self.alerts.set_rules(rules, crate::now_ms());
                self.record_alerts(changes);
            }
            Event::Silenced(silence) => {
                self.silences.retain(|s| s.id != silence.id);
                self.silences.push(silence);
            }
            Event::Unsilenced(id) => self.silences.retain(|s| s.id != id),
            Event::RemoveHost { id, reply } => {
                let removed = self.remove_host(id);
                if let Err(Ok(removed)) = reply.try_send(removed).map_err(|e| e.into_inner()) {
                    // The remover gave up before the storage heard of it: nothing was removed.
                    self.restore_host(removed);
                }
            }
            Event::RestoreHost(removed) => self.restore_host(removed),
            Event::Query(query) => self.answer(query),
            Event::Tick => self.tick(),
            Event::Shutdown => {}
        }
    }

    fn agent_connected(
        &mut self,
        conn: u64,
        hello: Hello,
        credential: AgentCredential,
        addr: String,
        close: async_channel::Sender<CloseReason>,
        claim: Option<StreamPos>,
    ) {
        let host_id = hello.host_id.clone();
        let now_ms = crate::now_ms();
        let host = self.hosts.entry(host_id.clone()).or_insert_with(|| Host::new(hello.clone()));
        if let Some(old) = host.conn.and_then(|old| self.agents.remove(&old)) {
            log::warn!(
                "host {}: connection from {addr} replaces the one from {} (two agents with the same host id?)",
                escaped(&host_id),
                old.addr
            );
            // The old connection may already be closing on its own.
            let _ = old.close.try_send(CloseReason::Replaced);
        }
        host.name = Arc::from(hello.hostname.as_str());
        host.hello = hello;
        host.conn = Some(conn);
        host.connected_at = Some(Instant::now());
        host.connected_since_ms = Some(now_ms);
        let hostname = host.hello.hostname.clone();
        log::info!("agent connected: {} ({}) from {addr}", escaped(&hostname), escaped(&host_id));
        self.agents.insert(
            conn,
            Agent {
                host_id: host_id.clone(),
                addr: addr.clone(),
                since_ms: now_ms,
                credential,
                close,
                claim,
            },
        );
        // Another collector's newer claim, read while this connection was being welcomed.
        let crossed = claim.zip(host.claimed_elsewhere).filter(|(ours, theirs)| theirs > ours);
        self.record(Some(&host_id), Activity::AgentConnected { hostname, addr: addr.clone() });
        self.set_status(&host_id, "online");
        if let Some((_, theirs)) = crossed {
            log::warn!(
                "host {}: another collector claimed it at {theirs}, after this one's claim; \
                 closing the connection from {addr} as replaced",
                escaped(&host_id)
            );
            if let Some(agent) = self.agents.get(&conn) {
                // The connection may already be closing on its own.
                let _ = agent.close.try_send(CloseReason::Replaced);
            }
        }
    }

    /// Closes this collector's connection of `host_id` if another collector's claim of it is
    /// newer (newest wins, as between two connections here); the disconnect then comes through
    /// the connection's own ending. A connection whose claim was never published (Redis away at
    /// its welcome) yields to any claim read afterwards.
    fn claimed_elsewhere(
        &mut self,
        host_id: &str,
        instance_id: u64,
        collector: &str,
        pos: StreamPos,
    ) {
        let Some(host) = self.hosts.get_mut(host_id) else {
            return;
        };
        host.claimed_elsewhere = host.claimed_elsewhere.max(Some(pos));
        let Some(conn) = host.conn else {
            return;
        };
        let Some(agent) = self.agents.get(&conn) else {
            return;
        };
        if agent.claim.is_some_and(|ours| ours >= pos) {
            return; // An older claim, read late: this connection is the newer one.
        }
        log::warn!(
            "host {}: collector {} welcomed it (instance {instance_id}) after this one did; \
             closing the connection from {} as replaced",
            escaped(host_id),
            escaped(collector),
            agent.addr
        );
        // The connection may already be closing on its own.
        let _ = agent.close.try_send(CloseReason::Replaced);
    }

    /// Knows a host served by another collector; its hello stands unless its agent is connected
    /// here (then this collector's own hello is the newer word).
    fn replicated(&mut self, hello: Hello) {
        let host_id = hello.host_id.clone();
        match self.hosts.get_mut(&host_id) {
            Some(host) if host.conn.is_some() => {}
            Some(host) => {
                host.name = Arc::from(hello.hostname.as_str());
                host.hello = hello;
            }
            None => {
                log::info!(
                    "host {} ({}) replicated from another collector",
                    escaped(&hello.hostname),
                    escaped(&host_id)
                );
                self.hosts.insert(host_id, Host::new(hello));
            }
        }
    }

    fn agent_disconnected(&mut self, conn: u64, host_id: String, reason: String) {
        if self.agents.remove(&conn).is_none() {
            return; // Already replaced by a newer connection.
        }
        let Some(host) = self.hosts.get_mut(&host_id) else {
            return;
        };
        if host.conn != Some(conn) {
            return;
        }
        host.conn = None;
        host.connected_at = None;
        host.connected_since_ms = None;
        let hostname = host.hello.hostname.clone();
        log::info!(
            "agent disconnected: {} ({}): {}",
            escaped(&hostname),
            escaped(&host_id),
            escaped(&reason)
        );
        self.record(Some(&host_id), Activity::AgentDisconnected { hostname, reason });
        self.set_status(&host_id, "offline");
    }

    /// Forgets an offline host, so it is gone from the API and `/metrics` at once; the remover
    /// then has the storage delete it.
    fn remove_host(&mut self, id: String) -> Result<RemovedHost, RemoveRefusal> {
        match self.hosts.get(&id) {
            None => return Err(RemoveRefusal::Unknown),
            Some(host) if host.conn.is_some() => {
                let status = if host.status == "offline" { "online" } else { host.status };
                return Err(RemoveRefusal::Connected(status));
            }
            Some(_) => {}
        }
        let Some(host) = self.hosts.remove(&id) else { return Err(RemoveRefusal::Unknown) };
        self.alerts.forget(&id);
        log::info!("host removed: {} ({})", escaped(&host.hello.hostname), escaped(&id));
        Ok(RemovedHost { hostname: host.hello.hostname.clone(), id, host })
    }

    /// Knows a host again whose removal failed, unless its agent connected meanwhile (then it
    /// is known already).
    fn restore_host(&mut self, removed: RemovedHost) {
        log::warn!("host {} was not removed after all", escaped(&removed.id));
        self.hosts.entry(removed.id).or_insert(removed.host);
    }

    /// Publishes alert changes as `alert` activity events.
    fn record_alerts(&mut self, changes: Vec<Change>) {
        for change in changes {
            let hostname =
                self.hosts.get(&change.host).map(|h| h.hello.hostname.clone()).unwrap_or_default();
            let state = if change.firing { AlertState::Firing } else { AlertState::Resolved };
            let silenced = self.silenced(&change.host, &change.rule);
            log::info!(
                "alert {}: {} on {} ({}){}, value {}{}",
                state.name(),
                change.rule,
                escaped(&hostname),
                escaped(&change.host),
                change.device.as_deref().map(|d| format!(" {}", escaped(d))).unwrap_or_default(),
                change.value,
                if silenced { " (silenced: no notification)" } else { "" }
            );
            let device = change.device.map(|name| AlertDevice {
                name,
                selector: change.selector.and_then(Selector::from_key),
            });
            let alert = Alert {
                rule: change.rule,
                state,
                value: change.value,
                since_ms: change.since_ms,
                device,
                silenced,
                cause: AlertCause::Judged {
                    hostname,
                    severity: change.severity,
                    summary: change.summary,
                    metric: change.metric,
                    threshold: change.threshold,
                },
            };
            self.record(Some(&change.host), Activity::Alert(Box::new(alert)));
        }
    }

    /// Hands a committed alert event to the notification channels, unless it was silenced.
    fn notify(&mut self, eid: u64, record: &Record, alert: &Alert) {
        let host = record.host.as_deref().unwrap_or_default();
        if let Some(notification) = Notification::from_alert(eid, record.ts_ms, host, alert) {
            self.notifier.dispatch(notification);
        }
    }

    fn tokens_reloaded(&mut self, current: &AgentAuth, previous: &AgentAuth) {
        for agent in self.agents.values() {
            if !current.still_valid(&agent.credential, previous) {
                log::warn!(
                    "closing the connection of host {}: its token was revoked",
                    escaped(&agent.host_id)
                );
                // The connection may be ending on its own already.
                let _ = agent.close.try_send(CloseReason::Revoked);
            }
        }
    }

    fn set_status(&mut self, host_id: &str, status: &'static str) {
        let Some(host) = self.hosts.get_mut(host_id) else {
            return;
        };
        if host.status == status {
            return;
        }
        host.status = status;
        let hostname = host.hello.hostname.clone();
        self.record(Some(host_id), Activity::Status { hostname, status: status.into() });
    }

    /// Queues an activity event for storage; it comes back through [`Event::Stored`] once
    /// committed and is published then.
    fn record(&mut self, host: Option<&str>, activity: Activity) {
        if self.pending_activity.len() >= PENDING_ACTIVITY {
            log::warn!(
                "activity feed: storage is far behind, dropping a {} event",
                activity.kind()
            );
            return;
        }
        self.pending_activity.push_back(Record::now(host, activity));
    }

    /// Hands queued activity to storage without waiting: the storage thread itself waits on the
    /// hub to publish, so the hub must never wait on the storage.
    fn flush_activity(&mut self) {
        while let Some(activity) = self.pending_activity.pop_front() {
            if let Err(activity) = self.storage.try_activity(activity) {
                self.pending_activity.push_front(activity);
                return;
            }
        }
    }

    fn stored(&mut self, stored: Vec<Stored>) {
        for item in stored {
            let event = match item {
                // Replication stored a host that another collector's agent reports
                // (`--redis`): listed here, online while its samples keep coming.
                Stored::Host { hello } => {
                    self.replicated(*hello);
                    continue;
                }
                Stored::Sample { eid, host_id, point, sample, dropped_total, replicated, late } => {
                    self.samples_total += 1;
                    self.this_second += 1;
                    let Some(host) = self.hosts.get_mut(host_id.as_ref()) else {
                        continue;
                    };
                    // A hole filled from the stream is history: it says nothing of whether
                    // the host reports now, and alerts judge the present only.
                    let remote = replicated && !late && host.conn.is_none();
                    if remote {
                        host.replicated_at = Some(Instant::now());
                    }
                    host.samples += 1;
                    host.dropped_total = host.dropped_total.max(dropped_total);
                    host.last_seen_ms = Some(host.last_seen_ms.unwrap_or(0).max(point.ts));
                    if !late {
                        host.last_sample_at = Some(Instant::now());
                    }
                    let newest = host.latest.as_ref().is_none_or(|l| l.ts <= point.ts);
                    // Per-device values only when a rule reads them, from the host's sample
                    // before this one (rates), as storage derived them.
                    let devices = if self.alerts.wants_devices() {
                        let previous = host.latest_sample.as_deref().filter(|_| newest);
                        crate::storage::device::readings(previous, &sample)
                    } else {
                        Vec::new()
                    };
                    let subject = Subject {
                        id: &host_id,
                        hostname: &host.hello.hostname,
                        interval_ms: u64::from(host.hello.interval_ms.max(100)),
                    };
                    let changes = match late {
                        true => Vec::new(),
                        false => self.alerts.on_point(subject, &point, &devices),
                    };
                    let event =
                        LiveEvent::sample(eid, host_id.clone(), host.name.clone(), point.clone());
                    if newest {
                        host.latest = Some(point);
                        host.latest_sample = Some(sample);
                    }
                    self.record_alerts(changes);
                    if remote {
                        self.set_status(&host_id, "online");
                    }
                    event
                }
                Stored::Activity { eid, activity } => {
                    if let Activity::Alert(alert) = &activity.activity {
                        self.notify(eid, &activity, alert);
                    }
                    LiveEvent::activity(eid, &activity)
                }
            };
            self.publish(Arc::new(event));
        }
    }

    /// Queues an event for every subscriber that wants it, without waiting and without
    /// serializing it: the first subscriber task to send it does that, on any executor thread.
    /// Queues are bounded by an estimate of the bytes they hold, taken when queued.
    fn publish(&mut self, event: Arc<LiveEvent>) {
        let bytes = event.size();
        let mut lagged = Vec::new();
        for (id, sub) in &mut self.subscribers {
            if !sub.filter.matches(&event) {
                continue;
            }
            let queued = sub.queued_bytes.load(Ordering::Relaxed);
            if queued + bytes > SUBSCRIBER_QUEUE_BYTES || sub.tx.try_send(event.clone()).is_err() {
                lagged.push(*id);
                continue;
            }
            sub.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
            sub.sent += 1;
        }
        for id in lagged {
            if let Some(sub) = self.subscribers.remove(&id) {
                log::info!(
                    "{} subscriber {} dropped: too slow, its queue is full",
                    sub.transport,
                    sub.addr
                );
                sub.lagged.store(true, Ordering::Relaxed);
                self.lagged_total += 1;
            }
        }
        self.ring_bytes += bytes;
        self.ring.push_back(event);
        while self.ring.len() > RING_EVENTS || self.ring_bytes > RING_BYTES {
            if let Some(old) = self.ring.pop_front() {
                self.ring_bytes -= old.size();
            }
        }
    }

    fn subscribe(&mut self, request: SubscribeRequest) -> Subscription {
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        let (tx, rx) = async_channel::bounded(SUBSCRIBER_QUEUE_EVENTS);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let lagged = Arc::new(AtomicBool::new(false));
        let shutting_down = Arc::new(AtomicBool::new(false));
        let newest = self.ring.back().map_or(self.newest_at_start, |e| e.id);
        let resync = request.since_elsewhere || request.since.is_some_and(|since| since > newest);
        let (backlog, from_database_after) = match request.since.filter(|_| !resync) {
            None => (Vec::new(), None),
            Some(since) => match self.ring.front() {
                Some(first) if first.id <= since.saturating_add(1) => (
                    self.ring
                        .iter()
                        .filter(|e| e.id > since && request.filter.matches(e))
                        .cloned()
                        .collect(),
                    None,
                ),
                _ => (Vec::new(), Some(since)),
            },
        };
        self.subscribers.insert(
            id,
            Subscriber {
                tx,
                filter: request.filter,
                queued_bytes: queued_bytes.clone(),
                lagged: lagged.clone(),
                shutting_down: shutting_down.clone(),
                transport: request.transport,
                addr: request.addr,
                since_ms: crate::now_ms(),
                sent: 0,
            },
        );
        Subscription {
            id,
            events: rx,
            backlog,
            from_database_after,
            queued_bytes,
            lagged,
            shutting_down,
            resync,
        }
    }

    fn tick(&mut self) {
        // The hub turns at least once a second (the ticker), so a pet here proves it is alive.
        self.watchdog.pet_if_due();
        self.per_second.push_back(self.this_second);
        self.this_second = 0;
        while self.per_second.len() > 10 {
            self.per_second.pop_front();
        }
        let changes = self.alerts.on_tick(crate::now_ms());
        self.record_alerts(changes);
        let now = Instant::now();
        let mut changes = Vec::new();
        for (id, host) in &mut self.hosts {
            let patience = Duration::from_millis(u64::from(host.hello.interval_ms.max(1000)) * 3);
            // A host another collector serves is online while its samples come, offline after.
            if let (None, Some(at)) = (host.conn, host.replicated_at) {
                if now.duration_since(at) > patience {
                    host.replicated_at = None;
                    changes.push((id.clone(), "offline"));
                }
                continue;
            }
            let Some(connected_at) = host.connected_at else {
                continue;
            };
            let heard = host.last_sample_at.map_or(connected_at, |t| t.max(connected_at));
            let status = if now.duration_since(heard) > patience { "stale" } else { "online" };
            if status != host.status {
                changes.push((id.clone(), status));
            }
        }
        for (id, status) in changes {
            self.set_status(&id, status);
        }
    }

    fn shutdown(&mut self) {
        for agent in self.agents.values() {
            // Connections that already ended need no close.
            let _ = agent.close.try_send(CloseReason::ShuttingDown);
        }
        for sub in self.subscribers.values() {
            sub.shutting_down.store(true, Ordering::Relaxed);
        }
        // Dropping the senders ends every subscriber's stream.
        self.subscribers.clear();
    }
}

/// Asks the hub a question and waits for the answer.
pub async fn ask<T, E: Into<Event>>(
    hub: &async_channel::Sender<Event>,
    make: impl FnOnce(async_channel::Sender<T>) -> E,
) -> Option<T> {
    let (reply, answer) = async_channel::bounded(1);
    hub.send(make(reply).into()).await.ok()?;
    answer.recv().await.ok()
}
