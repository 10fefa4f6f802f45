//! Fuzz target: any text as a `Last-Event-ID` header or a `?since=` value, through
//! `parse_event_id`, which SSE and `/live` share. An id is accepted exactly when it is a
//! decimal `u64` (blank means "from now"), and the error always names what was sent.

#![no_main]

use collector::fanout::events::parse_event_id;
use collector::net::http::server::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_event_id(Some(text)) {
        Ok(Some(id)) => assert_eq!(text.trim().parse::<u64>(), Ok(id)),
        Ok(None) => assert!(text.trim().is_empty()),
        Err(message) => assert!(message.starts_with("bad event id")),
    }
    // The same text as a query string, as `/events?since=` and `/live?since=` receive it.
    let request = Request::get(&format!("/events?{text}"));
    let _ = parse_event_id(request.query_param("since").as_deref());
});
