//! What `/readyz`, `/api/stats` and `/metrics` say of replication: whether Redis is reachable,
//! how far the consumer is behind, and counters. Atomics, written by the publisher and consumer
//! tasks, read by any request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Replication's shared counters.
#[derive(Debug, Default)]
pub struct Status {
    publisher_up: AtomicBool,
    consumer_up: AtomicBool,
    /// The outbox entry id up to which everything is in the stream (`i64::MAX`: the whole
    /// outbox was, at the publisher's last look).
    published_up_to: AtomicI64,
    /// When the link was lost (unix ms), 0 while up or never connected.
    down_since_ms: AtomicU64,
    pub(super) published_total: AtomicU64,
    pub(super) consumed_total: AtomicU64,
    pub(super) skipped_total: AtomicU64,
    pub(super) gaps_total: AtomicU64,
    pub(super) lag_ms: AtomicU64,
    pub(super) losses_total: AtomicU64,
    error: Mutex<Option<String>>,
}

/// A snapshot of [`Status`], as the API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusView {
    /// Both the publisher's and the consumer's connections work.
    pub up: bool,
    /// Since when (unix ms) Redis is unreachable, if it is.
    pub down_since_ms: Option<u64>,
    /// Why it is unreachable, as the last failure said.
    pub error: Option<String>,
    /// Entries this collector added to the stream since it started.
    pub published_total: u64,
    /// Other collectors' entries stored here since start.
    pub consumed_total: u64,
    /// Entries that could not be stored here (undecodable, or refused by the storage).
    pub skipped_total: u64,
    /// Times the stream had been trimmed past this collector's position.
    pub gaps_total: u64,
    /// How far behind the stream's newest entry the consumer is, in ms (0 when caught up).
    pub lag_ms: u64,
    /// Times the connection to Redis was lost since start.
    pub losses_total: u64,
}

impl Status {
    /// Whether the publisher can publish now (acks then wait for the stream).
    pub fn publisher_up(&self) -> bool {
        self.publisher_up.load(Relaxed)
    }

    /// Whether outbox entry `id` is more than `entries` behind what the publisher has put in
    /// the stream (a backlog after an outage or a restart: its ack does not wait then).
    pub fn behind(&self, id: i64, entries: i64) -> bool {
        id.saturating_sub(self.published_up_to.load(Relaxed)) > entries
    }

    /// Records how far the outbox is in the stream.
    pub(super) fn set_published(&self, up_to: i64) {
        self.published_up_to.store(up_to, Relaxed);
    }

    /// Whether the consumer reads the stream now.
    pub fn consumer_up(&self) -> bool {
        self.consumer_up.load(Relaxed)
    }

    /// Records that one side connected; returns since when (unix ms) the link had been down
    /// when this completes it, so its return is logged once, by whichever side comes last.
    pub(super) fn connected(&self, publisher: bool) -> Option<u64> {
        let flag = if publisher { &self.publisher_up } else { &self.consumer_up };
        flag.store(true, Relaxed);
        if !(self.publisher_up() && self.consumer_up()) {
            return None;
        }
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let since = self.down_since_ms.swap(0, Relaxed);
        (since != 0).then_some(since)
    }

    /// Records that one side lost its connection (or failed to connect) with `error`; returns
    /// whether the link was whole until now, so the loss is logged once, by whichever side
    /// notices first.
    pub(super) fn lost(&self, publisher: bool, error: String) -> bool {
        let flag = if publisher { &self.publisher_up } else { &self.consumer_up };
        let was_up = self.publisher_up() && self.consumer_up();
        flag.store(false, Relaxed);
        if was_up {
            self.losses_total.fetch_add(1, Relaxed);
        }
        let _ = self.down_since_ms.compare_exchange(0, crate::now_ms(), Relaxed, Relaxed);
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        was_up
    }

    /// A snapshot.
    pub fn view(&self) -> StatusView {
        let down_since = self.down_since_ms.load(Relaxed);
        StatusView {
            up: self.publisher_up() && self.consumer_up(),
            down_since_ms: (down_since != 0).then_some(down_since),
            error: self.error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            published_total: self.published_total.load(Relaxed),
            consumed_total: self.consumed_total.load(Relaxed),
            skipped_total: self.skipped_total.load(Relaxed),
            gaps_total: self.gaps_total.load(Relaxed),
            lag_ms: self.lag_ms.load(Relaxed),
            losses_total: self.losses_total.load(Relaxed),
        }
    }
}
