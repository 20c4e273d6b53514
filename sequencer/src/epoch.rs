//! Epochs and their encoding.

use serde::{Deserialize, Serialize};

/// One cross-shard transaction input as the sequencer orders it. The
/// sequencer does not look inside `program`; it only orders it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochInput {
    /// vShards that take part (sorted, no duplicates).
    pub participants: Vec<u32>,
    /// The transaction program, encoded by the layer that built it.
    #[serde(with = "serde_bytes")]
    pub program: Vec<u8>,
    /// The client request it came with: the sequencer orders an input once
    /// per request id, and a retry learns the first placement.
    pub request: Option<ordo_raft::RequestId>,
}

/// A committed epoch: its number, its timestamp (`now()` of its
/// transactions, microseconds since the Unix epoch) and its inputs in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub number: u64,
    pub timestamp_us: i64,
    pub inputs: Vec<EpochInput>,
}

/// Commands of the sequencer group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SequencerCommand {
    /// Seal these inputs into the next epoch.
    Seal { proposed_timestamp_us: i64, inputs: Vec<EpochInput> },
    /// Forget epochs up to `through`: every participant of every
    /// transaction in them has applied it, so no scheduler reads them again.
    Collect { through: u64 },
}

/// The encoded command that collects epochs up to `through`.
pub fn collect_command(through: u64) -> Vec<u8> {
    encode(&SequencerCommand::Collect { through })
}

/// Where each input of a `Seal` was placed, in the command's order: the
/// sealed epoch, or an earlier one for an input sequenced before (a retry);
/// `None` for an attempt of a request first sent longer ago than
/// `REQUEST_APPLY_WINDOW_MS` and not sequenced before: it is not sequenced
/// now (an earlier attempt's record may have expired), and its outcome is
/// unknown to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealReply {
    pub sealed: Sealed,
    pub placed: Vec<Option<Placed>>,
}

/// One input's place: its epoch (number and timestamp) and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub epoch: Sealed,
    pub index: u32,
}

/// Where a sealed epoch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub number: u64,
    pub timestamp_us: i64,
}

pub(crate) use ordo_raft::codec::encode;

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    ordo_raft::codec::decode(b).map_err(|e| e.to_string())
}
