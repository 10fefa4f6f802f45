//! The publisher task: XADDs the outbox to the stream, in order, and answers the connections
//! whose acks wait for their entry. The outbox, not memory, is the queue: what a `kill -9` or a
//! Redis outage leaves unpublished goes out on the next start or reconnection, from the
//! database, at most [`storage::replica::OUTBOX_MAX_ENTRIES`](crate::storage::replica) entries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::FutureExt;

use super::{Shared, connect, log_loss, log_return, retry_delay};
use crate::storage::Storage;
use crate::storage::replica::Outbox;

/// Acks that may wait for the publisher at once; more are sent after the local commit alone.
pub const WAITERS: usize = 4096;

/// Outbox entries published per pipeline.
pub(super) const CHUNK: usize = 256;

/// A connection waiting for outbox entry `id` to be in the stream.
pub struct Waiter {
    /// The entry.
    pub id: i64,
    /// Dropped (or sent to) once it is published, or once the publisher gives up waiting.
    pub done: async_channel::Sender<()>,
}

/// Publishes until the process ends: connects (with backoff), publishes, reconnects on loss.
pub(super) async fn run(
    shared: Arc<Shared>,
    storage: Storage,
    outbox: Outbox,
    waiting: async_channel::Receiver<Waiter>,
) {
    let outbox = Arc::new(Mutex::new(outbox));
    // Everything up to here is in the stream. From 0 at start: entries a previous run had
    // published but not yet deleted go again, and replicas skip them as stored.
    let mut cursor = 0i64;
    let mut attempt = 0u32;
    let addr = shared.settings.display_addr();
    loop {
        let mut connection = match connect(&shared.client, Duration::from_secs(2)).await {
            Ok(connection) => connection,
            Err(err) => {
                if shared.status.lost(true, err.to_string()) || attempt == 0 {
                    log_loss(&shared.settings, &err.to_string());
                }
                // Nobody's ack waits for a publisher that cannot publish.
                drain(&waiting, &mut Vec::new());
                smol::Timer::after(retry_delay(attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        *shared.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(connection.clone());
        match shared.status.connected(true) {
            Some(since) => log_return(&shared.settings, since),
            None if attempt == 0 => log::info!("redis: connected to {addr}"),
            None => {}
        }
        let ended =
            publish(&shared, &storage, &outbox, &mut connection, &waiting, &mut cursor).await;
        let err = match ended {
            Ok(never) => match never {},
            Err(err) => err,
        };
        *shared.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if shared.status.lost(true, format!("{err:#}")) {
            log_loss(&shared.settings, &format!("{err:#}"));
        }
        attempt = 1;
    }
}

/// Moves waiting connections into `waiters`, at most [`WAITERS`] in all: the others stay in
/// the channel, which, full, sends further acks after the local commit alone.
fn drain(waiting: &async_channel::Receiver<Waiter>, waiters: &mut Vec<Waiter>) {
    while waiters.len() < WAITERS {
        match waiting.try_recv() {
            Ok(waiter) => waiters.push(waiter),
            Err(_) => break,
        }
    }
}

/// Publishes the outbox on `connection` until it fails.
async fn publish(
    shared: &Shared,
    storage: &Storage,
    outbox: &Arc<Mutex<Outbox>>,
    connection: &mut redis::aio::MultiplexedConnection,
    waiting: &async_channel::Receiver<Waiter>,
    cursor: &mut i64,
) -> anyhow::Result<std::convert::Infallible> {
    let mut waiters: Vec<Waiter> = Vec::new();
    loop {
        drain(waiting, &mut waiters);
        let rows = read(outbox, *cursor).await?;
        // Acks of entries far behind the published ones (a backlog after an outage or a
        // restart) go with the local commit instead of waiting behind it.
        shared.status.set_published(if rows.is_empty() { i64::MAX } else { *cursor });
        if rows.is_empty() {
            // Every committed entry is in the stream, so every waiter's is.
            waiters.clear();
            let waiter = async { waiting.recv().await.ok() };
            let idle = async {
                smol::Timer::after(Duration::from_secs(1)).await;
                None
            };
            if let Some(waiter) = waiter.or(idle).await {
                waiters.push(waiter);
            }
            continue;
        }
        let mut pipe = redis::pipe();
        for (_, entry) in &rows {
            pipe.cmd("XADD")
                .arg(&shared.settings.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(shared.settings.max_len)
                .arg("*")
                .arg("v")
                .arg(super::entry::LAYOUT)
                .arg("origin")
                .arg(&shared.collector_id)
                .arg("data")
                .arg(entry.as_slice());
        }
        let _ids: Vec<String> = pipe.query_async(connection).await?;
        let newest = rows.last().map_or(*cursor, |(id, _)| *id);
        *cursor = newest;
        shared.status.set_published(newest);
        shared
            .status
            .published_total
            .fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
        storage.replica_published(newest).await;
        // Dropping a waiter's sender wakes it.
        waiters.retain(|w| w.id > newest);
    }
}

/// Reads the outbox after `cursor` on the blocking pool (SQLite never runs on the executor).
async fn read(outbox: &Arc<Mutex<Outbox>>, cursor: i64) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
    let outbox = outbox.clone();
    // Only this task locks it, one read at a time.
    smol::unblock(move || outbox.lock().unwrap_or_else(|e| e.into_inner()).after(cursor, CHUNK))
        .await
}
