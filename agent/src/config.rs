//! The agent's configuration: flags, then `HOSTWATCH_*` environment variables, then the TOML
//! file named by `--config`, then defaults. Every problem is a [`ConfigError`] naming the key;
//! `main` prints it on one line and exits 2.

use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::read_secret;
use crate::runtime::settings::{ConfigError, Key, Settings, parse_duration};

/// Environment variables are this prefix plus the key in upper case, such as `HOSTWATCH_TOKEN`.
pub const ENV_PREFIX: &str = "HOSTWATCH_";

/// The spool keeps one hour of samples unless `--spool-max` says otherwise.
const DEFAULT_SPOOL_SECONDS: u64 = 3600;

/// Every key the agent understands.
pub const KEYS: &[Key] = &[
    Key::value(
        "collector",
        "URL",
        "collector ingest URL, ws://HOST:8701/ingest or wss://…; several (repeat the flag or \
         comma-separate them) to fail over in turn",
    ),
    Key::value("token", "TOKEN", "agent token (prefer --token-file: flags show in ps)"),
    Key::value("token_file", "PATH", "file holding the agent token"),
    Key::value("host_id", "ID", "stable host id [default: /etc/machine-id]"),
    Key::value("interval", "DURATION", "sampling interval [default: 1s]"),
    Key::value(
        "spool_dir",
        "PATH",
        "unacknowledged samples survive restarts here \
         [default: $STATE_DIRECTORY or ./hostwatch-agent-spool]",
    ),
    Key::value(
        "spool_max",
        "SAMPLES",
        "most samples kept while the collector is away [default: one hour]",
    ),
    Key::value(
        "ca_file",
        "PATH",
        "PEM CA certificates to trust for wss:// (instead of the system's)",
    ),
    Key::value("log_level", "LEVEL", "error, warn, info, debug or trace [default: info]"),
    Key::value("config", "PATH", "TOML file with any of the keys above (snake_case)").cli_only(),
    Key::switch("once", "print one sample as JSON and exit").cli_only(),
    Key::switch("check_config", "check the configuration, print it (token hidden) and exit")
        .cli_only(),
    Key::value("root", "DIR", "install: install under DIR instead of / (images, tests)").cli_only(),
    Key::switch("no_start", "install: do not run systemctl enable --now").cli_only(),
    Key::switch("help", "print this help and exit").cli_only(),
    Key::switch("version", "print the version and exit").cli_only(),
];

/// What the agent was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Sample and push until told to stop.
    Run,
    /// Print one sample as JSON.
    Once,
    /// Validate and print the configuration.
    CheckConfig,
    /// Print help.
    Help,
    /// Print the version.
    Version,
    /// Install the binary, configuration and systemd unit.
    Install {
        /// Where `/` is (another root for images and tests).
        root: PathBuf,
        /// Whether to run `systemctl enable --now` afterwards.
        start: bool,
    },
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    /// What to do.
    pub command: Command,
    /// Collector ingest URL (`ws://` or `wss://`); required to run. The first of
    /// [`Config::collectors`].
    pub collector: Option<String>,
    /// Every collector ingest URL, in the order given: the agent starts with the first and moves
    /// to the next, round-robin, when its collector is unreachable.
    pub collectors: Vec<String>,
    /// The agent token; required to run.
    pub token: Option<String>,
    /// Stable host id.
    pub host_id: String,
    /// Sampling interval.
    pub interval: Duration,
    /// Directory of the on-disk spool.
    pub spool_dir: PathBuf,
    /// Most samples the spool keeps.
    pub spool_max: usize,
    /// CA certificates for `wss://`.
    pub ca_file: Option<PathBuf>,
    /// Log level name.
    pub log_level: String,
    /// Keys some layer set explicitly (the rest are defaults), for `install`.
    pub given: Vec<&'static str>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never print it, even in debug output.
        f.debug_struct("Config")
            .field("command", &self.command)
            .field("collector", &self.collector)
            .field("collectors", &self.collectors)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("host_id", &self.host_id)
            .field("interval", &self.interval)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max", &self.spool_max)
            .field("ca_file", &self.ca_file)
            .field("log_level", &self.log_level)
            .finish()
    }
}

impl Config {
    /// Reads the configuration from the process's arguments and environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(std::env::args_os().skip(1), |var| std::env::var(var).ok())
    }

    /// Reads the configuration from explicit arguments (without the program name) and an
    /// environment lookup.
    pub fn load(
        args: impl IntoIterator<Item = std::ffi::OsString>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let state_directory = env("STATE_DIRECTORY");
        let settings = Settings::load(KEYS, args, env, ENV_PREFIX)?;
        let install = match settings.positional.as_slice() {
            [] => false,
            [word] if word == "install" => true,
            [word, ..] => {
                return Err(ConfigError::new(word.as_str(), "unexpected argument (see --help)"));
            }
        };
        if !install && (settings.source("root").is_some() || settings.source("no_start").is_some())
        {
            return Err(ConfigError::new("root", "--root and --no-start only apply to `install`"));
        }
        let command = if settings.switch("help")? {
            Command::Help
        } else if settings.switch("version")? {
            Command::Version
        } else if settings.switch("once")? {
            Command::Once
        } else if settings.switch("check_config")? {
            Command::CheckConfig
        } else if install {
            Command::Install {
                root: settings.get("root").map_or_else(|| PathBuf::from("/"), PathBuf::from),
                start: !settings.switch("no_start")?,
            }
        } else {
            Command::Run
        };
        if matches!(command, Command::Help | Command::Version) {
            return Ok(Self::defaults(command));
        }

        let interval =
            settings.typed("interval", parse_interval)?.unwrap_or(Duration::from_secs(1));
        let default_spool_max = DEFAULT_SPOOL_SECONDS.div_ceil(interval.as_secs().max(1)) as usize
            * (1000 / interval.as_millis().clamp(1, 1000) as usize);
        let collectors = parse_collectors(&settings)?;
        let config = Config {
            collector: collectors.first().cloned(),
            collectors,
            token: read_token(&settings)?,
            host_id: match settings.typed("host_id", parse_host_id)? {
                Some(id) => id,
                None => crate::sampler::read_host_id("/etc/machine-id".as_ref())
                    .map_err(|e| ConfigError::new("host_id", format!("{e:#}; give --host-id")))?,
            },
            interval,
            spool_dir: settings.get("spool_dir").map(PathBuf::from).unwrap_or_else(|| {
                state_directory
                    .map(|d| PathBuf::from(d.split(':').next().unwrap_or(&d)))
                    .unwrap_or_else(|| PathBuf::from("hostwatch-agent-spool"))
            }),
            spool_max: settings.typed("spool_max", parse_spool_max)?.unwrap_or(default_spool_max),
            ca_file: settings.typed("ca_file", parse_readable_file)?,
            log_level: settings
                .typed("log_level", parse_log_level)?
                .unwrap_or_else(|| "info".into()),
            given: KEYS.iter().map(|k| k.name).filter(|k| settings.source(k).is_some()).collect(),
            command,
        };
        if matches!(config.command, Command::Run | Command::CheckConfig | Command::Install { .. }) {
            if config.collector.is_none() {
                return Err(ConfigError::new(
                    "collector",
                    "missing: give --collector ws://HOST:8701/ingest (or HOSTWATCH_COLLECTOR)",
                ));
            }
            if config.token.is_none() {
                return Err(ConfigError::new(
                    "token",
                    "missing: give --token-file PATH or --token TOKEN (or HOSTWATCH_TOKEN_FILE)",
                ));
            }
        }
        if config.ca_file.is_some() && !config.collectors.iter().any(|c| c.starts_with("wss://")) {
            return Err(ConfigError::new("ca_file", "only applies to a wss:// collector URL"));
        }
        Ok(config)
    }

    fn defaults(command: Command) -> Self {
        Config {
            command,
            collector: None,
            collectors: Vec::new(),
            token: None,
            host_id: String::new(),
            interval: Duration::from_secs(1),
            spool_dir: PathBuf::new(),
            spool_max: 0,
            ca_file: None,
            log_level: "info".into(),
            given: Vec::new(),
        }
    }

    /// The help text for `--help`.
    pub fn help() -> String {
        format!(
            "hostwatch-agent {} — samples this host and pushes the metrics to a hostwatch collector\n\n\
             Usage: hostwatch-agent --collector URL --token-file PATH [OPTIONS]\n\
             \u{20}      hostwatch-agent install --collector URL --token-file PATH [--root DIR] [--no-start] [OPTIONS]\n\
             \u{20}      hostwatch-agent --once\n\n\
             `install` places the binary in /usr/local/bin, the configuration (token included, mode 0600)\n\
             in /etc/hostwatch/agent.toml and the hardened unit in /etc/systemd/system, then runs\n\
             `systemctl enable --now hostwatch-agent`.\n\n\
             Options (flags win over environment variables, which win over --config):\n{}\n\
             Exit status: 0 after a clean stop (SIGTERM, SIGINT), 1 on a runtime failure, 2 on bad configuration.\n",
            env!("CARGO_PKG_VERSION"),
            crate::runtime::settings::help_text(KEYS, ENV_PREFIX)
        )
    }

    /// The interval in whole milliseconds, as the protocol carries it.
    pub fn interval_ms(&self) -> u32 {
        u32::try_from(self.interval.as_millis()).unwrap_or(u32::MAX)
    }
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = parse_duration(value)?;
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(3600) {
        return Err(format!("{value:?} is out of range (100ms to 1h)"));
    }
    Ok(interval)
}

fn parse_collector_url(value: &str) -> Result<String, String> {
    let uri: async_tungstenite::tungstenite::http::Uri =
        value.parse().map_err(|e| format!("{value:?} is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("ws" | "wss") => {}
        _ => return Err(format!("{value:?} must start with ws:// or wss://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{value:?} has no host"));
    }
    Ok(value.to_owned())
}

/// Every collector address from the strongest layer that gives any, each checked: the error
/// names the bad address and where it came from.
fn parse_collectors(settings: &Settings) -> Result<Vec<String>, ConfigError> {
    let source = match settings.source("collector") {
        Some(source) => source.to_string(),
        None => return Ok(Vec::new()),
    };
    let mut collectors: Vec<String> = Vec::new();
    for (index, value) in settings.list("collector").into_iter().enumerate() {
        let at = |message: String| {
            ConfigError::new(
                "collector",
                format!("address {}: {message} (from {source})", index + 1),
            )
        };
        if value.is_empty() {
            return Err(at("is empty (a stray comma?)".to_owned()));
        }
        let url = parse_collector_url(&value).map_err(at)?;
        if collectors.contains(&url) {
            return Err(at(format!("{url:?} is listed twice")));
        }
        collectors.push(url);
    }
    Ok(collectors)
}

fn parse_host_id(value: &str) -> Result<String, String> {
    let id = value.trim();
    if id.is_empty() || id.len() > protocol::Limits::MAX_NAME_BYTES {
        return Err(format!("must be 1 to {} bytes", protocol::Limits::MAX_NAME_BYTES));
    }
    if id.chars().any(|c| c.is_control() || c == '/' || c.is_whitespace()) {
        return Err(format!("{id:?} must not contain whitespace, '/' or control characters"));
    }
    Ok(id.to_owned())
}

fn parse_spool_max(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{value:?} is not a positive number of samples")),
    }
}

fn parse_readable_file(value: &str) -> Result<PathBuf, String> {
    std::fs::File::open(value).map_err(|e| format!("cannot read {value}: {e}"))?;
    Ok(PathBuf::from(value))
}

fn parse_log_level(value: &str) -> Result<String, String> {
    value
        .parse::<log::LevelFilter>()
        .map(|_| value.to_ascii_lowercase())
        .map_err(|_| format!("{value:?} is not a log level (error, warn, info, debug, trace)"))
}

/// Reads the token from `token` or `token_file`, whichever comes from the stronger layer; the
/// two in the same layer are ambiguous and refused.
pub fn read_token(settings: &Settings) -> Result<Option<String>, ConfigError> {
    read_secret(settings, "token", "token_file")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        Config::load(args.iter().map(Into::into), |_| None)
    }

    const BASE: [&str; 6] = ["--collector", "ws://c:8701/ingest", "--token", "t", "--host-id", "h"];

    #[test]
    fn defaults_follow_the_interval() {
        let config = load(&BASE).unwrap();
        assert_eq!(config.command, Command::Run);
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.spool_max, 3600);
        let fast = load(&[&BASE[..], &["--interval", "500ms"]].concat()).unwrap();
        assert_eq!(fast.spool_max, 7200);
        let slow = load(&[&BASE[..], &["--interval", "10s"]].concat()).unwrap();
        assert_eq!(slow.spool_max, 360);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&[&str], &str)] = &[
            (&["--interval", "fast"], "interval"),
            (&["--interval", "10ms"], "interval"),
            (&["--collector", "http://x/ingest"], "collector"),
            (&["--spool-max", "0"], "spool_max"),
            (&["--log-level", "loud"], "log_level"),
            (&["--token-file", "/etc/hostname"], "token_file"),
            (&["--host-id", "a b"], "host_id"),
            (&["--ca-file", "/nonexistent"], "ca_file"),
        ];
        for (extra, key) in cases {
            let err = load(&[&BASE[..], extra].concat()).unwrap_err();
            assert_eq!(&err.key, key, "{extra:?} gave {err}");
        }
    }

    #[test]
    fn a_token_file_from_a_stronger_layer_wins() {
        let env = |var: &str| (var == "HOSTWATCH_TOKEN").then(|| "from-env".to_owned());
        let dir = std::env::temp_dir().join(format!("hw-token-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let args = [
            "--collector",
            "ws://c/ingest",
            "--host-id",
            "h",
            "--token-file",
            dir.to_str().unwrap(),
        ];
        let config = Config::load(args.iter().map(Into::into), env).unwrap();
        assert_eq!(config.token.as_deref(), Some("from-file"));
        let args =
            ["--collector", "ws://c/ingest", "--host-id", "h", "--token-file", "/nonexistent"];
        assert_eq!(Config::load(args.iter().map(Into::into), env).unwrap_err().key, "token_file");
        std::fs::remove_file(dir).unwrap();
    }

    #[test]
    fn running_needs_a_collector_and_a_token_but_once_does_not() {
        assert_eq!(load(&["--host-id", "h"]).unwrap_err().key, "collector");
        assert_eq!(
            load(&["--host-id", "h", "--collector", "ws://c/ingest"]).unwrap_err().key,
            "token"
        );
        assert_eq!(load(&["--host-id", "h", "--once"]).unwrap().command, Command::Once);
    }

    #[test]
    fn several_collectors_from_repeated_flags_a_comma_list_or_the_environment() {
        let config = load(&[
            "--collector",
            "ws://a:8701/ingest, ws://b:8701/ingest",
            "--collector",
            "wss://c/ingest",
            "--token",
            "t",
            "--host-id",
            "h",
        ])
        .unwrap();
        assert_eq!(
            config.collectors,
            ["ws://a:8701/ingest", "ws://b:8701/ingest", "wss://c/ingest"]
        );
        assert_eq!(config.collector.as_deref(), Some("ws://a:8701/ingest"));
        let env = |var: &str| match var {
            "HOSTWATCH_COLLECTOR" => Some("ws://a/ingest,ws://b/ingest".to_owned()),
            "HOSTWATCH_TOKEN" => Some("t".to_owned()),
            "HOSTWATCH_HOST_ID" => Some("h".to_owned()),
            _ => None,
        };
        let config = Config::load(Vec::<std::ffi::OsString>::new(), env).unwrap();
        assert_eq!(config.collectors, ["ws://a/ingest", "ws://b/ingest"]);
        // One flag replaces the environment's whole list.
        let config = Config::load(["--collector", "ws://z/ingest"].map(Into::into), env).unwrap();
        assert_eq!(config.collectors, ["ws://z/ingest"]);
    }

    #[test]
    fn a_bad_collector_in_the_list_is_named() {
        let cases: &[(&str, &str)] = &[
            ("ws://a/ingest,http://b/ingest", "address 2: \"http://b/ingest\""),
            ("ws://a/ingest,,ws://b/ingest", "address 2: is empty"),
            ("ws://a/ingest,", "address 2: is empty"),
            ("ws://a/ingest,ws://a/ingest", "address 2: \"ws://a/ingest\" is listed twice"),
            ("ws:///ingest", "address 1: \"ws:///ingest\""),
        ];
        for (list, expected) in cases {
            let err = load(&["--collector", list, "--token", "t", "--host-id", "h"]).unwrap_err();
            assert_eq!(err.key, "collector");
            assert!(err.message.contains(expected), "{list:?} gave {err}");
        }
        let err = load(&[&BASE[..], &["--collector", "ftp://x"]].concat()).unwrap_err();
        assert!(err.message.contains("address 2: \"ftp://x\""), "{err}");
    }

    #[test]
    fn environment_fills_in_and_state_directory_sets_the_spool() {
        let env = |var: &str| match var {
            "HOSTWATCH_COLLECTOR" => Some("wss://c/ingest".to_owned()),
            "HOSTWATCH_TOKEN" => Some("secret".to_owned()),
            "HOSTWATCH_HOST_ID" => Some("h".to_owned()),
            "STATE_DIRECTORY" => Some("/var/lib/hostwatch-agent".to_owned()),
            _ => None,
        };
        let config = Config::load(Vec::<std::ffi::OsString>::new(), env).unwrap();
        assert_eq!(config.collector.as_deref(), Some("wss://c/ingest"));
        assert_eq!(config.spool_dir, PathBuf::from("/var/lib/hostwatch-agent"));
        assert!(!format!("{config:?}").contains("secret"));
    }
}
