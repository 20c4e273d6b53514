//! One vShard's data: its key layout, rows and their versions, the commands
//! its Raft group applies (write sets, sequenced progress, outcome records)
//! and its local reads.
//!
//! - [`routing`]: partition key -> vShard.
//! - [`shard`]: what a vShard's commands do ([`ShardCommand`]) and its
//!   local reads ([`ShardReader`]); sequenced positions ([`TxnPos`]).
//! - [`history`]: the versions of a vShard's rows, for reads that span
//!   vShards.
//!
//! Dependency rule: depends on `ordo-raft` (storage, group ids, codec) and
//! libraries only; knows nothing of SQL, the catalog or the sequencer.

pub mod constants;
pub mod history;
pub mod routing;
pub mod shard;
mod types;

pub use shard::{RowWrite, ShardCommand, ShardReader, TxnPos};
