//! Reconnection delays: capped exponential backoff with full jitter, so that thousands of agents
//! whose collector restarts do not all come back in the same second.

use std::time::Duration;

/// Delays between connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

/// After a connection that worked is lost, the first attempt comes at a random moment within at
/// least this long. Every agent of a collector that restarts (or dies) loses its connection in
/// the same instant, and the backoff's first ceiling alone (500 ms) brought 447 of 500 agents
/// back within the same half second (RELIABILITY.md, finding 3).
pub const RECONNECT_SPREAD: Duration = Duration::from_secs(5);

/// After a refusal that only an operator can fix (bad token, unsupported version), retry no
/// faster than this, so the collector's log is not flooded.
pub const REFUSED_RETRY_MIN: Duration = Duration::from_secs(60);

impl Backoff {
    /// Delays start below `base` and double per failed attempt up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap, attempt: 0 }
    }

    /// The delay before the next attempt: uniformly random in `[0, min(cap, base·2^attempt)]`
    /// ("full jitter"). Each call counts one more failed attempt.
    pub fn next_delay(&mut self, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rng.f64())
    }

    /// The delay before reconnecting after an established connection was lost: like
    /// [`Backoff::next_delay`], but spread over at least [`RECONNECT_SPREAD`], so agents that
    /// all lost the same collector at once do not all come back in the same second.
    pub fn after_loss(&mut self, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling().max(RECONNECT_SPREAD);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rng.f64())
    }

    /// The delay after a refusal that needs an operator: between [`REFUSED_RETRY_MIN`] and twice
    /// that, still jittered.
    pub fn refused_delay(&mut self, rng: &mut fastrand::Rng) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        REFUSED_RETRY_MIN + REFUSED_RETRY_MIN.mul_f64(rng.f64())
    }

    /// Forgets past failures after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stay_under_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut rng = fastrand::Rng::with_seed(7);
        let ceilings: Vec<Duration> = (0..10)
            .map(|_| {
                let ceiling = backoff.ceiling();
                assert!(backoff.next_delay(&mut rng) <= ceiling);
                ceiling
            })
            .collect();
        assert_eq!(ceilings[0], Duration::from_millis(500));
        assert_eq!(ceilings[1], Duration::from_secs(1));
        assert_eq!(ceilings[5], Duration::from_secs(16));
        assert_eq!(ceilings[6], Duration::from_secs(30));
        assert_eq!(ceilings[9], Duration::from_secs(30));
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_agents_across_the_window() {
        // 1000 agents at the same attempt land all over [0, ceiling], not in one spot.
        let mut rng = fastrand::Rng::with_seed(1);
        let delays: Vec<Duration> = (0..1000)
            .map(|_| Backoff {
                attempt: 6,
                ..Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
            })
            .map(|mut b| b.next_delay(&mut rng))
            .collect();
        let early = delays.iter().filter(|d| **d < Duration::from_secs(10)).count();
        let late = delays.iter().filter(|d| **d > Duration::from_secs(20)).count();
        assert!((250..420).contains(&early), "{early}");
        assert!((250..420).contains(&late), "{late}");
    }

    #[test]
    fn a_lost_connection_spreads_the_first_retry_over_seconds() {
        // 1000 agents that were connected (backoff reset by an ack) lose their collector at once.
        let mut rng = fastrand::Rng::with_seed(5);
        let delays: Vec<Duration> = (0..1000)
            .map(|_| Backoff::new(Duration::from_millis(500), Duration::from_secs(30)))
            .map(|mut b| b.after_loss(&mut rng))
            .collect();
        assert!(delays.iter().all(|d| *d <= RECONNECT_SPREAD));
        let busiest =
            (0..5).map(|s| delays.iter().filter(|d| d.as_secs() == s).count()).max().unwrap_or(0);
        assert!(busiest < 260, "{busiest} of 1000 in the same second");
        // It counts as an attempt, and a grown backoff keeps its larger ceiling.
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        backoff.after_loss(&mut rng);
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
        let mut grown = Backoff { attempt: 6, ..backoff };
        assert!((0..100).any(|_| grown.after_loss(&mut rng) > RECONNECT_SPREAD * 2));
    }

    #[test]
    fn refusals_retry_slowly() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100 {
            let delay = backoff.refused_delay(&mut rng);
            assert!(delay >= REFUSED_RETRY_MIN && delay <= 2 * REFUSED_RETRY_MIN);
        }
    }
}
