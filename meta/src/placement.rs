//! Placement: which nodes hold replicas of each group, and which of them
//! should lead it. Computed deterministically from the node list, so every
//! node agrees without coordination; leaders are spread round-robin.

use std::collections::BTreeMap;

use ordo_raft::groups::{self, META_GROUP, SEQUENCER_GROUP};
use ordo_raft::GroupId;

#[derive(Clone, Debug)]
pub struct Placement {
    /// Node id -> RPC address, every node of the cluster.
    pub nodes: BTreeMap<u64, String>,
    pub vshards: u32,
    pub replication: usize,
}

impl Placement {
    pub fn node_ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Every group of the cluster: meta, sequencer, then the vShards.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut g = vec![META_GROUP, SEQUENCER_GROUP];
        g.extend((0..self.vshards).map(groups::vshard_group));
        g
    }

    /// The replicas of `gid`, preferred leader first.
    pub fn replicas(&self, gid: GroupId) -> Vec<u64> {
        let ids = self.node_ids();
        let n = ids.len();
        let r = self.replication.clamp(1, n);
        let first = (gid as usize) % n;
        (0..r).map(|i| ids[(first + i) % n]).collect()
    }

    pub fn members(&self, gid: GroupId) -> BTreeMap<u64, String> {
        self.replicas(gid).into_iter().map(|id| (id, self.nodes[&id].clone())).collect()
    }

    pub fn preferred_leader(&self, gid: GroupId) -> u64 {
        self.replicas(gid)[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaders_spread_evenly_over_three_nodes() {
        let nodes = (1..=3).map(|i| (i, format!("n{i}"))).collect();
        let p = Placement { nodes, vshards: 64, replication: 3 };
        let mut led = BTreeMap::new();
        for g in p.groups() {
            assert_eq!(p.replicas(g).len(), 3);
            *led.entry(p.preferred_leader(g)).or_insert(0) += 1;
        }
        assert!(led.values().all(|&n| n == 22), "{led:?}");
    }
}
