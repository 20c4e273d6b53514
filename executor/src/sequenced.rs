//! Sequenced (cross-shard) transactions on the vShard leaders.
//!
//! Every vShard leader runs a scheduler task that reads the sequencer's
//! epoch log in order and enqueues each input its vShard participates in,
//! in that order, in the vShard's lock table (`ordo_scheduler`) with the
//! locks derived from the program ([`crate::locks`]); single-shard writes
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
//!   so it keeps no record ([`active_participants`]);
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
//! dropped once every vShard has completed their epoch ([`crate::collect`]).
//!
//! [`ShardRequest::ReadAt`]: crate::request::ShardRequest::ReadAt

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ordo_scheduler::LockMode;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use ordo_sequencer::Epoch;

use crate::epochs::EpochSource;
use ordo_vshard::raft::Consensus;
use ordo_vshard::routing::vshard_group;
use ordo_vshard::shard::{RowWrite, ScanError, ShardCommand, ShardReader, TxnPos};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use crate::error::{ExecError, ExecResult};
use crate::interp::{self, TxnView};
use crate::locks::lock_set;
use crate::locks::statement_locks;
use crate::program::{StmtOutput, TxnProgram, TxnResult};
use crate::request::{decode, encode, ShardRequest, ShardResponse, MultiShardStatement};
use crate::router::Router;

/// An input of the epoch log, as the executor reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SequencedInput {
    Txn(TxnProgram),
    /// One autocommit statement over several vShards: every participant
    /// runs its own part over its own rows and publishes its verdict; the
    /// lowest participant decides from all verdicts (the first error in
    /// participant order, else the sum of rows affected) and the others
    /// take its decision. No rows travel, and the outcome is the same
    /// everywhere: each verdict follows from the order and the data alone.
    Statement(MultiShardStatement),
}

/// What a participant records with its writes for a transaction.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TxnRecord {
    /// On the lowest participant: what the client gets.
    pub result: Option<TxnResult>,
    /// Every read of this vShard's rows the program made, as of its
    /// position, in the order it made them.
    pub reads: Vec<CachedRead>,
}

/// One read of a participant's rows (`prefix`: a scan of every row under
/// `key`, else the row at `key`) and what it returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedRead {
    pub prefix: bool,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "ordo_vshard::codec::byte_pairs")]
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    /// The scan alone was over `PROGRAM_READ_BYTES_MAX`: its rows are not
    /// kept (`rows` is empty) and a read of it fails, as it did when the
    /// program made it.
    pub over_limit: bool,
}

impl TxnRecord {
    /// The read of `key` (`prefix`: scan) the program made.
    pub fn read(&self, prefix: bool, key: &[u8]) -> Option<&CachedRead> {
        self.reads.iter().find(|r| r.prefix == prefix && r.key == key)
    }
}

/// The record this replica of `vshard` stores for sequenced position `pos`
/// (`None`: it stored none — nothing read and no result — or it was
/// collected).
pub fn stored_record(reader: &ShardReader, vshard: u32, pos: TxnPos) -> ExecResult<Option<TxnRecord>> {
    let bytes = reader.get(vshard_group(vshard), &ordo_vshard::shard::outcome_key(pos)).map_err(crate::error::storage_error)?;
    bytes.map(|b| decode(&b)).transpose()
}

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

const STAT_POSITIONS_MAX: usize = 8;

/// Epochs read from the log at once.
const EPOCHS_PER_STEP: usize = 64;
/// How often an idle scheduler rechecks leadership.
const LEADERSHIP_POLL_MS: u64 = 500;
/// Longest a `ReadAt`/`Outcome` request waits on the serving side
/// before answering "not yet" (the caller asks again).
pub const LONG_POLL_MS: u64 = 3_000;
const RETRY_BACKOFF_MS: u64 = 20;
/// Failed evaluations of one position after which each further batch of
/// this many is logged as an error.
const EVALUATION_ATTEMPTS_ALARM: u32 = 500;
/// Sequenced transactions one vShard leader runs at once (enqueued in the
/// lock table, waiting or executing); the scheduler stops reading epochs
/// while this many are unfinished.
const SEQUENCED_INFLIGHT_MAX: usize = 1024;
/// Verdicts the lowest participant of a sequenced statement fetches at once.
const VERDICT_FETCHES_MAX: usize = 16;

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
            let wake = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
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
                None => Err(ExecError::Internal(format!("vShard {vshard} applied epoch {} with no verdict recorded", pos.epoch))),
            }
        })
        .await
    }

    /// Waits until this node's scheduler of `vshard`, in a round of `term`,
    /// has enqueued every epoch up to `epoch`; the round and the epoch it
    /// had reached then, or `None` after `timeout`.
    pub async fn wait_ingested(&self, vshard: u32, term: u64, epoch: u64, timeout: Duration) -> Option<(FenceMark, u64)> {
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

    fn set_ingested(&self, vshard: u32, mark: FenceMark, epoch: u64) {
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

/// Ends a round's fence when dropped — before the round's tasks release
/// their locks (it is declared after them), so no request fenced in the
/// round can be granted in the gap and run ahead of a position the next
/// round will enqueue again.
struct RoundFence {
    local: Arc<crate::leader::LeaderExecutor>,
    vshard: u32,
}

impl Drop for RoundFence {
    fn drop(&mut self) {
        self.local.board().ingested[self.vshard as usize].send_replace(None);
    }
}

/// Marks `pos` as served live on `vshard` while it lives. A guard, so an
/// execution aborted by a change of term stops serving too: a position
/// left marked would be read live long after its locks were gone.
struct Serving<'a> {
    board: &'a TxnBoard,
    vshard: u32,
    pos: TxnPos,
}

impl<'a> Serving<'a> {
    fn start(board: &'a TxnBoard, vshard: u32, pos: TxnPos) -> Serving<'a> {
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
struct Published<'a> {
    board: &'a TxnBoard,
    vshard: u32,
    pos: TxnPos,
    token: u64,
}

impl<'a> Published<'a> {
    fn start(board: &'a TxnBoard, vshard: u32, pos: TxnPos, verdict: TxnResult) -> Published<'a> {
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

/// The decision on a sequenced statement from the participants' verdicts
/// in participant order: the first error, else the rows affected summed.
fn decide<'a>(verdicts: impl Iterator<Item = &'a TxnResult>) -> TxnResult {
    let mut rows_affected = 0u64;
    for v in verdicts {
        match v {
            TxnResult::Aborted(e) => return TxnResult::Aborted(e.clone()),
            TxnResult::Committed(out) => rows_affected += out.iter().map(|o| o.rows_affected).sum::<u64>(),
        }
    }
    TxnResult::Committed(vec![StmtOutput { rows_affected, ..Default::default() }])
}

/// Starts one scheduler per vShard this node hosts.
pub fn spawn_schedulers(router: Arc<Router>, source: EpochSource) {
    let vshards = router.local().vshards();
    for v in 0..vshards {
        let Some(group) = router.local().group(vshard_group(v)).cloned() else { continue };
        let s = Scheduler { vshard: v, term: 0, group, router: router.clone(), source: source.clone() };
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
    source: EpochSource,
}

/// The positions this leader enqueued, in order, and which have completed:
/// the watermark is the end of the completed prefix.
#[derive(Default)]
struct Progress {
    order: VecDeque<(TxnPos, bool)>,
    watermark: TxnPos,
}

impl Progress {
    /// The watermark once `pos` completes (it is applied by the command
    /// that carries this value, so it may count itself).
    fn watermark_with(&self, pos: TxnPos) -> TxnPos {
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
        self.router.local().board().schedulers[self.vshard as usize].lock()
    }

    fn publish(&self, next_epoch: u64, progress: &Progress) {
        let unfinished: Vec<TxnPos> = progress.order.iter().filter(|(_, done)| !done).map(|(p, _)| *p).collect();
        let mut stat = self.stat();
        stat.leading_term = Some(self.term);
        stat.next_epoch = next_epoch;
        stat.watermark = progress.watermark;
        stat.unfinished = unfinished.len();
        stat.oldest_unfinished = unfinished.into_iter().take(STAT_POSITIONS_MAX).collect();
        // The queue's front is its oldest unfinished position; with none,
        // everything read from the log so far is done.
        stat.complete_through_epoch = match progress.order.front() {
            Some((p, _)) => p.epoch - 1,
            None => next_epoch - 1,
        };
    }

    /// Takes this vShard's sequenced transactions in order while this node
    /// leads it: each is enqueued in the lock table in epoch order and then
    /// runs on its own task, so transactions that do not conflict overlap.
    /// Returning drops the task set, which aborts the unfinished ones
    /// (releasing their locks); the next round resumes from the durable
    /// progress and skips what was applied.
    async fn lead(&mut self) -> Result<(), String> {
        // Everything committed before this term is applied: the recorded
        // progress is where this leader resumes.
        self.group.write_barrier().await.map_err(|e| e.to_string())?;
        let local = self.router.local().clone();
        let gid = vshard_group(self.vshard);
        let resume = local.reader().sequenced_progress(gid)?;
        let progress = Arc::new(Mutex::new(Progress { order: VecDeque::new(), watermark: resume.watermark }));
        let inflight = Arc::new(Semaphore::new(SEQUENCED_INFLIGHT_MAX));
        let mut tasks = JoinSet::new();
        // Declared after `tasks`: dropped first (see `RoundFence`).
        let _fence = RoundFence { local: local.clone(), vshard: self.vshard };
        let mark = FenceMark { term: self.term, round: local.board().rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 };
        // Every epoch committed before this round began: a previous leader
        // may have served their positions to other participants, so no
        // request is let through the fence before they are enqueued here.
        let floor = self.router.frontier().await.map_err(|e| e.to_string())?;
        // Set by a position's task that fails: it releases its locks
        // without having applied, so the round must stop letting requests
        // through (they could be ordered past it) before it does; the
        // round ends when the loop sees the failure.
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let publish_ingested = |through: u64| {
            if through >= floor && !broken.load(std::sync::atomic::Ordering::SeqCst) {
                local.board().set_ingested(self.vshard, mark, through);
            }
        };
        let mut next = resume.watermark.epoch.max(1);
        // Epochs before the watermark's are complete, so enqueued.
        publish_ingested(next - 1);
        // The read of the next epochs under way. It outlives the loop's
        // turns that a finished task ends: dropping it would cancel (and a
        // remote source re-send) its long poll each time.
        let mut reading: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ExecResult<Vec<Epoch>>> + Send>>> = None;
        loop {
            while let Some(done) = tasks.try_join_next() {
                done.map_err(|e| e.to_string())??;
            }
            if !self.leading() {
                return Ok(());
            }
            self.publish(next, &progress.lock());
            let read = reading.get_or_insert_with(|| {
                let (source, router) = (self.source.clone(), self.router.clone());
                let wait = Duration::from_millis(LEADERSHIP_POLL_MS);
                Box::pin(async move { source.read_wait(&router, next, EPOCHS_PER_STEP, wait).await })
            });
            let epochs = tokio::select! {
                read = read => match read {
                    Ok(epochs) => {
                        reading = None;
                        epochs
                    }
                    // Ending the round would release every position's locks:
                    // try again instead.
                    Err(e) => {
                        reading = None;
                        tracing::debug!(vshard = self.vshard, "reading epochs failed, retrying: {e}");
                        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
                        continue;
                    }
                },
                Some(done) = tasks.join_next() => {
                    done.map_err(|e| e.to_string())??;
                    continue;
                }
            };
            for epoch in epochs {
                let epoch = Arc::new(epoch);
                for (i, input) in epoch.inputs.iter().enumerate() {
                    let pos = TxnPos { epoch: epoch.number, index: i as u32 };
                    if resume.is_applied(pos) || input.participants.binary_search(&self.vshard).is_err() {
                        continue;
                    }
                    let decoded = decode::<SequencedInput>(&input.program);
                    // The vShards where it may write: a snapshot read that
                    // would wait for it need not while none has applied it.
                    let mut writers = input.participants.clone();
                    let spans = match &decoded {
                        Ok(SequencedInput::Txn(p)) => {
                            let mut locks = lock_set(p, local.vshards());
                            writers = active_participants(&locks, &input.participants);
                            locks.remove(&self.vshard).unwrap_or_default()
                        }
                        Ok(SequencedInput::Statement(st)) => statement_locks(st, self.vshard),
                        Err(_) => Vec::new(),
                    };
                    let permit = inflight.clone().acquire_owned().await.map_err(|e| e.to_string())?;
                    let ticket = loop {
                        let table = local.locks().table(self.vshard);
                        let tag = ordo_scheduler::SequencedTag { pos, writers: writers.clone() };
                        match table.enqueue_sequenced(spans.clone(), Some(tag)) {
                            Ok(t) => break t,
                            // Full of single-shard requests: they drain, wait.
                            Err(_) => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
                        }
                    };
                    progress.lock().order.push_back((pos, false));
                    let this = self.clone();
                    let epoch = epoch.clone();
                    let participants = input.participants.clone();
                    let progress = progress.clone();
                    let broken = broken.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        let _locks = ticket.granted().await;
                        let done = this.execute(pos, &epoch, &participants, decoded, &progress).await;
                        if done.is_err() {
                            // Before `_locks` goes (see `broken`).
                            broken.store(true, std::sync::atomic::Ordering::SeqCst);
                            this.router.local().board().ingested[this.vshard as usize].send_replace(None);
                        }
                        done?;
                        progress.lock().complete(pos);
                        Ok::<(), String>(())
                    });
                }
                next = epoch.number + 1;
                publish_ingested(epoch.number);
            }
        }
    }

    async fn execute(
        &self,
        pos: TxnPos,
        epoch: &Epoch,
        participants: &[u32],
        program: ExecResult<SequencedInput>,
        progress: &Mutex<Progress>,
    ) -> Result<(), String> {
        let local = self.router.local();
        let board = local.board();
        // Trouble before the proposal (a barrier, a participant out of
        // reach) is retried here, holding the locks: ending the round would
        // release them to requests queued behind this position.
        let mut attempts: u32 = 0;
        // A statement's verdict stays published until its record is applied.
        let mut published = None;
        let (writes, record) = loop {
            attempts += 1;
            self.group.write_barrier().await.map_err(|e| e.to_string())?;
            // A round that has not noticed a newer term must not serve.
            if !self.leading() {
                return Err("lost leadership".into());
            }
            // Already applied: an earlier round of this term proposed it
            // and the barrier did not wait for that entry. Nothing is left
            // to do — and evaluating again could not succeed once passive
            // participants, which keep no record, have moved on.
            if local.reader().is_applied(vshard_group(self.vshard), pos)? {
                return Ok(());
            }
            let evaluated = match &program {
                Ok(SequencedInput::Statement(st)) => {
                    self.run_statement(pos, epoch.timestamp_us, participants, st, &mut published).await
                }
                _ => {
                    let serving = Serving::start(board, self.vshard, pos);
                    let evaluated = self.evaluate(pos, epoch, participants, program.clone()).await;
                    // No live reads once the writes may apply: from here a
                    // participant reading this vShard as of `pos` waits for
                    // the record.
                    drop(serving);
                    evaluated
                }
            };
            match evaluated {
                Ok(done) => break done,
                Err(e) if self.leading() => {
                    // Transient trouble passes; an error that persists while
                    // this node leads (e.g. a participant's record lacks a
                    // read: nondeterminism) stalls the vShard — say so.
                    if attempts % EVALUATION_ATTEMPTS_ALARM == 0 {
                        tracing::error!(vshard = self.vshard, ?pos, attempts, "evaluation keeps failing: {e}");
                    } else {
                        tracing::debug!(vshard = self.vshard, ?pos, "evaluation failed, retrying: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
                }
                Err(e) => return Err(e),
            }
        };
        if !self.leading() {
            return Err("lost leadership".into());
        }
        let watermark = progress.lock().watermark_with(pos);
        let outcome = (record.result.is_some() || !record.reads.is_empty()).then(|| encode(&record));
        let command = ShardCommand::Sequenced { pos, writes, outcome, watermark };
        let result = self.group.propose(command.encode()).await.map(|_| ()).map_err(|e| e.to_string());
        board.applied[self.vshard as usize].notify_waiters();
        result
    }

    /// Runs the program over this vShard's rows and the other participants'
    /// reads as of `pos`: this vShard's writes and its record.
    async fn evaluate(
        &self,
        pos: TxnPos,
        epoch: &Epoch,
        participants: &[u32],
        program: ExecResult<SequencedInput>,
    ) -> Result<(Vec<RowWrite>, TxnRecord), String> {
        let vshards = self.router.local().vshards();
        let lowest = participants[0] == self.vshard;
        let view = PositionView { pos, router: &self.router, leader: self, own_reads: Mutex::new(Vec::new()) };
        let (result, mut writes) = match program {
            Ok(SequencedInput::Txn(program)) => {
                let locks = lock_set(&program, vshards);
                let active = active_participants(&locks, participants);
                if active.binary_search(&self.vshard).is_err() {
                    // Passive: serve reads until no one needs them.
                    self.await_applied(pos, &active).await?;
                    return Ok((Vec::new(), TxnRecord::default()));
                }
                match interp::run(&program, epoch.timestamp_us, vshards, Some(&locks), &view).await {
                    Ok(out) => (TxnResult::Committed(out.outputs), out.writes),
                    // Transient trouble reaching another participant is
                    // not a decision: give up this attempt, run it again.
                    Err(ExecError::Unavailable(m)) => return Err(m),
                    Err(e) => (TxnResult::Aborted(e), BTreeMap::new()),
                }
            }
            Ok(SequencedInput::Statement(_)) => unreachable!("not a program"),
            Err(e) => (TxnResult::Aborted(e), BTreeMap::new()),
        };
        let record = TxnRecord { result: lowest.then_some(result), reads: view.own_reads.into_inner() };
        Ok((writes.remove(&self.vshard).unwrap_or_default(), record))
    }
}

/// The participants of a program that evaluate it: the lowest (which
/// records the client's result) and every one it may write in. The others
/// are *passive* (Calvin's term): they only read, so they do not run the
/// program; they serve their rows at the position, live, until every
/// active participant has applied it — from then on no one evaluates it
/// again, so no one reads them at it again, and they keep no record.
pub fn active_participants(locks: &crate::locks::LockSet, participants: &[u32]) -> Vec<u32> {
    let writes = |v: &u32| locks.get(v).is_some_and(|spans| spans.iter().any(|s| s.mode == LockMode::Write));
    participants.iter().enumerate().filter(|(i, v)| *i == 0 || writes(v)).map(|(_, v)| *v).collect()
}

impl Scheduler {
    /// Waits until every vShard of `active` has applied `pos`, asking
    /// VERDICT_FETCHES_MAX at a time (each a long poll).
    async fn await_applied(&self, pos: TxnPos, active: &[u32]) -> Result<(), String> {
        let waits: Vec<_> = active.iter().map(|&v| self.applied_on(v, pos)).collect();
        futures::stream::iter(waits).buffer_unordered(VERDICT_FETCHES_MAX).try_collect::<Vec<()>>().await?;
        Ok(())
    }

    async fn applied_on(&self, vshard: u32, pos: TxnPos) -> Result<(), String> {
        loop {
            if !self.leading() {
                return Err("lost leadership".into());
            }
            match self.router.call(vshard_group(vshard), &ShardRequest::Outcome { pos, record: false }).await {
                Ok(ShardResponse::Outcome { applied: true, .. }) => return Ok(()),
                Ok(ShardResponse::Outcome { applied: false, .. }) => continue,
                Ok(other) => return Err(format!("unexpected reply {other:?}")),
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
                Err(e) => return Err(format!("whether vShard {vshard} applied {pos:?}: {e}")),
            }
        }
    }

    /// Runs this vShard's part of a sequenced statement and reaches the
    /// decision (see [`SequencedInput::Statement`]): this vShard's writes
    /// (none unless every part succeeded) and its record (its verdict; on
    /// the lowest participant the decision, which is what the client gets).
    async fn run_statement<'b>(
        &'b self,
        pos: TxnPos,
        now_us: i64,
        participants: &[u32],
        statement: &MultiShardStatement,
        published: &mut Option<Published<'b>>,
    ) -> Result<(Vec<RowWrite>, TxnRecord), String> {
        let board = self.router.local().board();
        let (writes, verdict) = match self.router.local().statement_part(self.vshard, statement, now_us).await {
            Ok(w) => {
                let rows_affected = w.len() as u64;
                (w, TxnResult::Committed(vec![StmtOutput { rows_affected, ..Default::default() }]))
            }
            // Trouble of this attempt (storage reads fail as `Unavailable`),
            // not a property of the data.
            Err(e @ (ExecError::Unavailable(_) | ExecError::Overloaded(_) | ExecError::StatementTimeout(_))) => {
                return Err(e.to_string())
            }
            // Anything else follows from the data (an evaluation error is
            // `Internal` too): the same on any leader, so a verdict.
            Err(e) => (Vec::new(), TxnResult::Aborted(e)),
        };
        let lowest = participants[0];
        let (decision, record) = if lowest == self.vshard {
            // Collected first: a stream over a closure trips the compiler's
            // `Send` check of the spawned task.
            let others: Vec<_> = participants[1..].iter().map(|&v| self.verdict_of(v, pos)).collect();
            let verdicts: Vec<TxnResult> = futures::stream::iter(others).buffered(VERDICT_FETCHES_MAX).try_collect().await?;
            let decision = decide(std::iter::once(&verdict).chain(&verdicts));
            *published = Some(Published::start(board, self.vshard, pos, decision.clone()));
            (decision.clone(), decision)
        } else {
            *published = Some(Published::start(board, self.vshard, pos, verdict.clone()));
            (self.verdict_of(lowest, pos).await?, verdict)
        };
        let writes = if matches!(decision, TxnResult::Committed(_)) { writes } else { Vec::new() };
        Ok((writes, TxnRecord { result: Some(record), reads: Vec::new() }))
    }

    /// Participant `vshard`'s verdict on the statement at `pos`, from its
    /// leader; waits while it has none yet.
    async fn verdict_of(&self, vshard: u32, pos: TxnPos) -> Result<TxnResult, String> {
        loop {
            if !self.leading() {
                return Err("lost leadership".into());
            }
            match self.router.call(vshard_group(vshard), &ShardRequest::VerdictAt { pos }).await {
                Ok(ShardResponse::Verdict(v)) => return Ok(v),
                Ok(ShardResponse::NotYet) => continue,
                Ok(other) => return Err(format!("unexpected reply {other:?}")),
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
                Err(e) => return Err(format!("the verdict of vShard {vshard}: {e}")),
            }
        }
    }
}

/// A participant's scan of its own rows as a program reads it: the rows;
/// `None` when the scan alone is over a bound (rows or bytes), which fails
/// the program wherever and whenever it is read; or a storage error
/// (`Unavailable`: this attempt's trouble).
pub fn program_scan(scanned: Result<Vec<(Vec<u8>, Vec<u8>)>, ScanError>) -> ExecResult<Option<Vec<(Vec<u8>, Vec<u8>)>>> {
    match scanned {
        Ok(rows) if crate::program::read_bytes(&rows) <= crate::program::PROGRAM_READ_BYTES_MAX => Ok(Some(rows)),
        Ok(_) | Err(ScanError::TooManyRows(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What a participant reads while at `pos`: its own rows locally (kept
/// for its record), other participants' rows from their leaders as of the
/// same position.
struct PositionView<'a> {
    pos: TxnPos,
    router: &'a Router,
    leader: &'a Scheduler,
    own_reads: Mutex<Vec<CachedRead>>,
}

impl PositionView<'_> {
    async fn remote(&self, vshard: u32, req: ShardRequest) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
        loop {
            if !self.leader.leading() {
                return Err(ExecError::Unavailable("lost leadership".into()));
            }
            match self.router.call(vshard_group(vshard), &req).await {
                Ok(ShardResponse::Pairs(rows)) => return Ok(rows),
                Ok(ShardResponse::NotYet) => continue,
                // Only what follows from the data may decide the outcome: a
                // scan over its bound fails the same way on every participant.
                // Anything else (a broken reply, an internal error) is this
                // attempt's trouble, not a decision: `Unavailable` retries it.
                Err(e @ ExecError::ProgramLimitExceeded(_)) => return Err(e),
                Ok(other) => return Err(ExecError::Unavailable(format!("unexpected reply {other:?}"))),
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
                Err(e) => return Err(ExecError::Unavailable(format!("reading vShard {vshard} as of the position: {e}"))),
            }
        }
    }
}

#[async_trait::async_trait]
impl TxnView for PositionView<'_> {
    async fn get(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>> {
        if vshard == self.leader.vshard {
            // A storage error is not a decision the others would share.
            let row = self.router.local().reader().get(vshard_group(vshard), key).map_err(crate::error::storage_error)?;
            let rows = row.iter().map(|v| (key.to_vec(), v.clone())).collect();
            self.own_reads.lock().push(CachedRead { prefix: false, key: key.to_vec(), rows, over_limit: false });
            return Ok(row);
        }
        let req = ShardRequest::ReadAt { pos: self.pos, vshard, key: key.to_vec(), prefix: false };
        Ok(self.remote(vshard, req).await?.into_iter().next().map(|(_, v)| v))
    }

    async fn scan(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
        if vshard == self.leader.vshard {
            let scanned = self.router.local().reader().scan_prefix(vshard_group(vshard), prefix);
            let Some(rows) = program_scan(scanned)? else {
                // The record keeps that the scan was over a bound, not its rows.
                let over = CachedRead { prefix: true, key: prefix.to_vec(), rows: Vec::new(), over_limit: true };
                self.own_reads.lock().push(over);
                return Err(crate::program::read_limit_exceeded());
            };
            self.own_reads.lock().push(CachedRead { prefix: true, key: prefix.to_vec(), rows: rows.clone(), over_limit: false });
            return Ok(rows);
        }
        let req = ShardRequest::ReadAt { pos: self.pos, vshard, key: prefix.to_vec(), prefix: true };
        self.remote(vshard, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_scheduler::LockSpan;

    fn ok(rows_affected: u64) -> TxnResult {
        TxnResult::Committed(vec![StmtOutput { rows_affected, ..Default::default() }])
    }

    #[test]
    fn the_lowest_participant_and_the_writers_are_active() {
        let mut locks = crate::locks::LockSet::new();
        locks.insert(1, vec![LockSpan::prefix(b"t", LockMode::Read)]);
        locks.insert(2, vec![LockSpan::prefix(b"t", LockMode::Read), LockSpan::key(b"t1", LockMode::Write)]);
        locks.insert(3, vec![LockSpan::prefix(b"t", LockMode::Read)]);
        locks.insert(4, vec![LockSpan::key(b"u", LockMode::Write)]);
        assert_eq!(active_participants(&locks, &[1, 2, 3, 4]), vec![1, 2, 4]);
    }

    #[test]
    fn a_statement_commits_with_the_rows_of_all_parts_or_aborts_with_the_first_error() {
        assert_eq!(decide([ok(2), ok(0), ok(5)].iter()), ok(7));
        let dup = TxnResult::Aborted(ExecError::UniqueViolation("a".into()));
        let div = TxnResult::Aborted(ExecError::DivisionByZero("b".into()));
        // The first error in participant order, whichever arrived first.
        assert_eq!(decide([ok(1), div.clone(), dup.clone()].iter()), div);
        assert_eq!(decide([dup.clone(), ok(3)].iter()), dup);
    }
}
