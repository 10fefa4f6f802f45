//! Opening an ingest connection: TCP, optional TLS (rustls, certificates verified), the WebSocket
//! upgrade with the token, and the hello/welcome exchange. Knows nothing of sysinfo.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};
use protocol::{AgentMessage, CollectorMessage, Hello, Limits, RefusalReason, Welcome};
use smol::net::TcpStream;

/// A TCP stream, plain or wrapped in TLS. `T` is the TLS stream type: a client stream here, a
/// server stream in the collector.
pub enum MaybeTls<T> {
    /// No TLS (`ws://`, `http://`).
    Plain(TcpStream),
    /// TLS (`wss://`, `https://`).
    Tls(Box<T>),
}

/// A byte stream to the collector.
pub type Stream = MaybeTls<futures_rustls::client::TlsStream<TcpStream>>;

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

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

/// WebSocket limits for ingest: the protocol's, not tungstenite's 64 MiB defaults.
pub fn websocket_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(Limits::MAX_MESSAGE_BYTES))
        .max_frame_size(Some(Limits::MAX_FRAME_BYTES))
        .max_write_buffer_size(4 * Limits::MAX_MESSAGE_BYTES)
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
}

/// Builds the TLS connector for `wss://`: the system's trusted roots, or only the certificates
/// in `ca_file` when given (CAs, or the collector's own self-signed certificate).
pub fn tls_connector(ca_file: Option<&Path>) -> anyhow::Result<futures_rustls::TlsConnector> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    let mut listed = Vec::new();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read CA certificates from {}", path.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("bad PEM in {}", path.display()))?;
            anyhow::ensure!(!certs.is_empty(), "no certificates in {}", path.display());
            for cert in &certs {
                roots
                    .add(cert.clone())
                    .with_context(|| format!("bad CA certificate in {}", path.display()))?;
            }
            listed = certs;
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                log::warn!("system CA certificates: {err}");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            anyhow::ensure!(added > 0, "no usable system CA certificates; give --ca-file");
        }
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .context("cannot build the certificate verifier")?;
    let verifier = Arc::new(TrustedCertificates { listed, webpki });
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(futures_rustls::TlsConnector::from(Arc::new(config)))
}

/// Certificate verification as rustls does it (webpki: chain to a trusted root, validity,
/// name), plus one case curl, Python and Node accept and webpki refuses: a self-signed
/// certificate made with `openssl req -x509`, which marks itself `CA:TRUE`, presented by the
/// collector and listed itself in `--ca-file`. webpki refuses any CA certificate as a server's
/// (`CaUsedAsEndEntity`); this one the operator chose to trust byte for byte, so it is accepted
/// when webpki's only objection is that, and its name still has to match the URL's host.
/// webpki checks validity dates before that objection, so an expired one is still refused.
#[derive(Debug)]
struct TrustedCertificates {
    /// The certificates of `--ca-file`, exactly as listed (empty with the system's roots).
    listed: Vec<rustls_pki_types::CertificateDer<'static>>,
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for TrustedCertificates {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(err)
                if is_ca_used_as_end_entity(&err)
                    && self.listed.iter().any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&cert, server_name)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Whether webpki refused a certificate only because it is a CA's (`CaUsedAsEndEntity`).
fn is_ca_used_as_end_entity(err: &rustls::Error) -> bool {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            )
        }
        _ => false,
    }
}

/// Opens a connection, sends the hello and waits for the welcome, all within `target.timeout`.
pub async fn open(target: &Target, hello: &Hello) -> Result<(Socket, Welcome), ConnectError> {
    crate::within(target.timeout, open_inner(target, hello)).await.unwrap_or_else(|| {
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

    let (mut socket, _response) =
        async_tungstenite::client_async_with_config(request, stream, Some(websocket_config()))
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
