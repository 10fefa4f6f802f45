//! A small stderr logger for hostwatch's daemons, behind the `log` facade.
//!
//! One line per event. Under systemd (when `JOURNAL_STREAM` is set) each line starts with the
//! journald priority prefix (`<3>` for errors, `<4>` warnings, `<6>` info, `<7>` debug), so
//! `journalctl -p warning` works; elsewhere lines carry a UTC timestamp and the level.
//!
//! Shared by `hostwatch-agent` and `hostwatch-collector` (which depends on this crate for
//! self-monitoring anyway).

use std::io::Write;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    journald: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Quiet the libraries' chatter: only our own crates log below warn.
        let target = record.target();
        let ours =
            ["agent", "collector", "protocol", "hostwatch"].iter().any(|p| target.starts_with(p));
        if !ours && record.level() > Level::Warn {
            return;
        }
        let line = if self.journald {
            let priority = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{priority}>{}\n", record.args())
        } else {
            format!(
                "{} {:5} {}\n",
                humantime::format_rfc3339_millis(SystemTime::now()),
                record.level(),
                record.args()
            )
        };
        // A logger has nowhere to report its own failure to write to stderr.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger at `level` (`error`, `warn`, `info`, `debug`, `trace`).
/// Returns an error for an unknown level name.
pub fn init(level: &str) -> anyhow::Result<()> {
    let filter: LevelFilter = level.parse().map_err(|_| {
        anyhow::anyhow!("unknown log level {level:?} (use error, warn, info, debug or trace)")
    })?;
    let logger = StderrLogger { journald: std::env::var_os("JOURNAL_STREAM").is_some() };
    // A second init (tests driving `run` in-process) keeps the first logger; that is harmless.
    let _ = log::set_boxed_logger(Box::new(logger));
    log::set_max_level(filter);
    Ok(())
}
