//! hostwatch-agent as a library: `main` parses the configuration and calls [`run`], so tests
//! and the collector's self-monitoring can drive the same code in-process.
//!
//! Threads: the sampler thread owns sysinfo and sends a [`protocol::Sample`] every interval; a
//! signal thread turns SIGTERM/SIGINT into a shutdown request; the main thread runs the
//! [`transport::Transport`] state machine, which owns the spool and the connection.

pub mod backoff;
pub mod config;
pub mod install;
pub mod net;
pub mod runtime;
pub mod sampler;
pub mod spool;
pub mod transport;

pub use runtime::{logging, systemd};

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Config;
use crate::runtime::now_ms;
use crate::transport::{Input, Timing, Transport};

/// Runs the agent until SIGTERM or SIGINT: samples, spools and pushes.
pub fn run(config: Config) -> anyhow::Result<()> {
    anyhow::ensure!(!config.collectors.is_empty(), "no collector URL");
    let token = config.token.clone().context("no token")?;
    let tls = if config.collectors.iter().any(|c| c.starts_with("wss://")) {
        Some(runtime::tls_connector(config.ca_file.as_deref())?)
    } else {
        None
    };
    let spool = spool::Spool::open(&config.spool_dir, config.spool_max, now_ms())?;
    let mut hello = sampler::hello(&config.host_id, config.interval_ms());
    hello.instance_id = spool.instance_id();
    log::info!(
        "hostwatch-agent {} starting: host {} ({}), every {:?}, {} {}, spool {} (max {} samples)",
        env!("CARGO_PKG_VERSION"),
        hello.host_id,
        hello.hostname,
        config.interval,
        if config.collectors.len() == 1 { "collector" } else { "collectors" },
        config.collectors.join(", "),
        config.spool_dir.display(),
        config.spool_max
    );

    // Room for two minutes of samples while the transport is busy connecting.
    let (tx, rx) = async_channel::bounded(128);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    spawn_signal_thread(tx.clone(), stop_tx)?;
    spawn_sampler_thread(config.interval, tx)?;

    let targets = config
        .collectors
        .iter()
        .map(|url| net::Target {
            url: url.clone(),
            token: token.clone(),
            tls: if url.starts_with("wss://") { tls.clone() } else { None },
            timeout: Duration::from_secs(10),
        })
        .collect();
    let transport = Transport::with_targets(
        targets,
        hello,
        spool,
        Timing::for_interval(config.interval),
        stop_rx,
    );
    systemd::ready("sampling; connecting to the collector");
    // futures-lite's block_on only parks this thread until a waker fires. smol's (async-io's)
    // would make the reactor thread poll every few milliseconds for as long as it blocks: a
    // hundred wake-ups a second, most of an idle agent's CPU time.
    let spool = futures_lite::future::block_on(transport.run(rx))?;
    log::info!("stopped; {} samples spooled for the next start", spool.len());
    Ok(())
}

fn spawn_signal_thread(
    tx: async_channel::Sender<Input>,
    stop: async_channel::Sender<()>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                log::info!("received signal {signal}, stopping");
                // Closing wakes a send the collector is not taking; the input then says why.
                stop.close();
                // The transport may already be gone after the first signal; nothing to do then.
                let _ = tx.send_blocking(Input::Shutdown);
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}

/// Samples on a fixed schedule (missed ticks are skipped, not bunched) and sends each sample to
/// the transport; ends when the transport stops listening.
fn spawn_sampler_thread(
    interval: Duration,
    tx: async_channel::Sender<Input>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || {
            let mut sampler = sampler::Sampler::new();
            let mut next = Instant::now();
            loop {
                let sample = sampler.sample(0, now_ms());
                if tx.send_blocking(Input::Sample(Box::new(sample))).is_err() {
                    return;
                }
                next += interval;
                let now = Instant::now();
                if next < now {
                    next = now + interval;
                }
                std::thread::sleep(next - now);
            }
        })
        .context("spawning the sampler thread")?;
    Ok(())
}
