//! What this node's vShard leaders know about sequenced positions, shared
//! between the schedulers that run them and the requests from other nodes
//! that ask about them: which positions are being served live, the verdicts
//! reached and not yet applied, how far each scheduler got, and the round
//! fence that single-shard requests pass.

use std::collections::BTreeMap;
use std::time::Duration;

use ordo_expr::{ExecError, ExecResult};
use ordo_raft::groups::vshard_group;
use ordo_vshard::shard::{ShardReader, TxnPos};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{watch, Notify};

use crate::constants::{POSITION_POLL_MS, STAT_POSITIONS_MAX};
use crate::txn::program::TxnResult;
use crate::txn::record::stored_record;

/// A scheduler's state as operators see it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SchedulerStat {
    /// The term this scheduler leads in; `None` while it does not lead.
    pub leading_term: Option<u64>,
    /// The next epoch it reads from the sequencer's log.
    pub next_epoch: u64,
    /// Every sequenced position of this vShard up to here is complete.
    pub watermark: TxnPos,
    /// Enqueued, not yet complete.
    pub unfinished: usize,
    /// The oldest unfinished positions (at most `STAT_POSITIONS_MAX`).
    pub oldest_unfinished: Vec<TxnPos>,
    /// Positions whose locks are held and whose reads are being served.
    pub serving: Vec<TxnPos>,
    /// Every sequenced transaction of this vShard in an epoch up to here is
    /// applied (epochs it does not take part in count as done). What the
    /// collector takes the minimum of.
    pub complete_through_epoch: u64,
}

/// Per-vShard state of this node's leaders that requests from other nodes
/// look at: the positions whose reads are being served, how far each
/// scheduler got, and wake-ups for waiters.
pub struct TxnBoard {
    /// Per vShard: positions served live, with how many executions of each
    /// are under way (two, briefly, across a change of term).
    serving: Vec<watch::Sender<BTreeMap<TxnPos, u32>>>,
    /// Per vShard: verdicts on sequenced statements (the lowest
    /// participant's: decisions) this node's leader reached and has not
    /// yet applied; from then on they are in the position's record.
    /// Each with the token of the `Published` guard that put it there.
    verdicts: Vec<watch::Sender<BTreeMap<TxnPos, (u64, TxnResult)>>>,
    /// Source of `Published` tokens, unique on this node.
    publications: std::sync::atomic::AtomicU64,
    schedulers: Vec<Mutex<SchedulerStat>>,
    applied: Vec<Notify>,
    /// Per vShard: this node's scheduler round `FenceMark`, has enqueued
    /// every input of every epoch up to the epoch (`None` between rounds).
    ingested: Vec<watch::Sender<Option<(FenceMark, u64)>>>,
    /// Source of round numbers, unique on this node.
    rounds: std::sync::atomic::AtomicU64,
}

impl TxnBoard {
    pub fn new(vshards: u32) -> TxnBoard {
        TxnBoard {
            serving: (0..vshards).map(|_| watch::channel(BTreeMap::new()).0).collect(),
            verdicts: (0..vshards).map(|_| watch::channel(BTreeMap::new()).0).collect(),
            publications: std::sync::atomic::AtomicU64::new(0),
            schedulers: (0..vshards).map(|_| Mutex::new(SchedulerStat::default())).collect(),
            applied: (0..vshards).map(|_| Notify::new()).collect(),
            ingested: (0..vshards).map(|_| watch::channel(None).0).collect(),
            rounds: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// What `vshard`'s scheduler on this node is doing, for operators
    /// (`GET /v1/admin/transactions`).
    pub fn scheduler_stat(&self, vshard: u32) -> SchedulerStat {
        let mut stat = self.schedulers[vshard as usize].lock().clone();
        stat.serving = self.serving[vshard as usize].borrow().keys().copied().take(STAT_POSITIONS_MAX).collect();
        stat
    }

    /// Whether this node's leader of `vshard` holds the locks of sequenced
    /// position `pos` and has not started to commit its writes.
    pub fn is_serving(&self, vshard: u32, pos: TxnPos) -> bool {
        self.serving[vshard as usize].borrow().contains_key(&pos)
    }

    /// Calls `look` until it finds something: again whenever `changes`
    /// changes, this node applies something of `vshard`, or 50 ms pass
    /// (followers and new leaders apply without this node's scheduler);
    /// `None` once `timeout` has passed.
    async fn look_until<W, T>(
        &self,
        vshard: u32,
        changes: &mut watch::Receiver<W>,
        timeout: Duration,
        mut look: impl FnMut(&mut watch::Receiver<W>) -> ExecResult<Option<T>>,
    ) -> ExecResult<Option<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let applied = self.applied[vshard as usize].notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            if let Some(found) = look(changes)? {
                return Ok(Some(found));
            }
            let wake = (tokio::time::Instant::now() + Duration::from_millis(POSITION_POLL_MS)).min(deadline);
            let _ = tokio::time::timeout_at(wake, async {
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = applied => {}
                }
            })
            .await;
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Waits until this node's replica of `vshard` has applied `pos`
    /// (`Some(AsOf::Applied)`) or, with `or_serving`, its leader serves `pos`
    /// live (`Some(AsOf::Serving)`); `None` after `timeout`.
    pub async fn wait_position(
        &self,
        reader: &ShardReader,
        vshard: u32,
        pos: TxnPos,
        or_serving: bool,
        timeout: Duration,
    ) -> ExecResult<Option<AsOf>> {
        let mut serving = self.serving[vshard as usize].subscribe();
        self.look_until(vshard, &mut serving, timeout, |serving| {
            // Applied first: a position can be applied and (briefly, across
            // rounds) still marked as served.
            if reader.is_applied(vshard_group(vshard), pos).map_err(ExecError::Internal)? {
                return Ok(Some(AsOf::Applied));
            }
            Ok((or_serving && serving.borrow_and_update().contains_key(&pos)).then_some(AsOf::Serving))
        })
        .await
    }

    /// This node's verdict on its part of the sequenced statement at `pos`
    /// of `vshard` (the lowest participant's: the decision), from its
    /// leader while it has not applied it, else from the record; `None`
    /// after `timeout`. A verdict follows from the order and the data as
    /// of `pos` alone, so unlike rows it needs no leadership check: any
    /// leader that reached one reached the same.
    pub async fn verdict_at(
        &self,
        reader: &ShardReader,
        vshard: u32,
        pos: TxnPos,
        timeout: Duration,
    ) -> ExecResult<Option<TxnResult>> {
        let mut published = self.verdicts[vshard as usize].subscribe();
        let gid = vshard_group(vshard);
        self.look_until(vshard, &mut published, timeout, |published| {
            if let Some((_, v)) = published.borrow_and_update().get(&pos) {
                return Ok(Some(v.clone()));
            }
            if !reader.is_applied(gid, pos).map_err(ExecError::Internal)? {
                return Ok(None);
            }
            match stored_record(reader, vshard, pos)?.and_then(|r| r.result) {
                Some(v) => Ok(Some(v)),
                None => Err(ExecError::Internal(format!(
                    "vShard {vshard} applied epoch {} with no verdict recorded",
                    pos.epoch
                ))),
            }
        })
        .await
    }

    /// Waits until this node's scheduler of `vshard`, in a round of `term`,
    /// has enqueued every epoch up to `epoch`; the round and the epoch it
    /// had reached then, or `None` after `timeout`.
    pub async fn wait_ingested(
        &self,
        vshard: u32,
        term: u64,
        epoch: u64,
        timeout: Duration,
    ) -> Option<(FenceMark, u64)> {
        let mut rx = self.ingested[vshard as usize].subscribe();
        let reached = rx.wait_for(|now| matches!(now, Some((m, e)) if m.term == term && *e >= epoch));
        let mark = match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(now)) => *now,
            _ => None,
        };
        mark
    }

    /// Whether `mark`'s round is still the one running: a request fenced in
    /// it is ordered after the epochs that round enqueued. A new round
    /// enqueues them again, after whatever is queued by then.
    pub fn round_is(&self, vshard: u32, mark: FenceMark) -> bool {
        matches!(*self.ingested[vshard as usize].borrow(), Some((m, _)) if m == mark)
    }

    /// Ends `vshard`'s round: no request passes its fence any more.
    pub(crate) fn end_round(&self, vshard: u32) {
        self.ingested[vshard as usize].send_replace(None);
    }

    /// A new round's number, unique on this node.
    pub(crate) fn next_round(&self) -> u64 {
        self.rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// `vshard`'s scheduler state, for the scheduler to update.
    pub(crate) fn stat_mut(&self, vshard: u32) -> parking_lot::MutexGuard<'_, SchedulerStat> {
        self.schedulers[vshard as usize].lock()
    }

    /// Wakes everyone waiting for this node to apply something of `vshard`.
    pub(crate) fn notify_applied(&self, vshard: u32) {
        self.applied[vshard as usize].notify_waiters();
    }

    pub(crate) fn set_ingested(&self, vshard: u32, mark: FenceMark, epoch: u64) {
        self.ingested[vshard as usize].send_if_modified(|now| {
            let changed = *now != Some((mark, epoch));
            *now = Some((mark, epoch));
            changed
        });
    }
}

/// How a position can be read: live from the leader holding its locks,
/// or from its record once applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    Serving,
    Applied,
}

/// A scheduler round: the term it leads in and its number on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FenceMark {
    pub term: u64,
    pub round: u64,
}

/// Marks `pos` as served live on `vshard` while it lives. A guard, so an
/// execution aborted by a change of term stops serving too: a position
/// left marked would be read live long after its locks were gone.
pub(crate) struct Serving<'a> {
    board: &'a TxnBoard,
    vshard: u32,
    pos: TxnPos,
}

impl<'a> Serving<'a> {
    pub(crate) fn start(board: &'a TxnBoard, vshard: u32, pos: TxnPos) -> Serving<'a> {
        board.serving[vshard as usize].send_modify(|s| *s.entry(pos).or_default() += 1);
        Serving { board, vshard, pos }
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.board.serving[self.vshard as usize].send_modify(|s| {
            let n = s.get_mut(&self.pos).expect("a serving guard's position is marked");
            *n -= 1;
            if *n == 0 {
                s.remove(&self.pos);
            }
        });
    }
}

/// Publishes a verdict on `pos` of `vshard` while it lives: until the
/// position's writes and record are applied (or the attempt is given up).
/// A later guard for the same position (the next attempt, or the next
/// round's execution) replaces the entry, and dropping this one then
/// leaves the newer entry alone.
pub(crate) struct Published<'a> {
    board: &'a TxnBoard,
    vshard: u32,
    pos: TxnPos,
    token: u64,
}

impl<'a> Published<'a> {
    pub(crate) fn start(board: &'a TxnBoard, vshard: u32, pos: TxnPos, verdict: TxnResult) -> Published<'a> {
        let token = board.publications.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        board.verdicts[vshard as usize].send_modify(|m| {
            m.insert(pos, (token, verdict));
        });
        Published { board, vshard, pos, token }
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        self.board.verdicts[self.vshard as usize].send_if_modified(|m| {
            let mine = matches!(m.get(&self.pos), Some((t, _)) if *t == self.token);
            if mine {
                m.remove(&self.pos);
            }
            mine
        });
    }
}
