//! Talking to systemd when run as a `Type=notify` service: readiness, a one-line status for
//! `systemctl status`, stopping, and the watchdog. Outside systemd (no `NOTIFY_SOCKET`) every call
//! does nothing. Shared with the collector.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        log::debug!("systemd notification failed: {err}");
    }
}

/// Startup is complete.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A new one-line status for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The service watchdog (`WatchdogSec=`): must be petted at least every period while the main
/// loop is healthy; a hung loop gets the service restarted.
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// Reads `WATCHDOG_USEC`; pets at half the period, as systemd recommends.
    pub fn from_env() -> Self {
        Self { every: sd_notify::watchdog_enabled().map(|period| period / 2), last: Instant::now() }
    }

    /// When the next pet is due, if the watchdog is on.
    pub fn due(&self) -> Option<Instant> {
        self.every.map(|every| self.last + every)
    }

    /// Pets the watchdog if it is due.
    pub fn pet_if_due(&mut self) {
        if self.due().is_some_and(|due| Instant::now() >= due) {
            send(&[NotifyState::Watchdog]);
            self.last = Instant::now();
        }
    }
}
