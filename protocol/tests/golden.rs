//! Golden-bytes tests: they pin the exact wire encoding, so any change that would break agents
//! or collectors of another release fails here first. If one fails, the change is a protocol
//! change: append variants instead, or bump `PROTOCOL_VERSION` and keep decoding the old form.

use protocol::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first release's hello: its bytes must never change.
fn hello() -> v1::AgentMessage {
    v1::AgentMessage::Hello(v1::Hello {
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

/// The first release's sample: its bytes must never change.
fn sample() -> v1::Sample {
    v1::Sample {
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
        memory: Some(v1::Memory { total_bytes: 1000, used_bytes: 400, available_bytes: 600 }),
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
        filesystems: vec![v1::Filesystem {
            mount_point: "/".into(),
            total_bytes: 100,
            available_bytes: 50,
        }],
        disks: vec![v1::DiskIo { device: "sda".into(), read_bytes: 512, written_bytes: 1024 }],
        uptime_seconds: Some(60),
        process_count: Some(99),
        temperatures: vec![Temperature { label: "cpu".into(), celsius: 40.0 }],
    }
}

fn encode_v1(message: &v1::AgentMessage) -> Vec<u8> {
    postcard::to_allocvec(message).unwrap()
}

#[test]
fn hello_bytes_are_pinned() {
    let bytes = encode_v1(&hello());
    assert_eq!(
        hex(&bytes),
        "000105302e312e30026831037765620944656269616e20313203362e31067838365f36340363707502808080800480e2cfaa06e807"
    );
    assert_eq!(decode_agent_message_of(&bytes, 1).unwrap(), hello().into());
}

#[test]
fn batch_bytes_are_pinned() {
    let message = v1::AgentMessage::Batch(v1::Batch { dropped_total: 7, samples: vec![sample()] });
    let bytes = encode_v1(&message);
    assert_eq!(
        hex(&bytes),
        "010701ac02fbd095ffbc31010102030405060708010900000000000000010000003f0000803f0000004001e8079003d804000104657468300a140102000001012f6432010373646180048008013c0163010363707500002042"
    );
    assert_eq!(decode_agent_message_of(&bytes, 1).unwrap(), message.into());
}

/// The version-2 hello: version 1's fields, then the instance id and the kernel build.
fn hello_v2() -> AgentMessage {
    let AgentMessage::Hello(mut hello) = hello().into() else { unreachable!() };
    hello.protocol_version = 2;
    hello.instance_id = 0x0123_4567_89ab_cdef;
    hello.kernel_build = "#1 SMP".into();
    AgentMessage::Hello(hello)
}

/// The version-2 sample: version 1's, with the figures version 2 added.
fn sample_v2() -> Sample {
    let mut sample: Sample = sample().into();
    let memory = sample.memory.as_mut().unwrap();
    memory.free_bytes = Some(100);
    memory.buffers_bytes = Some(20);
    memory.cached_bytes = Some(300);
    sample.filesystems[0].device = "/dev/vda1".into();
    sample.filesystems[0].fs_type = "ext4".into();
    sample.filesystems[0].free_bytes = Some(55);
    sample.disks[0].reads_completed = Some(3);
    sample.disks[0].writes_completed = Some(4);
    sample.disks[0].io_time_ms = Some(250);
    sample
}

#[test]
fn hello_v2_bytes_are_pinned() {
    let bytes = encode_agent_message(&hello_v2());
    assert_eq!(
        hex(&bytes),
        "000205302e312e30026831037765620944656269616e20313203362e31067838365f36340363707502808080800480e2cfaa06e807ef9bafcdf8acd1910106233120534d50"
    );
    assert_eq!(decode_agent_message(&bytes).unwrap(), hello_v2());
    assert_eq!(peek_hello_version(&bytes), Some(2));
}

#[test]
fn batch_v2_bytes_are_pinned() {
    let message = AgentMessage::Batch(Batch { dropped_total: 7, samples: vec![sample_v2()] });
    let bytes = encode_agent_message(&message);
    assert_eq!(
        hex(&bytes),
        "010701ac02fbd095ffbc31010102030405060708010900000000000000010000003f0000803f0000004001e8079003d8040164011401ac02000104657468300a140102000001012f6432092f6465762f76646131046578743401370103736461800480080103010401fa01013c0163010363707500002042"
    );
    assert_eq!(decode_agent_message(&bytes).unwrap(), message);
}

#[test]
fn version_1_bytes_are_not_read_as_version_2() {
    let bytes = encode_v1(&hello());
    assert!(matches!(decode_agent_message(&bytes), Err(DecodeError::Malformed(_))));
    assert!(matches!(decode_agent_message_of(&bytes, 9), Err(DecodeError::Malformed(_))));
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
    let bytes = encode_v1(&hello());
    assert_eq!(peek_hello_version(&bytes), Some(1));
    // A hello from a future version with an unknown layout after the version still reveals it.
    assert_eq!(peek_hello_version(&[0x00, 0x09, 0xff, 0xff]), Some(9));
    let batch =
        encode_agent_message(&AgentMessage::Batch(Batch { dropped_total: 0, samples: vec![] }));
    assert_eq!(peek_hello_version(&batch), None);
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = encode_v1(&hello());
    bytes.push(0);
    assert!(matches!(decode_agent_message_of(&bytes, 1), Err(DecodeError::Malformed(_))));
    let mut bytes = encode_agent_message(&hello_v2());
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
    let message = v1::AgentMessage::Batch(v1::Batch { dropped_total: 0, samples: vec![sample()] });
    assert!(encode_v1(&message).len() < 120);
    let message = AgentMessage::Batch(Batch { dropped_total: 0, samples: vec![sample_v2()] });
    assert!(encode_agent_message(&message).len() < 140);
}
