//! Whether the storage can commit, as the writer last found it: read by `/readyz`, `/api/stats`
//! and `/metrics`, and by ingest to refuse agents with a "retry later" while nothing can be
//! stored. Only the writer thread changes it (one writer, many readers); it also decides when a
//! failing maintenance step may run again, so a full disk never turns into a busy loop.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// First wait before a failed maintenance step runs again; doubled on each failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait before a failed maintenance step runs again.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The storage's state as the writer last saw it.
#[derive(Debug, Default)]
pub struct Health {
    failing: AtomicBool,
    failures_total: AtomicU64,
    failing_since_ms: AtomicU64,
    reason: Mutex<String>,
}

/// A copy of [`Health`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthView {
    /// Whether the last transaction or maintenance step failed.
    pub failing: bool,
    /// Failed transactions and maintenance steps since the collector started.
    pub failures_total: u64,
    /// Since when it has been failing (unix ms), when it is.
    pub failing_since_ms: Option<u64>,
    /// The last error, when it is failing.
    pub reason: Option<String>,
}

impl Health {
    /// What the writer last found.
    pub fn view(&self) -> HealthView {
        let failing = self.failing.load(Ordering::Relaxed);
        HealthView {
            failing,
            failures_total: self.failures_total.load(Ordering::Relaxed),
            failing_since_ms: failing.then(|| self.failing_since_ms.load(Ordering::Relaxed)),
            reason: failing.then(|| self.reason.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        }
    }

    /// Whether the storage is failing now.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Counts a failure (writer only). Logs only the first of a run of failures, so a full disk
    /// writes one line, not thousands a second; the end of the run is logged by
    /// [`Health::succeeded`] with the count.
    pub fn failed(&self, what: &str, err: &anyhow::Error) {
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        let reason = format!("{what}: {err:#}");
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason.clone();
        if !self.failing.swap(true, Ordering::Relaxed) {
            self.failing_since_ms.store(crate::now_ms(), Ordering::Relaxed);
            log::error!(
                "storage failing, nothing is acknowledged until it recovers (agents keep their \
                 samples and retry with backoff): {reason}"
            );
        }
    }

    /// Notes a successful commit (writer only); logs the recovery after a run of failures.
    pub fn succeeded(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            let since = self.failing_since_ms.load(Ordering::Relaxed);
            log::warn!(
                "storage recovered after {:.0} s of failures ({} failed attempts since start)",
                crate::now_ms().saturating_sub(since) as f64 / 1000.0,
                self.failures_total.load(Ordering::Relaxed)
            );
        }
    }
}

/// When a failing maintenance step may run again: backs off from [`FIRST_RETRY`] to
/// [`MAX_RETRY`], and starts over after a success.
#[derive(Debug, Default)]
pub struct Retry {
    delay: Option<Duration>,
    not_before: Option<Instant>,
}

impl Retry {
    /// After a failure: the next attempt waits twice as long as the last, up to the cap.
    pub fn failed(&mut self, now: Instant) {
        let delay = self.delay.map_or(FIRST_RETRY, |d| (d * 2).min(MAX_RETRY));
        self.delay = Some(delay);
        self.not_before = Some(now + delay);
    }

    /// After a success: no wait.
    pub fn succeeded(&mut self) {
        self.delay = None;
        self.not_before = None;
    }

    /// The earliest time of the next attempt, if it has to wait.
    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_minute_and_start_over_after_a_success() {
        let now = Instant::now();
        let mut retry = Retry::default();
        assert_eq!(retry.not_before(), None);
        let mut waits = Vec::new();
        for _ in 0..9 {
            retry.failed(now);
            waits.push(retry.not_before().unwrap() - now);
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        retry.succeeded();
        assert_eq!(retry.not_before(), None);
    }

    #[test]
    fn a_run_of_failures_is_one_state_with_a_count() {
        let health = Health::default();
        assert!(!health.view().failing);
        for _ in 0..3 {
            health.failed("committing", &anyhow::anyhow!("database or disk is full"));
        }
        let view = health.view();
        assert!(view.failing && view.failures_total == 3);
        assert!(view.reason.unwrap().contains("disk is full"));
        health.succeeded();
        let view = health.view();
        assert!(!view.failing && view.reason.is_none() && view.failures_total == 3);
    }
}
