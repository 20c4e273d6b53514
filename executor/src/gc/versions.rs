//! Garbage collection of row versions (`ordo_vshard::history`).
//!
//! A query that spans vShards reads at a point (an epoch, and on each vShard
//! a log index) at or after the sequencer frontier and each vShard's applied
//! index when it began, and gives up after `sql`'s query timeout. So a
//! version already superseded at the point (frontier, applied index) this
//! node observed `keep_ms` ago can no longer be read once `keep_ms` exceeds
//! that timeout. Every `every_ms` each node notes the frontier and the
//! applied index of each of its vShard replicas (leaders and followers
//! alike: any may lead next), and has each replica drop what is superseded
//! at the newest such point noted at least `keep_ms` ago. Each replica
//! records that point as its horizon first, so a read below it fails
//! (40001, retried) rather than miss a row.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ordo_raft::groups::vshard_group;
use ordo_vshard::history::ReadPoint;
use ordo_vshard::shard::ShardReader;
use tokio::time::Instant;

use crate::constants::VERSION_KEYS_PER_STEP_MAX;
use crate::rpc::Router;

#[derive(Clone, Copy, Debug)]
pub struct VersionsConfig {
    /// How often replicas drop old versions.
    pub every_ms: u64,
    /// How long a version stays readable after a newer one replaced it.
    pub keep_ms: u64,
}

/// What a node's collector did, for operators and tests.
#[derive(Debug, Default)]
pub struct VersionStats {
    /// The epoch its replicas were last collected up to (reads at an older
    /// point fail).
    pub horizon_epoch: AtomicU64,
    /// Versions its replicas dropped since the node started.
    pub dropped: AtomicU64,
}

impl VersionStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "horizon_epoch": self.horizon_epoch.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
        })
    }
}

/// Where a replica's pass over its history stands.
#[derive(Default)]
struct Cycle {
    /// The row key the next step starts at (`None`: a new pass).
    from: Option<Vec<u8>>,
    /// The applied index of the point the current pass began at.
    started_at: u64,
    /// That of the last pass that reached the end.
    completed_at: Option<u64>,
}

/// A read point per local vShard replica.
type Points = Vec<(u32, ReadPoint)>;

/// One replica's step: from where, up to which point.
type Work = Vec<(u32, ReadPoint, Option<Vec<u8>>)>;

/// What a collection round did: versions dropped, and per replica the
/// index its step was at and where the next step starts (`None`: the pass
/// reached the end).
type Steps = (usize, Vec<(u32, u64, Option<Vec<u8>>)>);

/// Runs every `every_ms` on every node, over its vShard replicas.
struct VersionCollector {
    router: Arc<Router>,
    reader: ShardReader,
    config: VersionsConfig,
    /// (when noted, read point per local vShard), oldest first.
    points: VecDeque<(Instant, Points)>,
    cycles: BTreeMap<u32, Cycle>,
    stats: Arc<VersionStats>,
}

pub fn spawn_version_collector(router: Arc<Router>, reader: ShardReader, config: VersionsConfig) -> Arc<VersionStats> {
    let stats = Arc::new(VersionStats::default());
    let mut collector = VersionCollector {
        router,
        reader,
        config,
        points: VecDeque::new(),
        cycles: BTreeMap::new(),
        stats: stats.clone(),
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(config.every_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            collector.round().await;
        }
    });
    stats
}

impl VersionCollector {
    async fn round(&mut self) {
        self.note().await;
        let Some(ripe) = Instant::now().checked_sub(Duration::from_millis(self.config.keep_ms)) else { return };
        let mut horizon = None;
        while self.points.front().is_some_and(|(at, _)| *at <= ripe) {
            horizon = self.points.pop_front().map(|(_, p)| p);
        }
        let Some(horizon) = horizon else { return };
        let epoch = horizon.iter().map(|(_, p)| p.epoch).max().unwrap_or(0);
        let work = self.work(horizon);
        let reader = self.reader.clone();
        match tokio::task::spawn_blocking(move || collect_steps(&reader, work)).await {
            Ok((n, steps)) => {
                self.record(steps);
                self.stats.horizon_epoch.store(epoch, Ordering::Relaxed);
                self.stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
                tracing::debug!(epoch, dropped = n, "dropped old row versions");
            }
            Err(e) => tracing::warn!("version collector task failed: {e}"),
        }
    }

    /// Notes the read point of every local replica now.
    async fn note(&mut self) {
        // The applied indexes first: the frontier fetched after them
        // is at least as new, so the point is below any later read's.
        let applied: Vec<(u32, u64)> = (0..self.router.vshards())
            .filter_map(|v| self.router.group(vshard_group(v)).map(|g| (v, g.status().applied_index.unwrap_or(0))))
            .collect();
        match self.router.frontier().await {
            Ok(epoch) => {
                let point = applied.into_iter().map(|(v, index)| (v, ReadPoint { epoch, index })).collect();
                self.points.push_back((Instant::now(), point));
            }
            Err(e) => tracing::debug!("version collector: no frontier this round: {e}"),
        }
    }

    /// The step each replica takes towards `horizon` this round.
    fn work(&mut self, horizon: Points) -> Work {
        horizon
            .into_iter()
            .filter_map(|(v, point)| {
                let cycle = self.cycles.entry(v).or_default();
                // A replica that applied nothing since its last full
                // pass has nothing new to drop: every version at or
                // below an index noted is visible at that point (its
                // epoch is at most the frontier noted after it).
                let idle = cycle.from.is_none() && cycle.completed_at == Some(point.index);
                (!idle).then(|| (v, point, cycle.from.clone()))
            })
            .collect()
    }

    /// Where each replica's pass stands after this round's steps.
    fn record(&mut self, steps: Vec<(u32, u64, Option<Vec<u8>>)>) {
        for (v, index, next) in steps {
            let cycle = self.cycles.entry(v).or_default();
            if cycle.from.is_none() {
                cycle.started_at = index;
            }
            cycle.from = next;
            if cycle.from.is_none() {
                cycle.completed_at = Some(cycle.started_at);
            }
        }
    }
}

/// Runs each replica's step (blocking: RocksDB reads and writes).
fn collect_steps(reader: &ShardReader, work: Work) -> Steps {
    let mut dropped = 0;
    let mut steps = Vec::new();
    for (v, point, from) in work {
        match reader.collect_history(vshard_group(v), point, from.as_deref(), VERSION_KEYS_PER_STEP_MAX) {
            Ok(step) => {
                dropped += step.dropped;
                steps.push((v, point.index, step.next));
            }
            Err(e) => tracing::warn!(vshard = v, "dropping old row versions failed: {e}"),
        }
    }
    (dropped, steps)
}
