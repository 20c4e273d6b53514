//! Runs [`ShardRequest`]s on the leader of their group (and the few any
//! replica answers), one file per kind of request:
//!
//! - [`reads`]: single-vShard reads in order with the writes, reads at a
//!   read point for queries over several vShards, reconnaissance;
//! - [`writes`]: single-vShard INSERT, UPDATE/DELETE, transaction programs
//!   and table drops, and each vShard's part of a sequenced statement;
//! - [`pending`]: the writes a leader queued and has not applied, which
//!   its later writes read (early lock release);
//! - [`positions`]: questions about sequenced positions from the other
//!   participants and gateways (reads as of a position, outcomes, verdicts);
//! - [`groups`]: group-level requests (read index, catalog, sequencing,
//!   epochs, checksums, collection).
//!
//! Reads wait for a read barrier (every write committed before the request
//! is applied here), so they are linearizable. Writes take the vShard's FIFO
//! lock, pass the barrier, read the rows they need, compute the write set and
//! queue it for the leader's term, releasing the lock once it is queued: each
//! write sees every earlier write to its vShard (applied or pending), and a
//! write computed by a deposed leader cannot commit (its term is over).

mod groups;
mod pending;
mod positions;
mod reads;
mod writes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use ordo_expr::{storage_error, ExecError};
use ordo_metrics::SchedulerMetrics;
use ordo_raft::groups::group_vshard;
use ordo_raft::{Consensus, ConsensusError, GroupId, RequestId, RequestReply};
use ordo_scheduler::ShardLocks;
use ordo_sequencer::Sealer;
use ordo_vshard::shard::ShardReader;

use crate::constants::{FENCE_WAIT_MS, RECONNAISSANCES_INFLIGHT_MAX, REPLICA_CHECKSUM_WAIT_MS};
use crate::rpc::{LocalServer, Router, ShardRequest, ShardResponse};
use crate::sequenced::{FenceMark, LocalEpochs, TxnBoard};
pub(crate) use pending::PendingWrites;

/// Why a request was not served: this node does not lead the group (the
/// caller follows the hint), or an error for the client.
enum Fail {
    NotLeader(Option<u64>),
    Exec(ExecError),
}

impl From<ExecError> for Fail {
    fn from(e: ExecError) -> Fail {
        Fail::Exec(e)
    }
}

impl From<ConsensusError> for Fail {
    fn from(e: ConsensusError) -> Fail {
        match e {
            ConsensusError::NotLeader { leader, .. } => Fail::NotLeader(leader),
            ConsensusError::Unavailable { reason, .. } => Fail::Exec(ExecError::Unavailable(reason)),
            ConsensusError::Unknown { reason, .. } => Fail::Exec(ExecError::OutcomeUnknown(reason)),
        }
    }
}

/// The reply bytes of a request proposed once (see `ordo_raft::requests`).
fn request_reply(reply: RequestReply) -> Result<Vec<u8>, Fail> {
    match reply {
        RequestReply::Applied(bytes) | RequestReply::Duplicate(Some(bytes)) => Ok(bytes),
        RequestReply::Duplicate(None) => Err(Fail::Exec(ExecError::OutcomeUnknown(
            "the request was applied by an earlier attempt; its reply was too large to keep".into(),
        ))),
        RequestReply::TooLate => Err(Fail::Exec(ExecError::OutcomeUnknown(
            "this attempt came too long after the request was first sent to tell whether an earlier one applied; \
             it was not applied"
                .into(),
        ))),
    }
}

/// See [`storage_error`].
fn storage(e: impl std::fmt::Display) -> Fail {
    Fail::Exec(storage_error(e))
}

/// A vShard's lock table is full: overload, retryable.
fn queue_full(vshard: u32, o: ordo_scheduler::Overloaded) -> Fail {
    Fail::Exec(ExecError::Overloaded(format!("{} transactions queued on vShard {vshard}", o.0)))
}

fn vshard_of_group(gid: GroupId) -> Result<u32, Fail> {
    group_vshard(gid).ok_or_else(|| Fail::Exec(ExecError::Internal(format!("group {gid} is not a vShard"))))
}

/// What a fenced request passed: its scheduler round, and the epoch
/// through which that round had enqueued every sequenced input.
#[derive(Clone, Copy, Debug)]
struct Fence {
    mark: FenceMark,
    through_epoch: u64,
}

pub struct LeaderExecutor {
    groups: BTreeMap<GroupId, Arc<dyn Consensus>>,
    reader: ShardReader,
    locks: ShardLocks,
    /// Writes this node's vShard leaders queued and have not applied.
    pending: Arc<PendingWrites>,
    vshards: u32,
    board: TxnBoard,
    /// On nodes with a sequencer replica: orders inputs while it leads.
    sealer: Option<Sealer>,
    /// On nodes with a sequencer replica: its epochs.
    epochs: Option<LocalEpochs>,
    /// Reconnaissances this node runs at once (each scans a table's rows
    /// in a vShard, up to `PROGRAM_READ_BYTES_MAX`); more wait.
    reconnaissances: tokio::sync::Semaphore,
    /// The node's router (which holds this executor), for the questions a
    /// read asks other vShards; set once at start.
    router: OnceLock<Weak<Router>>,
    /// Single-vShard reads that met earlier cross-shard writes of their
    /// rows and were ordered before them (see `snapshot_read`).
    reads_ordered_before: AtomicU64,
    /// Those that waited for them.
    reads_waited: AtomicU64,
    /// Positions run, lock waits, remote reads (`GET /metrics`).
    metrics: SchedulerMetrics,
}

impl LeaderExecutor {
    pub fn new(
        groups: BTreeMap<GroupId, Arc<dyn Consensus>>,
        reader: ShardReader,
        vshards: u32,
        sealer: Option<Sealer>,
        epochs: Option<LocalEpochs>,
        early_lock_release: bool,
    ) -> LeaderExecutor {
        LeaderExecutor {
            groups,
            reader,
            locks: ShardLocks::new(vshards),
            pending: Arc::new(PendingWrites::new(vshards, early_lock_release)),
            vshards,
            board: TxnBoard::new(vshards),
            sealer,
            epochs,
            reconnaissances: tokio::sync::Semaphore::new(RECONNAISSANCES_INFLIGHT_MAX),
            router: OnceLock::new(),
            reads_ordered_before: Default::default(),
            reads_waited: Default::default(),
            metrics: SchedulerMetrics::default(),
        }
    }

    /// What this executor and its schedulers record, for the node's registry.
    pub fn metrics(&self) -> &SchedulerMetrics {
        &self.metrics
    }

    /// Reads the lock tables' sizes into [`LeaderExecutor::metrics`] (when scraped).
    pub fn refresh_metrics(&self) {
        let (mut requests, mut granted) = (0usize, 0usize);
        for v in 0..self.vshards {
            let s = self.locks.table(v).stats();
            requests += s.requests;
            granted += s.granted;
        }
        let waiting = requests.saturating_sub(granted);
        self.metrics.set_lock_queues(requests as i64, waiting as i64);
    }

    /// Single-vShard reads that met earlier cross-shard writes of their
    /// rows: how many were ordered before them, how many waited.
    pub fn read_skips(&self) -> (u64, u64) {
        (self.reads_ordered_before.load(Ordering::Relaxed), self.reads_waited.load(Ordering::Relaxed))
    }

    /// Gives this executor the router that holds it (see `router`).
    pub fn set_router(&self, router: &Arc<Router>) {
        let _ = self.router.set(Arc::downgrade(router));
    }

    pub fn group(&self, gid: GroupId) -> Option<&Arc<dyn Consensus>> {
        self.groups.get(&gid)
    }

    pub fn vshards(&self) -> u32 {
        self.vshards
    }

    pub fn reader(&self) -> &ShardReader {
        &self.reader
    }

    pub fn locks(&self) -> &ShardLocks {
        &self.locks
    }

    pub(crate) fn pending(&self) -> &PendingWrites {
        &self.pending
    }

    pub fn board(&self) -> &TxnBoard {
        &self.board
    }

    pub async fn handle(&self, gid: GroupId, req: ShardRequest) -> ShardResponse {
        let Some(group) = self.groups.get(&gid) else {
            return ShardResponse::NotLeader { leader: None };
        };
        if let ShardRequest::ReplicaChecksum { index } = req {
            // Served by every replica, leader or not.
            let wait = Duration::from_millis(REPLICA_CHECKSUM_WAIT_MS);
            return match group.replica_checksum(index, wait).await {
                Ok(hash) => ShardResponse::Checksum { index, hash },
                Err(e) => ShardResponse::Error(ExecError::Unavailable(e.to_string())),
            };
        }
        if !group.is_leader() {
            return ShardResponse::NotLeader { leader: group.leader() };
        }
        let (req, fence) = match req {
            ShardRequest::Fenced { after_epoch, req } => match self.fence(gid, group.as_ref(), after_epoch).await {
                Ok(mark) => (*req, Some(mark)),
                Err(Fail::NotLeader(leader)) => return ShardResponse::NotLeader { leader },
                Err(Fail::Exec(e)) => return ShardResponse::Error(e),
            },
            // Every write is fenced (`Router::call`): its row versions
            // are placed after the epochs its fence waited for.
            req if req.needs_fence() || matches!(&req, ShardRequest::Once { req, .. } if req.needs_fence()) => {
                return ShardResponse::Error(ExecError::Internal(
                    "a request that must be fenced arrived unfenced".into(),
                ))
            }
            req => (req, None),
        };
        let (req, id) = match req {
            ShardRequest::Once { id, req } if req.is_write() => (*req, Some(id)),
            ShardRequest::Once { .. } => {
                return ShardResponse::Error(ExecError::Internal("a request id on a request that is no write".into()))
            }
            req => (req, None),
        };
        match self.dispatch(gid, group.as_ref(), req, fence, id).await {
            Ok(r) => r,
            Err(Fail::NotLeader(leader)) => ShardResponse::NotLeader { leader },
            Err(Fail::Exec(e)) => ShardResponse::Error(e),
        }
    }

    /// Runs a request this node leads the group of, by kind.
    async fn dispatch(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        req: ShardRequest,
        fence: Option<Fence>,
        id: Option<RequestId>,
    ) -> Result<ShardResponse, Fail> {
        use ShardRequest as R;
        match req {
            // Reads.
            R::Get { table, pks } => self.get_rows(gid, group, &table, pks, fence).await,
            R::Scan { table, prefix } => self.scan_rows(gid, group, &table, &prefix, fence).await,
            R::ScanAsOf { epoch, index, prefix } => self.rows_as_of(gid, group, epoch, index, &prefix).await,
            R::AppliedNow { pos } => self.applied_now(gid, group, pos).await,
            R::Reconnoitre { table, assignments, delete, selection, params } => {
                let shape =
                    crate::txn::interp::ModifyShape { assignments: &assignments, delete, selection: &selection };
                self.reconnoitre(gid, &table, &shape, &params).await
            }
            // Writes.
            R::Insert { table, rows } => self.insert(gid, group, &table, rows, fence, id).await,
            R::Dml(dml) => self.modify(gid, group, &dml, fence, id).await,
            R::Program(program) => self.run_program(gid, group, &program, fence, id).await,
            R::DropTable { table_id } => self.drop_table(gid, group, table_id, fence, id).await,
            // Sequenced positions.
            R::ReadAt { pos, vshard, key, prefix } => self.read_at(gid, group, pos, vshard, key, prefix).await,
            R::Outcome { pos, record } => self.outcome(gid, pos, record).await,
            R::VerdictAt { pos } => self.verdict_at(gid, pos).await,
            R::CompleteThrough => self.complete_through(gid, group),
            // Group-level.
            R::ReadIndex => self.read_index(group).await,
            R::Status => Ok(ShardResponse::Status(group.status())),
            R::Meta(cmd) => self.meta(group, &cmd, id).await,
            R::Catalog => self.catalog(gid, group).await,
            R::Sequence(input) => self.sequence(gid, input, id).await,
            R::Frontier => self.frontier(gid, group).await,
            R::Epochs { from, max, wait_ms } => self.epochs(gid, group, from, max, wait_ms).await,
            R::Checksum => self.checksum(group).await,
            R::Collect { through_epoch } => self.collect(gid, group, through_epoch).await,
            R::ReplicaChecksum { .. } => unreachable!("handled before the leader check"),
            R::Fenced { .. } | R::Once { .. } => {
                Err(ExecError::Internal("a fenced or once request inside another".into()).into())
            }
        }
    }

    /// Waits until this leader's scheduler of the vShard has enqueued every
    /// epoch up to `after_epoch` (see [`crate::rpc::frontier`]); returns the
    /// scheduler round that did, which must still be running when the
    /// request's locks are granted (a new round re-enqueues those epochs).
    async fn fence(&self, gid: GroupId, group: &dyn Consensus, after_epoch: u64) -> Result<Fence, Fail> {
        let vshard = vshard_of_group(gid)?;
        let term = group.leader_term().ok_or(Fail::NotLeader(group.leader()))?;
        match self.board.wait_ingested(vshard, term, after_epoch, Duration::from_millis(FENCE_WAIT_MS)).await {
            Some((mark, through_epoch)) => Ok(Fence { mark, through_epoch }),
            None => Err(ExecError::Unavailable(format!(
                "vShard {vshard} has not reached epoch {after_epoch} of the sequencer within {FENCE_WAIT_MS} ms"
            ))
            .into()),
        }
    }

    /// A fenced request must be granted in the scheduler round that let it
    /// through the fence (a new round re-enqueues the epochs).
    fn check_round(&self, group: &dyn Consensus, vshard: u32, mark: Option<FenceMark>) -> Result<(), Fail> {
        if let Some(mark) = mark {
            if group.leader_term() != Some(mark.term) || !self.board.round_is(vshard, mark) {
                return Err(Fail::NotLeader(group.leader()));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl LocalServer for LeaderExecutor {
    async fn handle(&self, gid: GroupId, req: ShardRequest) -> ShardResponse {
        LeaderExecutor::handle(self, gid, req).await
    }
}
