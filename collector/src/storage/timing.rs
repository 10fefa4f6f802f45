//! What the writer's transactions cost, kept by the writer and read by `/metrics`: fixed-bucket
//! histograms of atomics, so recording a commit takes no lock and allocates nothing, and a
//! scrape never waits for the writer.
//!
//! - `hostwatch_collector_commit_seconds`: each transaction from `BEGIN` to the end of `COMMIT`
//!   (the inserts, the WAL's fsync and any automatic checkpoint the commit ran);
//! - `hostwatch_collector_commit_samples`: samples stored by each of those transactions;
//! - `hostwatch_collector_maintenance_seconds`: each maintenance step run between transactions
//!   (rollups, compaction, retention, size cap, removals), during which no batch is stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the duration histograms' buckets: 1 ms to 8 s.
pub const SECONDS_BOUNDS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// Upper bounds of the samples-per-transaction histogram's buckets.
pub const SAMPLES_BOUNDS: [f64; 10] =
    [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0];

/// The most buckets a histogram has, the `+Inf` one included.
const MAX_BUCKETS: usize = 16;

/// A Prometheus-style histogram with fixed bounds: one counter per bucket (not cumulative) plus
/// the sum, all atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// `counts[i]` counts observations in `(bounds[i-1], bounds[i]]`; `counts[bounds.len()]`
    /// those above the last bound.
    counts: [AtomicU64; MAX_BUCKETS],
    /// Sum of the observations, in millionths of the unit (microseconds for durations), so
    /// it adds up exactly in an integer.
    sum_micros: AtomicU64,
}

/// A copy of a [`Histogram`] at one moment, as the exposition writes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramView {
    /// `(upper bound, cumulative count)` for each finite bound, in increasing order.
    pub buckets: Vec<(f64, u64)>,
    /// Observations in all: the `+Inf` bucket.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram with buckets up to each of `bounds` (increasing) and one above.
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() < MAX_BUCKETS, "too many buckets");
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must increase");
        Self { bounds, counts: Default::default(), sum_micros: AtomicU64::new(0) }
    }

    /// Records one observation of `value` (in the histogram's unit; negative counts as 0).
    pub fn observe(&self, value: f64) {
        let value = value.max(0.0);
        let bucket = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((value * 1e6).round() as u64, Ordering::Relaxed);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// The histogram now. The buckets are read one by one while the writer may add to them,
    /// but the count is their total, so the view is always a consistent histogram.
    pub fn view(&self) -> HistogramView {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, &bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            buckets.push((bound, cumulative));
        }
        let count = cumulative + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        HistogramView { buckets, count, sum }
    }
}

/// The writer's histograms, shared with `/metrics`.
#[derive(Debug)]
pub struct WriterTimings {
    /// Each transaction, `BEGIN` to the end of `COMMIT`, in seconds.
    pub commit_seconds: Histogram,
    /// Samples stored by each transaction.
    pub commit_samples: Histogram,
    /// Each maintenance step, in seconds.
    pub maintenance_seconds: Histogram,
}

impl Default for WriterTimings {
    fn default() -> Self {
        Self {
            commit_seconds: Histogram::new(&SECONDS_BOUNDS),
            commit_samples: Histogram::new(&SAMPLES_BOUNDS),
            maintenance_seconds: Histogram::new(&SECONDS_BOUNDS),
        }
    }
}

/// A copy of [`WriterTimings`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterTimingsView {
    /// See [`WriterTimings::commit_seconds`].
    pub commit_seconds: HistogramView,
    /// See [`WriterTimings::commit_samples`].
    pub commit_samples: HistogramView,
    /// See [`WriterTimings::maintenance_seconds`].
    pub maintenance_seconds: HistogramView,
}

impl WriterTimings {
    /// The histograms now.
    pub fn view(&self) -> WriterTimingsView {
        WriterTimingsView {
            commit_seconds: self.commit_seconds.view(),
            commit_samples: self.commit_samples.view(),
            maintenance_seconds: self.maintenance_seconds.view(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_they_do_not_pass() {
        let h = Histogram::new(&SECONDS_BOUNDS);
        for seconds in [0.0005, 0.001, 0.003, 0.7, 3.0, 30.0] {
            h.observe(seconds);
        }
        let view = h.view();
        let at = |bound: f64| view.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(at(0.001), 2, "a value equal to a bound is in that bucket");
        assert_eq!(at(0.0025), 2);
        assert_eq!(at(0.005), 3);
        assert_eq!(at(0.5), 3);
        assert_eq!(at(1.0), 4);
        assert_eq!(at(4.0), 5);
        assert_eq!(at(8.0), 5, "30 s is only in +Inf");
        assert_eq!(view.count, 6);
        assert!((view.sum - 33.7045).abs() < 1e-6, "{}", view.sum);
    }

    #[test]
    fn cumulative_counts_never_decrease_and_end_at_the_count() {
        let h = Histogram::new(&SAMPLES_BOUNDS);
        for n in 0..2000_u32 {
            h.observe(f64::from(n * 97 % 300_000));
        }
        let view = h.view();
        assert_eq!(view.buckets.len(), SAMPLES_BOUNDS.len());
        assert!(view.buckets.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        assert!(view.buckets.last().unwrap().1 <= view.count);
        assert_eq!(view.count, 2000);
    }

    #[test]
    fn an_empty_histogram_has_every_bucket_at_zero() {
        let view = WriterTimings::default().view();
        assert_eq!(view.commit_seconds.count, 0);
        assert_eq!(view.commit_seconds.sum, 0.0);
        assert_eq!(view.commit_seconds.buckets.len(), SECONDS_BOUNDS.len());
        assert!(view.maintenance_seconds.buckets.iter().all(|(_, c)| *c == 0));
    }

    #[test]
    fn negative_values_count_as_zero() {
        let h = Histogram::new(&SECONDS_BOUNDS);
        h.observe(-1.0);
        let view = h.view();
        assert_eq!(view.buckets[0].1, 1);
        assert_eq!(view.sum, 0.0);
    }
}
