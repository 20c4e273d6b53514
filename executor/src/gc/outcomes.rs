//! Garbage collection of what cross-shard transactions leave behind: the
//! outcome records on their coordinators and the sequencer's epochs.
//!
//! An outcome is needed until every participant has applied its position
//! (an active participant's new leader reads it again); an epoch until every
//! vShard's scheduler has taken it. Both are safe to drop once every
//! vShard has completed the epoch. The node that leads the sequencer group
//! asks each vShard's leader how far it has completed
//! ([`ShardRequest::CompleteThrough`]) every `every_ms`, takes the minimum,
//! and `lag_ms` later — so a gateway still waiting for an outcome
//! (at most [`OUTCOME_WAIT_MS`]) finds it — replicates
//! [`ShardRequest::Collect`] to every vShard and the sequencer. The bound
//! travels in the logged command, so every replica drops the same records.
//!
//! [`ShardRequest::CompleteThrough`]: crate::rpc::ShardRequest::CompleteThrough
//! [`ShardRequest::Collect`]: crate::rpc::ShardRequest::Collect
//! [`OUTCOME_WAIT_MS`]: crate::constants::OUTCOME_WAIT_MS

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ordo_expr::ExecResult;
use ordo_raft::groups::{vshard_group, SEQUENCER_GROUP};
use tokio::time::Instant;

use crate::constants::{COLLECT_CALLS_INFLIGHT_MAX, COLLECT_EVERY_MS_DEFAULT, COLLECT_LAG_MS_DEFAULT};
use crate::rpc::Router;

#[derive(Clone, Copy, Debug)]
pub struct CollectConfig {
    /// How often the completed frontier is measured.
    pub every_ms: u64,
    /// How long a frontier waits before what it covers is dropped.
    pub lag_ms: u64,
}

impl Default for CollectConfig {
    fn default() -> CollectConfig {
        CollectConfig { every_ms: COLLECT_EVERY_MS_DEFAULT, lag_ms: COLLECT_LAG_MS_DEFAULT }
    }
}

pub fn spawn_collector(router: Arc<Router>, config: CollectConfig) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(config.every_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // (when measured, completed-through epoch), oldest first.
        let mut frontiers: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut collected = 0u64;
        loop {
            tick.tick().await;
            let leads = router.group(SEQUENCER_GROUP).is_some_and(|g| g.is_leader());
            if !leads {
                frontiers.clear();
                continue;
            }
            match completed_through(&router).await {
                Ok(epoch) => frontiers.push_back((Instant::now(), epoch)),
                Err(e) => tracing::debug!("collector: frontier not measured this round: {e}"),
            }
            let ripe = Instant::now() - Duration::from_millis(config.lag_ms);
            let Some(bound) = ripe_bound(&mut frontiers, ripe).filter(|&b| b > collected) else { continue };
            match collect(&router, bound).await {
                Ok(()) => {
                    tracing::debug!(through_epoch = bound, "collected outcomes and epochs");
                    collected = bound;
                }
                // Idempotent: the next round tries the same bound again.
                Err(e) => {
                    tracing::debug!("collector: collection through {bound} incomplete: {e}");
                    frontiers.push_front((ripe, bound));
                }
            }
        }
    });
}

/// The newest frontier measured at or before `ripe`, taking it and every
/// older one off the queue.
fn ripe_bound(frontiers: &mut VecDeque<(Instant, u64)>, ripe: Instant) -> Option<u64> {
    let mut bound = None;
    while let Some(&(at, epoch)) = frontiers.front() {
        if at > ripe {
            break;
        }
        bound = Some(epoch);
        frontiers.pop_front();
    }
    bound
}

/// The minimum over every vShard of the epoch its leader has completed.
async fn completed_through(router: &Router) -> ExecResult<u64> {
    let mut min = u64::MAX;
    let mut answers = futures::stream::iter(0..router.vshards())
        .map(|v| router.complete_through(v))
        .buffer_unordered(COLLECT_CALLS_INFLIGHT_MAX);
    while let Some(answer) = answers.next().await {
        min = min.min(answer?);
    }
    Ok(min)
}

/// Drops outcomes on every vShard, then the epochs themselves.
async fn collect(router: &Router, through_epoch: u64) -> ExecResult<()> {
    let mut calls = futures::stream::iter(0..router.vshards())
        .map(|v| router.collect(vshard_group(v), through_epoch))
        .buffer_unordered(COLLECT_CALLS_INFLIGHT_MAX);
    while let Some(done) = calls.next().await {
        done?;
    }
    router.collect(SEQUENCER_GROUP, through_epoch).await
}
