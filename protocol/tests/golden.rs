//! Golden-bytes tests: they pin the exact wire encoding, so any change that would break agents
//! or collectors of another release fails here first. If one fails, the change is a protocol
//! change: append variants instead, or bump `PROTOCOL_VERSION` and keep decoding the old form.

use protocol::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hello() -> AgentMessage {
    AgentMessage::Hello(Hello {
        protocol_version: 1,
        agent_version: "0.1.0".into(),
        host_id: "h1".into(),
        hostname: "web".into(),
        os: "Debian 12".into(),
        kernel: "6.1".into(),
        arch: "x86_64".into(),
        cpu_model: "cpu".into(),
        cpu_cores: 2,
        memory_total_bytes: 1 << 30,
        boot_time_seconds: 1_700_000_000,
        interval_ms: 1000,
    })
}

fn sample() -> Sample {
    Sample {
        seq: 300,
        ts_ms: 1_700_000_000_123,
        cpu: Some(CpuTimes {
            user_ticks: 1,
            nice_ticks: 2,
            system_ticks: 3,
            idle_ticks: 4,
            iowait_ticks: 5,
            irq_ticks: 6,
            softirq_ticks: 7,
            steal_ticks: 8,
        }),
        cores: vec![CpuTimes { user_ticks: 9, ..Default::default() }],
        load: Some(LoadAverage { one: 0.5, five: 1.0, fifteen: 2.0 }),
        memory: Some(Memory { total_bytes: 1000, used_bytes: 400, available_bytes: 600 }),
        swap: None,
        networks: vec![NetworkInterface {
            name: "eth0".into(),
            rx_bytes: 10,
            tx_bytes: 20,
            rx_packets: 1,
            tx_packets: 2,
            rx_errors: 0,
            tx_errors: 0,
        }],
        filesystems: vec![Filesystem {
            mount_point: "/".into(),
            total_bytes: 100,
            available_bytes: 50,
        }],
        disks: vec![DiskIo { device: "sda".into(), read_bytes: 512, written_bytes: 1024 }],
        uptime_seconds: Some(60),
        process_count: Some(99),
        temperatures: vec![Temperature { label: "cpu".into(), celsius: 40.0 }],
    }
}

#[test]
fn hello_bytes_are_pinned() {
    let bytes = encode_agent_message(&hello());
    assert_eq!(
        hex(&bytes),
        "000105302e312e30026831037765620944656269616e20313203362e31067838365f36340363707502808080800480e2cfaa06e807"
    );
    assert_eq!(decode_agent_message(&bytes).unwrap(), hello());
}

#[test]
fn batch_bytes_are_pinned() {
    let message = AgentMessage::Batch(Batch { dropped_total: 7, samples: vec![sample()] });
    let bytes = encode_agent_message(&message);
    assert_eq!(
        hex(&bytes),
        "010701ac02fbd095ffbc31010102030405060708010900000000000000010000003f0000803f0000004001e8079003d804000104657468300a140102000001012f6432010373646180048008013c0163010363707500002042"
    );
    assert_eq!(decode_agent_message(&bytes).unwrap(), message);
}

#[test]
fn collector_message_bytes_are_pinned() {
    let messages = [
        CollectorMessage::Welcome(Welcome { protocol_version: 1, last_seq: Some(300) }),
        CollectorMessage::Ack(Ack { seq: 301 }),
        CollectorMessage::Refused(Refusal {
            reason: RefusalReason::UnsupportedVersion,
            message: "v9".into(),
        }),
    ];
    let encoded: Vec<String> = messages.iter().map(|m| hex(&encode_collector_message(m))).collect();
    assert_eq!(encoded, ["000101ac02", "01ad02", "0201027639"]);
    for message in messages {
        assert_eq!(decode_collector_message(&encode_collector_message(&message)).unwrap(), message);
    }
}

#[test]
fn hello_version_is_readable_without_decoding_the_rest() {
    let bytes = encode_agent_message(&hello());
    assert_eq!(peek_hello_version(&bytes), Some(1));
    // A hello from a future version with an unknown layout after the version still reveals it.
    assert_eq!(peek_hello_version(&[0x00, 0x09, 0xff, 0xff]), Some(9));
    let batch =
        encode_agent_message(&AgentMessage::Batch(Batch { dropped_total: 0, samples: vec![] }));
    assert_eq!(peek_hello_version(&batch), None);
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = encode_agent_message(&hello());
    bytes.push(0);
    assert!(matches!(decode_agent_message(&bytes), Err(DecodeError::Malformed(_))));
}

#[test]
fn oversized_message_is_refused_before_decoding() {
    let bytes = vec![0u8; Limits::MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        decode_agent_message(&bytes),
        Err(DecodeError::TooLarge { bytes: Limits::MAX_MESSAGE_BYTES + 1 })
    );
}

#[test]
fn a_typical_sample_is_small_on_the_wire() {
    // The agent's target is at most 300 bytes per sample on the wire; the encoding of a
    // realistic sample must leave room for framing.
    let message = AgentMessage::Batch(Batch { dropped_total: 0, samples: vec![sample()] });
    assert!(encode_agent_message(&message).len() < 120);
}
