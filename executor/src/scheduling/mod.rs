//! The scheduler of each vShard leader: it takes the sequencer's epochs in
//! order and runs the vShard's part of every cross-shard transaction.
//!
//! Every vShard leader runs a scheduler task that reads the sequencer's
//! epoch log in order and enqueues each input its vShard participates in,
//! in that order, in the vShard's lock table (`ordo_scheduler`) with the
//! locks derived from the program ([`crate::txn::locks`]); single-shard writes
//! are enqueued in the same table as they arrive. Once granted, each
//! transaction `T` at position `p` runs on its own task, on every
//! participant alike:
//!
//! - the participant reads its own rows locally and the other participants'
//!   rows from their leaders "as of `p`" ([`ShardRequest::ReadAt`]), while
//!   serving its own rows to them: it holds its locks, so nothing else can
//!   change them meanwhile;
//! - it evaluates the whole program over those reads — the same inputs
//!   everywhere, so the same decision everywhere, with no vote. Only the
//!   *active* participants do: the lowest (it records the client's result)
//!   and those the program may write in. A *passive* one (it only reads)
//!   serves its rows until every active one has applied `p`, then logs an
//!   empty entry for its progress; no one evaluates `p` again after that,
//!   so it keeps no record ([`crate::txn::locks::active_participants`]);
//! - it stops serving live reads, then commits its own writes together with
//!   its record as one entry of its Raft log: the rows it read at `p` (so an
//!   active participant that evaluates later, e.g. after a failover, still
//!   reads them as of `p`) and, on the lowest participant, the result the
//!   client gets;
//! - each participant records `p` as applied with its writes (and a
//!   watermark below which all are applied), so a new leader resumes from
//!   the watermark, skips what was applied, and a replayed entry is ignored.
//!
//! No participant votes or can refuse: the outcome follows from the order
//! and the data, and an abort (e.g. a unique violation) is the same
//! decision everywhere. There are no deadlocks: every vShard enqueues
//! sequenced transactions in the one global order, with all their locks at
//! once, and single-shard transactions wait for nothing remote. Records are
//! dropped once every vShard has completed their epoch ([`crate::gc::outcomes`]).
//!
//! The loop that enqueues positions in order is in [`round`]; running one
//! position (evaluating a program over the participants' reads) in
//! [`position`]; a sequenced multi-vShard statement's verdicts in
//! [`statement`].
//!
//! Why here and not in the `ordo-scheduler` crate: the lock table (that
//! crate) orders requests without knowing what they are; this loop runs
//! programs, reads other participants through the router and proposes
//! through the vShard's Raft group, all of which live above it.
//!
//! [`ShardRequest::ReadAt`]: crate::rpc::ShardRequest::ReadAt

mod position;
mod round;
mod statement;

use std::sync::Arc;
use std::time::Duration;

use ordo_raft::groups::vshard_group;
use ordo_raft::Consensus;

use crate::constants::{LEADERSHIP_POLL_MS, RETRY_BACKOFF_MS, STAT_POSITIONS_MAX};
use crate::rpc::Router;
use crate::sequenced::{EpochSource, SchedulerStat};
use crate::serve::LeaderExecutor;

use round::Progress;

/// Starts one scheduler per vShard this node hosts.
pub fn spawn_schedulers(router: Arc<Router>, local: Arc<LeaderExecutor>, source: EpochSource) {
    for v in 0..local.vshards() {
        let Some(group) = local.group(vshard_group(v)).cloned() else { continue };
        let s = Scheduler {
            vshard: v,
            term: 0,
            group,
            router: router.clone(),
            local: local.clone(),
            source: source.clone(),
        };
        tokio::spawn(s.run());
    }
}

#[derive(Clone)]
struct Scheduler {
    vshard: u32,
    /// The term of the current `lead()` round.
    term: u64,
    group: Arc<dyn Consensus>,
    router: Arc<Router>,
    local: Arc<LeaderExecutor>,
    source: EpochSource,
}

impl Scheduler {
    async fn run(mut self) {
        loop {
            let Some(term) = self.group.leader_term() else {
                tokio::time::sleep(Duration::from_millis(LEADERSHIP_POLL_MS)).await;
                continue;
            };
            self.term = term;
            if let Err(e) = self.lead().await {
                tracing::warn!(vshard = self.vshard, "scheduler step failed, resuming: {e}");
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
            }
            *self.stat() = SchedulerStat::default();
        }
    }

    /// Whether this node still leads in the term this round started in.
    fn leading(&self) -> bool {
        self.group.leader_term() == Some(self.term)
    }

    fn stat(&self) -> parking_lot::MutexGuard<'_, SchedulerStat> {
        self.local.board().stat_mut(self.vshard)
    }

    fn publish(&self, next_epoch: u64, progress: &Progress) {
        let unfinished: Vec<_> = progress.unfinished().collect();
        let mut stat = self.stat();
        stat.leading_term = Some(self.term);
        stat.next_epoch = next_epoch;
        stat.watermark = progress.watermark;
        stat.unfinished = unfinished.len();
        stat.oldest_unfinished = unfinished.into_iter().take(STAT_POSITIONS_MAX).collect();
        // The queue's front is its oldest unfinished position; with none,
        // everything read from the log so far is done.
        stat.complete_through_epoch = match progress.oldest() {
            Some(p) => p.epoch - 1,
            None => next_epoch - 1,
        };
    }
}
