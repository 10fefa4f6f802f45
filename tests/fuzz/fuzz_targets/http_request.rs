//! Fuzz target: any bytes as what a client sends on an HTTP connection, read by the
//! collector's `read_request` from an in-memory stream (up to eight pipelined requests), with
//! small limits so the fuzzer reaches them. No panic, and every request read keeps the limits.

#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use collector::net::http::server::{HttpLimits, ReadError, keep_alive, read_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HttpLimits {
        max_head_bytes: 2048,
        max_headers: 16,
        max_body_bytes: 1024,
        ..HttpLimits::default()
    };
    let mut stream = futures_lite::io::Cursor::new(data.to_vec());
    let mut buffer = Vec::new();
    let remote = SocketAddr::from(([127, 0, 0, 1], 9));
    futures_lite::future::block_on(async {
        for _ in 0..8 {
            let wait = Duration::from_secs(1);
            match read_request(&mut stream, &mut buffer, remote, &limits, wait).await {
                Ok(request) => {
                    assert!(request.body.len() <= limits.max_body_bytes);
                    assert!(request.headers.len() <= limits.max_headers + 1);
                    let _ = request.query_pairs();
                    let _ = keep_alive(&request);
                }
                Err(ReadError::Refuse(status, message)) => {
                    assert!((400..600).contains(&status), "{status} {message}");
                    break;
                }
                Err(ReadError::Closed) => break,
            }
        }
    });
});
