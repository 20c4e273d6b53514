//! The sequencer group: the replicated, gap-free, ordered log of epochs of
//! cross-shard transaction inputs.
//!
//! - [`epoch`]: what an epoch is and how it is encoded.
//! - [`logic`]: the group's state machine. It — not the proposer — numbers
//!   each epoch (`last + 1`) and fixes its timestamp (`max(proposed,
//!   last + 1 µs)`), so numbers never skip or repeat and time never goes
//!   back, whichever node leads and however often leadership changes.
//! - [`sealer`]: on the sequencer leader, collects inputs and seals them
//!   into an epoch every `epoch_ms` or when a batch bound is reached.
//!
//! Each vShard leader's scheduler (in `ordo-executor`) reads committed
//! epochs from this log, starting after the last position its vShard
//! recorded as applied. Limits are in [`constants`].
//!
//! Dependency rule: depends on `ordo-raft` only. Inputs are opaque bytes
//! here: it never decodes a program or knows which vShards exist.

pub mod constants;
pub mod epoch;
pub mod logic;
pub mod sealer;

pub use epoch::{collect_command, Epoch, EpochInput, Placed};
pub use logic::{EpochLog, SequencerLogic};
pub use sealer::{SealError, Sealer, SealerConfig};
