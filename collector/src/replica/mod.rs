//! Replication between collectors over one Redis stream (`--redis URL`).
//!
//! Each collector publishes what its own agents' batches newly stored, one stream entry per
//! batch (the agent's hello and the samples, [`entry`]), and stores every other collector's
//! entries through the normal storage path, idempotent by (host, seq). Redis is the only
//! shared thing: no consensus of our own, no collector talks to another.
//!
//! - [`publisher`]: the storage writes each entry to the outbox in the transaction that stores
//!   its samples; the publisher task XADDs the outbox in order (`MAXLEN ~`), then has the storage
//!   delete what is in the stream. An agent's ack waits for its entry's XADD while Redis is up,
//!   so a `kill -9` of the collector right after the ack loses nothing for the others; while
//!   Redis is down acks follow the local commit alone and the outbox keeps the backlog.
//! - [`consumer`]: XREAD BLOCK from the stream position kept in the database, skipping this
//!   collector's own entries; stored samples reach the hub like any, so every collector's page,
//!   API, `/metrics` and live streams show every host.
//! - [`Replica::claim`]: each welcome announces the host in the stream; a collector with an
//!   older connection of that host closes it as replaced, so a host is served once.
//! - [`status`]: `redis_up` and the counters for `/readyz`, `/api/stats` and `/metrics`.

pub mod consumer;
pub mod entry;
pub mod publisher;
pub mod status;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use protocol::Hello;

use crate::fanout::hub;
use crate::storage::alerts::Silence;
use crate::storage::{Storage, replica as tables};

/// The default stream key.
pub const DEFAULT_STREAM: &str = "hostwatch:stream";
/// The default `MAXLEN ~` of the stream, in entries (one entry per stored batch).
pub const DEFAULT_MAX_LEN: usize = 100_000;

/// How long an agent's ack waits for its batch's XADD before it is sent anyway.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// How far (in outbox entries) an ack's entry may be behind the published ones and still
/// wait for the stream: four pipelines.
const BACKLOG_ENTRIES: i64 = 4 * publisher::CHUNK as i64;
/// How long a notification's claim is kept in Redis, in seconds.
const NOTIFIED_KEEP_SECONDS: u64 = 2 * 86_400;
/// How long a welcome waits for its claim's XADD.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
/// How long a hello waits for the consumer to reach the stream's end before the welcome.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);

/// What `--redis`, `--redis-stream` and `--redis-max-len` say.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server, `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// The stream's key.
    pub stream: String,
    /// The stream's approximate bound, in entries.
    pub max_len: usize,
}

impl Settings {
    /// Where the server is, without any password, for log lines.
    pub fn display_addr(&self) -> String {
        match redis::Client::open(self.url.as_str()) {
            Ok(client) => client.get_connection_info().addr().to_string(),
            Err(_) => "(bad URL)".into(),
        }
    }
}

/// Checks a `--redis` URL.
pub fn parse_url(url: &str) -> Result<String, String> {
    if !url.starts_with("redis://") && !url.starts_with("redis+unix://") {
        return Err(format!("{url:?} is not a redis:// URL (example: redis://127.0.0.1:6379/)"));
    }
    redis::Client::open(url).map_err(|e| format!("{url:?} is not a Redis URL: {e}"))?;
    Ok(url.to_owned())
}

/// A stream entry id, `MS-SEQ`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamPos {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamPos {
    /// Parses `MS-SEQ`.
    pub fn parse(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-')?;
        Some(Self { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl std::fmt::Display for StreamPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// What the publisher, the consumer and connections share.
struct Shared {
    settings: Settings,
    client: redis::Client,
    /// This collector's id, in every entry it publishes.
    collector_id: String,
    /// Its short form in live event ids ([`crate::fanout::events::event_tag`]).
    event_tag: String,
    status: status::Status,
    /// The publisher's connection while it works, for catch-up queries.
    connection: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// The newest stream position the consumer has stored everything up to.
    consumed: Mutex<StreamPos>,
}

/// The handle connections and the API use; cheap to clone.
#[derive(Clone)]
pub struct Replica {
    shared: Arc<Shared>,
    waiters: async_channel::Sender<publisher::Waiter>,
}

impl Replica {
    /// Starts the publisher and consumer tasks. This collector's id and the stream position come
    /// from the database (the id is made on first start).
    pub fn start(
        settings: Settings,
        storage: &Storage,
        hub: async_channel::Sender<hub::Event>,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.as_str()).context("the --redis URL")?;
        let path = storage.path();
        let collector_id = match tables::state(path, tables::COLLECTOR_ID)? {
            Some(id) => id,
            None => {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes)
                    .map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
                let id = format!("{:016x}", u64::from_le_bytes(bytes));
                smol::block_on(storage.set_replica_state(tables::COLLECTOR_ID, id.clone()));
                id
            }
        };
        let consumed = tables::state(path, tables::CONSUMED)?
            .and_then(|p| StreamPos::parse(&p))
            .unwrap_or_default();
        log::info!(
            "redis: replicating through stream {} on {} as collector {collector_id} (consumed up \
             to {consumed}, MAXLEN ~ {})",
            crate::untrusted::escaped(&settings.stream),
            settings.display_addr(),
            settings.max_len
        );
        let shared = Arc::new(Shared {
            settings,
            client,
            event_tag: crate::fanout::events::event_tag(&collector_id),
            collector_id,
            status: status::Status::default(),
            connection: Mutex::new(None),
            consumed: Mutex::new(consumed),
        });
        let (waiters, waiting) = async_channel::bounded(publisher::WAITERS);
        let outbox = tables::Outbox::open(path)?;
        // Both tasks serve for the life of the process: the collector ends by exiting, and
        // whatever they had not done is in the outbox and the stream for the next start. On the
        // ingest executor: acks wait for the publisher, and must not wait behind SSE writes.
        crate::spawn_ingest(publisher::run(shared.clone(), storage.clone(), outbox, waiting))
            .detach();
        crate::spawn_ingest(consumer::run(shared.clone(), storage.clone(), hub)).detach();
        Ok(Self { shared, waiters })
    }

    /// The publisher's connection, while it has one.
    fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        self.shared.connection.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// An XADD to the stream (bounded by `MAXLEN ~`) of an entry of `layout` from this
    /// collector; the caller adds the entry's own fields.
    fn xadd(&self, layout: &str) -> redis::Cmd {
        let settings = &self.shared.settings;
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&settings.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(settings.max_len)
            .arg("*")
            .arg("v")
            .arg(layout)
            .arg("origin")
            .arg(&self.shared.collector_id);
        xadd
    }

    /// The tag this collector's live event ids carry.
    pub fn event_tag(&self) -> &str {
        &self.shared.event_tag
    }

    /// The replication status.
    pub fn status(&self) -> status::StatusView {
        self.shared.status.view()
    }

    /// Waits (at most 5 s) until outbox entry `id` is in the stream, unless Redis is down or
    /// the entry is more than 1,024 entries behind what is published (a backlog after an outage
    /// or a restart): then the local commit alone backs the ack, and the outbox publishes it
    /// later.
    pub async fn published(&self, id: i64) {
        if !self.shared.status.publisher_up() || self.shared.status.behind(id, BACKLOG_ENTRIES) {
            return;
        }
        let (done, wait) = async_channel::bounded(1);
        if self.waiters.try_send(publisher::Waiter { id, done }).is_err() {
            return; // Too many acks waiting at once: this one goes with the local commit.
        }
        // An error means the publisher let the waiter go (Redis lost): ack anyway.
        let _ = agent::runtime::within(ACK_WAIT, wait.recv()).await;
    }

    /// At a welcome: announces in the stream that this collector now serves `hello`'s host
    /// (an entry of layout [`entry::CLAIM`]), so a collector that still has a connection of
    /// that host closes it, as a newer connection replaces an older one on one collector.
    /// Returns the claim's stream position, which orders it against other collectors' claims;
    /// `None` while Redis is away (then the others' claims, read later, win).
    pub async fn claim(&self, hello: &Hello) -> Option<StreamPos> {
        let mut connection = self.connection()?;
        let mut xadd = self.xadd(entry::CLAIM);
        xadd.arg("host").arg(&hello.host_id).arg("instance").arg(hello.instance_id);
        let added = xadd.query_async::<String>(&mut connection);
        match agent::runtime::within(CLAIM_WAIT, added).await {
            Some(Ok(id)) => StreamPos::parse(&id),
            Some(Err(err)) => {
                log::debug!("redis: claim of a host not published: {err}");
                None
            }
            None => None,
        }
    }

    /// After `POST /api/broadcast`: adds the message to the stream (an entry of layout
    /// [`entry::BROADCAST`]), so the other collectors hand it to their viewers and activity
    /// feeds too. Returns whether it is in the stream; `false` while Redis is away (then only
    /// this collector's viewers get it).
    pub async fn broadcast(&self, message: &str, from: &str) -> bool {
        let fields = [("message", message.to_owned()), ("from", from.to_owned())];
        self.announce(entry::BROADCAST, &fields, "a broadcast").await
    }

    /// After a silence was added here: adds it to the stream (layout [`entry::SILENCE`]), so
    /// every collector holds back the notifications it covers (whichever collector sends
    /// them). Returns whether it is in the stream.
    pub async fn silence_added(&self, silence: &Silence) -> bool {
        let fields = [
            ("op", "add".to_owned()),
            ("ref", self.silence_ref(silence)),
            ("host", silence.host.clone().unwrap_or_default()),
            ("rule", silence.rule.clone().unwrap_or_default()),
            ("until_ms", silence.until_ms.to_string()),
            ("created_ms", silence.created_ms.to_string()),
            ("comment", silence.comment.clone()),
            ("created_by", silence.created_by.clone()),
        ];
        self.announce(entry::SILENCE, &fields, "a silence").await
    }

    /// After a silence was deleted here: has every collector delete its copy.
    pub async fn silence_deleted(&self, silence: &Silence) -> bool {
        let fields = [("op", "delete".to_owned()), ("ref", self.silence_ref(silence))];
        self.announce(entry::SILENCE, &fields, "a silence's deletion").await
    }

    /// A silence's reference across collectors: `TAG:ID` of the collector that made it.
    fn silence_ref(&self, silence: &Silence) -> String {
        silence
            .origin
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.shared.event_tag, silence.id))
    }

    /// XADDs an entry of `layout` with `fields` on the publisher's connection, within 2 s.
    async fn announce(&self, layout: &str, fields: &[(&str, String)], what: &str) -> bool {
        let Some(mut connection) = self.connection() else {
            log::warn!("redis: {what} stays on this collector: Redis is away");
            return false;
        };
        let mut xadd = self.xadd(layout);
        for (name, value) in fields {
            xadd.arg(*name).arg(value);
        }
        let added = xadd.query_async::<String>(&mut connection);
        match agent::runtime::within(CLAIM_WAIT, added).await {
            Some(Ok(_)) => true,
            Some(Err(err)) => {
                log::warn!("redis: {what} was not published to the other collectors: {err}");
                false
            }
            None => {
                log::warn!("redis: {what} was not published to the other collectors in time");
                false
            }
        }
    }

    /// Whether this collector is the first to send `notification` on `channel`: claims it in
    /// Redis (`SET NX` of a key made of the channel, rule, host, device, state and the time
    /// the condition began, which every collector derives from the same samples; kept two
    /// days). `true` also while Redis is away or does not answer in 2 s.
    pub async fn first_to_notify(
        &self,
        channel: &str,
        notification: &crate::notify::Notification,
    ) -> bool {
        let Some(mut connection) = self.connection() else {
            return true;
        };
        let key = format!(
            "{}:notified:{channel}:{}:{}:{}:{}:{}",
            self.shared.settings.stream,
            notification.rule,
            notification.host,
            notification.device.as_deref().unwrap_or(""),
            notification.state,
            notification.since_ms
        );
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&self.shared.collector_id).arg("NX").arg("EX").arg(NOTIFIED_KEEP_SECONDS);
        let claim = set.query_async::<Option<String>>(&mut connection);
        match agent::runtime::within(CLAIM_WAIT, claim).await {
            Some(Ok(set)) => set.is_some(),
            Some(Err(err)) => {
                log::debug!("redis: notification claim failed, sending anyway: {err}");
                true
            }
            None => true,
        }
    }

    /// Before a welcome: waits (at most 3 s) until the consumer has stored everything the
    /// stream held when asked, so the resume point counts what other collectors stored of this
    /// host. Returns whether it got there.
    pub async fn catch_up(&self) -> bool {
        let started = Instant::now();
        let (Some(mut connection), true) = (self.connection(), self.shared.status.consumer_up())
        else {
            return false;
        };
        let newest: redis::RedisResult<redis::streams::StreamRangeReply> = redis::cmd("XREVRANGE")
            .arg(&self.shared.settings.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut connection)
            .await;
        let target = match newest {
            Ok(reply) => match reply.ids.first().and_then(|e| StreamPos::parse(&e.id)) {
                Some(target) => target,
                None => return true, // An empty stream: nothing to catch up with.
            },
            Err(err) => {
                log::debug!("redis: catch-up before a welcome skipped: {err}");
                return false;
            }
        };
        while started.elapsed() < CATCH_UP_WAIT {
            if *self.shared.consumed.lock().unwrap_or_else(|e| e.into_inner()) >= target {
                return true;
            }
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        log::warn!(
            "redis: the consumer did not reach {target} within {CATCH_UP_WAIT:?}; welcoming \
             with the local resume point (the agent's spool covers the rest)"
        );
        false
    }
}

/// Logs the loss of the link to Redis (once per loss, by the side that notices first).
fn log_loss(settings: &Settings, err: &str) {
    log::warn!(
        "redis: lost {}: {err}; working alone until it is back (acks follow the local commit, \
         the outbox keeps what the other collectors have not got)",
        settings.display_addr()
    );
}

/// Logs the link's return (once, by the side that completes it), after it was down since
/// `since_ms`.
fn log_return(settings: &Settings, since_ms: u64) {
    log::info!(
        "redis: connected to {} again after {} s; publishing the outbox and catching up",
        settings.display_addr(),
        crate::now_ms().saturating_sub(since_ms) / 1000
    );
}

/// Connects to Redis with the given response timeout.
async fn connect(
    client: &redis::Client,
    response_timeout: Duration,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// The wait before reconnection attempt `attempt` (from 0): 250 ms doubling to 5 s.
fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_positions_order_as_redis_does() {
        let a = StreamPos::parse("1700000000000-2").unwrap();
        let b = StreamPos::parse("1700000000000-10").unwrap();
        let c = StreamPos::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-10");
        assert_eq!(StreamPos::parse("nope"), None);
        assert_eq!(StreamPos::default().to_string(), "0-0");
    }

    #[test]
    fn urls_are_checked_and_backoff_is_capped() {
        assert!(parse_url("redis://127.0.0.1:6379/").is_ok());
        assert!(parse_url("http://127.0.0.1:6379/").is_err());
        assert!(parse_url("redis://[::1:6379").is_err());
        assert_eq!(retry_delay(0), Duration::from_millis(250));
        assert_eq!(retry_delay(30), Duration::from_secs(5));
    }
}
