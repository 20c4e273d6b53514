//! The sequencer group: the replicated, ordered log of cross-shard
//! transaction epochs.
//!
//! Today the group is formed, elected, replicated and snapshotted like every
//! other group, but nothing proposes to it yet: its log holds only Raft's own
//! entries. Sealing epochs and delivering them to vShard leaders is the
//! deterministic-transactions work (issue 3), which fills in
//! [`SequencerLogic::apply`].

use ordo_vshard::raft::{ApplyContext, GroupLogic};

/// The state machine of the sequencer group.
pub struct SequencerLogic;

impl GroupLogic for SequencerLogic {
    fn apply(&self, _ctx: &mut ApplyContext<'_>, _command: &[u8]) -> Vec<u8> {
        // No commands are defined yet (see the crate docs); an empty reply
        // keeps replicas identical should one ever arrive.
        Vec::new()
    }
}
