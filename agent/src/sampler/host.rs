//! Who this host is: the stable host id and the facts sent once per connection in the hello.

use std::path::Path;

use protocol::Hello;

use super::clamp_name as truncate;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Reads the stable host id from a machine-id file (normally `/etc/machine-id`).
pub fn read_host_id(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the host id from {}", path.display()))?;
    let id = text.trim();
    anyhow::ensure!(!id.is_empty(), "{} is empty", path.display());
    Ok(id.to_owned())
}

/// Builds the hello that introduces this host. Its `instance_id` is 0: the caller sets it from
/// the spool's state.
pub fn hello(host_id: &str, interval_ms: u32) -> Hello {
    let system = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .inspect_err(|err| log::warn!("cannot read CPU and memory facts: {err}"))
    .ok();
    let cpus = system.as_ref().map(|s| s.cpus()).unwrap_or_default();
    let cpu_model = cpus.first().map(|c| c.brand().trim().to_owned()).unwrap_or_default();
    Hello {
        protocol_version: protocol::PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        host_id: truncate(host_id.to_owned()),
        hostname: truncate(System::host_name().unwrap_or_else(|_| "unknown".into())),
        os: truncate(System::long_os_version().unwrap_or_default()),
        kernel: truncate(System::kernel_version().unwrap_or_default()),
        arch: truncate(System::cpu_arch()),
        cpu_model: truncate(cpu_model),
        cpu_cores: u16::try_from(cpus.len()).unwrap_or(u16::MAX),
        memory_total_bytes: system.as_ref().map_or(0, System::total_memory),
        boot_time_seconds: System::boot_time().unwrap_or(0),
        interval_ms,
        instance_id: 0,
        // The kernel's `uname -v`; a host without it simply shows none.
        kernel_build: truncate(
            std::fs::read_to_string("/proc/sys/kernel/version")
                .map(|v| v.trim().to_owned())
                .unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_describes_this_host() {
        let hello = hello("abc", 1000);
        assert_eq!(hello.host_id, "abc");
        assert_eq!(hello.protocol_version, protocol::PROTOCOL_VERSION);
        assert!(hello.cpu_cores > 0);
        assert!(hello.memory_total_bytes > 0);
        assert!(!hello.hostname.is_empty());
        assert!(!hello.kernel_build.is_empty(), "/proc/sys/kernel/version");
        hello.check_limits().unwrap();
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary() {
        let s = truncate("é".repeat(200));
        assert!(s.len() <= protocol::Limits::MAX_NAME_BYTES);
        assert!(s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn empty_machine_id_is_an_error() {
        let dir = std::env::temp_dir().join(format!("hw-id-{}", std::process::id()));
        std::fs::write(&dir, "\n").unwrap();
        assert!(read_host_id(&dir).is_err());
        std::fs::write(&dir, "0123abcd\n").unwrap();
        assert_eq!(read_host_id(&dir).unwrap(), "0123abcd");
        std::fs::remove_file(&dir).unwrap();
    }
}
