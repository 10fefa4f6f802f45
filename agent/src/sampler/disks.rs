//! Filesystems and block devices, read directly: sysinfo re-reads the mount table and lists
//! `/dev/disk/by-id` on every refresh. Here the list of mounts and whole disks is refreshed once a
//! minute; each sample costs one `statvfs` per filesystem and one read of `/proc/diskstats`.

use std::time::{Duration, Instant};

use protocol::{DiskIo, Filesystem};

/// How often the lists of mounts and disks are re-read.
const RESCAN_EVERY: Duration = Duration::from_secs(60);

/// Kernel sectors in `/proc/diskstats` are 512 bytes, whatever the device's own sector size.
const SECTOR_BYTES: u64 = 512;

/// A mounted filesystem worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Block device (or dataset), for de-duplication of bind mounts.
    pub device: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Filesystem type, such as `ext4`.
    pub fs_type: String,
}

/// Keeps the mount and disk lists between samples.
pub struct Disks {
    mounts: Vec<Mount>,
    disks: Vec<String>,
    scanned: Option<Instant>,
}

impl Disks {
    /// Creates the reader; the lists are read on the first sample.
    pub fn new() -> Self {
        Self { mounts: Vec::new(), disks: Vec::new(), scanned: None }
    }

    /// Usage of every filesystem and cumulative I/O of every whole disk. `None` for an area whose
    /// files cannot be read (then its list is read again next time).
    pub fn read(&mut self) -> (Option<Vec<Filesystem>>, Option<Vec<DiskIo>>) {
        if self.scanned.is_none_or(|at| at.elapsed() >= RESCAN_EVERY) {
            match std::fs::read_to_string("/proc/self/mounts") {
                Ok(text) => {
                    self.mounts = parse_mounts(&text);
                    self.scanned = Some(Instant::now());
                }
                Err(_) => return (None, self.io()),
            }
            self.disks = whole_disks();
        }
        let filesystems = self
            .mounts
            .iter()
            .filter_map(|mount| {
                let stat = rustix::fs::statvfs(mount.mount_point.as_str()).ok()?;
                let block = stat.f_frsize.max(1);
                Some(Filesystem {
                    mount_point: mount.mount_point.clone(),
                    total_bytes: stat.f_blocks * block,
                    available_bytes: stat.f_bavail * block,
                    device: mount.device.clone(),
                    fs_type: mount.fs_type.clone(),
                    free_bytes: Some(stat.f_bfree * block),
                })
            })
            .filter(|fs| fs.total_bytes > 0)
            .take(protocol::Limits::MAX_FILESYSTEMS)
            .collect();
        (Some(filesystems), self.io())
    }

    fn io(&self) -> Option<Vec<DiskIo>> {
        let text = std::fs::read_to_string("/proc/diskstats").ok()?;
        Some(parse_diskstats(&text, &self.disks))
    }
}

impl Default for Disks {
    fn default() -> Self {
        Self::new()
    }
}

/// Filesystem types backed by local storage that have no `/dev/` source.
const DATASET_TYPES: [&str; 2] = ["zfs", "bcachefs"];
/// Read-only images that are always full and say nothing about the host's space.
const IMAGE_TYPES: [&str; 3] = ["squashfs", "iso9660", "udf"];

/// Parses `/proc/self/mounts`, keeping filesystems on real storage, each device once (the first,
/// normally shortest, mount point: bind mounts repeat a device).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(device), Some(mount_point), Some(fs_type)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let storage = (device.starts_with("/dev/") && !device.starts_with("/dev/loop"))
            || DATASET_TYPES.contains(&fs_type);
        let device = super::clamp_name(unescape(device));
        if !storage || IMAGE_TYPES.contains(&fs_type) || mounts.iter().any(|m| m.device == device) {
            continue;
        }
        mounts.push(Mount {
            device,
            mount_point: super::clamp_name(unescape(mount_point)),
            fs_type: super::clamp_name(fs_type.to_owned()),
        });
    }
    mounts
}

/// Undoes the octal escapes of `/proc/self/mounts` (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whole disks (not partitions, which would count the same I/O twice), from `/sys/block`, without
/// loop, RAM and optical devices.
fn whole_disks() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    let mut disks: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !["loop", "ram", "zram", "fd", "sr"].iter().any(|p| name.starts_with(p)))
        .collect();
    disks.sort();
    disks
}

/// Parses `/proc/diskstats` for the given devices (all, if `devices` is empty): cumulative bytes
/// read and written, reads and writes completed, and time busy. Devices that never did any I/O
/// are left out.
pub fn parse_diskstats(text: &str, devices: &[String]) -> Vec<DiskIo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            // major minor name reads merged sectors_read ms writes merged sectors_written ms
            // in_flight io_ms … (Documentation/admin-guide/iostats.rst)
            let name = *fields.get(2)?;
            if !devices.is_empty() && !devices.iter().any(|d| d == name) {
                return None;
            }
            let number = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
            let read_sectors = number(5)?;
            let written_sectors = number(9)?;
            (read_sectors > 0 || written_sectors > 0).then(|| DiskIo {
                device: name.to_owned(),
                read_bytes: read_sectors * SECTOR_BYTES,
                written_bytes: written_sectors * SECTOR_BYTES,
                reads_completed: number(3),
                writes_completed: number(7),
                io_time_ms: number(12),
            })
        })
        .take(protocol::Limits::MAX_DISKS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_keep_real_storage_once_per_device() {
        let text = "proc /proc proc rw 0 0
/dev/vda / ext4 rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
/dev/vda /var/lib/docker ext4 rw 0 0
/dev/vdb1 /srv/my\\040data xfs rw 0 0
/dev/loop3 /snap/core/1 squashfs ro 0 0
/dev/sr0 /media/cd iso9660 ro 0 0
tank/home /home zfs rw 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
";
        let mounts = parse_mounts(text);
        let points: Vec<&str> = mounts.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/srv/my data", "/home"]);
        let types: Vec<&str> = mounts.iter().map(|m| m.fs_type.as_str()).collect();
        assert_eq!(types, ["ext4", "xfs", "zfs"]);
        assert_eq!(mounts[1].device, "/dev/vdb1");
    }

    #[test]
    fn diskstats_give_bytes_of_whole_disks() {
        let text = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 540056 19261 20326050 1248757 131688 70891 38849984 252114 0 83196 1517146
 254       1 vda1 100 0 200 0 10 0 20 0 0 0 0
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
";
        let disks = parse_diskstats(text, &["vda".to_owned(), "zram0".to_owned()]);
        assert_eq!(disks.len(), 1);
        assert_eq!(disks[0].device, "vda");
        assert_eq!(disks[0].read_bytes, 20_326_050 * 512);
        assert_eq!(disks[0].written_bytes, 38_849_984 * 512);
        assert_eq!(disks[0].reads_completed, Some(540_056));
        assert_eq!(disks[0].writes_completed, Some(131_688));
        assert_eq!(disks[0].io_time_ms, Some(83_196));
        assert_eq!(parse_diskstats(text, &[]).len(), 2, "vda and vda1 when no list is known");
    }

    #[test]
    fn this_host_has_a_root_filesystem() {
        let (filesystems, _) = Disks::new().read();
        let filesystems = filesystems.unwrap();
        assert!(
            filesystems.iter().any(|fs| fs.mount_point == "/"
                && fs.total_bytes > 0
                && fs.free_bytes.is_some_and(|free| free >= fs.available_bytes)
                && !fs.fs_type.is_empty()),
            "{filesystems:?}"
        );
    }
}
