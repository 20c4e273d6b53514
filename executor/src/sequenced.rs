//! Sequenced (cross-shard) transactions on the vShard leaders.
//!
//! Every vShard leader runs a scheduler task that reads the sequencer's
//! epoch log in order and takes each input its vShard participates in, in
//! that order, under the vShard's lock (so single-shard writes interleave
//! at well-defined points). For each such transaction `T` at position `p`:
//!
//! - every participant holds its lock while it is at `p` and serves reads
//!   of its rows "as of `p`" ([`ShardRequest::ReadAt`]) — nothing else can
//!   change them meanwhile;
//! - the coordinator (the lowest participant) runs the program over its own
//!   rows and the other participants' reads as of `p`, and commits its own
//!   writes together with the outcome (the result and every participant's
//!   write set) as one entry of its Raft log: from then on the outcome is
//!   durable and fixed;
//! - every other participant fetches that outcome from the coordinator
//!   ([`ShardRequest::Outcome`]) and commits its own writes;
//! - each participant records `p` as applied with its writes, so a new
//!   leader resumes after `p` and a replayed entry is ignored.
//!
//! No participant votes or can refuse: the outcome follows from the order
//! and the data, and an abort (e.g. a unique violation) is the same
//! decision everywhere. There are no deadlocks: all vShards take sequenced
//! transactions in the one global order.
//!
//! [`ShardRequest::ReadAt`]: crate::request::ShardRequest::ReadAt
//! [`ShardRequest::Outcome`]: crate::request::ShardRequest::Outcome

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ordo_sequencer::{Epoch, EpochLog};
use ordo_vshard::raft::Consensus;
use ordo_vshard::routing::vshard_group;
use ordo_vshard::engine::OwnedSnapshot;
use ordo_vshard::shard::{RowWrite, ShardCommand, ShardReader, TxnPos};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use crate::error::{ExecError, ExecResult};
use crate::interp::{self, TxnView};
use crate::program::{TxnProgram, TxnResult};
use crate::request::{decode, encode, ShardRequest, ShardResponse};
use crate::router::Router;

/// An input of the epoch log, as the executor reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SequencedInput {
    Txn(TxnProgram),
    /// A read position for a query that spans vShards: every participant
    /// takes a storage snapshot when it reaches it, and the query reads
    /// all its vShards as of that one point of the global order.
    Snapshot,
}

/// What a coordinator records for a transaction: its result and the
/// writes of every participant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxnRecord {
    pub result: TxnResult,
    pub writes: BTreeMap<u32, Vec<RowWrite>>,
}

/// Epochs read from the log at once.
const EPOCHS_PER_STEP: usize = 64;
/// How often an idle scheduler rechecks leadership.
const LEADERSHIP_POLL_MS: u64 = 200;
/// Longest a `ReadAt`/`Outcome` request waits on the serving side before
/// answering "not yet" (the caller asks again).
pub const LONG_POLL_MS: u64 = 3_000;
const RETRY_BACKOFF_MS: u64 = 20;

/// Per-vShard state of this node's leaders that requests from other nodes
/// look at: the position whose reads are being served, and a wake-up for
/// waiters on applied positions.
pub struct TxnBoard {
    serving: Vec<watch::Sender<Option<TxnPos>>>,
    /// The last position this node's scheduler of each vShard went past.
    reached: Vec<watch::Sender<TxnPos>>,
    applied: Vec<Notify>,
    snapshots: Mutex<BTreeMap<(u32, TxnPos), (tokio::time::Instant, Arc<OwnedSnapshot>)>>,
}

/// How long a read snapshot is kept for the query that asked for it.
const SNAPSHOT_KEEP_MS: u64 = 10_000;
/// Most read snapshots a node keeps (the oldest go first).
const SNAPSHOTS_MAX: usize = 4096;

impl TxnBoard {
    pub fn new(vshards: u32) -> TxnBoard {
        TxnBoard {
            serving: (0..vshards).map(|_| watch::channel(None).0).collect(),
            reached: (0..vshards).map(|_| watch::channel(TxnPos::default()).0).collect(),
            applied: (0..vshards).map(|_| Notify::new()).collect(),
            snapshots: Mutex::new(BTreeMap::new()),
        }
    }

    fn keep_snapshot(&self, vshard: u32, pos: TxnPos, snap: Arc<OwnedSnapshot>) {
        let now = tokio::time::Instant::now();
        let mut map = self.snapshots.lock();
        map.retain(|_, (at, _)| now.duration_since(*at) < Duration::from_millis(SNAPSHOT_KEEP_MS));
        while map.len() >= SNAPSHOTS_MAX {
            let oldest = map.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k).expect("not empty");
            map.remove(&oldest);
        }
        map.insert((vshard, pos), (now, snap));
    }

    /// The snapshot `vshard` took at `pos`: waits until this node's
    /// scheduler got there. `Ok(None)`: not yet, ask again.
    pub async fn snapshot_at(&self, vshard: u32, pos: TxnPos, timeout: Duration) -> ExecResult<Option<Arc<OwnedSnapshot>>> {
        let mut rx = self.reached[vshard as usize].subscribe();
        let reached = matches!(tokio::time::timeout(timeout, rx.wait_for(|r| *r >= pos)).await, Ok(Ok(_)));
        if !reached {
            return Ok(None);
        }
        match self.snapshots.lock().get(&(vshard, pos)) {
            Some((_, s)) => Ok(Some(s.clone())),
            None => Err(ExecError::SerializationFailure(format!(
                "the read snapshot of vShard {vshard} is gone (leader change or expiry); retry the query"
            ))),
        }
    }

    /// Waits until this node's leader of `vshard` holds position `pos`;
    /// false after `timeout`.
    pub async fn wait_serving(&self, vshard: u32, pos: TxnPos, timeout: Duration) -> bool {
        let mut rx = self.serving[vshard as usize].subscribe();
        let reached = matches!(tokio::time::timeout(timeout, rx.wait_for(|s| *s == Some(pos))).await, Ok(Ok(_)));
        reached
    }

    /// Waits until `vshard`'s replica here has applied `pos`; false after `timeout`.
    pub async fn wait_applied(&self, reader: &ShardReader, vshard: u32, pos: TxnPos, timeout: Duration) -> ExecResult<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.applied[vshard as usize].notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let applied = reader.applied_pos(vshard_group(vshard)).map_err(ExecError::Internal)?;
            if applied >= pos {
                return Ok(true);
            }
            // Followers and new leaders apply without this node's scheduler:
            // wake up now and then to look again.
            let wake = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
            if tokio::time::timeout_at(wake, notified).await.is_err() && tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }
}

/// Starts one scheduler per vShard this node hosts.
pub fn spawn_schedulers(router: Arc<Router>, log: EpochLog, epochs: watch::Receiver<u64>) {
    let vshards = router.local().vshards();
    for v in 0..vshards {
        let Some(group) = router.local().group(vshard_group(v)).cloned() else { continue };
        let s = Scheduler { vshard: v, group, router: router.clone(), log: log.clone(), epochs: epochs.clone() };
        tokio::spawn(s.run());
    }
}

struct Scheduler {
    vshard: u32,
    group: Arc<dyn Consensus>,
    router: Arc<Router>,
    log: EpochLog,
    epochs: watch::Receiver<u64>,
}

impl Scheduler {
    async fn run(mut self) {
        loop {
            if !self.group.is_leader() {
                tokio::time::sleep(Duration::from_millis(LEADERSHIP_POLL_MS)).await;
                continue;
            }
            if let Err(e) = self.lead().await {
                tracing::debug!(vshard = self.vshard, "scheduler step failed, resuming: {e}");
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
            }
        }
    }

    /// Takes this vShard's sequenced transactions in order while this node leads it.
    async fn lead(&mut self) -> Result<(), String> {
        // Everything committed before this term is applied: the recorded
        // position is where this leader resumes.
        self.group.write_barrier().await.map_err(|e| e.to_string())?;
        let reader = self.router.local().reader().clone();
        let gid = vshard_group(self.vshard);
        let mut pos = reader.applied_pos(gid)?;
        let mut next = pos.epoch.max(1);
        loop {
            if !self.group.is_leader() {
                return Ok(());
            }
            let epochs = self.log.read(next, EPOCHS_PER_STEP)?;
            if epochs.is_empty() {
                let _ = tokio::time::timeout(Duration::from_millis(LEADERSHIP_POLL_MS), self.epochs.wait_for(|&e| e >= next)).await;
                continue;
            }
            for epoch in &epochs {
                for (i, input) in epoch.inputs.iter().enumerate() {
                    let p = TxnPos { epoch: epoch.number, index: i as u32 };
                    if p <= pos || input.participants.binary_search(&self.vshard).is_err() {
                        continue;
                    }
                    let decoded = decode::<SequencedInput>(&input.program);
                    if let Ok(SequencedInput::Snapshot) = decoded {
                        self.snapshot(p).await?;
                    } else {
                        self.execute(p, epoch, &input.participants, decoded).await?;
                    }
                    pos = p;
                    self.router.local().board().reached[self.vshard as usize].send_replace(p);
                }
                next = epoch.number + 1;
            }
        }
    }

    /// A read position: the snapshot is taken in order, under the lock, so
    /// it holds exactly the sequenced transactions before `pos`; nothing is
    /// logged (a read leaves no trace).
    async fn snapshot(&self, pos: TxnPos) -> Result<(), String> {
        let local = self.router.local();
        let _turn = local.locks().lock(self.vshard).await;
        self.group.write_barrier().await.map_err(|e| e.to_string())?;
        local.board().keep_snapshot(self.vshard, pos, Arc::new(local.reader().snapshot()));
        Ok(())
    }

    async fn execute(
        &self,
        pos: TxnPos,
        epoch: &Epoch,
        participants: &[u32],
        program: ExecResult<SequencedInput>,
    ) -> Result<(), String> {
        let local = self.router.local();
        let _turn = local.locks().lock(self.vshard).await;
        if !self.group.is_leader() {
            return Err("lost leadership".into());
        }
        self.group.write_barrier().await.map_err(|e| e.to_string())?;
        let board = local.board();
        board.serving[self.vshard as usize].send_replace(Some(pos));
        let result = self.execute_locked(pos, epoch, participants, program).await;
        board.serving[self.vshard as usize].send_replace(None);
        board.applied[self.vshard as usize].notify_waiters();
        result
    }

    async fn execute_locked(
        &self,
        pos: TxnPos,
        epoch: &Epoch,
        participants: &[u32],
        program: ExecResult<SequencedInput>,
    ) -> Result<(), String> {
        let coordinator = participants[0];
        let command = if coordinator == self.vshard {
            let record = match program {
                Ok(SequencedInput::Txn(program)) => {
                    let allowed: BTreeSet<u32> = participants.iter().copied().collect();
                    let view = PositionView { pos, router: &self.router, leader: self };
                    match interp::run(&program, epoch.timestamp_us, self.router.local().vshards(), Some(&allowed), &view).await {
                        Ok(out) => TxnRecord { result: TxnResult::Committed(out.outputs), writes: out.writes },
                        // Transient trouble reaching another participant is
                        // not a decision: give up this attempt, run it again.
                        Err(ExecError::Unavailable(m)) => return Err(m),
                        Err(e) => TxnRecord { result: TxnResult::Aborted(e), writes: BTreeMap::new() },
                    }
                }
                Ok(SequencedInput::Snapshot) => unreachable!("snapshots are taken, not executed"),
                Err(e) => TxnRecord { result: TxnResult::Aborted(e), writes: BTreeMap::new() },
            };
            let own = record.writes.get(&self.vshard).cloned().unwrap_or_default();
            ShardCommand::Sequenced { pos, writes: own, outcome: Some(encode(&record)) }
        } else {
            let record = self.fetch_outcome(coordinator, pos).await?;
            let own = record.writes.get(&self.vshard).cloned().unwrap_or_default();
            ShardCommand::Sequenced { pos, writes: own, outcome: None }
        };
        self.group.propose(command.encode()).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn fetch_outcome(&self, coordinator: u32, pos: TxnPos) -> Result<TxnRecord, String> {
        loop {
            if !self.group.is_leader() {
                return Err("lost leadership".into());
            }
            match self.router.call(vshard_group(coordinator), &ShardRequest::Outcome { pos }).await {
                Ok(ShardResponse::Outcome { record: Some(b), .. }) => return decode(&b).map_err(|e| e.to_string()),
                Ok(ShardResponse::Outcome { .. }) => continue,
                Ok(other) => return Err(format!("unexpected reply {other:?}")),
                Err(e) => {
                    tracing::debug!(vshard = self.vshard, coordinator, "outcome not available yet: {e}");
                    tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
                }
            }
        }
    }
}

/// What the coordinator reads while at `pos`: its own rows locally, other
/// participants' rows from their leaders as of the same position.
struct PositionView<'a> {
    pos: TxnPos,
    router: &'a Router,
    leader: &'a Scheduler,
}

impl PositionView<'_> {
    async fn remote(&self, vshard: u32, req: ShardRequest) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
        loop {
            if !self.leader.group.is_leader() {
                return Err(ExecError::Unavailable("lost leadership".into()));
            }
            match self.router.call(vshard_group(vshard), &req).await {
                Ok(ShardResponse::Pairs(rows)) => return Ok(rows),
                Ok(ShardResponse::NotYet) => continue,
                Ok(other) => return Err(ExecError::Internal(format!("unexpected reply {other:?}"))),
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait::async_trait]
impl TxnView for PositionView<'_> {
    async fn get(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>> {
        if vshard == self.leader.vshard {
            return self.router.local().reader().get(vshard_group(vshard), key).map_err(|e| ExecError::Internal(e.to_string()));
        }
        let req = ShardRequest::ReadAt { pos: self.pos, vshard, key: key.to_vec(), prefix: false };
        Ok(self.remote(vshard, req).await?.into_iter().next().map(|(_, v)| v))
    }

    async fn scan(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
        if vshard == self.leader.vshard {
            return self.router.local().reader().scan_prefix(vshard_group(vshard), prefix).map_err(ExecError::ProgramLimitExceeded);
        }
        let req = ShardRequest::ReadAt { pos: self.pos, vshard, key: prefix.to_vec(), prefix: true };
        self.remote(vshard, req).await
    }
}
