//! Webhook delivery: one HTTP/1.1 POST per notification over smol's non-blocking sockets
//! (TLS through rustls with the system's roots for `https://`), bounded by the channel's
//! timeout; any 2xx answer is a delivery. The body is the notification as JSON, or what Slack,
//! Discord or ntfy endpoints accept.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use serde_json::json;

use super::Notification;
use super::config::{Format, WebhookConfig};
use crate::alerts::Severity;

/// The most of a response head read before giving up on it.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Discord refuses a `content` over 2000 characters.
const DISCORD_MAX_CHARS: usize = 2000;

/// Sends one channel's notifications.
pub struct Sender {
    config: WebhookConfig,
    tls: Option<futures_rustls::TlsConnector>,
}

impl Sender {
    /// Prepares the channel (loads the system's CA certificates, or `ca_file`'s, for `https://`).
    pub fn new(config: WebhookConfig) -> anyhow::Result<Self> {
        let tls = if config.url.https {
            Some(agent::runtime::tls_connector(config.ca_file.as_deref())?)
        } else {
            None
        };
        Ok(Self { config, tls })
    }

    /// Delivers one notification: `Ok` on a 2xx answer within the timeout.
    pub async fn send(&self, notification: &Notification) -> Result<(), String> {
        let (content_type, extra, body) = encode(self.config.format, notification);
        let url = &self.config.url;
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hostwatch-collector/{}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
            url.path,
            url.authority(),
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if let Some(token) = &self.config.bearer_token {
            head.push_str(&format!("Authorization: Bearer {}\r\n", token.expose()));
        }
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        let attempt = async {
            let tcp = smol::net::TcpStream::connect((url.host.as_str(), url.port))
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", url.authority()))?;
            // Only errors are interesting; a failure to set it changes nothing for the request.
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => exchange(tcp, &request).await,
                Some(tls) => {
                    let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                        .map_err(|e| format!("{}: {e}", url.host))?;
                    let stream = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS with {}: {e}", url.authority()))?;
                    exchange(stream, &request).await
                }
            }
        };
        let timeout = self.config.timeout;
        let status = attempt
            .or(async {
                smol::Timer::after(timeout).await;
                Err(format!("no answer within {}", humantime::format_duration(timeout)))
            })
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("{} answered HTTP {status}", url.shown()))
        }
    }
}

/// Writes the request and reads the status of the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<u16, String> {
    stream.write_all(request).await.map_err(|e| format!("sending: {e}"))?;
    stream.flush().await.map_err(|e| format!("sending: {e}"))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await.map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_RESPONSE_HEAD {
            return Err("the answer's head is over 16 KiB".into());
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(_) => response.code.ok_or_else(|| "an answer without a status".to_owned()),
        Err(e) => Err(format!("not an HTTP answer: {e}")),
    }
}

/// The content type, extra headers and body of a notification in a format.
pub fn encode(
    format: Format,
    n: &Notification,
) -> (&'static str, Vec<(&'static str, String)>, Vec<u8>) {
    match format {
        Format::Json => {
            let mut body = serde_json::to_value(n).unwrap_or_else(|_| json!({}));
            body["source"] = json!("hostwatch");
            body["version"] = json!(1);
            ("application/json", Vec::new(), body.to_string().into_bytes())
        }
        Format::Slack => {
            let body = json!({ "text": n.details() });
            ("application/json", Vec::new(), body.to_string().into_bytes())
        }
        Format::Discord => {
            let content: String = n.details().chars().take(DISCORD_MAX_CHARS).collect();
            let body = json!({ "content": content, "allowed_mentions": { "parse": [] } });
            ("application/json", Vec::new(), body.to_string().into_bytes())
        }
        Format::Ntfy => {
            let priority = match (n.state.as_str(), n.severity) {
                ("resolved" | "test", _) => "3",
                (_, Severity::Critical) => "5",
                (_, Severity::Warning) => "4",
                (_, Severity::Info) => "3",
            };
            let tags = match n.state.as_str() {
                "firing" => "rotating_light",
                "resolved" => "white_check_mark",
                _ => "information_source",
            };
            let headers = vec![
                ("Title", header_text(&n.headline())),
                ("Priority", priority.to_owned()),
                ("Tags", tags.to_owned()),
            ];
            ("text/plain; charset=utf-8", headers, n.details().into_bytes())
        }
    }
}

/// Text safe in a header: visible ASCII and spaces (others become `?`), at most 250 bytes.
fn header_text(text: &str) -> String {
    text.chars().map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).take(250).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_carry_what_each_endpoint_reads() {
        let mut n = Notification::test();
        n.state = "firing".into();
        n.severity = Severity::Critical;
        n.summary = "web-1: / at 95% — full".into();
        let (ct, _, body) = encode(Format::Json, &n);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (ct, json["state"].as_str(), json["severity"].as_str()),
            ("application/json", Some("firing"), Some("critical"))
        );
        let (_, _, body) = encode(Format::Slack, &n);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json["text"].as_str().unwrap().starts_with("[FIRING] critical: web-1"));
        let (_, _, body) = encode(Format::Discord, &n);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json["content"].as_str().unwrap().contains("rule: notify-test"));
        let (ct, headers, _) = encode(Format::Ntfy, &n);
        assert_eq!(ct, "text/plain; charset=utf-8");
        assert!(headers.contains(&("Priority", "5".to_owned())));
        assert!(headers.iter().all(|(_, v)| v.is_ascii()), "{headers:?}");
    }
}
