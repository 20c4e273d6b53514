//! `GET /metrics`: the node's one registry. Every layer records into its
//! own struct (see `ordo_metrics`); what exists anyway — the groups' terms
//! and leaders, RocksDB's state, the lock tables, the process — is read
//! into gauges when scraped.

use std::collections::BTreeMap;
use std::sync::Arc;

use ordo_metrics::{GroupGauges, GroupKind, KindSums, ProcessMetrics, Registry};
use ordo_raft::groups::group_kind;
use ordo_raft::{Consensus, GroupId};

pub struct NodeMetrics {
    registry: Registry,
    groups: GroupGauges,
    process: ProcessMetrics,
    /// One scrape at a time reads the scrape-time values (they advance
    /// counters by the difference to what was read before).
    scrape: tokio::sync::Mutex<()>,
}

/// What a scrape reads the node's state from.
pub struct Scraped<'a> {
    pub node_id: u64,
    pub groups: &'a BTreeMap<GroupId, Arc<dyn Consensus>>,
    pub engine: &'a ordo_raft::engine::Engine,
    pub executor: &'a ordo_executor::LeaderExecutor,
}

/// The parts of a node that record metrics.
pub struct Recorders<'a> {
    pub raft: &'a ordo_metrics::RaftMetrics,
    pub sequencer: &'a ordo_metrics::SequencerMetrics,
    pub scheduler: &'a ordo_metrics::SchedulerMetrics,
    pub sql: &'a ordo_metrics::SqlMetrics,
    pub storage: &'a ordo_metrics::StorageMetrics,
}

impl NodeMetrics {
    pub fn new(r: Recorders<'_>) -> NodeMetrics {
        let mut registry = ordo_metrics::registry();
        r.raft.register(&mut registry);
        r.sequencer.register(&mut registry);
        r.scheduler.register(&mut registry);
        r.sql.register(&mut registry);
        r.storage.register(&mut registry);
        let groups = GroupGauges::default();
        groups.register(&mut registry);
        let process = ProcessMetrics::default();
        process.register(&mut registry);
        NodeMetrics { registry, groups, process, scrape: tokio::sync::Mutex::new(()) }
    }

    /// The registry as text, after reading the scrape-time values.
    pub async fn render(&self, node: Scraped<'_>) -> Result<String, std::fmt::Error> {
        let _one = self.scrape.lock().await;
        self.refresh_groups(node.node_id, node.groups);
        node.engine.refresh_metrics();
        node.executor.refresh_metrics();
        self.process.refresh();
        ordo_metrics::encode(&self.registry)
    }

    fn refresh_groups(&self, node_id: u64, groups: &BTreeMap<GroupId, Arc<dyn Consensus>>) {
        let mut sums: BTreeMap<GroupKind, KindSums> =
            GroupKind::ALL.iter().map(|&k| (k, KindSums::default())).collect();
        for g in groups.values() {
            let s = g.status();
            let sum = sums.entry(group_kind(s.group_id)).or_default();
            sum.hosted += 1;
            sum.terms = sum.terms.saturating_add(i64::try_from(s.term).unwrap_or(i64::MAX));
            match s.leader {
                None => sum.leaderless += 1,
                Some(l) if l == node_id => {
                    sum.leaders += 1;
                    let last = s.last_log_index.unwrap_or(0);
                    // A follower whose progress is not known yet (just
                    // after an election) is left out, not counted as empty.
                    let behind = s
                        .matched
                        .iter()
                        .filter(|(&n, _)| n != node_id)
                        .filter_map(|(_, m)| m.map(|m| last.saturating_sub(m)))
                        .max()
                        .unwrap_or(0);
                    sum.follower_lag_entries =
                        sum.follower_lag_entries.saturating_add(i64::try_from(behind).unwrap_or(i64::MAX));
                }
                Some(_) => {}
            }
        }
        for (kind, s) in sums {
            self.groups.set(kind, s);
        }
    }
}
