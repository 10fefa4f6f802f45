//! The consumer task: reads the stream from the position kept in the database (XREAD BLOCK),
//! skips this collector's own entries, and stores the others' through the storage writer
//! ([`Storage::queue_store_replica`]: each sample once, by host, sequence number and time, also
//! below the host's resume point); the hub then fans them out like local samples. A stream trimmed
//! past this collector's position (it was away longer than the stream keeps) is logged and
//! counted as a gap: those samples are missing here, and their origin's history API has them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use protocol::{Batch, Hello};
use redis::Value;

use super::{Shared, StreamPos, connect, entry, log_loss, log_return, retry_delay};
use crate::api::alerts::{MAX_COMMENT_CHARS, MAX_SILENCE_MS};
use crate::fanout::hub;
use crate::storage::alerts::{Silence, SilenceChange};
use crate::storage::{Storage, StoreError, replica as tables};
use crate::untrusted::escaped;

/// Entries read per XREAD: a reply is held whole, so at most this many times
/// [`entry::MAX_ENTRY_BYTES`] (an entry is one batch, a few KiB for a typical agent).
const COUNT: usize = 128;
/// How long one XREAD blocks for new entries, in ms.
const BLOCK_MS: u64 = 1000;

/// Consumes until the process ends: connects (with backoff), reads, reconnects on loss.
pub(super) async fn run(
    shared: Arc<Shared>,
    storage: Storage,
    hub: async_channel::Sender<hub::Event>,
) {
    let mut known: HashMap<String, Hello> = HashMap::new();
    let mut attempt = 0u32;
    loop {
        let response = Duration::from_millis(BLOCK_MS) + Duration::from_secs(5);
        let mut connection = match connect(&shared.client, response).await {
            Ok(connection) => connection,
            Err(err) => {
                if shared.status.lost(false, err.to_string()) {
                    log_loss(&shared.settings, &err.to_string());
                }
                smol::Timer::after(retry_delay(attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        attempt = 0;
        if let Some(since) = shared.status.connected(false) {
            log_return(&shared.settings, since);
        }
        let ended = consume(&shared, &storage, &hub, &mut connection, &mut known).await;
        let err = match ended {
            Ok(never) => match never {},
            Err(err) => err,
        };
        log::debug!("redis: the consumer stopped reading: {err:#}");
        if shared.status.lost(false, format!("{err:#}")) {
            log_loss(&shared.settings, &format!("{err:#}"));
        }
        if hub.is_closed() {
            return;
        }
        smol::Timer::after(retry_delay(0)).await;
    }
}

/// Reads and stores on `connection` until it fails.
async fn consume(
    shared: &Shared,
    storage: &Storage,
    hub: &async_channel::Sender<hub::Event>,
    connection: &mut redis::aio::MultiplexedConnection,
    known: &mut HashMap<String, Hello>,
) -> anyhow::Result<std::convert::Infallible> {
    let stream = shared.settings.stream.as_str();
    let mut cursor = *shared.consumed.lock().unwrap_or_else(|e| e.into_inner());
    check_gap(shared, connection, cursor).await?;
    loop {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(stream)
            .arg(cursor.to_string())
            .query_async(connection)
            .await?;
        let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
        let mut answers = Vec::new();
        let mut newest = cursor;
        let mut read = 0usize;
        for item in entries {
            read += 1;
            let Some(pos) = StreamPos::parse(&item.id) else {
                anyhow::bail!("the stream returned an entry id {:?}", item.id);
            };
            newest = newest.max(pos);
            let origin = text(item.map.get("origin"));
            if origin.as_deref() == Some(shared.collector_id.as_str()) {
                continue;
            }
            let layout = text(item.map.get("v"));
            if layout.as_deref() == Some(entry::CLAIM) {
                let host = text(item.map.get("host")).filter(|h| !crate::untrusted::has_control(h));
                let instance = text(item.map.get("instance")).and_then(|i| i.parse().ok());
                match (host, instance) {
                    (Some(host_id), Some(instance_id)) => {
                        let collector = origin.unwrap_or_default();
                        let claim =
                            hub::Event::ClaimedElsewhere { host_id, instance_id, collector, pos };
                        hub.send(claim).await.map_err(|_| anyhow::anyhow!("the hub stopped"))?;
                    }
                    _ => {
                        shared.status.skipped_total.fetch_add(1, Relaxed);
                        log::warn!("redis: skipping claim {}: no host or instance", item.id);
                    }
                }
                continue;
            }
            if layout.as_deref() == Some(entry::SILENCE) {
                match silence_change(&item.map, &shared.event_tag) {
                    Ok(change) => apply_silence(storage, hub, change).await?,
                    Err(why) => {
                        shared.status.skipped_total.fetch_add(1, Relaxed);
                        log::warn!("redis: skipping silence entry {}: {why}", item.id);
                    }
                }
                continue;
            }
            if layout.as_deref() == Some(entry::BROADCAST) {
                match broadcast_event(&item.map, origin.as_deref().unwrap_or_default()) {
                    Some(event) => {
                        hub.send(event).await.map_err(|_| anyhow::anyhow!("the hub stopped"))?;
                    }
                    None => {
                        shared.status.skipped_total.fetch_add(1, Relaxed);
                        log::warn!("redis: skipping broadcast {}: no message or sender", item.id);
                    }
                }
                continue;
            }
            let decoded = match (layout.as_deref(), item.map.get("data")) {
                (Some(entry::LAYOUT), Some(Value::BulkString(data))) => entry::decode(data),
                (v, _) => {
                    Err(format!("an entry of layout {v:?} without data this collector reads"))
                }
            };
            let entry = match decoded {
                Ok(entry) => entry,
                Err(why) => {
                    shared.status.skipped_total.fetch_add(1, Relaxed);
                    log::warn!("redis: skipping stream entry {}: {}", item.id, escaped(&why));
                    continue;
                }
            };
            let host_id = entry.hello.host_id.clone();
            let changed = known.get(&host_id) != Some(&entry.hello);
            if changed {
                known.insert(host_id.clone(), entry.hello.clone());
            }
            let batch = Batch { dropped_total: entry.dropped_total, samples: entry.samples };
            let answer = storage
                .queue_store_replica(Arc::new(entry.hello), changed, batch)
                .await
                .map_err(|e| anyhow::anyhow!("storage: {e}"))?;
            answers.push((host_id, answer));
        }
        for (host_id, answer) in answers {
            match answer.recv().await {
                Ok(Ok(_)) => {
                    shared.status.consumed_total.fetch_add(1, Relaxed);
                }
                Ok(Err(StoreError::Refused(why) | StoreError::Busy(why))) => {
                    // Its next entry tells the storage (and the hub) of the host again.
                    known.remove(&host_id);
                    shared.status.skipped_total.fetch_add(1, Relaxed);
                    log::warn!(
                        "redis: a batch of host {} from the stream was refused: {}",
                        escaped(&host_id),
                        escaped(&why)
                    );
                }
                // Read again from the same position once the storage commits again; the hellos
                // of the failed transaction were not stored, so every host's is sent again.
                Ok(Err(StoreError::Unavailable(why))) => {
                    known.clear();
                    anyhow::bail!("storage: {why}")
                }
                Err(_) => anyhow::bail!("storage stopped"),
            }
        }
        shared.status.lag_ms.store(
            if read == COUNT { crate::now_ms().saturating_sub(newest.ms) } else { 0 },
            Relaxed,
        );
        if newest > cursor {
            cursor = newest;
            *shared.consumed.lock().unwrap_or_else(|e| e.into_inner()) = cursor;
            storage.set_replica_state(tables::CONSUMED, cursor.to_string()).await;
        }
    }
}

/// The broadcast a broadcast entry carries, checked as `POST /api/broadcast` checks one, with
/// its sender named as having come through collector `origin`.
fn broadcast_event(fields: &HashMap<String, Value>, origin: &str) -> Option<hub::Event> {
    let message = text(fields.get("message")).filter(|m| {
        !m.trim().is_empty()
            && !crate::untrusted::has_control(m)
            && m.chars().count() <= crate::api::routes::MAX_BROADCAST_CHARS
    })?;
    // A client's address, as the API records it.
    let from = text(fields.get("from"))
        .filter(|f| f.len() <= MAX_FROM_BYTES && !crate::untrusted::has_control(f))?;
    let tag = crate::fanout::events::event_tag(origin);
    Some(hub::Event::Broadcast { message, from: format!("{from} (through collector {tag})") })
}

/// The longest sender of a broadcast taken from the stream (an address, `[v6]:port` at most).
const MAX_FROM_BYTES: usize = 255;

/// The change a silence entry asks for, checked as the API checks a silence.
fn silence_change(fields: &HashMap<String, Value>, our_tag: &str) -> Result<SilenceChange, String> {
    let field = |name: &str| -> Result<String, String> {
        let value = text(fields.get(name)).ok_or_else(|| format!("no {name}"))?;
        if crate::untrusted::has_control(&value) || value.chars().count() > MAX_COMMENT_CHARS {
            return Err(format!("{name} is not a silence's"));
        }
        Ok(value)
    };
    let reference = field("ref")?;
    let Some((tag, id)) = reference.split_once(':') else {
        return Err(format!("reference {reference:?} is not TAG:ID"));
    };
    let op = field("op")?;
    if op == "delete" {
        // One of ours (deleted on another collector) by its id; another's by its reference.
        return Ok(match (tag == our_tag, id.parse::<u64>()) {
            (true, Ok(id)) => SilenceChange::Delete(id),
            _ => SilenceChange::DeleteOrigin(reference),
        });
    }
    if op != "add" {
        return Err(format!("unknown op {op:?}"));
    }
    if tag == our_tag {
        return Err("a silence of this collector's own".into()); // Never from another origin.
    }
    let glob = |name: &str| field(name).map(|g| Some(g).filter(|g| !g.trim().is_empty()));
    let number = |name: &str| -> Result<u64, String> {
        field(name)?.parse().map_err(|_| format!("{name} is not a number"))
    };
    let silence = Silence {
        id: 0,
        host: glob("host")?,
        rule: glob("rule")?,
        until_ms: number("until_ms")?,
        created_ms: number("created_ms")?,
        comment: field("comment")?,
        created_by: field("created_by")?,
        origin: Some(reference),
    };
    if silence.host.is_none() && silence.rule.is_none() {
        return Err("a silence of every host and rule".into());
    }
    // As the API bounds them: made now (a day of clock difference allowed), at most a year.
    let now = crate::now_ms();
    if silence.created_ms > now + 86_400_000
        || silence.until_ms <= silence.created_ms
        || silence.until_ms - silence.created_ms > MAX_SILENCE_MS
    {
        return Err("a silence's times out of bounds".into());
    }
    Ok(SilenceChange::Add(silence))
}

/// Stores a silence change from the stream and tells the hub, as the API does.
async fn apply_silence(
    storage: &Storage,
    hub: &async_channel::Sender<hub::Event>,
    change: SilenceChange,
) -> anyhow::Result<()> {
    let adding = matches!(change, SilenceChange::Add(_));
    let changed = match storage.change_silences(change).await {
        Ok(changed) => changed,
        Err(StoreError::Unavailable(why)) => anyhow::bail!("storage: {why}"),
        Err(err) => {
            log::warn!("redis: a silence from the stream was not stored: {err}");
            return Ok(());
        }
    };
    let Some(silence) = changed else {
        return Ok(()); // Added already, or deleted already.
    };
    log::info!(
        "silence {} {} from the stream ({}): host {} rule {}",
        silence.id,
        if adding { "added" } else { "deleted" },
        silence.origin.as_deref().unwrap_or("made here"),
        escaped(silence.host.as_deref().unwrap_or("*")),
        escaped(silence.rule.as_deref().unwrap_or("*"))
    );
    let event = match adding {
        true => hub::Event::Silenced(silence),
        false => hub::Event::Unsilenced(silence.id),
    };
    hub.send(event).await.map_err(|_| anyhow::anyhow!("the hub stopped"))
}

/// Says (once per connection) whether the stream was trimmed past `cursor`: Redis 7 keeps the
/// newest trimmed id (`max-deleted-entry-id`), and this collector never deletes entries.
async fn check_gap(
    shared: &Shared,
    connection: &mut redis::aio::MultiplexedConnection,
    cursor: StreamPos,
) -> anyhow::Result<()> {
    if cursor == StreamPos::default() {
        return Ok(()); // A first start reads whatever the stream keeps.
    }
    let info: redis::RedisResult<HashMap<String, Value>> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&shared.settings.stream)
        .query_async(connection)
        .await;
    let info = match info {
        Ok(info) => info,
        // No such stream yet (a fresh Redis): nothing was trimmed, nothing to say.
        Err(err) if err.code() == Some("ERR") => {
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    let deleted = text(info.get("max-deleted-entry-id")).and_then(|id| StreamPos::parse(&id));
    if let Some(deleted) = deleted.filter(|d| *d > cursor) {
        shared.status.gaps_total.fetch_add(1, Relaxed);
        log::warn!(
            "redis: the stream was trimmed past this collector's position: entries after {cursor} \
             up to {deleted} are gone (it keeps about {} entries, --redis-max-len), so other \
             collectors' samples of that time are missing here; their history API has them",
            shared.settings.max_len
        );
    }
    Ok(())
}

/// A stream field as text.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
