//! Routing: which vShard holds a row, and which group id each vShard uses.
//!
//! A row's vShard is a hash of its encoded partition key (a prefix of the
//! primary key) only — not of the table — so rows of different tables with
//! the same partition key (e.g. one TPC-C warehouse) live on the same vShard.

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

/// The vShard of a group id, if it is a vShard group.
pub fn group_vshard(gid: GroupId) -> Option<u32> {
    gid.checked_sub(VSHARD_GROUP_BASE).map(|v| v as u32)
}

/// The vShard (0..vshards) that owns rows with this encoded partition key.
/// FNV-1a: stable across versions and platforms, which placement requires.
pub fn vshard_of(partition_key: &[u8], vshards: u32) -> u32 {
    assert!(vshards > 0);
    (crate::hash::fnv64(partition_key) % vshards as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_is_stable_and_spreads() {
        let mut hit = vec![0u32; 64];
        for i in 0u64..6400 {
            hit[vshard_of(&i.to_be_bytes(), 64) as usize] += 1;
        }
        assert!(hit.iter().all(|&n| n > 50), "uneven spread: {hit:?}");
        assert_eq!(vshard_of(b"abc", 64), vshard_of(b"abc", 64));
        assert_eq!(group_vshard(vshard_group(5)), Some(5));
        assert_eq!(group_vshard(META_GROUP), None);
    }
}
