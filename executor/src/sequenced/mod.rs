//! What this node knows of sequenced (cross-shard) positions, below the
//! servers and schedulers that use it: the [`board`] its vShard leaders
//! share, and the [`epochs`] source its schedulers read the sequencer's
//! log from.

pub mod board;
pub mod epochs;

pub use board::{AsOf, FenceMark, SchedulerStat, TxnBoard};
pub use epochs::{EpochSource, LocalEpochs};
