//! Where each group's leader should be: the placement's preferred leader,
//! unless an operator chose otherwise. An operator drains a node before
//! maintenance (its groups are led elsewhere) or pins a group's leader to a
//! node. The choices are replicated in the catalog, so the rebalancer of
//! every node moves leaders toward the same targets, and they survive
//! restarts; undone by `Undrain` and `Unpin`.

use std::collections::{BTreeMap, BTreeSet};

use ordo_raft::GroupId;
use serde::{Deserialize, Serialize};

use crate::placement::Placement;

/// The operator's choices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// Nodes that should lead nothing.
    pub drained: BTreeSet<u64>,
    /// Groups whose leader should be the given node.
    pub pinned: BTreeMap<GroupId, u64>,
}

/// One change of [`Leadership`] (`MetaCommand::Leadership`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeadershipChange {
    Drain { node: u64 },
    Undrain { node: u64 },
    Pin { group: GroupId, node: u64 },
    Unpin { group: GroupId },
}

impl Leadership {
    /// Applies `change` (deterministic: every replica reaches the same state).
    pub fn apply(&mut self, change: LeadershipChange) {
        match change {
            LeadershipChange::Drain { node } => {
                self.drained.insert(node);
            }
            LeadershipChange::Undrain { node } => {
                self.drained.remove(&node);
            }
            LeadershipChange::Pin { group, node } => {
                self.pinned.insert(group, node);
            }
            LeadershipChange::Unpin { group } => {
                self.pinned.remove(&group);
            }
        }
    }

    /// The replica that should lead `gid`: its pinned node, unless that is
    /// drained or no replica; else the first replica in placement order
    /// that is not drained; else (every replica drained) the preferred one.
    pub fn target(&self, placement: &Placement, gid: GroupId) -> u64 {
        let replicas = placement.replicas(gid);
        let usable = |n: &u64| replicas.contains(n) && !self.drained.contains(n);
        if let Some(n) = self.pinned.get(&gid).filter(|n| usable(n)) {
            return *n;
        }
        replicas.iter().copied().find(|n| usable(n)).unwrap_or(replicas[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Placement {
        Placement { nodes: (1..=3).map(|i| (i, format!("n{i}"))).collect(), vshards: 8, replication: 3 }
    }

    #[test]
    fn drained_nodes_lead_nothing_and_pins_win_otherwise() {
        let p = three();
        let mut l = Leadership::default();
        let preferred: Vec<u64> = p.groups().iter().map(|&g| l.target(&p, g)).collect();
        assert_eq!(preferred, p.groups().iter().map(|&g| p.preferred_leader(g)).collect::<Vec<_>>());
        l.apply(LeadershipChange::Drain { node: 2 });
        assert!(p.groups().iter().all(|&g| l.target(&p, g) != 2));
        l.apply(LeadershipChange::Pin { group: 5, node: 3 });
        assert_eq!(l.target(&p, 5), 3);
        // A pin to a drained node yields to the drain.
        l.apply(LeadershipChange::Pin { group: 6, node: 2 });
        assert_ne!(l.target(&p, 6), 2);
        l.apply(LeadershipChange::Undrain { node: 2 });
        assert_eq!(l.target(&p, 6), 2);
        l.apply(LeadershipChange::Unpin { group: 6 });
        assert_eq!(l.target(&p, 6), p.preferred_leader(6));
    }

    #[test]
    fn with_every_replica_drained_the_preferred_one_leads() {
        let p = three();
        let mut l = Leadership::default();
        for node in 1..=3 {
            l.apply(LeadershipChange::Drain { node });
        }
        assert!(p.groups().iter().all(|&g| l.target(&p, g) == p.preferred_leader(g)));
    }
}
