//! Garbage collection of row versions (`ordo_vshard::history`).
//!
//! A query that spans vShards reads as of the sequencer frontier it fetched
//! when it began, and gives up after `sql`'s query timeout. So a version
//! that was already superseded, as of a frontier fetched `keep_ms` ago, can
//! no longer be read once `keep_ms` exceeds that timeout. Every `every_ms`
//! each node fetches the frontier, remembers when, and has each of its
//! vShard replicas (leaders and followers alike: any may lead next) drop
//! what is older than the newest frontier fetched at least `keep_ms` ago.
//! Each replica records that epoch as its horizon first, so a read older
//! than it fails (40001, retried) rather than miss a row.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ordo_vshard::routing::vshard_group;

use crate::router::Router;

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
    /// The epoch its replicas were last collected up to (reads as of an
    /// older epoch fail).
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

pub fn spawn_version_collector(router: Arc<Router>, config: VersionsConfig) -> Arc<VersionStats> {
    let stats = Arc::new(VersionStats::default());
    let out = stats.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(config.every_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // (when fetched, frontier), oldest first.
        let mut frontiers: VecDeque<(tokio::time::Instant, u64)> = VecDeque::new();
        loop {
            tick.tick().await;
            match router.frontier().await {
                Ok(f) => frontiers.push_back((tokio::time::Instant::now(), f)),
                Err(e) => tracing::debug!("version collector: no frontier this round: {e}"),
            }
            let ripe = tokio::time::Instant::now() - Duration::from_millis(config.keep_ms);
            let mut horizon = None;
            while let Some(&(at, epoch)) = frontiers.front() {
                if at > ripe {
                    break;
                }
                horizon = Some(epoch);
                frontiers.pop_front();
            }
            let Some(horizon) = horizon else { continue };
            let local = router.local().clone();
            let done = tokio::task::spawn_blocking(move || {
                let mut dropped = 0;
                for v in 0..local.vshards() {
                    let gid = vshard_group(v);
                    if local.group(gid).is_none() {
                        continue;
                    }
                    match local.reader().collect_history(gid, horizon) {
                        Ok(n) => dropped += n,
                        Err(e) => tracing::warn!(vshard = v, "dropping old row versions failed: {e}"),
                    }
                }
                dropped
            })
            .await;
            match done {
                Ok(n) => {
                    stats.horizon_epoch.store(horizon, Ordering::Relaxed);
                    stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::debug!(horizon, dropped = n, "dropped old row versions");
                }
                Err(e) => tracing::warn!("version collector task failed: {e}"),
            }
        }
    });
    out
}
