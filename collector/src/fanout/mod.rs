//! Browser fan-out: the hub that owns the shared state and hands every event to its subscribers
//! ([`hub`]), the events themselves ([`events`]), a subscriber's catch-up and forwarding shared by
//! both transports ([`subscribe`]), and the two transports: SSE on `/events` ([`sse`]) and the
//! WebSocket on `/live` ([`live`]).

pub mod events;
pub mod hub;
pub mod live;
pub mod sse;
pub mod subscribe;
