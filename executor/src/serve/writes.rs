//! Writes to one vShard: INSERT, UPDATE/DELETE, a transaction program whose
//! rows all live here, a dropped table's rows; and each vShard's part of a
//! sequenced multi-vShard statement, which its scheduler asks for.
//!
//! Each takes its locks in the vShard's lock table in arrival order, passes
//! a write barrier, computes its write set from the rows as they are, and
//! proposes it as one entry. Its effects are logged, not the statement, so
//! reading the clock for `now()` here is safe: the value is in the entry.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::MemTable;
use ordo_expr::arrow::{input_at, param_scalar};
use ordo_expr::parse::parse_expr;
use ordo_expr::{coerce, from_datafusion, storage_error, ExecError, ExecResult, Param};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{encode_row, Datum};
use ordo_raft::codec::Pairs;
use ordo_raft::groups::vshard_group;
use ordo_raft::{Consensus, GroupId, RequestId, RequestReply};
use ordo_scheduler::{LockGuard, LockMode, LockSpan};
use ordo_vshard::shard::{row_key, table_prefix, RowWrite, ShardCommand, ShardReader, TxnPos};

use super::{queue_full, request_reply, storage, vshard_of_group, Fail, Fence, LeaderExecutor};
use crate::codec::{decode, encode};
use crate::constants::STATEMENT_ROWS_MAX;
use crate::rpc::ShardResponse;
use crate::txn::interp::{decode_rows, modify_fast, modify_query, row_indexes, rows_with_index, run_guarded, TxnView};
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
        let spans = insert_locks(table.id, &rows);
        let (_locks, after) = self.lock(group, vshard_of_group(gid)?, spans, fence).await?;
        group.write_barrier().await?;
        if let Some(first) = replayed(group, id)? {
            return Ok(first);
        }
        let writes = self.insert_writes(gid, table, rows)?;
        let n = writes.len() as u64;
        commit(group, id, ShardCommand::Write { writes, after }, ShardResponse::Count(n)).await
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
        let span = dml_lock(dml);
        let (_locks, after) = self.lock(group, vshard_of_group(gid)?, vec![span], fence).await?;
        group.write_barrier().await?;
        if let Some(first) = replayed(group, id)? {
            return Ok(first);
        }
        // Its effects are logged, not the statement: the clock is safe.
        let writes = self.dml_writes(gid, dml, chrono::Utc::now().timestamp_micros()).await?;
        let n = writes.len() as u64;
        if n == 0 {
            return Ok(ShardResponse::Count(0));
        }
        commit(group, id, ShardCommand::Write { writes, after }, ShardResponse::Count(n)).await
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
        let (_locks, after) = self.lock(group, vshard, locks.get(&vshard).cloned().unwrap_or_default(), fence).await?;
        locks.entry(vshard).or_default();
        group.write_barrier().await?;
        if let Some(first) = replayed(group, id)? {
            return Ok(first);
        }
        // Runs once, here; its effects (not the program) are logged,
        // so reading the clock for now() is safe.
        let now_us = chrono::Utc::now().timestamp_micros();
        let view = LocalView { reader: &self.reader };
        let mut out = run_guarded(program, now_us, self.vshards, Some(&locks), &view).await?;
        let response = ShardResponse::Outputs(out.outputs);
        match out.writes.remove(&vshard) {
            Some(writes) => commit(group, id, ShardCommand::Write { writes, after }, response).await,
            None => Ok(response),
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
        let span = LockSpan::prefix(&table_prefix(table_id), LockMode::Write);
        let _locks = self.lock(group, vshard_of_group(gid)?, vec![span], fence).await?;
        commit(group, id, ShardCommand::DropTable { table_id }, ShardResponse::Done).await
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
        let enqueued = std::time::Instant::now();
        let guard = ticket.granted().await;
        self.metrics.lock_granted(ordo_metrics::waiter::WRITE, ordo_metrics::seconds_since(enqueued));
        self.check_round(group, vshard, fence.map(|f| f.mark))?;
        Ok((guard, after))
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
    fn insert_writes(&self, gid: GroupId, table: &TableDef, rows: Pairs) -> Result<Vec<RowWrite>, Fail> {
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
    /// are found and the new values computed over the shard's rows of the
    /// table as the transaction sees them, by the fast path when it covers
    /// the statement, else by DataFusion.
    async fn dml_writes(&self, gid: GroupId, dml: &DmlRequest, now_us: i64) -> Result<Vec<RowWrite>, Fail> {
        let table = &dml.table;
        let params = dml.params_at(now_us);
        let stored: Pairs = match &dml.point {
            Some(pk) => {
                let key = row_key(table.id, pk);
                self.get(gid, &key)?.map(|v| (key, v)).into_iter().collect()
            }
            None => self.reader.scan_prefix(gid, &table_prefix(table.id)).map_err(ExecError::from)?,
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
}

/// The first answer to request `id` if an earlier attempt of it was
/// applied. Asked holding the request's locks after a write barrier: every
/// write any leader committed is applied here, and an attempt still running
/// on this leader holds the same locks, so it is done.
fn replayed(group: &dyn Consensus, id: Option<RequestId>) -> Result<Option<ShardResponse>, Fail> {
    let Some(id) = id else { return Ok(None) };
    match group.applied_request(id)? {
        Some(record) => Ok(Some(decode(&request_reply(RequestReply::Duplicate(record.reply))?)?)),
        None => Ok(None),
    }
}

/// Proposes a client's write and returns `response`, the answer it gets —
/// or, when an earlier attempt of request `id` was applied first (the
/// group applies each id once), that attempt's answer.
async fn commit(
    group: &dyn Consensus,
    id: Option<RequestId>,
    command: ShardCommand,
    response: ShardResponse,
) -> Result<ShardResponse, Fail> {
    match id {
        None => {
            group.propose(command.encode()).await?;
            Ok(response)
        }
        Some(id) => {
            let reply = group.propose_request(id, command.encode(), Some(encode(&response))).await?;
            Ok(decode(&request_reply(reply)?)?)
        }
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
