//! The encoding of everything the executor stores (records) or sends
//! (requests, replies, sequenced inputs): the node's one bincode codec, with
//! undecodable bytes reported as an internal error.

use ordo_expr::{ExecError, ExecResult};

pub use ordo_raft::codec::encode;

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> ExecResult<T> {
    ordo_raft::codec::decode(b).map_err(|e| ExecError::Internal(format!("undecodable message: {e}")))
}
