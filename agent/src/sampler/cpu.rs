//! CPU time from `/proc/stat`: cumulative ticks for all CPUs together and per CPU.
//!
//! sysinfo only exposes CPU usage as a percentage between two of its own refreshes; hostwatch
//! sends cumulative counters so that rates survive lost samples, so it reads the kernel's
//! counters directly. Parsing is a pure function for testing.

use protocol::CpuTimes;

/// Reads `/proc/stat`. Returns the total and the per-CPU times, or `None` if unreadable.
pub fn read() -> Option<(CpuTimes, Vec<CpuTimes>)> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Parses the `cpu` and `cpuN` lines of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<(CpuTimes, Vec<CpuTimes>)> {
    let mut total = None;
    let mut cores = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            // The cpu lines come first; stop at the first other line.
            if total.is_some() {
                break;
            }
            continue;
        };
        let (label, fields) = rest.split_once(' ')?;
        let times = parse_times(fields)?;
        if label.is_empty() {
            total = Some(times);
        } else {
            // Beyond the protocol's limit, the rest of the cores are left out of the sample.
            if cores.len() < protocol::Limits::MAX_CORES {
                cores.push(times);
            }
        }
    }
    Some((total?, cores))
}

fn parse_times(fields: &str) -> Option<CpuTimes> {
    let mut values = fields.split_ascii_whitespace().map(|v| v.parse::<u64>().ok());
    let mut next = || values.next().flatten().unwrap_or(0);
    let times = CpuTimes {
        user_ticks: next(),
        nice_ticks: next(),
        system_ticks: next(),
        idle_ticks: next(),
        iowait_ticks: next(),
        irq_ticks: next(),
        softirq_ticks: next(),
        steal_ticks: next(),
    };
    // guest and guest_nice are already counted in user and nice.
    (times.total_ticks() > 0).then_some(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335574 25645 557340 13412817 4190 0 2848 0 29452 0
intr 1462898 0 0
ctxt 2120236
";

    #[test]
    fn parses_total_and_cores() {
        let (total, cores) = parse_proc_stat(SAMPLE).unwrap();
        assert_eq!(total.user_ticks, 10_132_153);
        assert_eq!(total.idle_ticks, 46_828_483);
        assert_eq!(total.softirq_ticks, 25_195);
        assert_eq!(cores.len(), 2);
        assert_eq!(cores[1].system_ticks, 557_340);
        assert_eq!(cores[0].busy_ticks(), 1_393_280 + 32_966 + 572_056 + 17_875);
    }

    #[test]
    fn old_kernels_with_fewer_fields_still_parse() {
        let (total, cores) = parse_proc_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(total.idle_ticks, 4);
        assert_eq!(total.steal_ticks, 0);
        assert_eq!(cores.len(), 1);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_proc_stat("hello\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }
}
