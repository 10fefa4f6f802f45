//! The network edge: the accept loop both listeners share ([`listener`]), TLS ([`tls`]), the
//! connection budgets ([`budget`]) and the HTTP servers, HTTP/1.1 and HTTP/2 ([`http`]).

pub mod budget;
pub mod http;
pub mod listener;
pub mod tls;
