//! Runs [`ShardRequest`]s on the leader of their group.
//!
//! Reads wait for a read barrier (every write committed before the request
//! is applied here), so they are linearizable. Writes take the vShard's FIFO
//! lock, pass the barrier, read the rows they need, compute the write set and
//! propose it: each write sees every earlier write to its vShard, and a write
//! computed by a deposed leader cannot commit (its term is over).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::catalog::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{encode_row, Datum};
use ordo_meta::logic::{decode_result, encode_command};
use ordo_scheduler::{LockGuard, LockMode, LockSpan, ShardLocks};
use ordo_vshard::raft::{Consensus, ConsensusError};
use ordo_vshard::routing::group_vshard;
use ordo_vshard::shard::{
    decode_table_version, row_key, table_prefix, table_version_key, RowWrite, ShardCommand, ShardReader,
};
use crate::program::RECON_KEYS_MAX;
use ordo_vshard::GroupId;

use crate::arrow::{input_at, param_scalar};
use crate::coerce::coerce;
use crate::error::{storage_error, ExecError, ExecResult};
use crate::interp::{decode_rows, row_indexes, rows_with_index, TxnView, ROW_INDEX_COLUMN};
use crate::request::{DmlRequest, ShardRequest, ShardResponse, MultiShardStatement};
use crate::sequenced::{AsOf, FenceMark, TxnBoard, LONG_POLL_MS};
use ordo_sequencer::{SealError, Sealer};
use crate::epochs::LocalEpochs;
use ordo_vshard::routing::{vshard_group, META_GROUP, SEQUENCER_GROUP};
use ordo_vshard::engine::OwnedSnapshot;
use ordo_vshard::shard::{outcome_key, TxnPos};

/// Most rows one UPDATE/DELETE may change in one vShard.
const DML_ROWS_PER_SHARD_MAX: usize = 100_000;
/// Longest a fenced request waits for its vShard to reach its epoch.
const FENCE_WAIT_MS: u64 = 10_000;
/// How long a replica waits to apply a checksum point before answering.
const REPLICA_CHECKSUM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
        }
    }
}

/// See [`storage_error`].
fn storage(e: impl std::fmt::Display) -> Fail {
    Fail::Exec(storage_error(e))
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
    router: std::sync::OnceLock<std::sync::Weak<crate::router::Router>>,
    /// Single-vShard reads that met earlier cross-shard writes of their
    /// rows and were ordered before them (see `snapshot_read`).
    reads_ordered_before: std::sync::atomic::AtomicU64,
    /// Those that waited for them.
    reads_waited: std::sync::atomic::AtomicU64,
}

/// See `LeaderExecutor::reconnaissances`.
const RECONNAISSANCES_INFLIGHT_MAX: usize = 4;
/// Most questions a read asks instead of waiting (see `snapshot_read`).
const SKIP_CHECKS_MAX: usize = 8;

impl LeaderExecutor {
    pub fn new(
        groups: BTreeMap<GroupId, Arc<dyn Consensus>>,
        reader: ShardReader,
        vshards: u32,
        sealer: Option<Sealer>,
        epochs: Option<LocalEpochs>,
    ) -> LeaderExecutor {
        LeaderExecutor {
            groups,
            reader,
            locks: ShardLocks::new(vshards),
            vshards,
            board: TxnBoard::new(vshards),
            sealer,
            epochs,
            reconnaissances: tokio::sync::Semaphore::new(RECONNAISSANCES_INFLIGHT_MAX),
            router: std::sync::OnceLock::new(),
            reads_ordered_before: Default::default(),
            reads_waited: Default::default(),
        }
    }

    /// Single-vShard reads that met earlier cross-shard writes of their
    /// rows: how many were ordered before them, how many waited.
    pub fn read_skips(&self) -> (u64, u64) {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        (get(&self.reads_ordered_before), get(&self.reads_waited))
    }

    /// Gives this executor the router that holds it (see `router`).
    pub fn set_router(&self, router: &Arc<crate::router::Router>) {
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

    pub fn board(&self) -> &TxnBoard {
        &self.board
    }

    pub async fn handle(&self, gid: GroupId, req: ShardRequest) -> ShardResponse {
        let Some(group) = self.groups.get(&gid) else {
            return ShardResponse::NotLeader { leader: None };
        };
        if let ShardRequest::ReplicaChecksum { index } = req {
            // Served by every replica, leader or not.
            return match group.replica_checksum(index, REPLICA_CHECKSUM_WAIT).await {
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
            req if req.needs_fence() => {
                return ShardResponse::Error(ExecError::Internal("a request that must be fenced arrived unfenced".into()))
            }
            req => (req, None),
        };
        match self.run(gid, group.as_ref(), req, fence).await {
            Ok(r) => r,
            Err(Fail::NotLeader(leader)) => ShardResponse::NotLeader { leader },
            Err(Fail::Exec(e)) => ShardResponse::Error(e),
        }
    }

    /// Waits until this leader's scheduler of the vShard has enqueued every
    /// epoch up to `after_epoch` (see [`crate::fence`]); returns the
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

    async fn run(&self, gid: GroupId, group: &dyn Consensus, req: ShardRequest, fence: Option<Fence>) -> Result<ShardResponse, Fail> {
        match req {
            ShardRequest::ReadIndex => {
                group.read_barrier().await?;
                Ok(ShardResponse::Count(group.status().applied_index.unwrap_or(0)))
            }
            ShardRequest::Meta(cmd) => {
                let reply = group.propose(encode_command(&cmd)).await?;
                let result = decode_result(&reply).map_err(ExecError::Internal)?;
                Ok(ShardResponse::Meta(result))
            }
            ShardRequest::Get { table, pks } => {
                // In order with the writes: a read waits for the writes of
                // the same rows enqueued before it (see `crate::fence`), and
                // holds back none enqueued after it (a snapshot read).
                let spans = pks.iter().map(|pk| LockSpan::key(&row_key(table.id, pk), LockMode::Read)).collect();
                // One snapshot for every row: a later write may apply meanwhile.
                let snapshot = self.snapshot_read(group, vshard_of_group(gid)?, spans, fence).await?;
                let mut rows = Vec::with_capacity(pks.len());
                for pk in pks {
                    if let Some(v) = self.reader.get_at(gid, &row_key(table.id, &pk), &snapshot).map_err(storage)? {
                        rows.push(v);
                    }
                }
                Ok(ShardResponse::Rows(rows))
            }
            ShardRequest::Scan { table, prefix } => {
                let start = row_key(table.id, &prefix);
                let span = LockSpan::prefix(&start, LockMode::Read);
                let snapshot = self.snapshot_read(group, vshard_of_group(gid)?, vec![span], fence).await?;
                let rows = self.reader.scan_prefix_at(gid, &start, Some(&snapshot)).map_err(ExecError::from)?;
                Ok(ShardResponse::Rows(rows.into_iter().map(|(_, v)| v).collect()))
            }
            ShardRequest::AppliedNow { pos } => {
                group.read_barrier().await?;
                Ok(ShardResponse::Count(self.reader.is_applied(gid, pos).map_err(storage)? as u64))
            }
            ShardRequest::Reconnoitre { table, assignments, delete, selection, params } => {
                let _slot = self.reconnaissances.acquire().await.map_err(|e| ExecError::Internal(e.to_string()))?;
                // No lock and no barrier: any applied state will do, the
                // transaction re-checks the version at its position. Rows
                // and version from one snapshot, so they agree.
                let snapshot = self.reader.snapshot();
                let version = self.reader.get_at(gid, &table_version_key(table.id), &snapshot).map_err(storage)?;
                let scanned = self.reader.scan_prefix_at(gid, &table_prefix(table.id), Some(&snapshot));
                // A program could not read more either.
                let stored = crate::sequenced::program_scan(scanned)?.ok_or_else(crate::program::read_limit_exceeded)?;
                let rows = decode_rows(&stored)?;
                let shape = crate::interp::ModifyShape { assignments: &assignments, delete, selection: &selection };
                let found = crate::interp::matching(&table, &shape, &params, &rows).await?;
                if found.len() > RECON_KEYS_MAX {
                    return Err(ExecError::ProgramLimitExceeded(format!("a reconnaissance finds at most {RECON_KEYS_MAX} keys")).into());
                }
                let keys = found.into_iter().map(|i| stored[i].0.clone()).collect();
                Ok(ShardResponse::Matches { version: decode_table_version(version.as_deref()), keys })
            }
            ShardRequest::Insert { table, rows } => {
                let spans = crate::locks::insert_locks(table.id, &rows);
                let (_locks, after) = self.lock(group, vshard_of_group(gid)?, spans, fence).await?;
                group.write_barrier().await?;
                let writes = self.insert_writes(gid, &table, rows)?;
                let n = writes.len() as u64;
                group.propose(ShardCommand::Write { writes, after }.encode()).await?;
                Ok(ShardResponse::Count(n))
            }
            ShardRequest::Program(program) => {
                let vshard = vshard_of_group(gid)?;
                let mut locks = crate::locks::lock_set(&program, self.vshards);
                if locks.keys().any(|&v| v != vshard) {
                    // The gateway found one participant; a catalog change
                    // since could make it more: let it plan again.
                    return Err(ExecError::SerializationFailure("the transaction spans more than this vShard".into()).into());
                }
                let (_locks, after) = self.lock(group, vshard, locks.get(&vshard).cloned().unwrap_or_default(), fence).await?;
                locks.entry(vshard).or_default();
                group.write_barrier().await?;
                // Runs once, here; its effects (not the program) are logged,
                // so reading the clock for now() is safe.
                let now_us = chrono::Utc::now().timestamp_micros();
                let view = LocalView { reader: &self.reader };
                let mut out = crate::interp::run(&program, now_us, self.vshards, Some(&locks), &view).await?;
                if let Some(writes) = out.writes.remove(&vshard) {
                    group.propose(ShardCommand::Write { writes, after }.encode()).await?;
                }
                Ok(ShardResponse::Outputs(out.outputs))
            }
            ShardRequest::Sequence(input) => {
                if gid != SEQUENCER_GROUP {
                    return Err(ExecError::Internal(format!("group {gid} does not sequence")).into());
                }
                let sealer = self.sealer.as_ref().ok_or(Fail::NotLeader(None))?;
                match sealer.submit(input).await {
                    Ok(p) => Ok(ShardResponse::Sequenced {
                        pos: ordo_vshard::shard::TxnPos { epoch: p.epoch.number, index: p.index },
                        timestamp_us: p.epoch.timestamp_us,
                    }),
                    Err(SealError::NotLeader(l)) => Err(Fail::NotLeader(l)),
                    Err(SealError::Overloaded(n)) => Err(ExecError::Overloaded(format!("sequencer queue full ({n} inputs)")).into()),
                    Err(SealError::Unavailable(m)) => Err(ExecError::Unavailable(m).into()),
                }
            }
            ShardRequest::ReadAt { pos, vshard, key, prefix } => {
                if vshard_group(vshard) != gid {
                    return Err(ExecError::Internal("ReadAt sent to the wrong group".into()).into());
                }
                let wait = Duration::from_millis(LONG_POLL_MS);
                match self.board.wait_position(&self.reader, vshard, pos, true, wait).await? {
                    None => Ok(ShardResponse::NotYet),
                    Some(AsOf::Serving) => {
                        // The scheduler holds the vShard at `pos`; it stops
                        // serving before its writes may apply, so a read that
                        // finished while it still serves is as of `pos`.
                        // Any answer, an error included, counts only once the
                        // checks below pass: a scan over a bound fails the
                        // asking program, as it fails this one's, but only if
                        // read as of `pos`.
                        let rows: ExecResult<Vec<_>> = if prefix {
                            crate::sequenced::program_scan(self.reader.scan_prefix(gid, &key))
                                .and_then(|rows| rows.ok_or_else(crate::program::read_limit_exceeded))
                        } else {
                            self.reader.get(gid, &key).map(|row| row.map(|v| (key, v)).into_iter().collect()).map_err(storage_error)
                        };
                        // Still this group's leader after the read (lease,
                        // else ReadIndex): no newer leader can have ordered
                        // anything before `pos` that these rows miss.
                        group.write_barrier().await?;
                        // And `pos` was not applied before the read ended (an
                        // earlier round's proposal can still commit).
                        if !self.board.is_serving(vshard, pos)
                            || self.reader.is_applied(gid, pos).map_err(ExecError::Internal)?
                        {
                            return Ok(ShardResponse::NotYet);
                        }
                        Ok(ShardResponse::Pairs(rows?))
                    }
                    Some(AsOf::Applied) => {
                        // Applied: the rows as of `pos` are in its record.
                        let record = crate::sequenced::stored_record(&self.reader, vshard, pos)?.unwrap_or_default();
                        match record.read(prefix, &key) {
                            Some(read) if read.over_limit => Err(crate::program::read_limit_exceeded().into()),
                            Some(read) => Ok(ShardResponse::Pairs(read.rows.clone())),
                            // A passive participant keeps no record: the
                            // asker applied this position already (its next
                            // attempt sees that), or execution was not
                            // deterministic.
                            None => Err(ExecError::Internal(format!(
                                "vShard {vshard} applied epoch {} without recording what another participant asks for: \
                                 the asker applied it already, or execution was nondeterministic",
                                pos.epoch
                            ))
                            .into()),
                        }
                    }
                }
            }
            ShardRequest::ScanAsOf { epoch, index, prefix } => {
                let (index, rows) = self.scan_as_of(group, vshard_of_group(gid)?, epoch, index, &prefix).await?;
                Ok(ShardResponse::RowsAt { index, rows })
            }
            ShardRequest::Outcome { pos, record } => {
                let vshard = vshard_of_group(gid)?;
                let wait = Duration::from_millis(LONG_POLL_MS);
                if self.board.wait_position(&self.reader, vshard, pos, false, wait).await?.is_none() {
                    return Ok(ShardResponse::Outcome { applied: false, record: None });
                }
                let record = if record { self.reader.get(gid, &outcome_key(pos)).map_err(storage)? } else { None };
                Ok(ShardResponse::Outcome { applied: true, record })
            }
            ShardRequest::VerdictAt { pos } => {
                let vshard = vshard_of_group(gid)?;
                let wait = Duration::from_millis(LONG_POLL_MS);
                match self.board.verdict_at(&self.reader, vshard, pos, wait).await? {
                    Some(verdict) => Ok(ShardResponse::Verdict(verdict)),
                    None => Ok(ShardResponse::NotYet),
                }
            }
            ShardRequest::Dml(dml) => {
                let span = crate::locks::dml_lock(&dml);
                let (_locks, after) = self.lock(group, vshard_of_group(gid)?, vec![span], fence).await?;
                group.write_barrier().await?;
                // Its effects are logged, not the statement: the clock is safe.
                let writes = self.dml_writes(gid, &dml, chrono::Utc::now().timestamp_micros()).await?;
                let n = writes.len() as u64;
                if n > 0 {
                    group.propose(ShardCommand::Write { writes, after }.encode()).await?;
                }
                Ok(ShardResponse::Count(n))
            }
            ShardRequest::Checksum => {
                let (index, hash) = group.checksum().await?;
                Ok(ShardResponse::Checksum { index, hash: Some(hash) })
            }
            ShardRequest::Frontier => {
                let epochs = self.epochs.as_ref().ok_or(Fail::NotLeader(None))?;
                if gid != SEQUENCER_GROUP {
                    return Err(ExecError::Internal(format!("group {gid} does not sequence")).into());
                }
                // Everything committed before this request is applied here,
                // and the state machine publishes an epoch before it counts
                // as applied. The leader lease spares a heartbeat round on
                // every fetch (ReadIndex when the lease has lapsed); it is
                // the bounded-clock-drift assumption every lease read makes.
                group.write_barrier().await?;
                Ok(ShardResponse::Count(*epochs.applied.borrow()))
            }
            ShardRequest::Catalog => {
                if gid != META_GROUP {
                    return Err(ExecError::Internal(format!("group {gid} holds no catalog")).into());
                }
                group.read_barrier().await?;
                // The index first: the bytes read after it are at least as new.
                let index = group.status().applied_index.unwrap_or(0);
                let bytes = self.reader.get(gid, ordo_meta::logic::CATALOG_KEY).map_err(storage)?.unwrap_or_default();
                Ok(ShardResponse::Catalog { index, bytes })
            }
            ShardRequest::Epochs { from, max, wait_ms } => {
                let epochs = self.epochs.as_ref().ok_or(Fail::NotLeader(None))?;
                if gid != SEQUENCER_GROUP {
                    return Err(ExecError::Internal(format!("group {gid} does not sequence")).into());
                }
                // Everything committed is applied here: no epoch is missed.
                group.write_barrier().await?;
                let max = (max as usize).min(ordo_sequencer::logic::EPOCHS_PER_READ_MAX);
                let wait = Duration::from_millis(wait_ms.min(LONG_POLL_MS));
                Ok(ShardResponse::Epochs(epochs.read_wait(from, max, wait).await?))
            }
            ShardRequest::CompleteThrough => {
                let vshard = vshard_of_group(gid)?;
                let stat = self.board.scheduler_stat(vshard);
                if stat.leading_term.is_none() || stat.leading_term != group.leader_term() {
                    return Err(ExecError::Unavailable(format!("vShard {vshard}'s scheduler is not running yet")).into());
                }
                Ok(ShardResponse::Count(stat.complete_through_epoch))
            }
            ShardRequest::Collect { through_epoch } => {
                if gid == SEQUENCER_GROUP {
                    group.propose(ordo_sequencer::collect_command(through_epoch)).await?;
                } else if self.reader.has_outcome_through(gid, through_epoch).map_err(ExecError::Internal)? {
                    group.propose(ShardCommand::Collect { through_epoch }.encode()).await?;
                }
                Ok(ShardResponse::Done)
            }
            ShardRequest::ReplicaChecksum { .. } => unreachable!("handled before the leader check"),
            ShardRequest::Fenced { .. } => Err(ExecError::Internal("a fenced request inside a fenced request".into()).into()),
            ShardRequest::DropTable { table_id } => {
                let span = LockSpan::prefix(&table_prefix(table_id), LockMode::Write);
                let _locks = self.lock(group, vshard_of_group(gid)?, vec![span], fence).await?;
                group.propose(ShardCommand::DropTable { table_id }.encode()).await?;
                Ok(ShardResponse::Done)
            }
        }
    }

    /// The storage snapshot a single-vShard read of `spans` reads from.
    ///
    /// A read waits for the earlier cross-shard writes of its rows (such a
    /// transaction may be visible on another vShard already, and a read
    /// after it must see it here too) — but only for those visible
    /// somewhere: it is ordered before the others. Looking at the writes
    /// it would wait for, it takes its snapshot, then asks every other
    /// vShard where each of them writes whether it has applied it (after a
    /// read barrier there, so committed counts). If none has, none was
    /// visible anywhere when the snapshot was taken, nor is anything that
    /// depends on them (a transaction ordered after one of them on a row
    /// of it cannot apply first), and no client has been told of them: the
    /// snapshot is the answer. Otherwise it waits until those applied
    /// somewhere have left this vShard's lock table (applied here too) and
    /// looks again. Worth it for narrow transactions: with more than
    /// `SKIP_CHECKS_MAX` questions the read waits for all of them.
    async fn snapshot_read(
        &self,
        group: &dyn Consensus,
        vshard: u32,
        spans: Vec<LockSpan>,
        fence: Option<Fence>,
    ) -> Result<OwnedSnapshot, Fail> {
        let ticket = self.locks.table(vshard).enqueue_snapshot_read(spans).map_err(|o| queue_full(vshard, o))?;
        let mut met = false;
        // Positions applied elsewhere that this read waited to leave the
        // table: they must have applied here too.
        let mut waited_for: BTreeSet<TxnPos> = BTreeSet::new();
        loop {
            let mut released = ticket.release_notice();
            let Some(blockers) = ticket.blockers() else { break };
            if !blockers.is_empty() {
                met = true;
            }
            let questions: Vec<(TxnPos, u32)> = blockers
                .iter()
                .flat_map(|b| b.writers.iter().filter(|&&w| w != vshard).map(|&w| (b.pos, w)))
                .collect();
            if questions.len() > SKIP_CHECKS_MAX {
                break;
            }
            group.read_barrier().await?;
            let snapshot = self.reader.snapshot();
            for &pos in &waited_for {
                // Released without applying (a failed execution): the
                // round is ending; do not answer without it.
                if !self.reader.is_applied(vshard_group(vshard), pos).map_err(storage)? {
                    return Err(ExecError::Unavailable(format!("vShard {vshard} is restarting its transactions; retry")).into());
                }
            }
            let visible = self.applied_somewhere(&questions).await;
            if visible.is_empty() {
                self.check_round(group, vshard, fence.map(|f| f.mark))?;
                if met {
                    self.reads_ordered_before.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                return Ok(snapshot);
            }
            // Until those have left the table here: then look again.
            waited_for.extend(visible.iter().copied());
            loop {
                let still = ticket.blockers().is_some_and(|now| now.iter().any(|b| visible.contains(&b.pos)));
                if !still {
                    break;
                }
                released.as_mut().await;
                released = ticket.release_notice();
            }
        }
        self.reads_waited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _granted = ticket.granted().await;
        self.check_round(group, vshard, fence.map(|f| f.mark))?;
        group.read_barrier().await?;
        Ok(self.reader.snapshot())
    }

    /// Rows under `prefix` of `vshard` at the read point (`epoch`, `index`)
    /// (`ordo_vshard::history`), and that index. A query's first read of
    /// the vShard gives no index: it waits until every cross-shard
    /// transaction of this vShard up to `epoch` is done here (applied, or,
    /// for one that only reads here, done serving: what it wrote elsewhere
    /// may depend on a write here), then reads at the log index applied
    /// then; the query's later reads of the vShard read at that same index,
    /// so it sees one state of it. Takes no lock: it waits for no
    /// single-shard write and for no later transaction, and nothing waits
    /// for it.
    async fn scan_as_of(
        &self,
        group: &dyn Consensus,
        vshard: u32,
        epoch: u64,
        index: Option<u64>,
        prefix: &[u8],
    ) -> Result<(u64, Vec<Vec<u8>>), Fail> {
        let gid = vshard_group(vshard);
        let mark = match index {
            Some(_) => None,
            None => Some(self.wait_sequenced_through(group, vshard, epoch).await?),
        };
        // Every single-shard write acknowledged before the query began (its
        // versions are in epochs up to `epoch`) is applied here, and so is
        // everything up to a given `index` (committed by an earlier leader).
        group.read_barrier().await?;
        let snapshot = self.reader.snapshot();
        let applied = self.reader.applied_index_at(gid, &snapshot).map_err(storage)?;
        if let Some(mark) = mark {
            // Positions leave the table applied, unless their round failed
            // (which withdraws the round first): then do not answer.
            self.check_round(group, vshard, Some(mark))?;
        }
        let index = match index {
            // Not expected after a read barrier (`i` was applied by a
            // leader, so committed); retryable if it ever happens.
            Some(i) if applied < i => {
                return Err(ExecError::Unavailable(format!("vShard {vshard} applied {applied} after a read barrier, below {i}")).into())
            }
            Some(i) => i,
            None => applied,
        };
        let at = ordo_vshard::history::ReadPoint { epoch, index };
        let rows = self.reader.scan_as_of(gid, prefix, at, &snapshot).map_err(ExecError::from)?;
        Ok((index, rows.into_iter().map(|(_, v)| v).collect()))
    }

    /// Waits until this leader's scheduler round has enqueued every epoch up
    /// to `epoch` and none of their sequenced requests is left in the
    /// vShard's lock table; the round.
    async fn wait_sequenced_through(&self, group: &dyn Consensus, vshard: u32, epoch: u64) -> Result<FenceMark, Fail> {
        let term = group.leader_term().ok_or(Fail::NotLeader(group.leader()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(FENCE_WAIT_MS);
        let unavailable = || Fail::Exec(ExecError::Unavailable(format!("vShard {vshard} has not completed epoch {epoch} within {FENCE_WAIT_MS} ms")));
        let (mark, _) = self.board.wait_ingested(vshard, term, epoch, Duration::from_millis(FENCE_WAIT_MS)).await.ok_or_else(unavailable)?;
        let table = self.locks.table(vshard);
        loop {
            let released = table.release_notice();
            if !table.sequenced_through(epoch) {
                return Ok(mark);
            }
            tokio::time::timeout_at(deadline, released).await.map_err(|_| unavailable())?;
        }
    }

    /// The positions of `questions` that their vShard has applied (any
    /// doubt, e.g. a vShard without a leader, counts as applied).
    async fn applied_somewhere(&self, questions: &[(TxnPos, u32)]) -> BTreeSet<TxnPos> {
        let Some(router) = self.router.get().and_then(std::sync::Weak::upgrade) else {
            return questions.iter().map(|(pos, _)| *pos).collect();
        };
        let router = &router;
        let asks = questions.iter().map(|&(pos, w)| async move {
            let not_applied =
                matches!(router.call(vshard_group(w), &ShardRequest::AppliedNow { pos }).await, Ok(ShardResponse::Count(0)));
            (!not_applied).then_some(pos)
        });
        futures::future::join_all(asks).await.into_iter().flatten().collect()
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

    /// Takes `spans` in `vshard`'s lock table (in arrival order) and waits
    /// for them, held until the guard is dropped: later conflicting
    /// requests wait. A fenced request must be granted in the scheduler
    /// round it was fenced in: a new round enqueues the epochs again, after it.
    /// Also returns the sequenced position the request is ordered after,
    /// which its writes carry (`ShardCommand::Write::after`).
    async fn lock(&self, group: &dyn Consensus, vshard: u32, spans: Vec<LockSpan>, fence: Option<Fence>) -> Result<(LockGuard, TxnPos), Fail> {
        // A fenced request follows every epoch its round enqueued before it
        // (and those the vShard applied under earlier leaders: a round
        // enqueues every epoch committed when it began before it lets
        // requests through).
        let floor = fence.map_or(TxnPos::default(), |f| TxnPos { epoch: f.through_epoch, index: u32::MAX });
        let ticket = self.locks.table(vshard).enqueue_after(spans, floor).map_err(|o| queue_full(vshard, o))?;
        let after = ticket.after();
        let guard = ticket.granted().await;
        self.check_round(group, vshard, fence.map(|f| f.mark))?;
        Ok((guard, after))
    }

    /// The write set of `vshard`'s part of a sequenced statement, computed
    /// by its leader holding the part's locks.
    /// `now_us`: the epoch's timestamp, what `now()` is on every participant.
    pub(crate) async fn statement_part(&self, vshard: u32, statement: &MultiShardStatement, now_us: i64) -> ExecResult<Vec<RowWrite>> {
        let gid = vshard_group(vshard);
        let done = match statement {
            MultiShardStatement::Insert { table, parts } => {
                let rows = parts.iter().filter(|p| p.vshard == vshard).flat_map(|p| p.rows.iter().cloned()).collect();
                self.insert_writes(gid, table, rows)
            }
            MultiShardStatement::Dml(dml) => self.dml_writes(gid, dml, now_us).await,
        };
        done.map_err(|f| match f {
            Fail::Exec(e) => e,
            Fail::NotLeader(_) => ExecError::Unavailable(format!("vShard {vshard} lost its leader")),
        })
    }

    /// The write set of an INSERT: fails on a key that exists (in RocksDB
    /// or in the transaction's own earlier writes) or repeats.
    fn insert_writes(
        &self,
        gid: GroupId,
        table: &TableDef,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<RowWrite>, Fail> {
        let mut seen = BTreeSet::new();
        let mut writes = Vec::with_capacity(rows.len());
        for (pk, row) in rows {
            let key = row_key(table.id, &pk);
            if !seen.insert(key.clone()) || self.get(gid, &key)?.is_some() {
                return Err(ExecError::UniqueViolation(table.name.clone()).into());
            }
            writes.push(RowWrite { key, value: Some(row) });
        }
        Ok(writes)
    }

    /// A row as the running transaction sees it.
    fn get(&self, gid: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, Fail> {
        self.reader.get(gid, key).map_err(storage)
    }

    /// The write set of an UPDATE/DELETE on this vShard: the matching rows
    /// are found and the new values computed by DataFusion over the shard's
    /// rows of the table as the transaction sees them.
    async fn dml_writes(&self, gid: GroupId, dml: &DmlRequest, now_us: i64) -> Result<Vec<RowWrite>, Fail> {
        let table = &dml.table;
        let params = dml.params_at(now_us);
        let stored: Vec<(Vec<u8>, Vec<u8>)> = match &dml.point {
            Some(pk) => {
                let key = row_key(table.id, pk);
                self.get(gid, &key)?.map(|v| (key, v)).into_iter().collect()
            }
            None => {
                self.reader.scan_prefix(gid, &table_prefix(table.id)).map_err(ExecError::from)?
            }
        };
        if stored.is_empty() {
            return Ok(Vec::new());
        }
        let rows = decode_rows(&stored)?;
        let sel = dml.selection.as_deref().map(crate::eval::parse_expr).transpose()?;
        let refs: Vec<&Vec<Datum>> = rows.iter().collect();
        if let Some(changes) = crate::interp::modify_fast(table, &dml.assignments, dml.delete, sel.as_ref(), &params, &refs)? {
            return Ok(changes
                .into_iter()
                .map(|(i, new)| RowWrite { key: stored[i].0.clone(), value: new.map(|r| encode_row(&r)) })
                .collect());
        }
        let batch = rows_with_index(table, &rows)?;
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| ExecError::Internal(e.to_string()))?;
        ctx.register_table(table.name.as_str(), Arc::new(mem)).map_err(|e| ExecError::Internal(e.to_string()))?;
        let mut select = format!("SELECT \"{ROW_INDEX_COLUMN}\"");
        for (_, expr) in &dml.assignments {
            select.push_str(&format!(", ({expr})"));
        }
        select.push_str(&format!(" FROM \"{}\"", table.name));
        if let Some(sel) = &dml.selection {
            select.push_str(&format!(" WHERE ({sel})"));
        }
        let params: Vec<_> = params.iter().map(param_scalar).collect();
        let df = ctx.sql(&select).await.map_err(crate::error::from_datafusion)?;
        let df = df.with_param_values(params).map_err(crate::error::from_datafusion)?;
        let out = df.collect().await.map_err(crate::error::from_datafusion)?;
        let mut writes = Vec::new();
        for b in &out {
            let idx = row_indexes(b)?;
            for r in 0..b.num_rows() {
                let i = idx.value(r) as usize;
                let key = stored[i].0.clone();
                if dml.delete {
                    writes.push(RowWrite { key, value: None });
                    continue;
                }
                let mut row = rows[i].clone();
                for (j, (ci, _)) in dml.assignments.iter().enumerate() {
                    let input = input_at(b.column(j + 1).as_ref(), r)?;
                    row[*ci] = coerce(input, &table.columns[*ci])?;
                }
                writes.push(RowWrite { key, value: Some(encode_row(&row)) });
                if writes.len() > DML_ROWS_PER_SHARD_MAX {
                    return Err(ExecError::ProgramLimitExceeded(format!(
                        "one statement may change at most {DML_ROWS_PER_SHARD_MAX} rows per vShard"
                    ))
                    .into());
                }
            }
        }
        Ok(writes)
    }
}

/// This node's replicas' current rows: the view of a transaction that
/// holds its vShard's lock on the leader.
struct LocalView<'a> {
    reader: &'a ShardReader,
}

#[async_trait::async_trait]
impl TxnView for LocalView<'_> {
    async fn get(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>> {
        self.reader.get(vshard_group(vshard), key).map_err(storage_error)
    }

    async fn scan(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.reader.scan_prefix(vshard_group(vshard), prefix).map_err(ExecError::from)
    }
}

/// A vShard's lock table is full: overload, retryable.
fn queue_full(vshard: u32, o: ordo_scheduler::Overloaded) -> Fail {
    Fail::Exec(ExecError::Overloaded(format!("{} transactions queued on vShard {vshard}", o.0)))
}

fn vshard_of_group(gid: GroupId) -> Result<u32, Fail> {
    group_vshard(gid).ok_or_else(|| Fail::Exec(ExecError::Internal(format!("group {gid} is not a vShard"))))
}
