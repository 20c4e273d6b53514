//! The one binary encoding OrdoDB uses for everything it stores or sends
//! that is not protobuf: bincode over serde (compact, not self-describing,
//! so encoder and decoder must agree on the type).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Keys and values (or keys and rows) as stored: byte-string pairs.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("undecodable bytes: {0}")]
pub struct DecodeError(String);

/// Encodes `v`. Our types contain nothing bincode cannot encode.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("serde types always encode with bincode")
}

/// Most bytes one decode may claim for what it allocates: a forged length
/// prefix in a peer's message fails at once instead of allocating. Above
/// the gRPC bound: a group's stored snapshot may be larger than a message.
const DECODE_BYTES_MAX: usize = 8 * crate::constants::GRPC_MESSAGE_BYTES_MAX;

/// Decodes `bytes` (from storage or a peer: never trusted to be well formed).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let config = bincode::config::standard().with_limit::<DECODE_BYTES_MAX>();
    bincode::serde::decode_from_slice(bytes, config).map(|(v, _)| v).map_err(|e| DecodeError(e.to_string()))
}

/// `#[serde(with = "bytes_seq")]` for `Vec<Vec<u8>>` (rows, keys): each
/// element as one byte string. Plain serde writes a `Vec<u8>` byte by byte
/// through the sequence API, which showed up as a tenth of a vShard
/// leader's CPU in TPC-C; the encoding is the same either way.
pub mod bytes_seq {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| serde_bytes::Bytes::new(b)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<serde_bytes::ByteBuf>::deserialize(d)?.into_iter().map(|b| b.into_vec()).collect())
    }
}

/// `#[serde(with = "byte_pairs")]` for `Vec<(Vec<u8>, Vec<u8>)>` (key, row).
pub mod byte_pairs {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[(Vec<u8>, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(k, r)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(r))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Pairs, D::Error> {
        let pairs = Vec::<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(k, r)| (k.into_vec(), r.into_vec())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_lengths_are_refused() {
        // A varint length prefix of 2^60 elements, and nothing after it.
        let mut forged = vec![0xFD];
        forged.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<Vec<u64>>(&forged).is_err());
        assert!(decode::<Pairs>(&forged).is_err());
        assert!(decode::<String>(&forged).is_err());
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        assert!(decode::<serde_bytes::ByteBuf>(&bytes).is_err());
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Plain(Vec<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>);

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Fast(#[serde(with = "bytes_seq")] Vec<Vec<u8>>, #[serde(with = "byte_pairs")] Vec<(Vec<u8>, Vec<u8>)>);

    #[test]
    fn byte_strings_encode_as_plain_serde_does() {
        let rows = vec![vec![1, 2, 255], vec![], vec![7; 300]];
        let pairs = vec![(vec![0], vec![9, 9]), (vec![], vec![1; 200])];
        let fast = encode(&Fast(rows.clone(), pairs.clone()));
        assert_eq!(fast, encode(&Plain(rows.clone(), pairs.clone())));
        assert_eq!(decode::<Fast>(&fast).unwrap(), Fast(rows, pairs));
    }
}
