//! The collector's configuration: flags, then `HOSTWATCH_COLLECTOR_*` environment variables,
//! then the TOML file named by `--config`, then defaults. Every problem is a [`ConfigError`]
//! naming the key; `main` prints it on one line and exits 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agent::runtime::read_secret;
use agent::runtime::settings::{ConfigError, Key, Secret, Settings, parse_duration, parse_size};

/// Environment variables are this prefix plus the key in upper case.
pub const ENV_PREFIX: &str = "HOSTWATCH_COLLECTOR_";

/// Every key the collector understands.
pub const KEYS: &[Key] = &[
    Key::value(
        "http",
        "ADDR",
        "page, API, /events and WebSockets (agents at /ingest, browsers at /live) \
         [default: 0.0.0.0:8700]",
    ),
    Key::value(
        "ws",
        "ADDR",
        "WebSockets only, as on --http (for agents set up with it) [default: 0.0.0.0:8701]",
    ),
    Key::value("db", "PATH", "SQLite database [default: ./hostwatch.db]"),
    Key::value("agent_token", "TOKEN", "token every agent may present (prefer --agent-token-file)"),
    Key::value(
        "agent_token_file",
        "PATH",
        "file holding the shared agent token [default: DB.agent-token, generated on first start]",
    ),
    Key::value(
        "agent_tokens_file",
        "PATH",
        "per-host tokens, one `HOST_ID TOKEN` per line; re-read on SIGHUP (removing a line revokes it)",
    ),
    Key::value("admin_token", "TOKEN", "token for writes such as POST /api/broadcast"),
    Key::value("admin_token_file", "PATH", "file holding the admin token"),
    Key::value(
        "viewer_token",
        "TOKEN",
        "require this token (bearer or login cookie) for the page and API",
    ),
    Key::value("viewer_token_file", "PATH", "file holding the viewer token"),
    Key::value(
        "tls_cert",
        "PATH",
        "PEM certificate chain: serve https:// and wss:// on both addresses",
    ),
    Key::value("tls_key", "PATH", "PEM private key of --tls-cert"),
    Key::value(
        "allowed_origins",
        "LIST",
        "comma-separated origins allowed to open /live [default: pages served by this host]",
    ),
    Key::value("retention_raw", "DURATION", "keep raw samples this long [default: 24h]"),
    Key::value(
        "retention_rollup",
        "DURATION",
        "keep 1 min and 1 h rollups this long [default: 30d]",
    ),
    Key::value("max_db_size", "SIZE", "delete the oldest data above this size [default: 8GiB]"),
    Key::value("max_subscribers", "N", "most live subscribers (SSE and /live) [default: 2000]"),
    Key::value("max_connections", "N", "most agent connections [default: 20000]"),
    Key::value(
        "agent_idle_timeout",
        "DURATION",
        "close an agent connection silent this long, and at least 10 of its intervals [default: 60s]",
    ),
    Key::value("max_hosts", "N", "most hosts the shared agent token may create [default: 100000]"),
    Key::value(
        "max_new_hosts_per_minute",
        "N",
        "most new hosts a minute by the shared token, as many at once [default: 600]",
    ),
    Key::value(
        "max_pending_connections",
        "N",
        "most connections that have not sent a request or upgrade yet [default: 1024]",
    ),
    Key::value(
        "alerts",
        "RULES",
        "alert rules, `;`-separated: `METRIC OP VALUE for DURATION` or `silent for DURATION`, or `none` \
         [default: cpu_percent > 90 for 2m; memory_used_percent > 90 for 5m; fs_used_percent > 90 for 5m; silent for 1m]",
    ),
    Key::value(
        "agent_silent_intervals",
        "N",
        "built-in agent-silent rule (when no rule watches silence): a host silent for N of its intervals, at least 10s; 0 turns it off [default: 5]",
    ),
    Key::table(
        "alert",
        "[[alert]]",
        "alert rules: name, metric, mount/interface/disk/sensor, op, threshold, clear, for, hosts, severity, summary (README)",
    ),
    Key::table(
        "notify",
        "[[notify.webhook]] [notify.email]",
        "notification channels: webhooks (json, slack, discord, ntfy) and email over SMTP (README)",
    ),
    Key::value(
        "redis",
        "URL",
        "replicate with the other collectors on this Redis (redis://HOST:PORT/): every collector \
         shows every host [default: off]",
    ),
    Key::value("redis_stream", "KEY", "the Redis stream key [default: hostwatch:stream]"),
    Key::value(
        "redis_max_len",
        "N",
        "keep about this many entries (stored batches) in the stream, MAXLEN ~ [default: 100000]",
    ),
    Key::switch("no_self_monitor", "do not monitor the collector's own host"),
    Key::value(
        "self_interval",
        "DURATION",
        "sampling interval of the self-monitoring [default: 1s]",
    ),
    Key::value("log_level", "LEVEL", "error, warn, info, debug or trace [default: info]"),
    Key::value("config", "PATH", "TOML file with any of the keys above (snake_case)").cli_only(),
    Key::switch("help", "print this help and exit").cli_only(),
    Key::switch("version", "print the version and exit").cli_only(),
];

/// Where the agent token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given in the configuration.
    Given(String),
    /// Read from, or generated into, this file.
    File(PathBuf),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never print a secret, even in debug output.
            TokenSource::Given(_) => write!(f, "Given(<hidden>)"),
            TokenSource::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

/// What the collector was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Serve until stopped.
    Run,
    /// Print help.
    Help,
    /// Print the version.
    Version,
    /// Send a test notification on every channel (`notify-test`).
    NotifyTest,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to do.
    pub command: Command,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// WebSocket listen address.
    pub ws: SocketAddr,
    /// Database path.
    pub db: PathBuf,
    /// The shared agent token; `None` when only per-host tokens are accepted.
    pub agent_token: Option<TokenSource>,
    /// Per-host agent tokens.
    pub agent_tokens_file: Option<PathBuf>,
    /// The admin token, for writes.
    pub admin_token: Option<Secret>,
    /// The viewer token, if the page and API require one.
    pub viewer_token: Option<Secret>,
    /// TLS certificate chain and key, for both listeners.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Origins allowed to open `/live`; empty means "pages served by this host".
    pub allowed_origins: Vec<String>,
    /// Retention and size policy of the database.
    pub policy: crate::storage::maintenance::Policy,
    /// Most live subscribers.
    pub max_subscribers: usize,
    /// Most agent connections.
    pub max_connections: usize,
    /// An agent connection silent this long (and at least ten of its intervals) is closed: a
    /// dead or cut-off agent is noticed then.
    pub agent_idle_timeout: Duration,
    /// Most connections that have not sent a complete request head or upgrade yet.
    pub max_pending_connections: usize,
    /// How many hosts the shared agent token may create.
    pub host_limits: crate::storage::HostLimits,
    /// Alert rules: `--alerts`, then `[[alert]]` tables, then the built-in agent-silent.
    pub alerts: Vec<crate::alerts::Rule>,
    /// Notification channels.
    pub notify: crate::notify::NotifyConfig,
    /// Replication over Redis (`--redis`), if on.
    pub redis: Option<crate::replica::Settings>,
    /// Whether to monitor the collector's own host.
    pub self_monitor: bool,
    /// Self-monitoring interval.
    pub self_interval: Duration,
    /// Log level name.
    pub log_level: String,
}

impl Config {
    /// Reads the configuration from the process's arguments and environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(std::env::args_os().skip(1), |var| std::env::var(var).ok())
    }

    /// Reads the configuration from explicit arguments and an environment lookup.
    pub fn load(
        args: impl IntoIterator<Item = std::ffi::OsString>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let settings = Settings::load(KEYS, args, env, ENV_PREFIX)?;
        let subcommand = match settings.positional.as_slice() {
            [] => None,
            [word] if word == "notify-test" => Some(Command::NotifyTest),
            [word, ..] => {
                return Err(ConfigError::new(word.as_str(), "unexpected argument (see --help)"));
            }
        };
        let command = if settings.switch("help")? {
            Command::Help
        } else if settings.switch("version")? {
            Command::Version
        } else {
            subcommand.unwrap_or(Command::Run)
        };
        let db = settings.get("db").map_or_else(|| PathBuf::from("hostwatch.db"), PathBuf::from);
        let agent_tokens_file = settings.typed("agent_tokens_file", |v| {
            std::fs::read_to_string(v).map_err(|e| format!("cannot read {v}: {e}"))?;
            Ok(PathBuf::from(v))
        })?;
        let agent_token = agent_token_source(&settings, &db, agent_tokens_file.is_some())?;
        let tls = match (settings.get("tls_cert"), settings.get("tls_key")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some(_), None) => {
                return Err(ConfigError::new("tls_key", "missing: --tls-cert needs --tls-key"));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new("tls_cert", "missing: --tls-key needs --tls-cert"));
            }
        };
        let positive = |v: &str| match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{v:?} is not a positive number")),
        };
        let policy = crate::storage::maintenance::Policy {
            retention_raw: settings
                .typed("retention_raw", parse_retention)?
                .unwrap_or(Duration::from_secs(24 * 3600)),
            retention_rollup: settings
                .typed("retention_rollup", parse_retention)?
                .unwrap_or(Duration::from_secs(30 * 24 * 3600)),
            max_bytes: Some(
                settings
                    .typed("max_db_size", |v| {
                        let bytes = parse_size(v)?;
                        if bytes < 1 << 20 {
                            Err(format!("{v:?} is below 1MiB"))
                        } else {
                            Ok(bytes)
                        }
                    })?
                    .unwrap_or(8 << 30),
            ),
        };
        let config = Config {
            command,
            http: settings
                .typed("http", parse_addr)?
                .unwrap_or_else(|| "0.0.0.0:8700".parse().expect("valid")),
            ws: settings
                .typed("ws", parse_addr)?
                .unwrap_or_else(|| "0.0.0.0:8701".parse().expect("valid")),
            db,
            agent_token,
            agent_tokens_file,
            admin_token: checked_token(
                "admin_token",
                read_secret(&settings, "admin_token", "admin_token_file")?,
            )?,
            viewer_token: checked_token(
                "viewer_token",
                read_secret(&settings, "viewer_token", "viewer_token_file")?,
            )?,
            tls,
            allowed_origins: settings
                .get("allowed_origins")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            policy,
            max_subscribers: settings.typed("max_subscribers", positive)?.unwrap_or(2000),
            max_connections: settings.typed("max_connections", positive)?.unwrap_or(20_000),
            agent_idle_timeout: settings
                .typed("agent_idle_timeout", |v| {
                    let d = parse_duration(v)?;
                    if d < Duration::from_secs(1) {
                        Err(format!("{v:?} is below 1s"))
                    } else {
                        Ok(d)
                    }
                })?
                .unwrap_or(Duration::from_secs(60)),
            max_pending_connections: settings
                .typed("max_pending_connections", positive)?
                .unwrap_or(1024),
            host_limits: crate::storage::HostLimits {
                max_hosts: settings.typed("max_hosts", positive)?.unwrap_or(100_000),
                new_per_minute: settings
                    .typed("max_new_hosts_per_minute", positive)?
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                    .unwrap_or(600),
            },
            alerts: alert_rules(&settings)?,
            notify: crate::notify::config::parse(settings.tables.get("notify"))?,
            redis: redis_settings(&settings, positive)?,
            self_monitor: !settings.switch("no_self_monitor")?,
            self_interval: settings
                .typed("self_interval", |v| {
                    let d = parse_duration(v)?;
                    if d < Duration::from_millis(100) {
                        Err(format!("{v:?} is below 100ms"))
                    } else {
                        Ok(d)
                    }
                })?
                .unwrap_or(Duration::from_secs(1)),
            log_level: settings
                .typed("log_level", |v| {
                    v.parse::<log::LevelFilter>().map(|_| v.to_ascii_lowercase()).map_err(|_| {
                        format!("{v:?} is not a log level (error, warn, info, debug, trace)")
                    })
                })?
                .unwrap_or_else(|| "info".into()),
        };
        if config.http == config.ws && config.http.port() != 0 {
            return Err(ConfigError::new(
                "ws",
                format!("{} is also the --http address", config.ws),
            ));
        }
        Ok(config)
    }

    /// The help text for `--help`.
    pub fn help() -> String {
        format!(
            "hostwatch-collector {} — receives hostwatch agents' metrics, stores them in SQLite and serves the live page\n\n\
             Usage: hostwatch-collector [OPTIONS]\n       \
             hostwatch-collector notify-test --config FILE   (send a test notification on every channel)\n\n\
             Options (flags win over environment variables, which win over --config):\n{}\n\
             Exit status: 0 after a clean stop (SIGTERM, SIGINT), 1 on a runtime failure, 2 on bad configuration.\n",
            env!("CARGO_PKG_VERSION"),
            agent::runtime::settings::help_text(KEYS, ENV_PREFIX)
        )
    }
}

/// The rules: `--alerts` (or, without it and without `[[alert]]` tables, the defaults), the
/// `[[alert]]` tables, and the built-in agent-silent when no rule watches silence.
fn alert_rules(settings: &Settings) -> Result<Vec<crate::alerts::Rule>, ConfigError> {
    use crate::alerts::{Condition, agent_silent, parse_rules, rules_from_toml};
    let tables = settings.tables.get("alert");
    let text = settings.typed("alerts", parse_rules)?;
    let off = settings.get("alerts").is_some_and(|t| t.trim().eq_ignore_ascii_case("none"));
    let mut rules = match text {
        Some(rules) => rules,
        None if tables.is_some() => Vec::new(),
        None => {
            parse_rules(crate::alerts::DEFAULT_RULES).map_err(|e| ConfigError::new("alerts", e))?
        }
    };
    if let Some(tables) = tables {
        let taken: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
        let more =
            rules_from_toml(tables, &taken).map_err(|e| ConfigError::new(e.key, e.message))?;
        rules.extend(more);
    }
    let intervals = settings.typed("agent_silent_intervals", |v| {
        v.parse::<u32>().map_err(|_| format!("{v:?} is not a whole number"))
    })?;
    let watches_silence = rules.iter().any(|r| r.condition == Condition::Silent);
    match intervals {
        Some(0) => {}
        Some(n) if !watches_silence => rules.push(agent_silent(n)),
        None if !watches_silence && !off => rules.push(agent_silent(5)),
        _ => {}
    }
    Ok(rules)
}

/// `--redis`, with its stream key and bound; the key and bound alone are an error.
fn redis_settings(
    settings: &Settings,
    positive: impl Fn(&str) -> Result<usize, String>,
) -> Result<Option<crate::replica::Settings>, ConfigError> {
    let url = settings.typed("redis", crate::replica::parse_url)?;
    let stream = settings.typed("redis_stream", |v| {
        if v.is_empty() || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
            Err(format!("{v:?} is not a stream key (no spaces or control characters)"))
        } else {
            Ok(v.to_owned())
        }
    })?;
    let max_len = settings.typed("redis_max_len", positive)?;
    let Some(url) = url else {
        if stream.is_some() || max_len.is_some() {
            let key = if stream.is_some() { "redis_stream" } else { "redis_max_len" };
            return Err(ConfigError::new(key, "needs --redis"));
        }
        return Ok(None);
    };
    Ok(Some(crate::replica::Settings {
        url,
        stream: stream.unwrap_or_else(|| crate::replica::DEFAULT_STREAM.into()),
        max_len: max_len.unwrap_or(crate::replica::DEFAULT_MAX_LEN),
    }))
}

/// Picks the agent token: inline or from a file, whichever comes from the stronger layer. A
/// token file that does not exist yet is generated on first start.
fn agent_token_source(
    settings: &Settings,
    db: &std::path::Path,
    per_host_tokens: bool,
) -> Result<Option<TokenSource>, ConfigError> {
    let inline = settings.source("agent_token");
    let file = settings.source("agent_token_file");
    let use_inline = match (inline, file) {
        // With per-host tokens and no shared one given, only per-host tokens are accepted.
        (None, None) if per_host_tokens => return Ok(None),
        (None, None) => return Ok(Some(TokenSource::File(default_token_path(db)))),
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) if a.rank() == b.rank() => {
            return Err(ConfigError::new(
                "agent_token_file",
                format!("give either agent_token or agent_token_file, not both (from {b})"),
            ));
        }
        (Some(a), Some(b)) => a.rank() < b.rank(),
    };
    if use_inline {
        let token = settings
            .typed("agent_token", |v| {
                if v.trim().is_empty() { Err("is empty".into()) } else { Ok(v.trim().to_owned()) }
            })?
            .unwrap_or_default();
        Ok(Some(TokenSource::Given(token)))
    } else {
        Ok(Some(TokenSource::File(PathBuf::from(
            settings.get("agent_token_file").unwrap_or_default(),
        ))))
    }
}

/// The generated token lives beside the database: `hostwatch.db` → `hostwatch.db.agent-token`.
pub fn default_token_path(db: &std::path::Path) -> PathBuf {
    let mut name =
        db.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "hostwatch.db".into());
    name.push(".agent-token");
    db.with_file_name(name)
}

/// Tokens travel in `Authorization` headers and the login cookie: visible ASCII without
/// separators, at least 8 characters.
fn checked_token(key: &str, token: Option<String>) -> Result<Option<Secret>, ConfigError> {
    if let Some(token) = &token {
        let allowed = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\');
        if token.len() < 8 || !token.chars().all(allowed) {
            return Err(ConfigError::new(
                key,
                "must be at least 8 visible ASCII characters without ; , \" or \\ (for example 32 random hex digits)",
            ));
        }
    }
    Ok(token.map(Secret::new))
}

fn parse_retention(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration < Duration::from_secs(10) {
        return Err(format!("{value:?} is below 10s"));
    }
    Ok(duration)
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("{value:?} is not an address (examples: 0.0.0.0:8700, 127.0.0.1:0, [::]:8700)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        Config::load(args.iter().map(Into::into), |_| None)
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = load(&[]).unwrap();
        assert_eq!(config.http.to_string(), "0.0.0.0:8700");
        assert_eq!(config.ws.to_string(), "0.0.0.0:8701");
        assert_eq!(config.db, PathBuf::from("hostwatch.db"));
        assert_eq!(
            config.agent_token,
            Some(TokenSource::File(PathBuf::from("hostwatch.db.agent-token")))
        );
        assert_eq!(config.policy.retention_raw, Duration::from_secs(86_400));
        assert_eq!(config.policy.max_bytes, Some(8 << 30));
        assert!(config.self_monitor);
    }

    #[test]
    fn token_sources() {
        let config = load(&["--agent-token", "s3cret"]).unwrap();
        assert_eq!(config.agent_token, Some(TokenSource::Given("s3cret".into())));
        assert!(!format!("{config:?}").contains("s3cret"));
        let config =
            load(&["--admin-token", "admin-s3cret", "--viewer-token", "viewer-s3cret"]).unwrap();
        assert!(!format!("{config:?}").contains("s3cret"), "secrets never show in debug output");
        let config = load(&["--db", "/var/lib/hw/h.db"]).unwrap();
        let expected = TokenSource::File(PathBuf::from("/var/lib/hw/h.db.agent-token"));
        assert_eq!(config.agent_token, Some(expected));
        let config = load(&["--agent-token-file", "/nonexistent/t"]).unwrap();
        assert_eq!(config.agent_token, Some(TokenSource::File(PathBuf::from("/nonexistent/t"))));
        let both = load(&["--agent-token", "a", "--agent-token-file", "/etc/hostname"]);
        assert_eq!(both.unwrap_err().key, "agent_token_file");
        // Per-host tokens alone: no shared token is generated.
        let config = load(&["--agent-tokens-file", "/etc/hostname"]).unwrap();
        assert_eq!(config.agent_token, None);
        assert_eq!(load(&["--viewer-token", "short"]).unwrap_err().key, "viewer_token");
        assert_eq!(load(&["--admin-token", "has;semicolon"]).unwrap_err().key, "admin_token");
        assert_eq!(load(&["--tls-cert", "/etc/hostname"]).unwrap_err().key, "tls_key");
        assert_eq!(load(&["--max-db-size", "10KiB"]).unwrap_err().key, "max_db_size");
        assert_eq!(load(&["--retention-raw", "1s"]).unwrap_err().key, "retention_raw");
        assert_eq!(load(&["--agent-idle-timeout", "500ms"]).unwrap_err().key, "agent_idle_timeout");
        assert_eq!(
            load(&["--agent-idle-timeout", "5s"]).unwrap().agent_idle_timeout,
            Duration::from_secs(5)
        );
    }

    fn with_file(text: &str, extra: &[&str]) -> Result<Config, ConfigError> {
        // A file of its own per process and text, none left behind.
        let name = format!("hw-config-{}-{}.toml", std::process::id(), text.len());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).unwrap();
        let mut args = vec!["--config", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let config = load(&args);
        std::fs::remove_file(&path).ok();
        config
    }

    #[test]
    fn alert_rules_come_from_the_flag_the_tables_and_the_built_in() {
        let names = |config: Config| config.alerts.into_iter().map(|r| r.name).collect::<Vec<_>>();
        // The defaults watch silence themselves.
        assert_eq!(names(load(&[]).unwrap()).last().map(String::as_str), Some("silent for 1m"));
        let table =
            "[[alert]]\nname = \"hot\"\nmetric = \"cpu_percent\"\nop = \">\"\nthreshold = 95\n";
        // Tables replace the defaults; the built-in agent-silent watches silence.
        assert_eq!(names(with_file(table, &[]).unwrap()), ["hot", "agent-silent"]);
        assert_eq!(
            names(with_file(table, &["--alerts", "load1 > 8 for 1m"]).unwrap()),
            ["load1 > 8 for 1m", "hot", "agent-silent"]
        );
        assert_eq!(names(with_file(table, &["--agent-silent-intervals", "0"]).unwrap()), ["hot"]);
        assert!(names(load(&["--alerts", "none"]).unwrap()).is_empty());
        assert_eq!(
            names(load(&["--alerts", "none", "--agent-silent-intervals", "3"]).unwrap()),
            ["agent-silent"]
        );
        let clash = with_file(table, &["--alerts", "silent for 1m"]).unwrap();
        assert_eq!(names(clash), ["silent for 1m", "hot"], "a silence rule replaces the built-in");
        let err = with_file(&table.replace("95", "\"x\""), &[]).unwrap_err();
        assert_eq!(err.key, "alert \"hot\".threshold");
        assert_eq!(with_file("alert = 5\n", &[]).unwrap_err().key, "alert");
        assert_eq!(load(&["--alert", "x"]).unwrap_err().key, "--alert", "tables are file-only");
        let config =
            with_file("[[notify.webhook]]\nurl = \"http://127.0.0.1:9/\"\n", &["notify-test"])
                .unwrap();
        assert_eq!((config.command, config.notify.channels.len()), (Command::NotifyTest, 1));
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(load(&["--http", "nowhere"]).unwrap_err().key, "http");
        assert_eq!(load(&["--ws", "1.2.3.4"]).unwrap_err().key, "ws");
        assert_eq!(load(&["--self-interval", "1ms"]).unwrap_err().key, "self_interval");
        assert_eq!(
            load(&["--http", "127.0.0.1:9000", "--ws", "127.0.0.1:9000"]).unwrap_err().key,
            "ws"
        );
        assert_eq!(load(&["--frobnicate"]).unwrap_err().key, "--frobnicate");
        assert_eq!(load(&["--redis", "http://r:6379"]).unwrap_err().key, "redis");
        assert_eq!(load(&["--redis-max-len", "10"]).unwrap_err().key, "redis_max_len");
        assert_eq!(
            load(&["--redis", "redis://r/", "--redis-max-len", "0"]).unwrap_err().key,
            "redis_max_len"
        );
        assert!(load(&[]).unwrap().redis.is_none());
        let redis = load(&["--redis", "redis://127.0.0.1:6379/"]).unwrap().redis.unwrap();
        assert_eq!((redis.stream.as_str(), redis.max_len), ("hostwatch:stream", 100_000));
    }
}
