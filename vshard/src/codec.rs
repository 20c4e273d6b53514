//! The one binary encoding OrdoDB uses for everything it stores or sends
//! that is not protobuf: bincode over serde (compact, not self-describing,
//! so encoder and decoder must agree on the type).

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("undecodable bytes: {0}")]
pub struct DecodeError(String);

/// Encodes `v`. Our types contain nothing bincode cannot encode.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("serde types always encode with bincode")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| DecodeError(e.to_string()))
}
