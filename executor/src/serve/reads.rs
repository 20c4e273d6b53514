//! Reads: single-vShard reads in order with the vShard's writes
//! (`Get`, `Scan`), reads at a read point for queries over several vShards
//! (`ScanAsOf`), whether a position is applied (`AppliedNow`), and
//! reconnaissance (`Reconnoitre`).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ordo_expr::{ExecError, Param};
use ordo_meta::catalog::TableDef;
use ordo_raft::engine::OwnedSnapshot;
use ordo_raft::groups::vshard_group;
use ordo_raft::{Consensus, GroupId};
use ordo_scheduler::{LockMode, LockSpan};
use ordo_vshard::shard::{decode_table_version, row_key, table_prefix, table_version_key, TxnPos};

use super::{queue_full, storage, vshard_of_group, Fail, Fence, LeaderExecutor};
use crate::constants::{FENCE_WAIT_MS, RECON_KEYS_MAX, SKIP_CHECKS_MAX};
use crate::rpc::ShardResponse;
use crate::sequenced::FenceMark;
use crate::txn::interp::{decode_rows, matching, ModifyShape};
use crate::txn::program::read_limit_exceeded;
use crate::txn::record::program_scan;

impl LeaderExecutor {
    /// `Get`: the rows with these encoded primary keys, from one snapshot.
    pub(super) async fn get_rows(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        table: &TableDef,
        pks: Vec<Vec<u8>>,
        fence: Option<Fence>,
    ) -> Result<ShardResponse, Fail> {
        // In order with the writes: a read waits for the writes of the same
        // rows enqueued before it (see `crate::rpc::frontier`), and holds
        // back none enqueued after it (a snapshot read).
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

    /// `Scan`: the rows of `table` under an encoded primary-key prefix.
    pub(super) async fn scan_rows(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        table: &TableDef,
        prefix: &[u8],
        fence: Option<Fence>,
    ) -> Result<ShardResponse, Fail> {
        let start = row_key(table.id, prefix);
        let span = LockSpan::prefix(&start, LockMode::Read);
        let snapshot = self.snapshot_read(group, vshard_of_group(gid)?, vec![span], fence).await?;
        let rows = self.reader.scan_prefix_at(gid, &start, Some(&snapshot)).map_err(ExecError::from)?;
        Ok(ShardResponse::Rows(rows.into_iter().map(|(_, v)| v).collect()))
    }

    /// `ScanAsOf`: see [`LeaderExecutor::scan_at_point`].
    pub(super) async fn rows_as_of(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        epoch: u64,
        index: Option<u64>,
        prefix: &[u8],
    ) -> Result<ShardResponse, Fail> {
        let (index, rows) = self.scan_at_point(group, vshard_of_group(gid)?, epoch, index, prefix).await?;
        Ok(ShardResponse::RowsAt { index, rows })
    }

    /// `AppliedNow`: whether this vShard has applied `pos`, after a barrier.
    pub(super) async fn applied_now(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        pos: TxnPos,
    ) -> Result<ShardResponse, Fail> {
        group.read_barrier().await?;
        Ok(ShardResponse::Count(self.reader.is_applied(gid, pos).map_err(storage)? as u64))
    }

    /// `Reconnoitre`: the keys of `table` here that an UPDATE/DELETE of
    /// `shape` matches now, and the table's version, from one snapshot.
    pub(super) async fn reconnoitre(
        &self,
        gid: GroupId,
        table: &TableDef,
        shape: &ModifyShape<'_>,
        params: &[Param],
    ) -> Result<ShardResponse, Fail> {
        let _slot = self.reconnaissances.acquire().await.map_err(|e| ExecError::Internal(e.to_string()))?;
        // No lock and no barrier: any applied state will do, the
        // transaction re-checks the version at its position. Rows
        // and version from one snapshot, so they agree.
        let snapshot = self.reader.snapshot();
        let version = self.reader.get_at(gid, &table_version_key(table.id), &snapshot).map_err(storage)?;
        let scanned = self.reader.scan_prefix_at(gid, &table_prefix(table.id), Some(&snapshot));
        // A program could not read more either.
        let stored = program_scan(scanned)?.ok_or_else(read_limit_exceeded)?;
        let rows = decode_rows(&stored)?;
        let found = matching(table, shape, params, &rows).await?;
        if found.len() > RECON_KEYS_MAX {
            return Err(ExecError::ProgramLimitExceeded(format!(
                "a reconnaissance finds at most {RECON_KEYS_MAX} keys"
            ))
            .into());
        }
        let keys = found.into_iter().map(|i| stored[i].0.clone()).collect();
        Ok(ShardResponse::Matches { version: decode_table_version(version.as_deref()), keys })
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
        let enqueued = std::time::Instant::now();
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
            let questions: Vec<(TxnPos, u32)> =
                blockers.iter().flat_map(|b| b.writers.iter().filter(|&&w| w != vshard).map(|&w| (b.pos, w))).collect();
            if questions.len() > SKIP_CHECKS_MAX {
                break;
            }
            group.read_barrier().await?;
            let snapshot = self.reader.snapshot();
            for &pos in &waited_for {
                // Released without applying (a failed execution): the
                // round is ending; do not answer without it.
                if !self.reader.is_applied(vshard_group(vshard), pos).map_err(storage)? {
                    return Err(ExecError::Unavailable(format!(
                        "vShard {vshard} is restarting its transactions; retry"
                    ))
                    .into());
                }
            }
            let visible = self.applied_somewhere(&questions).await;
            if visible.is_empty() {
                self.check_round(group, vshard, fence.map(|f| f.mark))?;
                if met {
                    self.reads_ordered_before.fetch_add(1, Ordering::Relaxed);
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
        self.reads_waited.fetch_add(1, Ordering::Relaxed);
        let _granted = ticket.granted().await;
        self.metrics.lock_granted(ordo_metrics::waiter::READ, ordo_metrics::seconds_since(enqueued));
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
    async fn scan_at_point(
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
                return Err(ExecError::Unavailable(format!(
                    "vShard {vshard} applied {applied} after a read barrier, below {i}"
                ))
                .into())
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
        let unavailable = || {
            Fail::Exec(ExecError::Unavailable(format!(
                "vShard {vshard} has not completed epoch {epoch} within {FENCE_WAIT_MS} ms"
            )))
        };
        let (mark, _) = self
            .board
            .wait_ingested(vshard, term, epoch, Duration::from_millis(FENCE_WAIT_MS))
            .await
            .ok_or_else(unavailable)?;
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
            let not_applied = matches!(router.applied_now(w, pos).await, Ok(false));
            (!not_applied).then_some(pos)
        });
        futures::future::join_all(asks).await.into_iter().flatten().collect()
    }
}
