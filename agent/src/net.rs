//! Opening an ingest connection: TCP, optional TLS (rustls, certificates verified), the WebSocket
//! upgrade with the token, and the hello/welcome exchange. Knows nothing of sysinfo.

use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http};
use futures_lite::StreamExt;
use protocol::{AgentMessage, CollectorMessage, Hello, RefusalReason, Welcome};
use smol::net::TcpStream;

use crate::runtime::MaybeTls;

/// A byte stream to the collector.
pub type Stream = MaybeTls<futures_rustls::client::TlsStream<TcpStream>>;

/// A WebSocket to the collector.
pub type Socket = WebSocketStream<Stream>;

/// Why a connection attempt failed, sorted by what the agent should do next.
#[derive(Debug)]
pub enum ConnectError {
    /// The collector refused the agent; retrying soon cannot help until an operator acts
    /// (bad token, unsupported version) unless the reason says otherwise.
    Refused {
        /// The kind of refusal.
        reason: RefusalReason,
        /// The collector's explanation.
        message: String,
    },
    /// The collector's TLS certificate is not trusted: retrying soon cannot help either.
    Untrusted(String),
    /// The collector is unreachable, slow or went away: retry with backoff.
    Transient(String),
}

impl ConnectError {
    /// Whether only an operator can fix this, so the agent should retry slowly and say so once.
    pub fn needs_operator(&self) -> bool {
        match self {
            ConnectError::Refused { reason, .. } => reason.needs_operator(),
            ConnectError::Untrusted(_) => true,
            ConnectError::Transient(_) => false,
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused { message, .. } => {
                write!(f, "refused by the collector: {message}")
            }
            ConnectError::Untrusted(why) | ConnectError::Transient(why) => write!(f, "{why}"),
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// The ingest URL.
    pub url: String,
    /// The agent token, sent as `Authorization: Bearer …` in the upgrade request.
    pub token: String,
    /// TLS settings for `wss://`.
    pub tls: Option<futures_rustls::TlsConnector>,
    /// Limit on the whole attempt: TCP, TLS, upgrade and welcome.
    pub timeout: Duration,
}

/// Opens a connection, sends the hello and waits for the welcome, all within `target.timeout`.
pub async fn open(target: &Target, hello: &Hello) -> Result<(Socket, Welcome), ConnectError> {
    crate::runtime::within(target.timeout, open_inner(target, hello)).await.unwrap_or_else(|| {
        Err(ConnectError::Transient(format!("no welcome within {:?}", target.timeout)))
    })
}

async fn open_inner(target: &Target, hello: &Hello) -> Result<(Socket, Welcome), ConnectError> {
    let transient =
        |what: &str, e: &dyn std::fmt::Display| ConnectError::Transient(format!("{what}: {e}"));
    let mut request =
        target.url.as_str().into_client_request().map_err(|e| transient("bad URL", &e))?;
    let uri = request.uri().clone();
    let host =
        uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let tls = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let bearer =
        http::HeaderValue::from_str(&format!("Bearer {}", target.token)).map_err(|_| {
            ConnectError::Refused {
                reason: RefusalReason::BadToken,
                message: "token has characters not allowed in a header".into(),
            }
        })?;
    request.headers_mut().insert(http::header::AUTHORIZATION, bearer);
    request.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("hostwatch-agent/", env!("CARGO_PKG_VERSION"))),
    );

    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| transient(&format!("cannot connect to {host}:{port}"), &e))?;
    // Samples are small and latency matters more than packet count.
    tcp.set_nodelay(true).map_err(|e| transient("set_nodelay", &e))?;
    let stream = if tls {
        let connector = target
            .tls
            .as_ref()
            .ok_or_else(|| ConnectError::Transient("wss:// without a TLS configuration".into()))?;
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| transient("bad TLS server name", &e))?;
        let tls_stream = connector.connect(name, tcp).await.map_err(|e| tls_error(&host, e))?;
        MaybeTls::Tls(Box::new(tls_stream))
    } else {
        MaybeTls::Plain(tcp)
    };

    let (mut socket, _response) = async_tungstenite::client_async_with_config(
        request,
        stream,
        Some(crate::runtime::websocket_config()),
    )
    .await
    .map_err(upgrade_error)?;
    let hello_bytes = protocol::encode_agent_message(&AgentMessage::Hello(hello.clone()));
    socket
        .send(Message::binary(hello_bytes))
        .await
        .map_err(|e| transient("sending the hello", &e))?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                return match protocol::decode_collector_message(&bytes) {
                    Ok(CollectorMessage::Welcome(welcome)) => Ok((socket, welcome)),
                    Ok(CollectorMessage::Refused(refusal)) => Err(ConnectError::Refused {
                        reason: refusal.reason,
                        message: refusal.message,
                    }),
                    Ok(other) => {
                        Err(ConnectError::Transient(format!("expected a welcome, got {other:?}")))
                    }
                    Err(err) => Err(transient("undecodable answer to the hello", &err)),
                };
            }
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                return Err(ConnectError::Transient(format!(
                    "collector closed the connection: {why}"
                )));
            }
            Some(Ok(_)) => continue, // Pings and pongs before the welcome.
            Some(Err(err)) => return Err(transient("waiting for the welcome", &err)),
            None => {
                return Err(ConnectError::Transient("collector closed the connection".into()));
            }
        }
    }
}

fn tls_error(host: &str, err: std::io::Error) -> ConnectError {
    // A certificate the agent does not trust will not become trusted by retrying quickly.
    let refused =
        err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).and_then(|e| match e {
            rustls::Error::InvalidCertificate(why) => Some(why),
            _ => None,
        });
    match refused {
        Some(why) => ConnectError::Untrusted(format!(
            "TLS with {host}: the collector's certificate is not trusted: {}",
            certificate_advice(host, why)
        )),
        None => ConnectError::Transient(format!("TLS with {host}: {err}")),
    }
}

/// What is wrong with a refused certificate and what the operator can do about it.
fn certificate_advice(host: &str, why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match why {
        E::UnknownIssuer => "no CA the agent trusts signed it; give --ca-file the CA that \
            signed it, or the collector's own self-signed certificate"
            .to_owned(),
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            let kind = if host.parse::<std::net::IpAddr>().is_ok() { "IP" } else { "DNS" };
            format!(
                "{why}; it must name {host} in its subjectAltName (a common name alone does not \
                 count): make it with -addext \"subjectAltName={kind}:{host}\", as the README's \
                 TLS section shows"
            )
        }
        E::Expired | E::ExpiredContext { .. } | E::NotValidYet | E::NotValidYetContext { .. } => {
            format!("{why}; renew the collector's certificate, or set this host's clock right")
        }
        E::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            "it is marked as a CA (CA:TRUE, as `openssl req -x509` makes it); give that very \
             certificate with --ca-file to trust it as the collector's own"
                .to_owned()
        }
        _ => format!("{why}; see the README's TLS section for a certificate that works"),
    }
}

fn upgrade_error(err: tungstenite::Error) -> ConnectError {
    match err {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let message = upgrade_refusal(
                status.as_u16(),
                status.canonical_reason(),
                content_type,
                response.body().as_deref().unwrap_or_default(),
            );
            match status.as_u16() {
                401 | 403 => ConnectError::Refused { reason: RefusalReason::BadToken, message },
                400..=499 => ConnectError::Refused { reason: RefusalReason::Malformed, message },
                _ => ConnectError::Transient(message),
            }
        }
        other => ConnectError::Transient(format!("WebSocket upgrade failed: {other}")),
    }
}

/// The longest part of a refusal's body that goes into the log line.
const MAX_REFUSAL_BODY_CHARS: usize = 200;

/// One log line for a refused upgrade: the status, and the body when it is the collector's
/// one-line text. An HTML page comes from something in between (a reverse proxy's 502 while
/// the collector is down, say) and would fill the log with markup over many lines, so it is
/// named, not copied.
fn upgrade_refusal(status: u16, reason: Option<&str>, content_type: &str, body: &[u8]) -> String {
    let status = match reason {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    };
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let html = content_type.to_ascii_lowercase().contains("html")
        || text.starts_with('<')
        || text.get(..15).is_some_and(|t| t.eq_ignore_ascii_case("<!doctype html"));
    if html {
        return format!(
            "{status} at the upgrade, with an HTML page: not the collector's answer but a proxy's \
             or another server's (is the collector running behind it, and is the URL right?)"
        );
    }
    let line: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_REFUSAL_BODY_CHARS)
        .collect();
    if line.is_empty() {
        format!("{status} at the upgrade")
    } else {
        format!("{status} at the upgrade: {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxys_html_error_page_becomes_one_line_with_the_status() {
        let nginx = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
            <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n\
            </body>\r\n</html>\r\n";
        let line = upgrade_refusal(502, Some("Bad Gateway"), "text/html", nginx);
        assert!(line.starts_with("HTTP 502 Bad Gateway at the upgrade"), "{line}");
        assert!(!line.contains('<') && !line.contains('\n'), "{line}");
        // Even without a content type.
        assert!(!upgrade_refusal(503, None, "", b"  <!DOCTYPE html><p>x</p>").contains('<'));
    }

    #[test]
    fn the_collectors_text_refusal_is_kept_on_one_line() {
        let line =
            upgrade_refusal(401, Some("Unauthorized"), "", b"invalid or missing agent token\n");
        assert_eq!(line, "HTTP 401 Unauthorized at the upgrade: invalid or missing agent token");
        let long = "x".repeat(1000) + "\nsecond line";
        let line = upgrade_refusal(400, None, "text/plain", long.as_bytes());
        assert!(!line.contains('\n') && line.len() < 300, "{line}");
        assert_eq!(upgrade_refusal(500, None, "", b""), "HTTP 500 at the upgrade");
    }
}
