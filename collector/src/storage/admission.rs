//! How many hosts the shared agent token may create: at most `--max-hosts` in all and
//! `--max-new-hosts-per-minute` (a token bucket with that burst), so whoever holds the shared
//! token cannot fill the database, `/api/hosts` and `/metrics` with hosts that never go away.
//! Hosts with their own token (the tokens file) and the collector's own host are not counted
//! against the rate. Owned by the writer thread.

use std::time::Instant;

/// Why a new host was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over the total: an operator must remove hosts or raise the limit.
    Full(String),
    /// Over the rate: the agent may retry later.
    Busy(String),
}

/// The limits and the writer's count of known hosts.
#[derive(Debug)]
pub struct Admission {
    max_hosts: usize,
    per_minute: u32,
    known: usize,
    tokens: f64,
    refilled: Instant,
}

impl Admission {
    /// Admits up to `max_hosts` hosts in all (`known` exist already), `per_minute` new ones a
    /// minute with as many at once.
    pub fn new(max_hosts: usize, per_minute: u32, known: usize) -> Self {
        Self {
            max_hosts,
            per_minute,
            known,
            tokens: f64::from(per_minute),
            refilled: Instant::now(),
        }
    }

    /// Sets the count of known hosts (after a rolled-back transaction).
    pub fn set_known(&mut self, known: usize) {
        self.known = known;
    }

    /// Whether one more host may be created now by the shared token (`limited`) or otherwise;
    /// counts it when it may.
    pub fn admit(&mut self, limited: bool, now: Instant) -> Result<(), Refusal> {
        if limited && self.known >= self.max_hosts {
            return Err(Refusal::Full(format!(
                "the collector keeps at most {} hosts (--max-hosts); remove old ones or raise it",
                self.max_hosts
            )));
        }
        if limited {
            let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
            let rate = f64::from(self.per_minute) / 60.0;
            self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.per_minute));
            self.refilled = now;
            if self.tokens < 1.0 {
                return Err(Refusal::Busy(format!(
                    "more than {} new hosts a minute (--max-new-hosts-per-minute); retry later",
                    self.per_minute
                )));
            }
            self.tokens -= 1.0;
        }
        self.known += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn new_hosts_are_bounded_in_number_and_rate() {
        let start = Instant::now();
        let mut admission = Admission::new(5, 3, 1);
        assert!((0..3).all(|_| admission.admit(true, start).is_ok()), "a burst of the rate");
        assert!(matches!(admission.admit(true, start), Err(Refusal::Busy(_))));
        assert!(admission.admit(false, start).is_ok(), "a host with its own token");
        // 20 s later one more fits (3 a minute); then the total of 5 is reached.
        let later = start + Duration::from_secs(21);
        assert!(matches!(admission.admit(true, later), Err(Refusal::Full(_))));
        let mut roomy = Admission::new(100, 3, 0);
        assert!((0..3).all(|_| roomy.admit(true, start).is_ok()));
        assert!(roomy.admit(true, start + Duration::from_secs(21)).is_ok());
        assert!(roomy.admit(true, start + Duration::from_secs(21)).is_err());
    }
}
