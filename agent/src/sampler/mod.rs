//! Collection: turns this host's state into a [`protocol::Sample`]. Knows nothing of sockets.
//!
//! Each metric area is collected on its own; an area that fails (no temperature sensors, an
//! unreadable file) is left out of the sample and logged at a limited rate, and never aborts the
//! sample. Sampling refreshes only what is sent: no per-process scan beyond counting `/proc`.

mod cpu;
mod host;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{
    DiskIo, Filesystem, LoadAverage, Memory, NetworkInterface, Sample, Swap, Temperature,
};
use sysinfo::{
    Components, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System,
};

pub use host::{hello, read_host_id};

/// How often one failing area may log a warning.
const WARN_EVERY: Duration = Duration::from_secs(600);

/// How often the list of temperature sensors is rescanned (sensors rarely appear at run time).
const SENSOR_RESCAN_EVERY: Duration = Duration::from_secs(600);

/// Owns the sysinfo handles between samples, so each sample only refreshes values.
///
/// A handle sysinfo cannot create on this host is `None`, and its area is left out.
pub struct Sampler {
    system: Option<System>,
    networks: Option<Networks>,
    disks: Option<Disks>,
    components: Option<Components>,
    components_scanned: Instant,
    warned: HashMap<&'static str, Instant>,
}

impl Sampler {
    /// Creates a sampler; the first sample is complete (counters are cumulative, no warm-up).
    pub fn new() -> Self {
        Self {
            system: usable("memory", System::new_with_specifics(RefreshKind::nothing())),
            networks: usable("network", Networks::new_with_refreshed_list()),
            disks: usable("disk", Disks::new_with_refreshed_list_specifics(disk_refresh())),
            components: usable("temperature", Components::new_with_refreshed_list()),
            components_scanned: Instant::now(),
            warned: HashMap::new(),
        }
    }

    /// Takes one sample, stamped with `seq` and `ts_ms`.
    pub fn sample(&mut self, seq: u64, ts_ms: u64) -> Sample {
        let (cpu, cores) = match cpu::read() {
            Some((total, cores)) => (Some(total), cores),
            None => {
                self.warn("cpu", "cannot read /proc/stat");
                (None, Vec::new())
            }
        };
        let (memory, swap) = self.memory();
        let load = self.load();
        let uptime_seconds = System::uptime().ok();
        let process_count = count_processes();
        if process_count.is_none() {
            self.warn("processes", "cannot list /proc");
        }
        let networks = self.networks();
        let (filesystems, disks) = self.disks();
        let temperatures = self.temperatures();
        Sample {
            seq,
            ts_ms,
            cpu,
            cores,
            load,
            memory,
            swap,
            networks,
            filesystems,
            disks,
            uptime_seconds,
            process_count,
            temperatures,
        }
    }

    fn memory(&mut self) -> (Option<Memory>, Option<Swap>) {
        let Some(system) = self.system.as_mut() else {
            return (None, None);
        };
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        let (total, available) = (system.total_memory(), system.available_memory());
        let swap = Swap { total_bytes: system.total_swap(), used_bytes: system.used_swap() };
        if total == 0 {
            self.warn("memory", "cannot read /proc/meminfo");
            return (None, None);
        }
        let memory = Memory {
            total_bytes: total,
            used_bytes: total.saturating_sub(available),
            available_bytes: available,
        };
        (Some(memory), Some(swap))
    }

    fn load(&mut self) -> Option<LoadAverage> {
        match System::load_average() {
            Ok(load) => Some(LoadAverage {
                one: load.one as f32,
                five: load.five as f32,
                fifteen: load.fifteen as f32,
            }),
            Err(err) => {
                self.warn("load", &format!("cannot read the load average: {err}"));
                None
            }
        }
    }

    fn networks(&mut self) -> Vec<NetworkInterface> {
        let Some(networks) = self.networks.as_mut() else {
            return Vec::new();
        };
        networks.refresh(true);
        let mut list: Vec<NetworkInterface> = networks
            .iter()
            // Loopback is not traffic of the host, and an interface that never moved a byte
            // (a down ifb or dummy device) would only cost bytes on every sample.
            .filter(|(name, data)| {
                name.as_os_str() != "lo"
                    && (data.total_received() > 0 || data.total_transmitted() > 0)
            })
            .map(|(name, data)| NetworkInterface {
                name: name.to_string_lossy().into_owned(),
                rx_bytes: data.total_received(),
                tx_bytes: data.total_transmitted(),
                rx_packets: data.total_packets_received(),
                tx_packets: data.total_packets_transmitted(),
                rx_errors: data.total_errors_on_received(),
                tx_errors: data.total_errors_on_transmitted(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list.truncate(protocol::Limits::MAX_INTERFACES);
        list
    }

    fn disks(&mut self) -> (Vec<Filesystem>, Vec<DiskIo>) {
        let Some(disks) = self.disks.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        disks.refresh_specifics(true, disk_refresh());
        let mut filesystems: Vec<Filesystem> = Vec::new();
        let mut devices: Vec<DiskIo> = Vec::new();
        for disk in disks.iter() {
            let mount_point = disk.mount_point().to_string_lossy().into_owned();
            if disk.total_space() > 0 && !filesystems.iter().any(|f| f.mount_point == mount_point) {
                filesystems.push(Filesystem {
                    mount_point,
                    total_bytes: disk.total_space(),
                    available_bytes: disk.available_space(),
                });
            }
            // Several mounts of one device (bind mounts, btrfs subvolumes) count its I/O once.
            let name = disk.name().to_string_lossy();
            let device = name.strip_prefix("/dev/").unwrap_or(&name).to_owned();
            let usage = disk.usage();
            if !devices.iter().any(|d| d.device == device) {
                devices.push(DiskIo {
                    device,
                    read_bytes: usage.total_read_bytes,
                    written_bytes: usage.total_written_bytes,
                });
            }
        }
        filesystems.truncate(protocol::Limits::MAX_FILESYSTEMS);
        devices.truncate(protocol::Limits::MAX_DISKS);
        (filesystems, devices)
    }

    fn temperatures(&mut self) -> Vec<Temperature> {
        let Some(components) = self.components.as_mut() else {
            return Vec::new();
        };
        if self.components_scanned.elapsed() >= SENSOR_RESCAN_EVERY {
            components.refresh(true);
            self.components_scanned = Instant::now();
        } else {
            for component in components.iter_mut() {
                component.refresh();
            }
        }
        let mut list: Vec<Temperature> = components
            .iter()
            .filter_map(|c| {
                let celsius = c.temperature()?;
                celsius.is_finite().then(|| Temperature { label: c.label().to_owned(), celsius })
            })
            .collect();
        list.truncate(protocol::Limits::MAX_TEMPERATURES);
        list
    }

    /// Logs a failing area at most once per [`WARN_EVERY`].
    fn warn(&mut self, area: &'static str, message: &str) {
        let now = Instant::now();
        let due = self.warned.get(area).is_none_or(|last| now.duration_since(*last) >= WARN_EVERY);
        if due {
            self.warned.insert(area, now);
            log::warn!("{area} metrics left out of samples: {message}");
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps a sysinfo handle, or logs once why its area will be missing from every sample.
fn usable<T>(area: &str, handle: Result<T, sysinfo::Error>) -> Option<T> {
    handle.inspect_err(|err| log::warn!("{area} metrics unavailable on this host: {err}")).ok()
}

fn disk_refresh() -> DiskRefreshKind {
    DiskRefreshKind::nothing().with_storage().with_io_usage()
}

/// Counts processes by listing the numeric entries of `/proc`: no per-process reads.
fn count_processes() -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let count = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().as_encoded_bytes().iter().all(u8::is_ascii_digit))
        .count();
    u32::try_from(count).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_of_this_host_has_the_core_areas() {
        let mut sampler = Sampler::new();
        let sample = sampler.sample(7, 1234);
        assert_eq!((sample.seq, sample.ts_ms), (7, 1234));
        assert!(sample.cpu.is_some_and(|c| c.total_ticks() > 0));
        assert!(!sample.cores.is_empty());
        assert!(sample.memory.is_some_and(|m| m.total_bytes > 0 && m.used_bytes <= m.total_bytes));
        assert!(sample.process_count.is_some_and(|n| n > 0));
        assert!(sample.uptime_seconds.is_some());
        assert!(sample.networks.iter().all(|n| n.name != "lo"));
        sample.check_limits().unwrap();
    }
}
