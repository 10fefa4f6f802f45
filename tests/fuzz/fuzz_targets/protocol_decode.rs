//! Fuzz target: any bytes as the first and later messages of an ingest connection, through
//! every decoder the collector and the agent use (`peek_hello_version`, version 1 and 2 agent
//! messages, collector messages). None may panic; what version 2 accepts must re-encode to
//! bytes that decode again (the collector stores what it decoded, the agent spools it).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = protocol::peek_hello_version(data);
    for version in [1, protocol::PROTOCOL_VERSION] {
        if let Ok(message) = protocol::decode_agent_message_of(data, version) {
            let again = protocol::encode_agent_message(&message);
            assert!(
                protocol::decode_agent_message_of(&again, protocol::PROTOCOL_VERSION).is_ok(),
                "a message decoded from version {version} does not survive re-encoding"
            );
        }
    }
    if let Ok(message) = protocol::decode_collector_message(data) {
        let again = protocol::encode_collector_message(&message);
        assert!(protocol::decode_collector_message(&again).is_ok());
    }
});
