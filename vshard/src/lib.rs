//! vShards and the Raft plumbing every group shares.
//!
//! - [`engine`]: the node's one RocksDB and its group-commit WAL syncer.
//! - [`keys`]: the key layout (every key prefixed by its group).
//! - [`raft`]: openraft behind our [`raft::Consensus`] trait — log storage,
//!   state machine storage, the per-node transport that multiplexes every
//!   group over one connection per peer.
//! - [`routing`]: partition key -> vShard, vShard -> group id.
//! - [`shard`]: what a vShard's commands do (row writes) and its local reads.
//! - [`history`]: the versions of a vShard's rows, for reads that span vShards.

pub mod codec;
pub mod engine;
pub mod hash;
pub mod history;
pub mod keys;
pub mod raft;
pub mod routing;
pub mod shard;

pub use keys::GroupId;
