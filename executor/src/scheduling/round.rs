//! One scheduler round: while this node leads the vShard in one term, read
//! the epoch log in order and enqueue each position the vShard takes part
//! in, in that order, in its lock table; each then runs on its own task.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_expr::ExecResult;
use ordo_metrics::{seconds_since, waiter};
use ordo_raft::groups::vshard_group;
use ordo_scheduler::{LockSpan, SequencedTag, Ticket};
use ordo_sequencer::{Epoch, EpochInput};
use ordo_vshard::shard::{SequencedProgress, TxnPos};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Scheduler;
use crate::codec::decode;
use crate::constants::{EPOCHS_PER_STEP, LEADERSHIP_POLL_MS, RETRY_BACKOFF_MS, SEQUENCED_INFLIGHT_MAX};
use crate::sequenced::FenceMark;
use crate::serve::LeaderExecutor;
use crate::txn::locks::{active_participants, lock_set, statement_locks};
use crate::txn::statement::SequencedInput;

/// The positions this leader enqueued, in order, and which have completed:
/// the watermark is the end of the completed prefix.
#[derive(Default)]
pub(super) struct Progress {
    order: VecDeque<(TxnPos, bool)>,
    pub(super) watermark: TxnPos,
}

impl Progress {
    /// The watermark once `pos` completes (it is applied by the command
    /// that carries this value, so it may count itself).
    pub(super) fn watermark_with(&self, pos: TxnPos) -> TxnPos {
        let mut w = self.watermark;
        for (p, done) in &self.order {
            if *done || *p == pos {
                w = *p;
            } else {
                break;
            }
        }
        w
    }

    fn complete(&mut self, pos: TxnPos) {
        if let Some(e) = self.order.iter_mut().find(|(p, _)| *p == pos) {
            e.1 = true;
        }
        while let Some((p, true)) = self.order.front().copied() {
            self.watermark = p;
            self.order.pop_front();
        }
    }

    /// Enqueued positions not complete yet, oldest first.
    pub(super) fn unfinished(&self) -> impl Iterator<Item = TxnPos> + '_ {
        self.order.iter().filter(|(_, done)| !done).map(|(p, _)| *p)
    }

    /// The oldest enqueued position not complete yet (the queue's front:
    /// completed ones leave it from the front).
    pub(super) fn oldest(&self) -> Option<TxnPos> {
        self.order.front().map(|(p, _)| *p)
    }
}

/// Ends a round's fence when dropped — before the round's tasks release
/// their locks (it is declared after them), so no request fenced in the
/// round can be granted in the gap and run ahead of a position the next
/// round will enqueue again.
struct RoundFence {
    local: Arc<LeaderExecutor>,
    vshard: u32,
}

impl Drop for RoundFence {
    fn drop(&mut self) {
        self.local.board().end_round(self.vshard);
    }
}

/// What a round's loop and its positions' tasks share.
struct Round {
    /// The vShard's durable progress when the round began.
    resume: SequencedProgress,
    progress: Arc<Mutex<Progress>>,
    inflight: Arc<Semaphore>,
    mark: FenceMark,
    /// Every epoch committed before this round began: a previous leader
    /// may have served their positions to other participants, so no
    /// request is let through the fence before they are enqueued here.
    floor: u64,
    /// Set by a position's task that fails: it releases its locks
    /// without having applied, so the round must stop letting requests
    /// through (they could be ordered past it) before it does; the
    /// round ends when the loop sees the failure.
    broken: Arc<AtomicBool>,
}

/// The read of the next epochs under way.
type Reading = Pin<Box<dyn Future<Output = ExecResult<Vec<Epoch>>> + Send>>;

/// A round's tasks: one per position, each ending with its outcome.
type Tasks = JoinSet<Result<(), String>>;

impl Scheduler {
    /// Takes this vShard's sequenced transactions in order while this node
    /// leads it: each is enqueued in the lock table in epoch order and then
    /// runs on its own task, so transactions that do not conflict overlap.
    /// Returning drops the task set, which aborts the unfinished ones
    /// (releasing their locks); the next round resumes from the durable
    /// progress and skips what was applied.
    pub(super) async fn lead(&mut self) -> Result<(), String> {
        // Everything committed before this term is applied: the recorded
        // progress is where this leader resumes.
        self.group.write_barrier().await.map_err(|e| e.to_string())?;
        let resume = self.local.reader().sequenced_progress(vshard_group(self.vshard))?;
        let progress = Arc::new(Mutex::new(Progress { order: VecDeque::new(), watermark: resume.watermark }));
        let mut tasks = Tasks::new();
        // Declared after `tasks`: dropped first (see `RoundFence`).
        let _fence = RoundFence { local: self.local.clone(), vshard: self.vshard };
        let mark = FenceMark { term: self.term, round: self.local.board().next_round() };
        let floor = self.router.frontier().await.map_err(|e| e.to_string())?;
        let inflight = Arc::new(Semaphore::new(SEQUENCED_INFLIGHT_MAX));
        let round = Round { resume, progress, inflight, mark, floor, broken: Arc::new(AtomicBool::new(false)) };
        // Epochs up to the one collected through hold nothing left to do
        // here (the collector saw this vShard complete them); the sequencer
        // may have dropped them. Any later epoch missing is a gap.
        let collected = self.local.reader().collected_through(vshard_group(self.vshard))?;
        let mut next = round.resume.watermark.epoch.max(collected.saturating_add(1)).max(1);
        // Epochs before the watermark's are complete, so enqueued.
        self.publish_ingested(&round, next - 1);
        // It outlives the loop's turns that a finished task ends: dropping
        // it would cancel (and a remote source re-send) its long poll.
        let mut reading: Option<Reading> = None;
        loop {
            while let Some(done) = tasks.try_join_next() {
                done.map_err(|e| e.to_string())??;
            }
            if !self.leading() {
                return Ok(());
            }
            self.publish(next, &round.progress.lock());
            let Some(epochs) = self.next_epochs(&mut reading, next, &mut tasks).await? else { continue };
            if let Err(m) = contiguous(self.vshard, next, &epochs) {
                tracing::error!("{m}");
                return Err(m);
            }
            for epoch in epochs {
                let number = epoch.number;
                self.enqueue_epoch(&round, Arc::new(epoch), &mut tasks).await?;
                next = number + 1;
                self.publish_ingested(&round, number);
            }
        }
    }

    /// Lets requests through the round's fence up to epoch `through`.
    fn publish_ingested(&self, round: &Round, through: u64) {
        if through >= round.floor && !round.broken.load(Ordering::SeqCst) {
            self.local.board().set_ingested(self.vshard, round.mark, through);
        }
    }

    /// The next epochs from `next` on, or `None` when a task finished (or
    /// the read failed) first: the loop looks at its tasks and comes back.
    async fn next_epochs(
        &self,
        reading: &mut Option<Reading>,
        next: u64,
        tasks: &mut Tasks,
    ) -> Result<Option<Vec<Epoch>>, String> {
        let read = reading.get_or_insert_with(|| {
            let (source, router) = (self.source.clone(), self.router.clone());
            let wait = Duration::from_millis(LEADERSHIP_POLL_MS);
            Box::pin(async move { source.read_wait(&router, next, EPOCHS_PER_STEP, wait).await })
        });
        tokio::select! {
            read = read => {
                *reading = None;
                match read {
                    Ok(epochs) => Ok(Some(epochs)),
                    // Ending the round would release every position's locks:
                    // try again instead.
                    Err(e) => {
                        tracing::debug!(vshard = self.vshard, "reading epochs failed, retrying: {e}");
                        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
                        Ok(None)
                    }
                }
            },
            Some(done) = tasks.join_next() => {
                done.map_err(|e| e.to_string())??;
                Ok(None)
            }
        }
    }

    /// Enqueues every position of `epoch` this vShard takes part in (and has
    /// not applied), in order, each running on its own task once granted.
    async fn enqueue_epoch(&self, round: &Round, epoch: Arc<Epoch>, tasks: &mut Tasks) -> Result<(), String> {
        for (i, input) in epoch.inputs.iter().enumerate() {
            let pos = TxnPos { epoch: epoch.number, index: i as u32 };
            if round.resume.is_applied(pos) || input.participants.binary_search(&self.vshard).is_err() {
                continue;
            }
            let decoded = decode::<SequencedInput>(&input.program);
            let (spans, writers) = self.locks_of(input, &decoded);
            let permit = round.inflight.clone().acquire_owned().await.map_err(|e| e.to_string())?;
            let enqueued = Instant::now();
            let ticket = self.enqueue(pos, spans, writers).await;
            round.progress.lock().order.push_back((pos, false));
            let this = self.clone();
            let epoch = epoch.clone();
            let participants = input.participants.clone();
            let (progress, broken) = (round.progress.clone(), round.broken.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let _locks = ticket.granted().await;
                let metrics = this.local.metrics();
                metrics.lock_granted(waiter::SEQUENCED, seconds_since(enqueued));
                let started = Instant::now();
                let done = this.execute(pos, &epoch, &participants, decoded, &progress).await;
                metrics.executed(done.is_ok(), seconds_since(started));
                if done.is_err() {
                    // Before `_locks` goes (see `Round::broken`).
                    broken.store(true, Ordering::SeqCst);
                    this.local.board().end_round(this.vshard);
                }
                done?;
                progress.lock().complete(pos);
                Ok::<(), String>(())
            });
        }
        Ok(())
    }

    /// The locks `input` takes in this vShard, and the vShards where it may
    /// write: a snapshot read that would wait for it need not while none of
    /// those has applied it.
    fn locks_of(&self, input: &EpochInput, decoded: &ExecResult<SequencedInput>) -> (Vec<LockSpan>, Vec<u32>) {
        match decoded {
            Ok(SequencedInput::Txn(p)) => {
                let mut locks = lock_set(p, self.local.vshards());
                let writers = active_participants(&locks, &input.participants);
                (locks.remove(&self.vshard).unwrap_or_default(), writers)
            }
            Ok(SequencedInput::Statement(st)) => (statement_locks(st, self.vshard), input.participants.clone()),
            Err(_) => (Vec::new(), input.participants.clone()),
        }
    }

    /// Enqueues a sequenced request; while the table is full of
    /// single-shard requests, waits for them to drain.
    async fn enqueue(&self, pos: TxnPos, spans: Vec<LockSpan>, writers: Vec<u32>) -> Ticket {
        loop {
            let table = self.local.locks().table(self.vshard);
            let tag = SequencedTag { pos, writers: writers.clone() };
            match table.enqueue_sequenced(spans.clone(), Some(tag)) {
                Ok(t) => return t,
                Err(_) => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
            }
        }
    }
}

/// Epochs read from `next` on must start at `next`: skipping would
/// silently drop this vShard's part of the missing epochs' transactions
/// (a premature collection), so a gap stops the scheduler, loudly.
fn contiguous(vshard: u32, next: u64, epochs: &[Epoch]) -> Result<(), String> {
    match epochs.first() {
        Some(first) if first.number != next => Err(format!(
            "vShard {vshard}: gap in the epoch log: needed epoch {next}, the log starts at {}",
            first.number
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_in_the_epochs_read_is_an_error() {
        let epoch = |number| Epoch { number, timestamp_us: 0, inputs: Vec::new() };
        assert!(contiguous(3, 5, &[epoch(5), epoch(6)]).is_ok());
        assert!(contiguous(3, 5, &[]).is_ok());
        let e = contiguous(3, 5, &[epoch(7)]).unwrap_err();
        assert!(e.contains("needed epoch 5"), "{e}");
    }
}
