//! A stream entry: one batch of a host's newly stored samples with its agent's hello, so every
//! entry stands on its own (a replica that starts late, or after the stream was trimmed, can
//! register the host from any entry). Encoded with postcard in the current protocol's layouts;
//! the entry's `v` field names this layout, and a collector skips entries of a layout it does not
//! know (counted as undecodable, never stored wrongly).

use std::sync::Arc;

use protocol::{Hello, Sample};
use serde::{Deserialize, Serialize};

/// The layout of [`Entry`], written in each stream entry's `v` field.
pub const LAYOUT: &str = "1";

/// The layout of a claim: no data, but `host` and `instance` fields, written when a collector
/// welcomes an agent ([`super::Replica::claim`]).
pub const CLAIM: &str = "claim";

/// The layout of a broadcast: no data, but `message` and `from` fields, written when an
/// operator broadcasts on one collector ([`super::Replica::broadcast`]), so every collector's
/// viewers get it.
pub const BROADCAST: &str = "broadcast";

/// The layout of a silence's addition or deletion: no data, but `op` (`add` or `delete`),
/// `ref` (`TAG:ID` of the collector that made it) and, to add, the silence's fields
/// ([`super::Replica::silence_added`]).
pub const SILENCE: &str = "silence";

/// Most bytes of an entry's data a consumer decodes: a batch is at most one protocol message
/// (1 MiB) plus its hello.
pub const MAX_ENTRY_BYTES: usize = 2 << 20;

/// A decoded entry.
#[derive(Debug, Deserialize)]
pub struct Entry {
    /// The hello of the agent that sent the samples.
    pub hello: Hello,
    /// Its spool's dropped count as of these samples.
    pub dropped_total: u64,
    /// The samples the origin stored, in sequence order.
    pub samples: Vec<Sample>,
}

/// [`Entry`] as the writer has it, borrowed.
#[derive(Serialize)]
struct EntryRef<'a> {
    hello: &'a Hello,
    dropped_total: u64,
    samples: &'a [Arc<Sample>],
}

/// Encodes an entry (`Arc<Sample>` encodes as the sample itself).
pub fn encode(
    hello: &Hello,
    dropped_total: u64,
    samples: &[Arc<Sample>],
) -> postcard::Result<Vec<u8>> {
    postcard::to_allocvec(&EntryRef { hello, dropped_total, samples })
}

/// Decodes an entry's data, refusing what is too large or malformed.
pub fn decode(bytes: &[u8]) -> Result<Entry, String> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(format!("{} bytes, over {MAX_ENTRY_BYTES}", bytes.len()));
    }
    let (entry, rest): (Entry, _) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    if entry.hello.host_id.trim().is_empty() || crate::untrusted::has_control(&entry.hello.host_id)
    {
        return Err("a host id that no agent may have".into());
    }
    // The protocol's limits, as on an agent's own messages: a collector of another build (or
    // anything else that writes to the stream) must not store more than an agent could send.
    entry.hello.check_limits().map_err(|e| e.to_string())?;
    let batch = protocol::Batch { dropped_total: entry.dropped_total, samples: entry.samples };
    batch.check_limits().map_err(|e| e.to_string())?;
    if batch.samples.windows(2).any(|w| w[0].seq >= w[1].seq) {
        return Err("samples out of sequence order".into());
    }
    if let Some(sample) = crate::ingest::connection::dated_ahead(&batch.samples, crate::now_ms()) {
        return Err(format!("sample {} is dated more than a day ahead of this clock", sample.seq));
    }
    Ok(Entry { hello: entry.hello, dropped_total: batch.dropped_total, samples: batch.samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_garbage_is_refused() {
        let hello = Hello { host_id: "web-1".into(), instance_id: 7, ..Hello::default() };
        let samples = vec![
            Arc::new(Sample { seq: 4, ts_ms: 1000, ..Sample::default() }),
            Arc::new(Sample { seq: 5, ts_ms: 2000, ..Sample::default() }),
        ];
        let bytes = encode(&hello, 3, &samples).unwrap();
        let entry = decode(&bytes).unwrap();
        assert_eq!(entry.hello, hello);
        assert_eq!(entry.dropped_total, 3);
        assert_eq!(entry.samples.iter().map(|s| s.seq).collect::<Vec<_>>(), [4, 5]);
        assert!(decode(&bytes[..bytes.len() / 2]).is_err());
        let reversed = [samples[1].clone(), samples[0].clone()];
        assert!(decode(&encode(&hello, 0, &reversed).unwrap()).is_err());
        let bad = Hello { host_id: "a\nb".into(), ..Hello::default() };
        assert!(decode(&encode(&bad, 0, &samples).unwrap()).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode(&trailing).unwrap_err().contains("trailing"));
        // Over the protocol's limits, as an agent's batch would be.
        let long = Hello { hostname: "h".repeat(4096), ..hello.clone() };
        assert!(decode(&encode(&long, 0, &samples).unwrap()).is_err());
        let many: Vec<_> = (1..=protocol::Limits::MAX_SAMPLES_PER_BATCH as u64 + 1)
            .map(|seq| Arc::new(Sample { seq, ts_ms: seq, ..Sample::default() }))
            .collect();
        assert!(decode(&encode(&hello, 0, &many).unwrap()).is_err());
        let ahead = [Arc::new(Sample {
            seq: 1,
            ts_ms: crate::now_ms() + 2 * 86_400_000,
            ..Sample::default()
        })];
        assert!(decode(&encode(&hello, 0, &ahead).unwrap()).unwrap_err().contains("ahead"));
    }
}
