//! Routing: which vShard holds a row.
//!
//! A row's vShard is a hash of its encoded partition key (a prefix of the
//! primary key) only — not of the table — so rows of different tables with
//! the same partition key (e.g. one TPC-C warehouse) live on the same vShard.
//! Which Raft group replicates vShard `v` is `ordo_raft::groups::vshard_group`.

/// The vShard (0..vshards) that owns rows with this encoded partition key.
/// FNV-1a: stable across versions and platforms, which placement requires.
pub fn vshard_of(partition_key: &[u8], vshards: u32) -> u32 {
    assert!(vshards > 0);
    (ordo_raft::hash::fnv64(partition_key) % vshards as u64) as u32
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
    }
}
