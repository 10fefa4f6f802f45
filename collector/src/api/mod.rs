//! The HTTP API and the page: routing and the endpoints ([`routes`]), the history answer
//! ([`history`]), alerts and silences ([`alerts`]), Prometheus exposition ([`metrics`]), the
//! embedded page ([`assets`]) and the view types the hub answers questions with ([`views`]).
//! Handlers turn a request into a response; the server that reads and writes them is
//! [`crate::net::http`].

pub mod access;
pub mod alerts;
pub mod assets;
pub mod history;
pub mod metrics;
pub mod routes;
pub mod views;
