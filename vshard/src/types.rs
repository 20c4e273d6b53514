//! The small types a vShard's modules share: where a sequenced transaction
//! sits in the global order, and why a scan failed.

use serde::{Deserialize, Serialize};

/// A sequenced transaction's place in the global order: its epoch and its
/// index among the epoch's inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxnPos {
    pub epoch: u64,
    pub index: u32,
}

/// Why a scan failed: a property of the data (the same on every replica)
/// or trouble of this node's storage (another attempt may succeed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScanError {
    #[error("scan exceeds {0} rows")]
    TooManyRows(usize),
    #[error("storage: {0}")]
    Storage(String),
    #[error("this replica keeps row versions from epoch {horizon} on, not as of epoch {epoch}")]
    TooOld { epoch: u64, horizon: u64 },
}
