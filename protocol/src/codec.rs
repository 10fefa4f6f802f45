//! Encoding and decoding with postcard, with the limits applied on the way in.

use std::fmt;

use crate::{AgentMessage, CollectorMessage, LimitError, Limits};

/// Why bytes could not be decoded into a message. Each variant maps to a refusal reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The message is larger than [`Limits::MAX_MESSAGE_BYTES`].
    TooLarge {
        /// Size of the message in bytes.
        bytes: usize,
    },
    /// The bytes are not a valid encoding of a message of this protocol version.
    Malformed(String),
    /// The message decoded but breaks a limit.
    OverLimit(LimitError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { bytes } => write!(
                f,
                "message of {bytes} bytes is over the limit of {} bytes",
                Limits::MAX_MESSAGE_BYTES
            ),
            Self::Malformed(why) => write!(f, "malformed message: {why}"),
            Self::OverLimit(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn decode_strict<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    if bytes.len() > Limits::MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge { bytes: bytes.len() });
    }
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

/// Decodes a message from an agent of this build's [`crate::PROTOCOL_VERSION`] and checks its
/// limits.
pub fn decode_agent_message(bytes: &[u8]) -> Result<AgentMessage, DecodeError> {
    decode_agent_message_of(bytes, crate::PROTOCOL_VERSION)
}

/// Decodes a message from an agent that speaks protocol `version` (the one its hello carried,
/// see [`peek_hello_version`]) into the current types, and checks its limits. Versions this
/// build does not know are malformed.
pub fn decode_agent_message_of(bytes: &[u8], version: u16) -> Result<AgentMessage, DecodeError> {
    let message: AgentMessage = match version {
        1 => decode_strict::<crate::v1::AgentMessage>(bytes)?.into(),
        crate::PROTOCOL_VERSION => decode_strict(bytes)?,
        other => return Err(DecodeError::Malformed(format!("unknown protocol version {other}"))),
    };
    message.check_limits().map_err(DecodeError::OverLimit)?;
    Ok(message)
}

/// Decodes a message from a collector.
pub fn decode_collector_message(bytes: &[u8]) -> Result<CollectorMessage, DecodeError> {
    decode_strict(bytes)
}

/// Encodes a message from an agent.
pub fn encode_agent_message(message: &AgentMessage) -> Vec<u8> {
    // Serializing plain data into a growable Vec cannot fail: postcard only fails on
    // unsupported serde types (none here) or a full fixed-size buffer (not used).
    postcard::to_allocvec(message).expect("postcard encoding of an AgentMessage")
}

/// Encodes a message from a collector.
pub fn encode_collector_message(message: &CollectorMessage) -> Vec<u8> {
    // As above: encoding plain data into a Vec cannot fail.
    postcard::to_allocvec(message).expect("postcard encoding of a CollectorMessage")
}

/// Reads the protocol version from the start of an encoded [`AgentMessage::Hello`] of any
/// version, without decoding the rest. Returns `None` if the bytes are not a hello.
pub fn peek_hello_version(bytes: &[u8]) -> Option<u16> {
    let (variant, rest): (u32, _) = postcard::take_from_bytes(bytes).ok()?;
    if variant != 0 {
        return None;
    }
    let (version, _): (u16, _) = postcard::take_from_bytes(rest).ok()?;
    Some(version)
}
