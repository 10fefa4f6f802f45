//! Network counters from `/proc/net/dev`: one read for every interface, instead of sysinfo's nine
//! sysfs files per interface and a netlink dump on every refresh (most of the agent's CPU time).

use protocol::NetworkInterface;

/// Reads every interface's counters, loopback and never-used interfaces left out.
pub fn read() -> Option<Vec<NetworkInterface>> {
    Some(parse_proc_net_dev(&std::fs::read_to_string("/proc/net/dev").ok()?))
}

/// Parses `/proc/net/dev`. Loopback is not the host's traffic, and an interface that never moved
/// a byte (a down ifb or dummy device) would only cost bytes on every sample.
pub fn parse_proc_net_dev(text: &str) -> Vec<NetworkInterface> {
    let mut interfaces: Vec<NetworkInterface> = text
        .lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            let values: Vec<u64> =
                counters.split_ascii_whitespace().filter_map(|v| v.parse().ok()).collect();
            // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit:
            // bytes packets errs drop fifo colls carrier compressed.
            if values.len() < 16 || name == "lo" {
                return None;
            }
            let interface = NetworkInterface {
                name: name.to_owned(),
                rx_bytes: values[0],
                rx_packets: values[1],
                rx_errors: values[2],
                tx_bytes: values[8],
                tx_packets: values[9],
                tx_errors: values[10],
            };
            (interface.rx_bytes > 0 || interface.tx_bytes > 0).then_some(interface)
        })
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    interfaces.truncate(protocol::Limits::MAX_INTERFACES);
    interfaces
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 7382103     611    0    0    0     0          0         0  7382103     611    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 368691049   12959    3    0    0     0          0         0   724015    6475    1    0    0     0       0          0
wlan0: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0
";

    #[test]
    fn parses_counters_and_skips_loopback_and_idle_interfaces() {
        let interfaces = parse_proc_net_dev(SAMPLE);
        let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "wlan0"]);
        let eth0 = &interfaces[0];
        assert_eq!((eth0.rx_bytes, eth0.rx_packets, eth0.rx_errors), (368_691_049, 12_959, 3));
        assert_eq!((eth0.tx_bytes, eth0.tx_packets, eth0.tx_errors), (724_015, 6_475, 1));
    }

    #[test]
    fn garbage_gives_nothing() {
        assert!(parse_proc_net_dev("nonsense\n").is_empty());
        assert!(parse_proc_net_dev("eth0: 1 2 3\n").is_empty());
    }
}
