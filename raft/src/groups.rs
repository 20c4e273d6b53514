//! The well-known group ids every node agrees on: which Raft group is the
//! meta group, which the sequencer, and which group replicates vShard `v`.

use crate::keys::GroupId;

/// The meta group: membership, catalog, placement.
pub const META_GROUP: GroupId = 0;
/// The sequencer group: the ordered epoch log of cross-shard transactions.
pub const SEQUENCER_GROUP: GroupId = 1;
/// vShard `v` is group `VSHARD_GROUP_BASE + v`.
pub const VSHARD_GROUP_BASE: GroupId = 2;

pub fn vshard_group(vshard: u32) -> GroupId {
    VSHARD_GROUP_BASE + vshard as GroupId
}

/// What a group is, for metrics and operators.
pub fn group_kind(gid: GroupId) -> ordo_metrics::GroupKind {
    match gid {
        META_GROUP => ordo_metrics::GroupKind::Meta,
        SEQUENCER_GROUP => ordo_metrics::GroupKind::Sequencer,
        _ => ordo_metrics::GroupKind::Vshard,
    }
}

/// The vShard of a group id, if it is a vShard group.
pub fn group_vshard(gid: GroupId) -> Option<u32> {
    gid.checked_sub(VSHARD_GROUP_BASE).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vshard_groups_round_trip() {
        assert_eq!(group_vshard(vshard_group(5)), Some(5));
        assert_eq!(group_vshard(META_GROUP), None);
        assert_eq!(group_vshard(SEQUENCER_GROUP), None);
    }
}
