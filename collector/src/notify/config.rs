//! The `[notify]` table of the configuration: `[[notify.webhook]]` channels and one
//! `[notify.email]`. Every problem names its key (`notify.webhook[2].url`).

use std::path::Path;
use std::time::Duration;

use agent::runtime::settings::{ConfigError, Secret};

use crate::alerts::Severity;

/// Every channel, in the order of the file (webhooks first, then email).
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// The channels.
    pub channels: Vec<ChannelConfig>,
}

/// One channel.
#[derive(Debug, Clone)]
pub enum ChannelConfig {
    /// An HTTP endpoint.
    Webhook(WebhookConfig),
    /// An SMTP server.
    Email(EmailConfig),
}

impl ChannelConfig {
    /// Its name, the `channel` label of its counters.
    pub fn name(&self) -> &str {
        match self {
            ChannelConfig::Webhook(w) => &w.name,
            ChannelConfig::Email(e) => &e.name,
        }
    }

    /// Where it sends, for messages (no secrets).
    pub fn target(&self) -> String {
        match self {
            ChannelConfig::Webhook(w) => w.url.shown(),
            ChannelConfig::Email(e) => {
                format!("{}://{}:{} to {}", e.scheme(), e.host, e.port, e.to.join(", "))
            }
        }
    }

    /// The least severity it is sent.
    pub fn min_severity(&self) -> Severity {
        match self {
            ChannelConfig::Webhook(w) => w.min_severity,
            ChannelConfig::Email(e) => e.min_severity,
        }
    }
}

/// What a webhook's body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The notification as JSON.
    Json,
    /// `{"text": …}`: Slack incoming webhooks, Mattermost, Rocket.Chat.
    Slack,
    /// `{"content": …}`: Discord webhooks.
    Discord,
    /// A plain-text body with `Title`, `Priority` and `Tags` headers: an ntfy topic URL.
    Ntfy,
}

/// An `http://` or `https://` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Whether it is `https`.
    pub https: bool,
    /// Host name or address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port]/path?query` or `https://…`; no user info, no fragment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{text:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@')
            || path.contains('#')
            || path.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(format!("{text:?}: user info, fragments and spaces are not supported"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) =
                v6.split_once(']').ok_or_else(|| format!("{text:?}: unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{text:?}: bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("{text:?}: bad address")),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => {
                    (host.to_owned(), port.parse().map_err(|_| format!("{text:?}: bad port"))?)
                }
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        Ok(Self { https, host, port, path: path.to_owned() })
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default = if self.https { 443 } else { 80 };
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }

    /// The URL without its path (paths of chat webhooks are secrets).
    pub fn shown(&self) -> String {
        format!("{}://{}/…", if self.https { "https" } else { "http" }, self.authority())
    }
}

/// A `[[notify.webhook]]` table.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Its name (`name`, default `webhook-N`).
    pub name: String,
    /// Where to POST.
    pub url: Url,
    /// The body's shape.
    pub format: Format,
    /// Sent as `Authorization: Bearer …` when set (`bearer_token_file`).
    pub bearer_token: Option<Secret>,
    /// Limit on one attempt: connect, send, and the response's status line.
    pub timeout: Duration,
    /// The least severity sent (`min_severity`, default `info`: everything).
    pub min_severity: Severity,
    /// Trust only these PEM certificates for `https://` (`ca_file`), not the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`smtps://`).
    Tls,
    /// STARTTLS, refusing a server that does not offer it (`smtp://`, the default).
    StartTlsRequired,
    /// STARTTLS when the server offers it, plain otherwise (`starttls = "opportunistic"`).
    StartTlsOpportunistic,
    /// Plain SMTP (`starttls = "off"`, for a relay on localhost).
    Plain,
}

/// The `[notify.email]` table.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// Its name (`name`, default `email`).
    pub name: String,
    /// SMTP server.
    pub host: String,
    /// Its port (default 587 for `smtp://`, 465 for `smtps://`).
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// User name and password, from `credentials_file`.
    pub credentials: Option<(String, Secret)>,
    /// Limit on each SMTP command.
    pub timeout: Duration,
    /// The least severity sent.
    pub min_severity: Severity,
    /// Trust only these PEM certificates (`ca_file`), not the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl EmailConfig {
    fn scheme(&self) -> &'static str {
        if self.security == Security::Tls { "smtps" } else { "smtp" }
    }
}

const WEBHOOK_KEYS: &[&str] =
    &["name", "url", "format", "bearer_token_file", "timeout", "min_severity", "ca_file"];
const EMAIL_KEYS: &[&str] = &[
    "name",
    "smtp",
    "starttls",
    "from",
    "to",
    "credentials_file",
    "timeout",
    "min_severity",
    "ca_file",
];

/// Reads the `notify` table (`None`: no channels).
pub fn parse(value: Option<&toml::Value>) -> Result<NotifyConfig, ConfigError> {
    let Some(value) = value else { return Ok(NotifyConfig::default()) };
    let table = value.as_table().ok_or_else(|| {
        ConfigError::new("notify", "must be a table ([[notify.webhook]], [notify.email])")
    })?;
    let mut channels = Vec::new();
    for key in table.keys() {
        if key != "webhook" && key != "email" {
            return Err(ConfigError::new(
                format!("notify.{key}"),
                "unknown channel kind (use webhook or email)",
            ));
        }
    }
    if let Some(hooks) = table.get("webhook") {
        let hooks = hooks.as_array().ok_or_else(|| {
            ConfigError::new("notify.webhook", "must be an array of tables: [[notify.webhook]]")
        })?;
        for (index, hook) in hooks.iter().enumerate() {
            let at = format!("notify.webhook[{}]", index + 1);
            channels.push(ChannelConfig::Webhook(webhook(&at, index, hook)?));
        }
    }
    if let Some(email) = table.get("email") {
        channels.push(ChannelConfig::Email(email_channel(email)?));
    }
    let mut names: Vec<&str> = channels.iter().map(ChannelConfig::name).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(ConfigError::new("notify", format!("two channels are named {:?}", pair[0])));
    }
    Ok(NotifyConfig { channels })
}

struct Fields<'a> {
    at: &'a str,
    table: &'a toml::Table,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(format!("{}.{field}", self.at), message)
    }

    fn text(&self, field: &str) -> Result<Option<&str>, ConfigError> {
        match self.table.get(field) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(field, "must be a string")),
        }
    }

    fn check_keys(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        match self.table.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => Err(self.err(key, format!("unknown key (use {})", allowed.join(", ")))),
            None => Ok(()),
        }
    }

    fn timeout(&self) -> Result<Duration, ConfigError> {
        match self.text("timeout")? {
            None => Ok(Duration::from_secs(10)),
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(300) => Ok(d),
                _ => Err(self.err("timeout", format!("{t:?} is not a duration from 100ms to 5m"))),
            },
        }
    }

    fn min_severity(&self) -> Result<Severity, ConfigError> {
        match self.text("min_severity")? {
            None => Ok(Severity::Info),
            Some(s) => Severity::parse(s).ok_or_else(|| {
                self.err("min_severity", format!("{s:?} is not info, warning or critical"))
            }),
        }
    }

    fn name(&self, default: String) -> Result<String, ConfigError> {
        match self.text("name")? {
            None => Ok(default),
            Some(n)
                if !n.is_empty()
                    && n.len() <= 64
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                Ok(n.to_owned())
            }
            Some(_) => Err(self.err("name", "must be 1 to 64 letters, digits, - _ or .")),
        }
    }

    fn ca_file(&self) -> Result<Option<std::path::PathBuf>, ConfigError> {
        let Some(path) = self.text("ca_file")? else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.err("ca_file", format!("cannot read {path}: {e}")))?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(self.err("ca_file", format!("{path} holds no PEM certificate")));
        }
        Ok(Some(path.into()))
    }

    fn secret_file(&self, field: &str) -> Result<Option<String>, ConfigError> {
        let Some(path) = self.text(field)? else { return Ok(None) };
        let text = std::fs::read_to_string(Path::new(path))
            .map_err(|e| self.err(field, format!("cannot read {path}: {e}")))?;
        Ok(Some(text))
    }
}

fn webhook(at: &str, index: usize, value: &toml::Value) -> Result<WebhookConfig, ConfigError> {
    let table = value.as_table().ok_or_else(|| ConfigError::new(at, "must be a table"))?;
    let f = Fields { at, table };
    f.check_keys(WEBHOOK_KEYS)?;
    let url = f.text("url")?.ok_or_else(|| f.err("url", "missing"))?;
    let url = Url::parse(url).map_err(|e| f.err("url", e))?;
    let format = match f.text("format")?.unwrap_or("json") {
        "json" => Format::Json,
        "slack" => Format::Slack,
        "discord" => Format::Discord,
        "ntfy" => Format::Ntfy,
        other => {
            return Err(f.err("format", format!("{other:?} is not json, slack, discord or ntfy")));
        }
    };
    let bearer_token = match f.secret_file("bearer_token_file")? {
        None => None,
        Some(text) => {
            let token = text.trim();
            if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(
                    f.err("bearer_token_file", "must hold one token of visible ASCII characters")
                );
            }
            Some(Secret::new(token.to_owned()))
        }
    };
    Ok(WebhookConfig {
        name: f.name(format!("webhook-{}", index + 1))?,
        url,
        format,
        bearer_token,
        timeout: f.timeout()?,
        min_severity: f.min_severity()?,
        ca_file: f.ca_file()?,
    })
}

fn email_channel(value: &toml::Value) -> Result<EmailConfig, ConfigError> {
    let at = "notify.email";
    let table =
        value.as_table().ok_or_else(|| ConfigError::new(at, "must be a table: [notify.email]"))?;
    let f = Fields { at, table };
    f.check_keys(EMAIL_KEYS)?;
    let smtp = f
        .text("smtp")?
        .ok_or_else(|| f.err("smtp", "missing (smtp://HOST:587 or smtps://HOST:465)"))?;
    let (tls, rest) = if let Some(rest) = smtp.strip_prefix("smtps://") {
        (true, rest)
    } else if let Some(rest) = smtp.strip_prefix("smtp://") {
        (false, rest)
    } else {
        return Err(
            f.err("smtp", format!("{smtp:?} is not smtp://HOST[:PORT] or smtps://HOST[:PORT]"))
        );
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
            host.trim_matches(['[', ']']).to_owned(),
            port.parse().map_err(|_| f.err("smtp", format!("{smtp:?}: bad port")))?,
        ),
        _ => (rest.to_owned(), if tls { 465 } else { 587 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(f.err("smtp", format!("{smtp:?} has no host")));
    }
    let security = match (tls, f.text("starttls")?) {
        (true, None) => Security::Tls,
        (true, Some(_)) => {
            return Err(
                f.err("starttls", "applies to smtp:// only (smtps:// is TLS from the start)")
            );
        }
        (false, None | Some("required")) => Security::StartTlsRequired,
        (false, Some("opportunistic")) => Security::StartTlsOpportunistic,
        (false, Some("off")) => Security::Plain,
        (false, Some(other)) => {
            return Err(
                f.err("starttls", format!("{other:?} is not required, opportunistic or off"))
            );
        }
    };
    let from = f.text("from")?.ok_or_else(|| f.err("from", "missing"))?.to_owned();
    from.parse::<lettre::message::Mailbox>()
        .map_err(|e| f.err("from", format!("{from:?} is not an address: {e}")))?;
    let to: Vec<String> = match table.get("to") {
        Some(toml::Value::String(s)) => vec![s.clone()],
        Some(toml::Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| f.err("to", "must be a list of addresses"))?,
        Some(_) => return Err(f.err("to", "must be a list of addresses")),
        None => return Err(f.err("to", "missing")),
    };
    if to.is_empty() {
        return Err(f.err("to", "needs at least one address"));
    }
    for address in &to {
        address
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| f.err("to", format!("{address:?} is not an address: {e}")))?;
    }
    let credentials = match f.secret_file("credentials_file")? {
        None => None,
        Some(text) => {
            let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
            let pair = match (lines.next(), lines.next()) {
                (Some(user), Some(password)) => Some((user.to_owned(), password.to_owned())),
                (Some(line), None) => {
                    line.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))
                }
                _ => None,
            };
            let Some((user, password)) = pair.filter(|(u, p)| !u.is_empty() && !p.is_empty())
            else {
                return Err(f.err(
                    "credentials_file",
                    "must hold the user name on the first line and the password on the second (or USER:PASSWORD)",
                ));
            };
            if security == Security::Plain {
                return Err(f.err(
                    "credentials_file",
                    "would send the password in clear: use STARTTLS or smtps://",
                ));
            }
            Some((user, Secret::new(password)))
        }
    };
    Ok(EmailConfig {
        name: f.name("email".into())?,
        host,
        port,
        security,
        from,
        to,
        credentials,
        timeout: f.timeout()?,
        min_severity: f.min_severity()?,
        ca_file: f.ca_file()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<NotifyConfig, ConfigError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        parse(table.get("notify"))
    }

    #[test]
    fn urls_split_and_show_no_path() {
        let url = Url::parse("https://hooks.example.com/services/SECRET").unwrap();
        assert_eq!(
            (url.https, url.host.as_str(), url.port, url.path.as_str()),
            (true, "hooks.example.com", 443, "/services/SECRET")
        );
        assert_eq!(url.shown(), "https://hooks.example.com/…");
        let url = Url::parse("http://[::1]:9000").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("::1", 9000, "/"));
        assert_eq!(url.authority(), "[::1]:9000");
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http://user:pw@x/").is_err());
        assert!(Url::parse("http://x:port/").is_err());
    }

    #[test]
    fn channels_parse_and_bad_keys_are_named() {
        let config = parse_text(
            "[[notify.webhook]]\nurl = \"http://127.0.0.1:9000/hook\"\nformat = \"ntfy\"\ntimeout = \"5s\"\n\
             [[notify.webhook]]\nname = \"chat\"\nurl = \"https://example.com/x\"\nformat = \"slack\"\n\
             [notify.email]\nsmtp = \"smtp://mail.example.com\"\nfrom = \"hw@example.com\"\nto = [\"ops@example.com\"]\n",
        )
        .unwrap();
        let names: Vec<&str> = config.channels.iter().map(ChannelConfig::name).collect();
        assert_eq!(names, ["webhook-1", "chat", "email"]);
        let ChannelConfig::Email(email) = &config.channels[2] else { panic!() };
        assert_eq!((email.port, email.security), (587, Security::StartTlsRequired));
        let key = |text: &str| parse_text(text).unwrap_err().key;
        assert_eq!(key("[[notify.webhook]]\nformat = \"json\"\n"), "notify.webhook[1].url");
        assert_eq!(
            key("[[notify.webhook]]\nurl = \"http://x/\"\nformat = \"xml\"\n"),
            "notify.webhook[1].format"
        );
        assert_eq!(
            key("[[notify.webhook]]\nurl = \"http://x/\"\ntimeout = \"1h\"\n"),
            "notify.webhook[1].timeout"
        );
        assert_eq!(
            key("[[notify.webhook]]\nurl = \"http://x/\"\nbearer_token_file = \"/nonexistent\"\n"),
            "notify.webhook[1].bearer_token_file"
        );
        assert_eq!(
            key("[[notify.webhook]]\nurl = \"http://x/\"\nurl2 = 1\n"),
            "notify.webhook[1].url2"
        );
        assert_eq!(key("[notify.email]\nsmtp = \"imap://x\"\n"), "notify.email.smtp");
        assert_eq!(
            key("[notify.email]\nsmtp = \"smtp://x\"\nfrom = \"nobody\"\nto = [\"a@b.c\"]\n"),
            "notify.email.from"
        );
        assert_eq!(
            key("[notify.email]\nsmtp = \"smtp://x\"\nfrom = \"a@b.c\"\nto = []\n"),
            "notify.email.to"
        );
        assert_eq!(key("[notify.pager]\nurl = \"x\"\n"), "notify.pager");
    }
}
