//! Collection: turns this host's state into a [`protocol::Sample`]. Knows nothing of sockets.
//!
//! Each metric area is collected on its own; an area that fails (no temperature sensors, an
//! unreadable file) is left out of the sample and logged at a limited rate, and never aborts the
//! sample. Sampling stays cheap: sysinfo for load, uptime and sensors; single kernel files
//! for memory (`/proc/meminfo`), CPU times (`cpu`), network counters (`network`) and disk I/O
//! (`disks`), where sysinfo would scan many files per refresh or leave figures out; lists
//! (mounts, disks, sensors) and the process count are refreshed less often than every sample.
//! No per-process scan.

mod cpu;
mod disks;
mod host;
mod network;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{LoadAverage, Memory, Sample, Swap, Temperature};
use sysinfo::{Components, System};

pub use host::{hello, read_host_id};

/// How often one failing area may log a warning.
const WARN_EVERY: Duration = Duration::from_secs(600);

/// How often the list of temperature sensors is rescanned (sensors rarely appear at run time).
const SENSOR_RESCAN_EVERY: Duration = Duration::from_secs(600);

/// How often processes are counted: listing `/proc` costs more than the rest of a sample's
/// files together, and the count changes slowly.
const PROCESS_COUNT_EVERY: Duration = Duration::from_secs(10);

/// Owns the handles and lists kept between samples, so each sample only reads values.
///
/// A handle sysinfo cannot create on this host is `None`, and its area is left out.
pub struct Sampler {
    disks: disks::Disks,
    components: Option<Components>,
    components_scanned: Instant,
    processes: Option<(Instant, u32)>,
    warned: HashMap<&'static str, Instant>,
}

impl Sampler {
    /// Creates a sampler; the first sample is complete (counters are cumulative, no warm-up).
    pub fn new() -> Self {
        Self {
            disks: disks::Disks::new(),
            components: usable("temperature", Components::new_with_refreshed_list()),
            components_scanned: Instant::now(),
            processes: None,
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
        let process_count = self.process_count();
        let networks = network::read().unwrap_or_else(|| {
            self.warn("network", "cannot read /proc/net/dev");
            Vec::new()
        });
        let (filesystems, disks) = self.disks.read();
        let filesystems = filesystems.unwrap_or_else(|| {
            self.warn("filesystem", "cannot read /proc/self/mounts");
            Vec::new()
        });
        let disks = disks.unwrap_or_else(|| {
            self.warn("disk", "cannot read /proc/diskstats");
            Vec::new()
        });
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
        match std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| parse_meminfo(&text)) {
            Some(found) => found,
            None => {
                self.warn("memory", "cannot read /proc/meminfo");
                (None, None)
            }
        }
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

    fn process_count(&mut self) -> Option<u32> {
        let fresh =
            self.processes.filter(|(at, _)| at.elapsed() < PROCESS_COUNT_EVERY).map(|(_, n)| n);
        if fresh.is_some() {
            return fresh;
        }
        match count_processes() {
            Some(count) => {
                self.processes = Some((Instant::now(), count));
                Some(count)
            }
            None => {
                self.warn("processes", "cannot list /proc");
                None
            }
        }
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
                celsius
                    .is_finite()
                    .then(|| Temperature { label: clamp_name(c.label().to_owned()), celsius })
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

/// Cuts a name to the protocol's limit, on a character boundary: a sample with one overlong
/// name would otherwise be refused whole by the collector.
pub(crate) fn clamp_name(mut name: String) -> String {
    let max = protocol::Limits::MAX_NAME_BYTES;
    if name.len() > max {
        let mut end = max;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// Parses `/proc/meminfo` (values in KiB): memory with used = total − available, as `free`
/// and node_exporter count it, and swap. `None` without `MemTotal`.
pub fn parse_meminfo(text: &str) -> Option<(Option<Memory>, Option<Swap>)> {
    let mut values = [None::<u64>; 7];
    const KEYS: [&str; 7] = [
        "MemTotal:",
        "MemFree:",
        "MemAvailable:",
        "Buffers:",
        "Cached:",
        "SwapTotal:",
        "SwapFree:",
    ];
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(key), Some(kib)) = (words.next(), words.next()) else { continue };
        if let Some(index) = KEYS.iter().position(|k| *k == key) {
            values[index] = kib.parse::<u64>().ok().map(|v| v.saturating_mul(1024));
        }
    }
    let [total, free, available, buffers, cached, swap_total, swap_free] = values;
    let total = total.filter(|t| *t > 0)?;
    // Kernels before 3.14 have no MemAvailable; free + buffers + cached is the old estimate.
    let available = available
        .unwrap_or_else(|| free.unwrap_or(0) + buffers.unwrap_or(0) + cached.unwrap_or(0))
        .min(total);
    let memory = Memory {
        total_bytes: total,
        used_bytes: total - available,
        available_bytes: available,
        free_bytes: free,
        buffers_bytes: buffers,
        cached_bytes: cached,
    };
    let swap = swap_total.map(|total| Swap {
        total_bytes: total,
        used_bytes: total.saturating_sub(swap_free.unwrap_or(total)),
    });
    Some((Some(memory), swap))
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
    fn meminfo_gives_memory_and_swap() {
        let text = "MemTotal:        1000 kB\nMemFree:          100 kB\nMemAvailable:     600 kB\n\
                    Buffers:           20 kB\nCached:           300 kB\nSwapCached:         0 kB\n\
                    SwapTotal:        500 kB\nSwapFree:         400 kB\n";
        let (memory, swap) = parse_meminfo(text).unwrap();
        let memory = memory.unwrap();
        assert_eq!(memory.total_bytes, 1_024_000);
        assert_eq!(memory.used_bytes, 400 * 1024);
        assert_eq!(memory.available_bytes, 600 * 1024);
        assert_eq!(memory.free_bytes, Some(100 * 1024));
        assert_eq!(memory.buffers_bytes, Some(20 * 1024));
        assert_eq!(memory.cached_bytes, Some(300 * 1024), "SwapCached is not Cached");
        assert_eq!(swap.map(|s| (s.total_bytes, s.used_bytes)), Some((512_000, 100 * 1024)));
        assert!(parse_meminfo("MemFree: 1 kB\n").is_none());
    }

    #[test]
    fn a_sample_of_this_host_has_the_core_areas() {
        let mut sampler = Sampler::new();
        let sample = sampler.sample(7, 1234);
        assert_eq!((sample.seq, sample.ts_ms), (7, 1234));
        assert!(sample.cpu.is_some_and(|c| c.total_ticks() > 0));
        assert!(!sample.cores.is_empty());
        assert!(sample.memory.is_some_and(|m| m.total_bytes > 0 && m.used_bytes <= m.total_bytes));
        assert!(sample.memory.is_some_and(|m| m.free_bytes.is_some() && m.cached_bytes.is_some()));
        assert!(sample.process_count.is_some_and(|n| n > 0));
        assert!(sample.uptime_seconds.is_some());
        assert!(sample.networks.iter().all(|n| n.name != "lo"));
        sample.check_limits().unwrap();
    }
}
