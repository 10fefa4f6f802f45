//! Self-monitoring: the collector samples its own host with the agent's sampler, in-process, so
//! the page shows data the moment the collector starts. Its samples take the same path as an
//! agent's from registration on: storage, then the hub.

use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use protocol::Batch;

use crate::hub::{self, CloseReason};
use crate::storage::Storage;

/// The address shown for the in-process "agent".
pub const ADDR: &str = "in-process";

/// The agent version self-monitoring reports, which also marks its rows in the database.
pub fn self_version() -> String {
    format!("{} (collector self-monitoring)", env!("CARGO_PKG_VERSION"))
}

/// Whether a real agent has reported this host: then self-monitoring stays out of its way, as
/// both would number samples for the same host id and an agent resuming after the collector's
/// restart would take the self-monitoring's sequence numbers for its own.
pub fn host_has_an_agent(hosts: &[crate::storage::HostRecord], host_id: &str) -> bool {
    hosts.iter().any(|h| h.hello.host_id == host_id && h.hello.agent_version != self_version())
}

/// Starts the self-monitoring thread. It stops when the hub closes it: at shutdown, or when a
/// real agent with the same host id connects and takes over.
pub fn spawn(
    storage: Storage,
    hub: async_channel::Sender<hub::Event>,
    host_id: String,
    interval: Duration,
    conn: u64,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let handle = std::thread::Builder::new().name("self-monitor".into()).spawn(move || {
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        let mut hello = agent::sampler::hello(&host_id, interval_ms);
        hello.agent_version = self_version();
        let registration = match storage.register_blocking(hello.clone()) {
            Ok(registration) => registration,
            Err(err) => {
                log::error!("self-monitoring: cannot register this host: {err}");
                return;
            }
        };
        let (close_tx, close_rx) = async_channel::bounded(1);
        let connected = hub::Event::AgentConnected {
            conn,
            hello,
            credential: crate::auth::AgentCredential::InProcess,
            addr: ADDR.to_owned(),
            close: close_tx,
        };
        if hub.send_blocking(connected).is_err() {
            return;
        }
        let mut seq = registration.last_seq.map_or_else(agent::now_ms, |s| s + 1);
        let mut sampler = agent::sampler::Sampler::new();
        let mut next = Instant::now();
        let reason = loop {
            let sample = sampler.sample(seq, agent::now_ms());
            match storage.store_blocking(
                registration.host_key,
                Batch { dropped_total: 0, samples: vec![sample] },
            ) {
                Ok(_) => seq += 1,
                Err(err) => log::warn!("self-monitoring: a sample was not stored: {err}"),
            }
            next += interval;
            let now = Instant::now();
            if next < now {
                next = now + interval;
            }
            // Wake early for a close request rather than sleeping through it.
            let closed = smol::block_on(async {
                let wait = async {
                    smol::Timer::at(next).await;
                    None
                };
                let closed = async { Some(close_rx.recv().await) };
                closed.or(wait).await
            });
            match closed {
                None => {}
                Some(Ok(CloseReason::Replaced)) => {
                    break "an agent on this host took over".to_owned();
                }
                Some(_) => break "collector shutting down".to_owned(),
            }
        };
        log::info!("self-monitoring stopped: {reason}");
        // At shutdown the hub may already be gone.
        let _ = hub.send_blocking(hub::Event::AgentDisconnected { conn, host_id, reason });
    })?;
    Ok(handle)
}
