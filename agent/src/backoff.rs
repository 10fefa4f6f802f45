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
    fn refusals_retry_slowly() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100 {
            let delay = backoff.refused_delay(&mut rng);
            assert!(delay >= REFUSED_RETRY_MIN && delay <= 2 * REFUSED_RETRY_MIN);
        }
    }
}
