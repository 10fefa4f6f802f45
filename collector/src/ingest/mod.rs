//! Agent intake: the WebSocket upgrades on `--ws` and `--http` ([`upgrade`]), who may connect
//! and see what ([`auth`]), and one agent's connection from hello to its last batch
//! ([`connection`]).

pub mod auth;
pub mod connection;
pub mod upgrade;
