//! Notifications: firing and resolved alerts sent to the `[[notify.webhook]]` and
//! `[notify.email]` channels of the configuration.
//!
//! Each channel has its own bounded queue ([`QUEUE`] notifications) and its own sender: a task on
//! the executor for a webhook (non-blocking sockets), a dedicated thread for email (lettre's
//! blocking SMTP transport, so the executor never blocks). The hub hands a notification to every
//! channel with `try_send`: a full queue drops it (counted in
//! `hostwatch_collector_notify_dropped_total`), so a dead receiver never slows the hub or
//! ingest. A failed delivery is retried with capped exponential backoff ([`Backoff`]) for up to
//! [`RETRY_FOR`], the channel's later notifications waiting behind it in order; each failure is
//! counted (`hostwatch_collector_notify_failures_total{channel=…}`) and logged once when a
//! channel starts failing, then at most once a minute while it goes on, and once when it
//! recovers.
//!
//! Each channel's newest delivered (or given up) alert event id is stored (`notify_cursor`), so a
//! restart, even after `kill -9`, queues again the alert events of the last [`RETRY_FOR`] the
//! channel had not delivered: delivery is at least once (a notification delivered just before a
//! crash may come twice; `event_id` tells receivers it is the same).

pub mod config;
pub mod email;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::activity::{Activity, Alert, AlertCause};
use crate::alerts::Severity;
pub use config::{ChannelConfig, NotifyConfig};

/// Notifications a channel may have queued; more are dropped and counted.
pub const QUEUE: usize = 1000;
/// How long a notification is retried before it is given up (and counted as dropped).
pub const RETRY_FOR: Duration = Duration::from_secs(3600);
/// First retry delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// While a channel keeps failing, at most one log line per this long.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// One alert change (or a test) as every channel receives it.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// `firing`, `resolved`, or `test` (from `notify-test`).
    pub state: String,
    /// The rule's name.
    pub rule: String,
    /// The host id.
    pub host: String,
    /// The host name.
    pub hostname: String,
    /// The device, for a per-device rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's summary, filled in.
    pub summary: String,
    /// The value that decided it.
    pub value: f64,
    /// The rule's threshold, for threshold rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Since when the condition held (unix ms).
    pub since_ms: u64,
    /// When the change happened (unix ms).
    pub ts_ms: u64,
    /// The alert event's id (live event id), to tell repeats apart.
    pub event_id: u64,
}

impl Notification {
    /// One line for chat and subjects: `[FIRING] warning: web-1: / at 95%`.
    pub fn headline(&self) -> String {
        format!("[{}] {}: {}", self.state.to_ascii_uppercase(), self.severity.name(), self.summary)
    }

    /// Several lines for chat bodies and email.
    pub fn details(&self) -> String {
        let mut text = format!(
            "{}\nrule: {}\nhost: {} ({})\n",
            self.headline(),
            self.rule,
            self.hostname,
            self.host
        );
        if let Some(device) = &self.device {
            text.push_str(&format!("device: {device}\n"));
        }
        text.push_str(&format!("value: {}", crate::alerts::shown_number(self.value)));
        if let Some(threshold) = self.threshold {
            text.push_str(&format!(" (threshold {})", crate::alerts::shown_number(threshold)));
        }
        text.push_str(&format!(
            "\nsince: {}\n",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(self.since_ms)
            )
        ));
        text
    }

    /// The notification for a stored `alert` event, unless a silence held it back.
    pub fn from_alert(eid: u64, ts_ms: u64, host: &str, alert: &Alert) -> Option<Self> {
        if alert.silenced {
            return None;
        }
        let (hostname, severity, summary, threshold) = match &alert.cause {
            AlertCause::Judged { hostname, severity, summary, threshold, .. } => {
                (hostname.clone(), *severity, summary.clone(), *threshold)
            }
            // The collector resolves these silenced; should one not be, it still goes out.
            AlertCause::RuleRemoved { .. } => {
                (String::new(), Severity::Warning, String::new(), None)
            }
        };
        Some(Self {
            state: alert.state.name().to_owned(),
            rule: alert.rule.clone(),
            host: host.to_owned(),
            hostname,
            device: alert.device.as_ref().map(|d| d.name.clone()),
            severity,
            summary,
            value: alert.value,
            threshold,
            since_ms: alert.since_ms,
            ts_ms,
            event_id: eid,
        })
    }

    /// The notification `notify-test` sends.
    pub fn test() -> Self {
        let now = crate::now_ms();
        Self {
            state: "test".into(),
            rule: "notify-test".into(),
            host: "hostwatch-collector".into(),
            hostname: sysinfo::System::host_name().unwrap_or_else(|_| "hostwatch".into()),
            device: None,
            severity: Severity::Info,
            summary: "hostwatch test notification: this channel works".into(),
            value: 0.0,
            threshold: None,
            since_ms: now,
            ts_ms: now,
            event_id: 0,
        }
    }
}

/// A channel's counters, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// The channel's name (its `channel` label).
    pub name: String,
    /// Notifications delivered.
    pub sent_total: AtomicU64,
    /// Failed delivery attempts.
    pub failures_total: AtomicU64,
    /// Notifications dropped: queue full, or retried for [`RETRY_FOR`] in vain.
    pub dropped_total: AtomicU64,
    /// Notifications not sent because another collector sent them first (`--redis`).
    pub deduplicated_total: AtomicU64,
}

struct Channel {
    tx: async_channel::Sender<Arc<Notification>>,
    min_severity: Severity,
    stats: Arc<ChannelStats>,
    full_log: Throttle,
}

/// Every channel's queue; cheap to share (the hub dispatches, `/metrics` reads the counters).
#[derive(Default)]
pub struct Notifier {
    channels: Vec<Channel>,
}

/// Where the channels resume after a restart.
#[derive(Debug, Default)]
pub struct Resume {
    /// Each channel's newest delivered alert event id.
    pub cursors: std::collections::HashMap<String, u64>,
    /// Stored alert events after the oldest cursor, oldest first.
    pub events: Vec<crate::storage::alerts::AlertEvent>,
    /// The newest event id stored before this start: where a new channel begins.
    pub newest_eid: u64,
}

impl Notifier {
    /// Starts every configured channel's sender, each first given what it had not delivered
    /// before the restart; delivery progress is recorded through `storage`.
    pub fn start(
        config: &NotifyConfig,
        storage: &crate::storage::Storage,
        resume: &Resume,
        replica: Option<&crate::replica::Replica>,
    ) -> anyhow::Result<Self> {
        let mut channels = Vec::new();
        for channel in &config.channels {
            let (tx, rx) = async_channel::bounded(QUEUE);
            let name = channel.name().to_owned();
            let stats = Arc::new(ChannelStats { name: name.clone(), ..Default::default() });
            match resume.cursors.get(&name) {
                Some(cursor) => {
                    let backlog = resume
                        .events
                        .iter()
                        .filter(|e| e.id > *cursor)
                        .filter_map(|e| match &e.activity {
                            Activity::Alert(alert) => {
                                Notification::from_alert(e.id, e.ts_ms, e.host.as_deref()?, alert)
                            }
                            // Only rows older than delivery cursors are not typed alerts (an
                            // alert without severity predates notifications): none is due.
                            _ => None,
                        })
                        .filter(|n| n.severity >= channel.min_severity())
                        .take(QUEUE);
                    let mut resent = 0;
                    for notification in backlog {
                        // The queue is new and as long as the backlog at most.
                        let _ = tx.try_send(Arc::new(notification));
                        resent += 1;
                    }
                    if resent > 0 {
                        log::info!(
                            "notify {name}: sending {resent} notifications not delivered before the restart"
                        );
                    }
                }
                // A new channel starts from now, and says so, so a crash before its first
                // delivery does not make it start later.
                None => smol::block_on(storage.notify_delivered(&name, resume.newest_eid)),
            }
            match channel {
                ChannelConfig::Webhook(hook) => {
                    let sender = webhook::Sender::new(hook.clone())?;
                    // Detached: it serves its queue until the collector exits.
                    let (stats, storage) = (stats.clone(), storage.clone());
                    let once = replica.cloned();
                    crate::spawn(run_webhook(sender, rx, stats, storage, once)).detach();
                }
                ChannelConfig::Email(mail) => {
                    let sender = email::Sender::new(mail.clone())?;
                    let (stats, storage, once) = (stats.clone(), storage.clone(), replica.cloned());
                    // Detached as well; it ends when its queue closes.
                    std::thread::Builder::new()
                        .name(format!("notify-{name}"))
                        .spawn(move || run_email(sender, rx, stats, storage, once))?;
                }
            }
            channels.push(Channel {
                tx,
                min_severity: channel.min_severity(),
                stats,
                full_log: Throttle::default(),
            });
        }
        Ok(Self { channels })
    }

    /// Queues a notification on every channel that wants its severity, without waiting.
    pub fn dispatch(&mut self, notification: Notification) {
        let notification = Arc::new(notification);
        for channel in &mut self.channels {
            if notification.severity < channel.min_severity {
                continue;
            }
            if channel.tx.try_send(notification.clone()).is_err() {
                channel.stats.dropped_total.fetch_add(1, Ordering::Relaxed);
                if channel.full_log.allow() {
                    log::warn!(
                        "notify {}: queue full ({QUEUE}), dropping notifications (the receiver \
                         is down or slow)",
                        channel.stats.name
                    );
                }
            }
        }
    }

    /// Every channel's counters.
    pub fn stats(&self) -> Vec<Arc<ChannelStats>> {
        self.channels.iter().map(|c| c.stats.clone()).collect()
    }
}

/// Allows one log line per [`LOG_EVERY`].
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Capped exponential backoff between delivery attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_BACKOFF }
    }
}

impl Backoff {
    /// The delay before the next attempt; each call doubles the one after, up to a minute.
    pub fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }
}

/// A channel's failure log: one line when it starts failing, then at most one a minute, and
/// one when it delivers again.
struct FailureLog {
    failing_since: Option<Instant>,
    failures: u64,
    last_logged: Option<Instant>,
}

impl FailureLog {
    fn new() -> Self {
        Self { failing_since: None, failures: 0, last_logged: None }
    }

    fn failed(&mut self, channel: &str, error: &str, retry_in: Duration) {
        let now = Instant::now();
        self.failures += 1;
        let first = self.failing_since.is_none();
        self.failing_since.get_or_insert(now);
        if first || self.last_logged.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            self.last_logged = Some(now);
            log::warn!(
                "notify {channel}: delivery failed ({} failures in a row): {}; retrying in {}",
                self.failures,
                crate::untrusted::escaped(error),
                humantime::format_duration(retry_in)
            );
        }
    }

    fn delivered(&mut self, channel: &str) {
        if let Some(since) = self.failing_since.take() {
            log::info!(
                "notify {channel}: delivering again after {} failures over {}",
                self.failures,
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
            );
        }
        self.failures = 0;
        self.last_logged = None;
    }
}

async fn run_webhook(
    sender: webhook::Sender,
    rx: async_channel::Receiver<Arc<Notification>>,
    stats: Arc<ChannelStats>,
    storage: crate::storage::Storage,
    once: Option<crate::replica::Replica>,
) {
    let mut log = FailureLog::new();
    while let Ok(notification) = rx.recv().await {
        if !first_to_send(once.as_ref(), &stats, &notification).await {
            storage.notify_delivered(&stats.name, notification.event_id).await;
            continue;
        }
        let mut attempts = Attempts::new();
        loop {
            let result = sender.send(&notification).await;
            match attempts.next(result, &stats, &mut log, &notification) {
                Some(delay) => smol::Timer::after(delay).await,
                None => break,
            };
        }
        storage.notify_delivered(&stats.name, notification.event_id).await;
    }
}

fn run_email(
    sender: email::Sender,
    rx: async_channel::Receiver<Arc<Notification>>,
    stats: Arc<ChannelStats>,
    storage: crate::storage::Storage,
    once: Option<crate::replica::Replica>,
) {
    let mut log = FailureLog::new();
    while let Ok(notification) = rx.recv_blocking() {
        if !smol::block_on(first_to_send(once.as_ref(), &stats, &notification)) {
            smol::block_on(storage.notify_delivered(&stats.name, notification.event_id));
            continue;
        }
        let mut attempts = Attempts::new();
        loop {
            let result = sender.send(&notification);
            match attempts.next(result, &stats, &mut log, &notification) {
                Some(delay) => std::thread::sleep(delay),
                None => break,
            }
        }
        smol::block_on(storage.notify_delivered(&stats.name, notification.event_id));
    }
}

/// Whether this collector sends `notification` on the channel: always alone; with `--redis`,
/// when it is the first collector to claim it in Redis (every collector judges every host's
/// alerts from the same samples, so each makes the same notification). While Redis is away
/// every collector sends: a duplicate rather than a page nobody gets.
async fn first_to_send(
    once: Option<&crate::replica::Replica>,
    stats: &ChannelStats,
    notification: &Notification,
) -> bool {
    let Some(replica) = once else {
        return true;
    };
    if replica.first_to_notify(&stats.name, notification).await {
        return true;
    }
    stats.deduplicated_total.fetch_add(1, Ordering::Relaxed);
    log::info!(
        "notify {}: the {} notification of {} on {} was sent by another collector",
        stats.name,
        notification.state,
        notification.rule,
        crate::untrusted::escaped(&notification.host)
    );
    false
}

/// The delivery attempts of one notification, shared by the webhook (async) and email (a
/// thread of its own) senders: counts and logs each outcome, and says how long to wait before
/// the next attempt, or `None` when it is delivered or given up after [`RETRY_FOR`].
struct Attempts {
    first_try: Instant,
    backoff: Backoff,
}

impl Attempts {
    fn new() -> Self {
        Self { first_try: Instant::now(), backoff: Backoff::default() }
    }

    fn next(
        &mut self,
        result: Result<(), String>,
        stats: &ChannelStats,
        log: &mut FailureLog,
        notification: &Notification,
    ) -> Option<Duration> {
        match result {
            Ok(()) => {
                stats.sent_total.fetch_add(1, Ordering::Relaxed);
                log.delivered(&stats.name);
                None
            }
            Err(err) => {
                stats.failures_total.fetch_add(1, Ordering::Relaxed);
                if self.first_try.elapsed() >= RETRY_FOR {
                    give_up(stats, notification);
                    return None;
                }
                let delay = self.backoff.delay();
                log.failed(&stats.name, &err, delay);
                Some(delay)
            }
        }
    }
}

fn give_up(stats: &ChannelStats, notification: &Notification) {
    stats.dropped_total.fetch_add(1, Ordering::Relaxed);
    log::error!(
        "notify {}: giving up on the {} notification of {} on {} after {}",
        stats.name,
        notification.state,
        notification.rule,
        crate::untrusted::escaped(&notification.host),
        humantime::format_duration(RETRY_FOR)
    );
}

/// `hostwatch-collector notify-test`: sends a test notification on every channel, once, and
/// reports each outcome on stdout. Fails when there is no channel or one failed.
pub fn test_send(config: &NotifyConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.channels.is_empty(),
        "no notification channels: add [[notify.webhook]] or [notify.email] to the --config file"
    );
    let notification = Notification::test();
    let mut failed = 0;
    for channel in &config.channels {
        let result = match channel {
            ChannelConfig::Webhook(hook) => webhook::Sender::new(hook.clone())
                .map_err(|e| format!("{e:#}"))
                .and_then(|sender| smol::block_on(sender.send(&notification))),
            ChannelConfig::Email(mail) => email::Sender::new(mail.clone())
                .map_err(|e| format!("{e:#}"))
                .and_then(|sender| sender.send(&notification)),
        };
        match result {
            Ok(()) => println!("ok: {} ({})", channel.name(), channel.target()),
            Err(err) => {
                failed += 1;
                println!("FAILED: {} ({}): {err}", channel.name(), channel.target());
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} channels failed", config.channels.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| backoff.delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (tx, _rx) = async_channel::bounded(1);
        let stats = Arc::new(ChannelStats { name: "hook".into(), ..Default::default() });
        let mut notifier = Notifier {
            channels: vec![Channel {
                tx,
                min_severity: Severity::Info,
                stats: stats.clone(),
                full_log: Throttle::default(),
            }],
        };
        for _ in 0..3 {
            notifier.dispatch(Notification::test());
        }
        assert_eq!(stats.dropped_total.load(Ordering::Relaxed), 2);
    }
}
