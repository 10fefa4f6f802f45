//! Self-monitoring: the collector samples its own host with the agent's sampler, in-process, so
//! the page shows data the moment the collector starts. Its samples take the same path as an
//! agent's from registration on: storage, then the hub.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use protocol::{Batch, Sample};

use crate::fanout::hub::{self, CloseReason};
use crate::storage::{Storage, StoreError};

/// Samples kept while the storage cannot take them: an hour at the default interval.
const MAX_PENDING: usize = 3600;

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
            credential: crate::ingest::auth::AgentCredential::InProcess,
            addr: ADDR.to_owned(),
            close: close_tx,
            claim: None,
        };
        if hub.send_blocking(connected).is_err() {
            return;
        }
        let mut seq = registration.last_seq.map_or_else(agent::runtime::now_ms, |s| s + 1);
        let mut sampler = agent::sampler::Sampler::new();
        let mut next = Instant::now();
        // Samples the storage could not take (a full disk) wait here and go with the next
        // batch, as an agent's spool would keep them; the oldest go first past the bound.
        let mut pending: VecDeque<Sample> = VecDeque::new();
        let mut dropped_total = 0;
        let mut failing = false;
        let reason = loop {
            pending.push_back(sampler.sample(seq, agent::runtime::now_ms()));
            seq += 1;
            if pending.len() > MAX_PENDING {
                pending.pop_front();
                dropped_total += 1;
            }
            let take = pending.len().min(protocol::Limits::MAX_SAMPLES_PER_BATCH);
            let samples: Vec<Sample> = pending.iter().take(take).cloned().collect();
            match storage.store_blocking(registration.host_key, Batch { dropped_total, samples }) {
                Ok(_) => {
                    pending.drain(..take);
                    failing = false;
                }
                Err(StoreError::Refused(why)) => {
                    // Sending them again would be refused again; the storage said why.
                    log::error!("self-monitoring: {take} samples refused: {why}");
                    pending.drain(..take);
                }
                // The storage logs its own failures; one line here says what waits.
                Err(err) if !failing => {
                    failing = true;
                    log::warn!("self-monitoring: samples wait until the storage takes them: {err}");
                }
                Err(_) => {}
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
