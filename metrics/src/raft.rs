//! Raft, per group kind: what every group's proposals, log appends, applies
//! and snapshots cost, and (read when scraped) how many groups this node
//! hosts and leads, how far their followers lag and how often they elect.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::labels::{GroupKind, KindLabels, KindOutcomeLabels, Outcome};
use crate::latency_histogram;

type Histograms = Family<KindLabels, Histogram, fn() -> Histogram>;

/// Recorded by every group of a node (one value shared by all of them).
#[derive(Clone, Debug)]
pub struct RaftMetrics {
    proposals: Family<KindOutcomeLabels, Counter>,
    propose: Histograms,
    append: Histograms,
    commit: Histograms,
    apply: Histograms,
    applied_entries: Family<KindLabels, Counter>,
    snapshots_built: Family<KindLabels, Counter>,
    snapshots_installed: Family<KindLabels, Counter>,
}

impl Default for RaftMetrics {
    fn default() -> RaftMetrics {
        let histograms = || Histograms::new_with_constructor(latency_histogram as fn() -> Histogram);
        RaftMetrics {
            proposals: Family::default(),
            propose: histograms(),
            append: histograms(),
            commit: histograms(),
            apply: histograms(),
            applied_entries: Family::default(),
            snapshots_built: Family::default(),
            snapshots_installed: Family::default(),
        }
    }
}

impl RaftMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("raft");
        r.register("proposals", "Proposals made by this node's leaders, by how they ended", self.proposals.clone());
        r.register_with_unit(
            "propose",
            "From a proposal to its reply on the leader: append, replication, commit and apply",
            Unit::Seconds,
            self.propose.clone(),
        );
        r.register_with_unit(
            "append",
            "Appending entries to a replica's log until they are on disk (fsync shared by all groups)",
            Unit::Seconds,
            self.append.clone(),
        );
        r.register_with_unit(
            "commit",
            "From an entry's append to this replica's log to the start of its apply: fsync, replication to a quorum, commit",
            Unit::Seconds,
            self.commit.clone(),
        );
        r.register_with_unit("apply", "Applying a batch of committed entries", Unit::Seconds, self.apply.clone());
        r.register("applied_entries", "Entries applied by this node's replicas", self.applied_entries.clone());
        r.register("snapshots_built", "Snapshots built by this node's replicas", self.snapshots_built.clone());
        r.register(
            "snapshots_installed",
            "Snapshots received from a leader and installed",
            self.snapshots_installed.clone(),
        );
    }

    /// One proposal of a `kind` group ended with `outcome` after `seconds`
    /// (the latency is kept for applied ones only).
    pub fn proposed(&self, kind: GroupKind, outcome: Outcome, seconds: f64) {
        self.proposals.get_or_create(&KindOutcomeLabels { group_kind: kind, outcome }).inc();
        if outcome == Outcome::Ok {
            self.propose.get_or_create(&KindLabels { group_kind: kind }).observe(seconds);
        }
    }

    pub fn appended(&self, kind: GroupKind, seconds: f64) {
        self.append.get_or_create(&KindLabels { group_kind: kind }).observe(seconds);
    }

    /// An entry appended here `seconds` before its apply began.
    pub fn committed(&self, kind: GroupKind, seconds: f64) {
        self.commit.get_or_create(&KindLabels { group_kind: kind }).observe(seconds);
    }

    pub fn applied(&self, kind: GroupKind, entries: u64, seconds: f64) {
        let labels = KindLabels { group_kind: kind };
        self.apply.get_or_create(&labels).observe(seconds);
        self.applied_entries.get_or_create(&labels).inc_by(entries);
    }

    pub fn snapshot_built(&self, kind: GroupKind) {
        self.snapshots_built.get_or_create(&KindLabels { group_kind: kind }).inc();
    }

    pub fn snapshot_installed(&self, kind: GroupKind) {
        self.snapshots_installed.get_or_create(&KindLabels { group_kind: kind }).inc();
    }
}

/// Read from the groups' own state when the node is scraped.
#[derive(Clone, Debug, Default)]
pub struct GroupGauges {
    hosted: Family<KindLabels, Gauge>,
    leaders: Family<KindLabels, Gauge>,
    leaderless: Family<KindLabels, Gauge>,
    follower_lag: Family<KindLabels, Gauge>,
    terms: Family<KindLabels, Gauge>,
}

/// What [`GroupGauges::set`] takes, summed over the groups of one kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct KindSums {
    pub hosted: i64,
    pub leaders: i64,
    pub leaderless: i64,
    /// Over the groups this node leads: entries the furthest follower lacks.
    pub follower_lag_entries: i64,
    pub terms: i64,
}

impl GroupGauges {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("raft");
        r.register("groups", "Groups with a replica on this node", self.hosted.clone());
        r.register("leaders", "Groups this node leads", self.leaders.clone());
        r.register("groups_without_leader", "Groups whose replica here knows no leader", self.leaderless.clone());
        r.register(
            "follower_lag_entries",
            "Over the groups this node leads, the entries each one's furthest follower lacks, summed",
            self.follower_lag.clone(),
        );
        r.register(
            "term_sum",
            "The terms of the groups hosted here, summed: it rises by at least one per election",
            self.terms.clone(),
        );
    }

    pub fn set(&self, kind: GroupKind, sums: KindSums) {
        let labels = KindLabels { group_kind: kind };
        self.hosted.get_or_create(&labels).set(sums.hosted);
        self.leaders.get_or_create(&labels).set(sums.leaders);
        self.leaderless.get_or_create(&labels).set(sums.leaderless);
        self.follower_lag.get_or_create(&labels).set(sums.follower_lag_entries);
        self.terms.get_or_create(&labels).set(sums.terms);
    }
}
