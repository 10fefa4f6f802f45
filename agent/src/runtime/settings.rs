//! Layered settings for hostwatch's binaries: command-line flags win over environment variables,
//! which win over a TOML file, which wins over built-in defaults.
//!
//! Every key is declared once in a [`Key`] table; its flag is `--key-name`, its environment
//! variable `PREFIX_KEY_NAME` and its TOML key `key_name`. Values stay strings here and are typed
//! by the binary's own config module, so a bad value is reported the same way from every layer,
//! naming the key and where the value came from. Unknown flags and unknown TOML keys are errors.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// One setting a binary understands.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Name in snake_case, as in the TOML file.
    pub name: &'static str,
    /// Whether the flag takes a value (`--interval 1s`) or is a switch (`--once`).
    pub takes_value: bool,
    /// Whether the key may only be given on the command line (modes such as `--help`).
    pub cli_only: bool,
    /// Placeholder for the value in `--help`, such as `DURATION`.
    pub value_name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Whether the key is a TOML table or array of tables, given only in the file
    /// (`[[alert]]`); kept whole in [`Settings::tables`] for the binary to read.
    pub table: bool,
}

impl Key {
    /// A key that takes a value, settable in every layer.
    pub const fn value(name: &'static str, value_name: &'static str, help: &'static str) -> Self {
        Self { name, takes_value: true, cli_only: false, value_name, help, table: false }
    }

    /// A table or array of tables, only in the TOML file.
    pub const fn table(name: &'static str, value_name: &'static str, help: &'static str) -> Self {
        Self { name, takes_value: true, cli_only: false, value_name, help, table: true }
    }

    /// A switch, settable in every layer.
    pub const fn switch(name: &'static str, help: &'static str) -> Self {
        Self { name, takes_value: false, cli_only: false, value_name: "", help, table: false }
    }

    /// The same key, but only on the command line.
    pub const fn cli_only(self) -> Self {
        Self { cli_only: true, ..self }
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable of this name.
    Env(String),
    /// The TOML file at this path.
    File(PathBuf),
}

impl Source {
    /// Strength of the layer: lower wins (flags 0, environment 1, file 2).
    pub fn rank(&self) -> u8 {
        match self {
            Source::Flag => 0,
            Source::Env(_) => 1,
            Source::File(_) => 2,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => write!(f, "command line"),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A configuration problem, naming the key. Binaries print it on one line and exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key (or flag) at fault.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// Creates an error for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A secret value (a token): shows as `<hidden>` in debug output, so printing a configuration
/// never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// The merged raw settings.
#[derive(Debug, Default)]
pub struct Settings {
    values: BTreeMap<&'static str, (String, Source)>,
    /// Every value a flag was given, in order, for keys that may be repeated (`--collector A
    /// --collector B`); [`Settings::get`] sees the last.
    repeated: BTreeMap<&'static str, Vec<String>>,
    /// Words on the command line that are not flags (a subcommand and its operands).
    pub positional: Vec<String>,
    /// The file's tables of keys declared with [`Key::table`], whole.
    pub tables: BTreeMap<&'static str, toml::Value>,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
}

impl Settings {
    /// Reads flags from `args` (without the program name), environment variables through `env`
    /// with `env_prefix`, and the TOML file named by the `config` key, if `keys` has one.
    pub fn load(
        keys: &[Key],
        args: impl IntoIterator<Item = OsString>,
        env: impl Fn(&str) -> Option<String>,
        env_prefix: &str,
    ) -> Result<Self, ConfigError> {
        let mut settings = Settings::default();
        settings.read_flags(keys, args)?;
        for key in keys.iter().filter(|k| (!k.cli_only || k.name == "config") && !k.table) {
            let var = format!("{env_prefix}{}", key.name.to_ascii_uppercase());
            if let Some(value) = env(&var) {
                settings.values.entry(key.name).or_insert((value, Source::Env(var)));
            }
        }
        if let Some((path, _)) = settings.values.get("config") {
            let path = PathBuf::from(path);
            settings.read_file(keys, &path)?;
            settings.file = Some(path);
        }
        Ok(settings)
    }

    fn read_flags(
        &mut self,
        keys: &[Key],
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<(), ConfigError> {
        use lexopt::Arg;
        let mut parser = lexopt::Parser::from_args(args);
        loop {
            let arg = parser.next().map_err(|e| ConfigError::new("command line", e.to_string()))?;
            match arg {
                None => return Ok(()),
                Some(Arg::Long(flag)) => {
                    let flag = flag.to_owned();
                    let name = flag.replace('-', "_");
                    let key =
                        keys.iter().find(|k| k.name == name && !k.table).ok_or_else(|| {
                            ConfigError::new(format!("--{flag}"), "unknown flag (see --help)")
                        })?;
                    let value = if key.takes_value {
                        let value = parser
                            .value()
                            .map_err(|_| ConfigError::new(format!("--{flag}"), "needs a value"))?;
                        value.into_string().map_err(|_| {
                            ConfigError::new(format!("--{flag}"), "value is not valid UTF-8")
                        })?
                    } else {
                        "true".to_owned()
                    };
                    if key.takes_value {
                        self.repeated.entry(key.name).or_default().push(value.clone());
                    }
                    self.values.insert(key.name, (value, Source::Flag));
                }
                Some(Arg::Short('h')) => {
                    self.values.insert("help", ("true".into(), Source::Flag));
                }
                Some(Arg::Short('V')) => {
                    self.values.insert("version", ("true".into(), Source::Flag));
                }
                Some(Arg::Short(c)) => {
                    return Err(ConfigError::new(format!("-{c}"), "unknown flag (see --help)"));
                }
                Some(Arg::Value(word)) => {
                    let word = word.into_string().map_err(|_| {
                        ConfigError::new("command line", "argument is not valid UTF-8")
                    })?;
                    self.positional.push(word);
                }
            }
        }
    }

    fn read_file(&mut self, keys: &[Key], path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            ConfigError::new(
                "config",
                format!("{} is not valid TOML: {}", path.display(), e.message()),
            )
        })?;
        for (name, value) in table {
            let key = keys.iter().find(|k| k.name == name && !k.cli_only).ok_or_else(|| {
                ConfigError::new(&name, format!("unknown key in {}", path.display()))
            })?;
            if key.table {
                if !matches!(value, toml::Value::Table(_) | toml::Value::Array(_)) {
                    return Err(ConfigError::new(
                        &name,
                        format!("must be a table or [[{name}]] tables in {}", path.display()),
                    ));
                }
                self.tables.insert(key.name, value);
                continue;
            }
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(ConfigError::new(
                        &name,
                        format!("must be a string, number or boolean in {}", path.display()),
                    ));
                }
            };
            self.values.entry(key.name).or_insert((value, Source::File(path.to_owned())));
        }
        Ok(())
    }

    /// The raw value of a key, if any layer set it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    /// Whether a switch is on. Accepts `true`/`false`/`1`/`0`/`yes`/`no` from env and file.
    pub fn switch(&self, key: &str) -> Result<bool, ConfigError> {
        Ok(self.typed(key, parse_bool)?.unwrap_or(false))
    }

    /// Parses a key's value with `parse`, reporting failures with the key and its source.
    pub fn typed<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.values.get(key) {
            None => Ok(None),
            Some((value, source)) => parse(value)
                .map(Some)
                .map_err(|message| ConfigError::new(key, format!("{message} (from {source})"))),
        }
    }

    /// Every value of a key that may be given several times: each occurrence of its flag when
    /// the command line set it, else the one value of the environment or the file; each split
    /// on commas and trimmed (`"ws://a, ws://b"`). Empty items are kept, for the caller to
    /// refuse. Empty when no layer set the key.
    pub fn list(&self, key: &str) -> Vec<String> {
        let whole: Vec<&str> = match self.values.get(key) {
            None => return Vec::new(),
            Some((_, Source::Flag)) => self
                .repeated
                .get(key)
                .map(|v| v.iter().map(String::as_str).collect())
                .unwrap_or_default(),
            Some((value, _)) => vec![value.as_str()],
        };
        whole.iter().flat_map(|v| v.split(',')).map(|v| v.trim().to_owned()).collect()
    }

    /// Where a key's value came from, if it was set.
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.values.get(key).map(|(_, s)| s)
    }
}

/// Parses a boolean in the spellings operators use in environment files.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{value:?} is not a boolean (use true or false)")),
    }
}

/// Parses a duration such as `1s`, `500ms`, `2m` or `1h 30m`.
pub fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration ({e}; examples: 1s, 500ms, 2m)"))
}

/// Parses a size in bytes such as `500MiB`, `8GiB`, `2GB` or `1048576`.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 =
        number.parse().map_err(|_| format!("{value:?} is not a size (examples: 500MiB, 8GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        "t" | "tb" => 1000 * 1000 * 1000 * 1000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{value:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    Ok((number * scale as f64) as u64)
}

/// Formats the option list for `--help`.
pub fn help_text(keys: &[Key], env_prefix: &str) -> String {
    let mut out = String::new();
    for key in keys.iter().filter(|k| !k.table) {
        let flag = format!(
            "--{}{}",
            key.name.replace('_', "-"),
            if key.takes_value { format!(" {}", key.value_name) } else { String::new() }
        );
        out.push_str(&format!("  {flag:<28} {}", key.help));
        if !key.cli_only {
            out.push_str(&format!(" [env: {env_prefix}{}]", key.name.to_ascii_uppercase()));
        }
        out.push('\n');
    }
    let tables: Vec<&Key> = keys.iter().filter(|k| k.table).collect();
    if !tables.is_empty() {
        out.push_str("\nIn the --config file only:\n");
        for key in tables {
            out.push_str(&format!("  {:<28} {}\n", key.value_name, key.help));
        }
    }
    out
}

/// Reads a secret given inline as `key` or in a file as `file_key`.
pub fn read_secret(
    settings: &Settings,
    key: &str,
    file_key: &str,
) -> Result<Option<String>, ConfigError> {
    let use_file = match (settings.source(key), settings.source(file_key)) {
        (None, None) => return Ok(None),
        (Some(_), None) => false,
        (None, Some(_)) => true,
        (Some(inline), Some(file)) if inline.rank() == file.rank() => {
            return Err(ConfigError::new(
                file_key,
                format!("give either {key} or {file_key}, not both (from {file})"),
            ));
        }
        (Some(inline), Some(file)) => file.rank() < inline.rank(),
    };
    if !use_file {
        return settings.typed(key, |v| {
            let secret = v.trim();
            if secret.is_empty() { Err("is empty".to_owned()) } else { Ok(secret.to_owned()) }
        });
    }
    settings.typed(file_key, |path| {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(format!("{path} is empty"));
        }
        Ok(secret.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[Key] = &[
        Key {
            name: "config",
            takes_value: true,
            cli_only: true,
            value_name: "PATH",
            help: "file",
            table: false,
        },
        Key {
            name: "interval",
            takes_value: true,
            cli_only: false,
            value_name: "D",
            help: "every",
            table: false,
        },
        Key {
            name: "token",
            takes_value: true,
            cli_only: false,
            value_name: "T",
            help: "secret",
            table: false,
        },
        Key {
            name: "once",
            takes_value: false,
            cli_only: true,
            value_name: "",
            help: "one",
            table: false,
        },
    ];

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("hw-settings-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_beat_env_which_beats_file() {
        let file = temp_file("layers.toml", "interval = \"5s\"\ntoken = \"file\"\n");
        let env = |var: &str| match var {
            "HW_TOKEN" => Some("env".to_owned()),
            "HW_INTERVAL" => Some("3s".to_owned()),
            _ => None,
        };
        let s = Settings::load(
            KEYS,
            args(&["--config", file.to_str().unwrap(), "--interval=2s", "--once"]),
            env,
            "HW_",
        )
        .unwrap();
        assert_eq!(s.get("interval"), Some("2s"));
        assert_eq!(s.get("token"), Some("env"));
        assert!(s.switch("once").unwrap());
        assert_eq!(s.source("token"), Some(&Source::Env("HW_TOKEN".into())));
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn file_fills_in_what_nothing_else_set() {
        let file = temp_file("fill.toml", "interval = \"5s\"\n");
        let s = Settings::load(KEYS, args(&["--config", file.to_str().unwrap()]), |_| None, "HW_")
            .unwrap();
        assert_eq!(s.get("interval"), Some("5s"));
        let err = s.typed("interval", |_| Err::<(), _>("bad".to_owned())).unwrap_err();
        assert_eq!(err.key, "interval");
        assert!(err.message.contains(file.to_str().unwrap()), "{err}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn unknown_file_keys_and_flags_are_errors_naming_the_key() {
        let file = temp_file("unknown.toml", "intervall = \"5s\"\n");
        let err =
            Settings::load(KEYS, args(&["--config", file.to_str().unwrap()]), |_| None, "HW_")
                .unwrap_err();
        assert_eq!(err.key, "intervall");
        let err = Settings::load(KEYS, args(&["--bogus"]), |_| None, "HW_").unwrap_err();
        assert_eq!(err.key, "--bogus");
        let err = Settings::load(KEYS, args(&["--interval"]), |_| None, "HW_").unwrap_err();
        assert_eq!(err.to_string(), "--interval: needs a value");
        // Mode switches cannot hide in a file.
        let file2 = temp_file("mode.toml", "once = true\n");
        let err =
            Settings::load(KEYS, args(&["--config", file2.to_str().unwrap()]), |_| None, "HW_")
                .unwrap_err();
        assert_eq!(err.key, "once");
        std::fs::remove_file(file).unwrap();
        std::fs::remove_file(file2).unwrap();
    }

    #[test]
    fn invalid_toml_and_missing_file_name_the_config_key() {
        let file = temp_file("invalid.toml", "interval = \n");
        let err =
            Settings::load(KEYS, args(&["--config", file.to_str().unwrap()]), |_| None, "HW_")
                .unwrap_err();
        assert_eq!(err.key, "config");
        let err = Settings::load(KEYS, args(&["--config", "/nonexistent/x.toml"]), |_| None, "HW_")
            .unwrap_err();
        assert_eq!(err.key, "config");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn durations_and_booleans_parse() {
        assert_eq!(parse_duration("500ms"), Ok(std::time::Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(std::time::Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
        assert_eq!(parse_bool("yes"), Ok(true));
        assert!(parse_bool("maybe").is_err());
    }
}
