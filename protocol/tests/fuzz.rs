//! Property tests: decoding arbitrary bytes returns a value or an error and never panics, and
//! every valid message survives an encode/decode round trip.

use proptest::prelude::*;
use protocol::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_agent_message(&bytes);
        let _ = decode_collector_message(&bytes);
        let _ = peek_hello_version(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        seq in any::<u64>(),
        names in proptest::collection::vec("[a-z0-9]{0,12}", 0..8),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let sample = Sample {
            seq,
            networks: names.iter().map(|n| NetworkInterface { name: n.clone(), ..Default::default() }).collect(),
            ..Default::default()
        };
        let message = AgentMessage::Batch(Batch { dropped_total: seq / 2, samples: vec![sample] });
        let mut bytes = encode_agent_message(&message);
        prop_assert_eq!(decode_agent_message(&bytes).unwrap(), message);
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        let _ = decode_agent_message(&bytes);
    }

    #[test]
    fn huge_length_prefixes_do_not_allocate_without_bound(len in 1_000_000u64..u64::MAX) {
        // Variant 1 (batch), dropped_total 0, then a vector length far beyond the input.
        let mut bytes = vec![0x01, 0x00];
        let mut n = len;
        while n >= 0x80 {
            bytes.push((n as u8) | 0x80);
            n >>= 7;
        }
        bytes.push(n as u8);
        prop_assert!(decode_agent_message(&bytes).is_err());
    }
}
