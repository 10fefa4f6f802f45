//! A live subscriber's side of the fan-out, shared by SSE (`/events`) and WebSocket (`/live`):
//! subscribe at the hub, catch up from the database or the hub's ring when resuming, then
//! forward events from the subscriber's bounded queue until it ends.
//!
//! Event ids only grow, so resuming is "everything with an id above the last one seen": events
//! older than the subscription come from the database or the ring, newer ones from the queue,
//! and any id not above the last one sent is skipped, so nothing is sent twice or missed.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::FutureExt;

use crate::Ctx;
use crate::fanout::events::LiveEvent;
use crate::fanout::hub::{self, SubscribeRequest};

/// How often an idle subscriber gets a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Most events sent in one write.
const SEND_BATCH: usize = 256;

/// Events read from the database per query when resuming.
const RESUME_CHUNK: usize = 1000;

/// Most events replayed from the database; beyond that the subscriber is told to resync.
const RESUME_MAX: usize = 100_000;

/// Counts a live subscriber against `--max-subscribers` while it lives.
pub struct SubscriberSlot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl SubscriberSlot {
    /// Reserves a place for one more subscriber, or `None` at `--max-subscribers`. The check and
    /// the count are one atomic step, so concurrent requests cannot overshoot the limit.
    pub fn try_take(ctx: &Ctx) -> Option<Self> {
        let max = ctx.limits.max_subscribers;
        ctx.subscribers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Self(ctx.subscribers.clone()))
    }
}

/// A subscription request that holds its place under the subscriber limit.
pub struct LiveStream {
    /// What the subscriber asks for.
    pub request: SubscribeRequest,
    /// Its place under `--max-subscribers`, given back when the stream ends.
    pub slot: SubscriberSlot,
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where events go: an SSE response or a WebSocket.
pub trait EventSink {
    /// Sends events, in order; as few writes as the transport allows.
    fn send(&mut self, events: &[&LiveEvent]) -> impl Future<Output = Result<(), String>>;
    /// Sends a keepalive.
    fn heartbeat(&mut self) -> impl Future<Output = Result<(), String>>;
}

/// Why a subscription ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The subscriber's queue overflowed; it should reconnect and resume after `last_id`.
    Lagged {
        /// The last event id it was sent.
        last_id: u64,
    },
    /// The collector is shutting down.
    ShuttingDown,
    /// The subscriber went away or could not be written to.
    Gone(String),
}

/// Runs a subscription until it ends. `client_gone` resolves when the client closes on its own.
pub async fn pump(
    ctx: &Ctx,
    request: SubscribeRequest,
    sink: &mut impl EventSink,
    client_gone: impl Future<Output = String>,
) -> End {
    let filter = request.filter.clone();
    let mut last = request.since.unwrap_or(0);
    let Some(subscription) =
        hub::ask(&ctx.hub, |reply| hub::Event::Subscribe { request, reply }).await
    else {
        return End::ShuttingDown;
    };
    let id = subscription.id;
    let run = async {
        if subscription.resync {
            let notice = LiveEvent::notice(
                "resync",
                "the last event id is from another database; reload the data, streaming from now",
            );
            sink.send(&[&notice]).await.map_err(End::Gone)?;
            last = 0;
        }
        if let Some(after) = subscription.from_database_after {
            catch_up(ctx, after, &filter, sink, &mut last).await?;
        }
        let backlog: Vec<&LiveEvent> =
            subscription.backlog.iter().map(|e| e.as_ref()).filter(|e| e.id > last).collect();
        for chunk in backlog.chunks(SEND_BATCH) {
            sink.send(chunk).await.map_err(End::Gone)?;
        }
        last = backlog.last().map_or(last, |e| e.id);
        loop {
            let next = async { Some(subscription.events.recv().await) };
            let beat = async {
                smol::Timer::after(HEARTBEAT).await;
                None
            };
            match next.or(beat).await {
                Some(Ok(first)) => {
                    // Everything already queued goes out together: one write for many events.
                    let mut queued = vec![first];
                    while queued.len() < SEND_BATCH {
                        match subscription.events.try_recv() {
                            Ok(more) => queued.push(more),
                            Err(_) => break,
                        }
                    }
                    let bytes: usize = queued.iter().map(|e| e.size()).sum();
                    subscription.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                    let batch: Vec<&LiveEvent> =
                        queued.iter().map(|e| e.as_ref()).filter(|e| e.id > last).collect();
                    if let Some(newest) = batch.last().map(|e| e.id) {
                        sink.send(&batch).await.map_err(End::Gone)?;
                        last = newest;
                    }
                }
                Some(Err(_)) if subscription.lagged.load(Ordering::Relaxed) => {
                    return Err(End::Lagged { last_id: last });
                }
                Some(Err(_)) => return Err(End::ShuttingDown),
                None => sink.heartbeat().await.map_err(End::Gone)?,
            }
        }
    };
    let gone = async { Err::<(), End>(End::Gone(client_gone.await)) };
    let end = run.or(gone).await.err().unwrap_or(End::ShuttingDown);
    // The hub has already forgotten a lagged subscriber; telling it twice is harmless.
    let _ = ctx.hub.try_send(hub::Event::Unsubscribe { id });
    end
}

/// Replays stored events after `after` from the database, in chunks.
async fn catch_up(
    ctx: &Ctx,
    after: u64,
    filter: &crate::fanout::events::Filter,
    sink: &mut impl EventSink,
    last: &mut u64,
) -> Result<(), End> {
    let mut replayed = 0;
    let mut cursor = after;
    loop {
        let from = cursor;
        let chunk = ctx
            .readers
            .run(move |reader| reader.events_after(from, RESUME_CHUNK))
            .await
            .map_err(|e| End::Gone(format!("cannot read past events: {e:#}")))?;
        let done = chunk.len() < RESUME_CHUNK;
        cursor = chunk.last().map_or(cursor, |e| e.id);
        let wanted: Vec<&LiveEvent> =
            chunk.iter().filter(|e| filter.matches(e) && e.id > *last).collect();
        for batch in wanted.chunks(SEND_BATCH) {
            sink.send(batch).await.map_err(End::Gone)?;
        }
        // Events filtered out still count as seen, so a resume never scans them again.
        *last = (*last).max(cursor);
        replayed += chunk.len();
        if done {
            return Ok(());
        }
        if replayed >= RESUME_MAX {
            let notice =
                LiveEvent::notice("resync", "too many missed events to replay; reload the data");
            sink.send(&[&notice]).await.map_err(End::Gone)?;
            return Ok(());
        }
    }
}
