//! Fuzz target: any text as the query string of `GET /api/hosts/{id}/history` (and of
//! `/events`' filters), through `parse_range`, `source` and `Filter::from_query`. What
//! `parse_range` accepts must be a range the storage can answer within the documented bounds,
//! and one its arithmetic survives: rounded out to whole hours, and bound as SQLite's signed
//! 64-bit integers, without overflow.

#![no_main]

use collector::api::routes::{MAX_BUCKETS, parse_range, source};
use collector::fanout::events::Filter;
use collector::net::http::server::Request;
use libfuzzer_sys::fuzz_target;

/// A fixed "now" (2027), so a run is reproducible.
const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let request = Request::get(&format!("/api/hosts/h/history?{query}"));
    if let Ok(range) = parse_range(&request, NOW_MS) {
        assert!(range.from < range.to, "{range:?}");
        if let Some(step) = range.step {
            assert!(step > 0, "{range:?}");
            assert!((range.to - range.from) / step <= MAX_BUCKETS, "{range:?}");
        }
        // What `storage::query` does with a range: round it out to whole rollup buckets and
        // bind it (and the step) to SQLite as i64.
        for unit in [60_000u64, 3_600_000] {
            assert!(range.to.div_ceil(unit).checked_mul(unit).is_some(), "{range:?}");
        }
        let step = range.step.unwrap_or(1);
        for value in [range.from, range.to, step, range.to.div_ceil(step) * step] {
            assert!(i64::try_from(value).is_ok(), "{range:?} does not fit SQLite's integers");
        }
        let _ = source(range.step);
    }
    let _ = Filter::from_query(&request.query_pairs());
});
