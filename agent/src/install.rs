//! `hostwatch-agent install`: puts the agent in place as a hardened systemd service in one step.
//!
//! Under `--root` (default `/`) it writes:
//! - `usr/local/bin/hostwatch-agent` — this very binary (mode 0755);
//! - `etc/hostwatch/agent.toml` — the configuration with the token (root-only, mode 0600); the
//!   unit hands it to the unprivileged service as a systemd credential;
//! - `etc/hostwatch/ca.pem` — a copy of `--ca-file`, if given;
//! - `etc/systemd/system/hostwatch-agent.service` — the unit from `systemd/`.
//!
//! Then, when installing to `/`, it runs `systemctl daemon-reload` and
//! `systemctl enable --now hostwatch-agent` (unless `--no-start`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

use crate::config::Config;

/// The unit file, embedded so the binary can install itself.
pub const UNIT: &str = include_str!("../../systemd/hostwatch-agent.service");

/// Where the files go under the root.
const BINARY: &str = "usr/local/bin/hostwatch-agent";
const CONFIG: &str = "etc/hostwatch/agent.toml";
const CA: &str = "etc/hostwatch/ca.pem";
const UNIT_PATH: &str = "etc/systemd/system/hostwatch-agent.service";

/// The installed configuration: what the operator gave, nothing the defaults already say.
#[derive(Serialize)]
struct InstalledConfig {
    collector: String,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spool_max: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
}

/// Installs under `root`; starts the service when `start` and `root` is `/`.
pub fn install(config: &Config, root: &Path, start: bool) -> anyhow::Result<()> {
    let given = |key: &str| config.given.contains(&key);
    config.collector.as_ref().context("install needs --collector")?;
    // Several addresses go to the file as the same comma list the agent reads back.
    let collector = config.collectors.join(",");
    let token = config.token.clone().context("install needs --token-file or --token")?;

    let binary = root.join(BINARY);
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bytes = std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    write_file(&binary, &bytes, 0o755)?;

    let ca_file = match &config.ca_file {
        Some(source) => {
            let pem = std::fs::read(source)
                .with_context(|| format!("cannot read {}", source.display()))?;
            write_file(&root.join(CA), &pem, 0o644)?;
            Some(format!("/{CA}"))
        }
        None => None,
    };
    let installed = InstalledConfig {
        collector,
        token,
        host_id: given("host_id").then(|| config.host_id.clone()),
        interval: given("interval")
            .then(|| humantime::format_duration(config.interval).to_string()),
        spool_max: given("spool_max").then_some(config.spool_max),
        ca_file,
        log_level: given("log_level").then(|| config.log_level.clone()),
    };
    let text = format!(
        "# hostwatch-agent configuration, written by `hostwatch-agent install`.\n\
         # Holds the agent token: keep it root-only (mode 0600). Keys: see `hostwatch-agent --help`.\n{}",
        toml::to_string(&installed).context("encoding the configuration")?
    );
    write_file(&root.join(CONFIG), text.as_bytes(), 0o600)?;
    let unit = root.join(UNIT_PATH);
    write_file(&unit, UNIT.as_bytes(), 0o644)?;

    println!("installed {}", binary.display());
    println!("installed {} (mode 0600)", root.join(CONFIG).display());
    println!("installed {}", unit.display());
    if root == Path::new("/") && start {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", "hostwatch-agent.service"])?;
        println!("started: systemctl status hostwatch-agent; journalctl -u hostwatch-agent -f");
    } else {
        println!("to start it: systemctl daemon-reload && systemctl enable --now hostwatch-agent");
    }
    Ok(())
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .context("cannot run systemctl; start the service by hand or use --no-start")?;
    anyhow::ensure!(status.success(), "systemctl {} failed ({status})", args.join(" "));
    Ok(())
}

/// Writes a file atomically (temporary file, then rename) with the given mode, creating its
/// directory. The mode is set at creation, so a secret is never briefly world-readable.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().context("path without a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp: PathBuf =
        dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    // A leftover from an interrupted install would make create_new fail.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    // The umask may have narrowed the mode at creation; set it exactly.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}
