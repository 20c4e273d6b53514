//! Writes to one vShard: INSERT, UPDATE/DELETE, a transaction program whose
//! rows all live here, a dropped table's rows; and each vShard's part of a
//! sequenced multi-vShard statement, which its scheduler asks for.
//!
//! Each takes its locks in the vShard's lock table in arrival order, passes
//! a write barrier, computes its write set from the rows as they are (the
//! applied ones under those the leader queued and has not applied yet) and
//! queues it as one entry; it releases its locks once the entry is queued,
//! not once it commits (see [`super::pending`]). Its effects are logged,
//! not the statement, so reading the clock for `now()` here is safe: the
//! value is in the entry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::MemTable;
use ordo_expr::arrow::{input_at, param_scalar};
use ordo_expr::parse::parse_expr;
use ordo_expr::{coerce, from_datafusion, storage_error, ExecError, ExecResult, Param};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{encode_row, Datum};
use ordo_metrics::{release, seconds_since};
use ordo_raft::codec::Pairs;
use ordo_raft::constants::PROPOSE_TIMEOUT_MS;
use ordo_raft::groups::vshard_group;
use ordo_raft::{Consensus, GroupId, RequestId, RequestReply};
use ordo_scheduler::{LockGuard, LockMode, LockSpan};
use ordo_vshard::shard::{row_key, table_prefix, RowWrite, ShardCommand, ShardReader, TxnPos};

use super::pending::{Added, PendingError, PendingWrites};
use super::{queue_full, request_reply, vshard_of_group, Fail, Fence, LeaderExecutor};
use crate::codec::{decode, encode};
use crate::constants::{PENDING_WAIT_MS, STATEMENT_ROWS_MAX};
use crate::rpc::ShardResponse;
use crate::txn::interp::{
    decode_rows, modify_fast, modify_query, row_indexes, rows_with_index, run_guarded, RunOutput, TxnView,
};
use crate::txn::locks::{dml_lock, insert_locks, lock_set};
use crate::txn::program::TxnProgram;
use crate::txn::statement::{DmlRequest, MultiShardStatement};

impl LeaderExecutor {
    /// `Insert`: the rows, or a unique violation if any key exists.
    pub(super) async fn insert(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        table: &TableDef,
        rows: Pairs,
        fence: Option<Fence>,
        id: Option<RequestId>,
    ) -> Result<ShardResponse, Fail> {
        let vshard = vshard_of_group(gid)?;
        let mut hold = self.hold(group, vshard, insert_locks(table.id, &rows), fence, id).await?;
        if let Some(first) = hold.first.take() {
            return Ok(first);
        }
        let view = self.rows(vshard, Some(hold.term));
        let writes = insert_writes(&view, vshard, table, rows);
        let writes = self.unqueued(&view, &hold, writes).await?;
        let n = writes.len() as u64;
        let after = hold.after;
        self.commit(vshard, hold, id, ShardCommand::Write { writes, after }, ShardResponse::Count(n)).await
    }

    /// `Dml`: an UPDATE or DELETE of the rows of this vShard it matches.
    pub(super) async fn modify(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        dml: &DmlRequest,
        fence: Option<Fence>,
        id: Option<RequestId>,
    ) -> Result<ShardResponse, Fail> {
        let vshard = vshard_of_group(gid)?;
        let mut hold = self.hold(group, vshard, vec![dml_lock(dml)], fence, id).await?;
        if let Some(first) = hold.first.take() {
            return Ok(first);
        }
        // Its effects are logged, not the statement: the clock is safe.
        let now_us = chrono::Utc::now().timestamp_micros();
        let view = self.rows(vshard, Some(hold.term));
        let writes = dml_writes(&view, vshard, dml, now_us).await;
        // No rows to change: settled by `unqueued` (it read no pending row
        // that may not commit).
        let writes = self.unqueued(&view, &hold, writes).await?;
        let n = writes.len() as u64;
        if n == 0 {
            return Ok(ShardResponse::Count(0));
        }
        let after = hold.after;
        self.commit(vshard, hold, id, ShardCommand::Write { writes, after }, ShardResponse::Count(n)).await
    }

    /// `Program`: a transaction whose rows all live in this vShard, run
    /// under its locks and committed as one write set or not at all.
    pub(super) async fn run_program(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        program: &TxnProgram,
        fence: Option<Fence>,
        id: Option<RequestId>,
    ) -> Result<ShardResponse, Fail> {
        let vshard = vshard_of_group(gid)?;
        let mut locks = lock_set(program, self.vshards);
        if locks.keys().any(|&v| v != vshard) {
            // The gateway found one participant; a catalog change
            // since could make it more: let it plan again.
            return Err(ExecError::SerializationFailure("the transaction spans more than this vShard".into()).into());
        }
        let spans = locks.get(&vshard).cloned().unwrap_or_default();
        let mut hold = self.hold(group, vshard, spans, fence, id).await?;
        if let Some(first) = hold.first.take() {
            return Ok(first);
        }
        locks.entry(vshard).or_default();
        // Runs once, here; its effects (not the program) are logged,
        // so reading the clock for now() is safe.
        let now_us = chrono::Utc::now().timestamp_micros();
        let view = self.rows(vshard, Some(hold.term));
        let out = run_guarded(program, now_us, self.vshards, Some(&locks), &view).await.map_err(Fail::from);
        let mut out = self.unqueued(&view, &hold, out).await?;
        let response = ShardResponse::Outputs(out.outputs);
        match out.writes.remove(&vshard) {
            Some(writes) => {
                let after = hold.after;
                self.commit(vshard, hold, id, ShardCommand::Write { writes, after }, response).await
            }
            None => self.unqueued(&view, &hold, Ok(response)).await,
        }
    }

    /// `DropTable`: deletes every row of a dropped table in this vShard.
    pub(super) async fn drop_table(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        table_id: u64,
        fence: Option<Fence>,
        id: Option<RequestId>,
    ) -> Result<ShardResponse, Fail> {
        let vshard = vshard_of_group(gid)?;
        let span = LockSpan::prefix(&table_prefix(table_id), LockMode::Write);
        let mut hold = self.hold(group, vshard, vec![span], fence, id).await?;
        if let Some(first) = hold.first.take() {
            return Ok(first);
        }
        self.commit(vshard, hold, id, ShardCommand::DropTable { table_id }, ShardResponse::Done).await
    }

    /// Takes `spans` in `vshard`'s lock table (in arrival order) and waits
    /// for them, held until the guard is dropped: later conflicting
    /// requests wait. A fenced request must be granted in the scheduler
    /// round it was fenced in: a new round enqueues the epochs again, after it.
    /// Also returns the sequenced position the request is ordered after,
    /// which its writes carry (`ShardCommand::Write::after`).
    async fn lock(
        &self,
        group: &dyn Consensus,
        vshard: u32,
        spans: Vec<LockSpan>,
        fence: Option<Fence>,
    ) -> Result<(LockGuard, TxnPos), Fail> {
        // A fenced request follows every epoch its round enqueued before it
        // (and those the vShard applied under earlier leaders: a round
        // enqueues every epoch committed when it began before it lets
        // requests through).
        let floor = fence.map_or(TxnPos::default(), |f| TxnPos { epoch: f.through_epoch, index: u32::MAX });
        let ticket = self.locks.table(vshard).enqueue_after(spans, floor).map_err(|o| queue_full(vshard, o))?;
        let after = ticket.after();
        let enqueued = Instant::now();
        let guard = ticket.granted().await;
        self.metrics.lock_granted(ordo_metrics::waiter::WRITE, ordo_metrics::seconds_since(enqueued));
        self.check_round(group, vshard, fence.map(|f| f.mark))?;
        Ok((guard, after))
    }

    /// Takes a write's locks, passes the write barrier and joins the
    /// leader's pending writes (see [`super::pending`]) in the term the
    /// write computes in. `first` is set when an earlier attempt of request
    /// `id` was applied: its answer, given instead of running it again.
    async fn hold(
        &self,
        group: &dyn Consensus,
        vshard: u32,
        spans: Vec<LockSpan>,
        fence: Option<Fence>,
        id: Option<RequestId>,
    ) -> Result<Held, Fail> {
        let (locks, after) = self.lock(group, vshard, spans, fence).await?;
        let granted = Instant::now();
        // Read before the barrier: should the barrier pass in a later
        // term, the write's entry is refused rather than appended in it.
        let term = group.leader_term().ok_or(Fail::NotLeader(group.leader()))?;
        group.write_barrier().await?;
        // Read after the barrier, which RaftCore answered after every write
        // queued before this one's locks were granted: their refusals count.
        let failures = self.pending.begin(vshard, term, group.refused_writes()).map_err(pending_fail)?;
        let first = self.replayed(group, vshard, term, id).await?;
        Ok(Held { locks, granted, after, term, failures, first })
    }

    /// The first answer to request `id` if an earlier attempt of it was
    /// applied. Asked holding the request's locks after a write barrier:
    /// every write any leader committed is applied here, and an attempt
    /// still pending on this leader (it released the same locks) is
    /// waited for.
    async fn replayed(
        &self,
        group: &dyn Consensus,
        vshard: u32,
        term: u64,
        id: Option<RequestId>,
    ) -> Result<Option<ShardResponse>, Fail> {
        let Some(id) = id else { return Ok(None) };
        if let Some(seq) = self.pending.queued_request(vshard, term, id) {
            let wait = Duration::from_millis(PENDING_WAIT_MS);
            self.pending.resolved(vshard, term, seq, wait).await.map_err(pending_fail)?;
        }
        match group.applied_request(id)? {
            Some(record) => Ok(Some(decode(&request_reply(RequestReply::Duplicate(record.reply))?)?)),
            None => Ok(None),
        }
    }

    /// Queues `command` for the leader's term and answers `response` once it
    /// is applied (or, when an earlier attempt of request `id` was applied
    /// first, that attempt's answer). Its locks go as soon as its entry is
    /// queued and its rows are pending for later writes to read (see
    /// [`super::pending`]); past the pending bounds they are held until the
    /// entry resolves. Queueing, recording and releasing run on a task of
    /// their own, which a caller that stops waiting (timed out, or its
    /// connection gone) does not cancel: a write that may commit always
    /// stays visible to the writes after it.
    async fn commit(
        &self,
        vshard: u32,
        hold: Held,
        id: Option<RequestId>,
        command: ShardCommand,
        response: ShardResponse,
    ) -> Result<ShardResponse, Fail> {
        let Held { locks, granted, term, .. } = hold;
        let group = self.groups.get(&vshard_group(vshard)).cloned().ok_or(Fail::NotLeader(None))?;
        let reply = id.map(|_| encode(&response));
        let (pending, metrics) = (self.pending.clone(), self.metrics.clone());
        let resolved = tokio::spawn(async move {
            // Only row writes are left pending; anything else (a table's
            // drop) keeps its locks until applied.
            let (rows, reserved): (&[RowWrite], Added) = match &command {
                ShardCommand::Write { writes, .. } => (writes, pending.reserve(vshard, term, writes, id)),
                _ => (&[], Added::Held { upto: pending.next(vshard) }),
            };
            let queued = match group.submit(term, id, command.encode(), reply).await {
                Ok(queued) => queued,
                Err(e) => {
                    if let Added::Pending(seq) = reserved {
                        pending.withdraw(vshard, term, seq);
                    }
                    return Err(e);
                }
            };
            let mut locks = Some(locks);
            if let Added::Pending(seq) = reserved {
                if pending.fill(vshard, term, seq, rows) {
                    drop(locks.take());
                    metrics.write_locks_released(release::QUEUED, seconds_since(granted));
                }
            }
            let result = queued.await;
            if let Added::Pending(seq) = reserved {
                let applied = matches!(result, Ok(RequestReply::Applied(_)));
                if !applied && result.is_ok() {
                    // Cannot happen: retries wait for a pending attempt,
                    // and a late attempt is refused before it is queued.
                    tracing::error!(vshard, term, seq, ?id, ?result, "a pending write did not apply");
                }
                pending.resolve(vshard, term, seq, applied);
            }
            if let Some(locks) = locks.take() {
                // Entries queued before it that its rows may overwrite
                // leave the pending rows before the next write reads.
                let upto = match reserved {
                    Added::Pending(seq) => seq,
                    Added::Held { upto } => upto,
                };
                let _ = pending.drained(vshard, term, upto, Duration::from_millis(PENDING_WAIT_MS)).await;
                drop(locks);
                metrics.write_locks_released(release::APPLIED, seconds_since(granted));
            }
            result
        });
        let mut wait = Duration::from_millis(PROPOSE_TIMEOUT_MS);
        // Fault injection: `FAILPOINTS=propose-timeout=10%return` gives up
        // on a write at once, before or after it is queued (it goes on).
        if fail::eval("propose-timeout", |_| ()).is_some() {
            wait = Duration::ZERO;
        }
        let reply = match tokio::time::timeout(wait, resolved).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => return Err(ExecError::OutcomeUnknown(format!("the write's task ended: {e}")).into()),
            Err(_) => {
                return Err(ExecError::OutcomeUnknown(format!("not applied within {} ms", wait.as_millis())).into())
            }
        };
        match id {
            None => Ok(response),
            Some(_) => Ok(decode(&request_reply(reply)?)?),
        }
    }

    /// Gives `answer` as is when it queues an entry (`Ok` with writes to
    /// commit: they commit only if what they read does). Otherwise — an
    /// error, or nothing to write — an answer that read pending rows
    /// first waits until they are applied: no client learns of a write
    /// that does not commit (a 23505 for a pending INSERT, rows a pending
    /// UPDATE wrote).
    async fn unqueued<T: Unqueued>(
        &self,
        view: &LeaderRows<'_>,
        hold: &Held,
        answer: Result<T, Fail>,
    ) -> Result<T, Fail> {
        if answer.as_ref().is_ok_and(|a| a.queues()) || !view.read_pending() {
            return answer;
        }
        let (vshard, term) = (view.vshard, hold.term);
        let wait = Duration::from_millis(PENDING_WAIT_MS);
        match self.pending.drained(vshard, term, self.pending.next(vshard), wait).await {
            // Everything it read resolved; a failure since it began may
            // have been a row it read.
            Ok(()) if self.pending.failures(vshard, term) == Some(hold.failures) => answer,
            Ok(()) => Err(pending_fail(PendingError::TermFailed)),
            Err(PendingError::TimedOut) => {
                Err(ExecError::Unavailable(format!("vShard {vshard}: {}", PendingError::TimedOut)).into())
            }
            Err(e) => Err(pending_fail(e)),
        }
    }

    /// The rows a write on `vshard` computes from: those its leader applied,
    /// under (for a write of `term`) those it queued and has not applied.
    fn rows(&self, vshard: u32, term: Option<u64>) -> LeaderRows<'_> {
        let pending = term.map(|t| (&*self.pending, t));
        LeaderRows { reader: &self.reader, vshard, pending, read_pending: AtomicBool::new(false) }
    }

    /// The write set of `vshard`'s part of a sequenced statement, computed
    /// by its leader holding the part's locks.
    /// `now_us`: the epoch's timestamp, what `now()` is on every participant.
    pub(crate) async fn statement_part(
        &self,
        vshard: u32,
        statement: &MultiShardStatement,
        now_us: i64,
    ) -> ExecResult<Vec<RowWrite>> {
        // Its locks were granted after every write queued before them was
        // applied (`PendingWrites::drained`): the applied rows are current.
        let stored = self.rows(vshard, None);
        let done = match statement {
            MultiShardStatement::Insert { table, parts } => {
                let rows = parts.iter().filter(|p| p.vshard == vshard).flat_map(|p| p.rows.iter().cloned()).collect();
                insert_writes(&stored, vshard, table, rows)
            }
            MultiShardStatement::Dml(dml) => dml_writes(&stored, vshard, dml, now_us).await,
        };
        done.map_err(|f| match f {
            Fail::Exec(e) => e,
            Fail::NotLeader(_) => ExecError::Unavailable(format!("vShard {vshard} lost its leader")),
        })
    }
}

/// An UPDATE/DELETE the fast path does not cover, planned by DataFusion
/// over an in-memory table of `rows`: for each matching row, its index
/// into `rows` and the assignments' new values.
async fn plan_dml(dml: &DmlRequest, rows: &[Vec<Datum>], params: &[Param]) -> ExecResult<Vec<RecordBatch>> {
    let table = &dml.table;
    let batch = rows_with_index(table, rows)?;
    let ctx = ordo_expr::session::context();
    let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| ExecError::Internal(e.to_string()))?;
    ctx.register_table(table.name.as_str(), Arc::new(mem)).map_err(|e| ExecError::Internal(e.to_string()))?;
    let select = modify_query(table, &dml.assignments, dml.selection.as_deref());
    let params: Vec<_> = params.iter().map(param_scalar).collect();
    let df = ctx.sql(&select).await.map_err(from_datafusion)?;
    let df = df.with_param_values(params).map_err(from_datafusion)?;
    df.collect().await.map_err(from_datafusion)
}

/// What [`LeaderExecutor::hold`] gives a write: its locks, the sequenced
/// position it is ordered after, the leader's term it computes in (and
/// how many pending entries of it had failed), and the answer of an
/// earlier attempt that was applied, if any.
struct Held {
    locks: LockGuard,
    granted: Instant,
    after: TxnPos,
    term: u64,
    /// The term's failed pending entries when the write began.
    failures: u64,
    first: Option<ShardResponse>,
}

/// The term a write computed in is over (or failing): nothing of it was
/// queued, so the caller may try the leader again. A retry that waited
/// too long for its earlier attempt cannot tell whether that applied.
fn pending_fail(e: PendingError) -> Fail {
    match e {
        PendingError::TermOver | PendingError::TermFailed => Fail::NotLeader(None),
        PendingError::TimedOut => Fail::Exec(ExecError::OutcomeUnknown(format!("an earlier attempt: {e}"))),
    }
}

/// What [`LeaderExecutor::unqueued`] asks of an answer: does it queue an
/// entry (writes that commit only with what they read)?
trait Unqueued {
    fn queues(&self) -> bool;
}

impl Unqueued for Vec<RowWrite> {
    fn queues(&self) -> bool {
        !self.is_empty()
    }
}

impl Unqueued for RunOutput {
    fn queues(&self) -> bool {
        !self.writes.is_empty()
    }
}

impl Unqueued for ShardResponse {
    /// Given without an entry: the final answer of a write with nothing to write.
    fn queues(&self) -> bool {
        false
    }
}

/// The rows a write on its vShard's leader sees: the applied rows, under
/// the writes the leader queued in `term` and has not applied (`pending`;
/// `None` for a sequenced participant, which reads applied rows only).
struct LeaderRows<'a> {
    reader: &'a ShardReader,
    vshard: u32,
    pending: Option<(&'a PendingWrites, u64)>,
    /// Whether any read found a pending row.
    read_pending: AtomicBool,
}

impl LeaderRows<'_> {
    fn pending_of(&self, vshard: u32) -> Option<(&PendingWrites, u64)> {
        self.pending.filter(|_| vshard == self.vshard)
    }

    fn read_pending(&self) -> bool {
        self.read_pending.load(Ordering::Relaxed)
    }

    fn row(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>> {
        // Pending rows first: one applied meanwhile is in storage by then.
        if let Some(queued) = self.pending_of(vshard).and_then(|(p, t)| p.get(vshard, t, key)) {
            self.read_pending.store(true, Ordering::Relaxed);
            return Ok(queued);
        }
        self.reader.get(vshard_group(vshard), key).map_err(storage_error)
    }

    fn rows(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Pairs> {
        // Pending rows first, as in `row`: a write applied between the two
        // reads is in both, with the same value.
        let queued = self.pending_of(vshard).map(|(p, t)| p.scan(vshard, t, prefix)).unwrap_or_default();
        let stored = self.reader.scan_prefix(vshard_group(vshard), prefix).map_err(ExecError::from)?;
        if queued.is_empty() {
            return Ok(stored);
        }
        self.read_pending.store(true, Ordering::Relaxed);
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in queued {
            match value {
                Some(v) => merged.insert(key, v),
                None => merged.remove(&key),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

#[async_trait::async_trait]
impl TxnView for LeaderRows<'_> {
    async fn get(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>> {
        self.row(vshard, key)
    }

    async fn scan(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.rows(vshard, prefix)
    }
}

/// The write set of an INSERT: fails on a key that exists (in storage, in
/// a pending write, or earlier in the statement).
fn insert_writes(view: &LeaderRows<'_>, vshard: u32, table: &TableDef, rows: Pairs) -> Result<Vec<RowWrite>, Fail> {
    let mut seen = BTreeSet::new();
    let mut writes = Vec::with_capacity(rows.len());
    for (pk, row) in rows {
        let key = row_key(table.id, &pk);
        if !seen.insert(key.clone()) || view.row(vshard, &key)?.is_some() {
            return Err(ExecError::UniqueViolation(table.name.clone()).into());
        }
        writes.push(RowWrite { key, value: Some(row) });
    }
    Ok(writes)
}

/// The write set of an UPDATE/DELETE on this vShard: the matching rows
/// are found and the new values computed over the shard's rows of the
/// table as the transaction sees them, by the fast path when it covers
/// the statement, else by DataFusion.
async fn dml_writes(view: &LeaderRows<'_>, vshard: u32, dml: &DmlRequest, now_us: i64) -> Result<Vec<RowWrite>, Fail> {
    let table = &dml.table;
    let params = dml.params_at(now_us);
    let stored: Pairs = match &dml.point {
        Some(pk) => {
            let key = row_key(table.id, pk);
            view.row(vshard, &key)?.map(|v| (key, v)).into_iter().collect()
        }
        None => view.rows(vshard, &table_prefix(table.id))?,
    };
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    let rows = decode_rows(&stored)?;
    let sel = dml.selection.as_deref().map(parse_expr).transpose()?;
    let refs: Vec<&Vec<Datum>> = rows.iter().collect();
    if let Some(changes) = modify_fast(table, &dml.assignments, dml.delete, sel.as_ref(), &params, &refs)? {
        return Ok(changes
            .into_iter()
            .map(|(i, new)| RowWrite { key: stored[i].0.clone(), value: new.map(|r| encode_row(&r)) })
            .collect());
    }
    let out = plan_dml(dml, &rows, &params).await?;
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
            if writes.len() > STATEMENT_ROWS_MAX {
                let m = format!("one statement may change at most {STATEMENT_ROWS_MAX} rows per vShard");
                return Err(ExecError::ProgramLimitExceeded(m).into());
            }
        }
    }
    Ok(writes)
}
