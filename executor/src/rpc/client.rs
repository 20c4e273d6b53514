//! The typed client of every request a node sends to a group's leader (or a
//! replica): one method per request, each with its own answer type, so no
//! caller matches on [`ShardResponse`] — the one place that does is here,
//! where a reply of the wrong kind is an internal error of this file.

use std::time::Duration;

use ordo_expr::{ExecError, ExecResult, Param};
use ordo_meta::catalog::TableDef;
use ordo_meta::command::{MetaCommand, MetaResult};
use ordo_raft::groups::{vshard_group, META_GROUP, SEQUENCER_GROUP};
use ordo_raft::{GroupId, GroupStatus};
use ordo_sequencer::{Epoch, EpochInput};
use ordo_vshard::shard::TxnPos;

use crate::constants::LEADER_SEARCH_MS;
use crate::rpc::request::{ShardRequest, ShardResponse};
use crate::rpc::router::Router;
use crate::txn::program::{StmtOutput, TxnProgram, TxnResult};
use crate::txn::statement::DmlRequest;

pub use ordo_raft::codec::Pairs;

/// Whether a vShard has applied a sequenced position, and the record it
/// stored for it (when asked for).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub applied: bool,
    pub record: Option<Vec<u8>>,
}

/// What a reconnaissance of one vShard found: the table's version there and
/// the keys that matched, in key order.
#[derive(Clone, Debug)]
pub struct Matches {
    pub version: u64,
    pub keys: Vec<Vec<u8>>,
}

/// A reply of the wrong kind: a bug on one side of the wire.
fn unexpected(request: &str, reply: ShardResponse) -> ExecError {
    ExecError::Internal(format!("unexpected reply to {request}: {reply:?}"))
}

/// Meta group: the catalog.
impl Router {
    /// Group `gid`'s state as its leader sees it.
    pub async fn group_status(&self, gid: GroupId) -> ExecResult<GroupStatus> {
        match self.call(gid, &ShardRequest::Status).await? {
            ShardResponse::Status(status) => Ok(status),
            other => Err(unexpected("Status", other)),
        }
    }

    /// Applies a catalog change on the meta leader.
    pub async fn meta(&self, cmd: MetaCommand) -> ExecResult<MetaResult> {
        match self.call(META_GROUP, &ShardRequest::Meta(cmd)).await? {
            ShardResponse::Meta(result) => Ok(result),
            other => Err(unexpected("Meta", other)),
        }
    }

    /// The encoded catalog and the meta log index it is at, read
    /// linearizably from the meta leader.
    pub async fn catalog(&self) -> ExecResult<(u64, Vec<u8>)> {
        match self.call(META_GROUP, &ShardRequest::Catalog).await? {
            ShardResponse::Catalog { index, bytes } => Ok((index, bytes)),
            other => Err(unexpected("Catalog", other)),
        }
    }

    /// Returns once this node's replica of `gid` has applied everything the
    /// leader had committed when this call started (a linearizable view).
    pub async fn catch_up(&self, gid: GroupId) -> ExecResult<()> {
        let index = self.read_index(gid).await?;
        match self.group(gid) {
            Some(g) => g
                .wait_applied(index, Duration::from_millis(LEADER_SEARCH_MS))
                .await
                .map_err(|e| ExecError::Unavailable(e.to_string())),
            None => Ok(()),
        }
    }

    /// The leader's applied index after a read barrier.
    pub async fn read_index(&self, gid: GroupId) -> ExecResult<u64> {
        match self.call(gid, &ShardRequest::ReadIndex).await? {
            ShardResponse::Count(index) => Ok(index),
            other => Err(unexpected("ReadIndex", other)),
        }
    }
}

/// One vShard's rows, for a client's single-vShard statement: fenced (see
/// [`crate::rpc::frontier`]) and ordered by the vShard itself.
impl Router {
    /// The rows of `table` with these encoded primary keys (values only).
    pub async fn get_rows(&self, vshard: u32, table: TableDef, pks: Vec<Vec<u8>>) -> ExecResult<Vec<Vec<u8>>> {
        match self.call(vshard_group(vshard), &ShardRequest::Get { table, pks }).await? {
            ShardResponse::Rows(rows) => Ok(rows),
            other => Err(unexpected("Get", other)),
        }
    }

    /// The rows of `table` under an encoded primary-key prefix (values only).
    pub async fn scan_rows(&self, vshard: u32, table: TableDef, prefix: Vec<u8>) -> ExecResult<Vec<Vec<u8>>> {
        match self.call(vshard_group(vshard), &ShardRequest::Scan { table, prefix }).await? {
            ShardResponse::Rows(rows) => Ok(rows),
            other => Err(unexpected("Scan", other)),
        }
    }

    /// Inserts rows (encoded pk, encoded row); the number inserted.
    pub async fn insert_rows(&self, vshard: u32, table: TableDef, rows: Pairs) -> ExecResult<u64> {
        match self.call(vshard_group(vshard), &ShardRequest::Insert { table, rows }).await? {
            ShardResponse::Count(n) => Ok(n),
            other => Err(unexpected("Insert", other)),
        }
    }

    /// Runs an UPDATE or DELETE on the vShard's rows; the rows changed.
    pub async fn modify_rows(&self, vshard: u32, dml: DmlRequest) -> ExecResult<u64> {
        match self.call(vshard_group(vshard), &ShardRequest::Dml(dml)).await? {
            ShardResponse::Count(n) => Ok(n),
            other => Err(unexpected("Dml", other)),
        }
    }

    /// Deletes every row of a dropped table in the vShard.
    pub async fn drop_table_rows(&self, vshard: u32, table_id: u64) -> ExecResult<()> {
        match self.call(vshard_group(vshard), &ShardRequest::DropTable { table_id }).await? {
            ShardResponse::Done => Ok(()),
            other => Err(unexpected("DropTable", other)),
        }
    }

    /// Runs a transaction whose rows all live in `vshard` on its leader.
    pub async fn run_program(&self, vshard: u32, program: TxnProgram) -> ExecResult<Vec<StmtOutput>> {
        match self.call(vshard_group(vshard), &ShardRequest::Program(program)).await? {
            ShardResponse::Outputs(outputs) => Ok(outputs),
            other => Err(unexpected("Program", other)),
        }
    }
}

/// Reads that take no lock: queries over several vShards, reconnaissance.
impl Router {
    /// Rows under `prefix` at read point (`epoch`, `index`) and the index
    /// read at (see `ShardRequest::ScanAsOf`).
    pub async fn scan_as_of(
        &self,
        vshard: u32,
        epoch: u64,
        index: Option<u64>,
        prefix: Vec<u8>,
    ) -> ExecResult<(u64, Vec<Vec<u8>>)> {
        match self.call(vshard_group(vshard), &ShardRequest::ScanAsOf { epoch, index, prefix }).await? {
            ShardResponse::RowsAt { index, rows } => Ok((index, rows)),
            other => Err(unexpected("ScanAsOf", other)),
        }
    }

    /// The keys of `table` in `vshard` an UPDATE (`assignments`) or DELETE
    /// with `selection` matches now, and the table's version there.
    pub async fn reconnoitre(
        &self,
        vshard: u32,
        table: TableDef,
        assignments: Vec<(usize, String)>,
        delete: bool,
        selection: String,
        params: Vec<Param>,
    ) -> ExecResult<Matches> {
        let req = ShardRequest::Reconnoitre { table, assignments, delete, selection, params };
        match self.call(vshard_group(vshard), &req).await? {
            ShardResponse::Matches { version, keys } => Ok(Matches { version, keys }),
            other => Err(unexpected("Reconnoitre", other)),
        }
    }
}

/// The sequencer group.
impl Router {
    /// Orders a cross-shard input, once: a retry after a lost reply gets
    /// the position the first attempt was given.
    pub async fn sequence(&self, input: EpochInput) -> ExecResult<TxnPos> {
        match self.call(SEQUENCER_GROUP, &ShardRequest::Sequence(input)).await? {
            ShardResponse::Sequenced { pos, .. } => Ok(pos),
            other => Err(unexpected("Sequence", other)),
        }
    }

    /// Orders an empty input with no participants (no scheduler takes it;
    /// resending it is harmless): its position is in an epoch committed
    /// after this call began.
    pub(super) async fn sequence_marker(&self) -> ExecResult<TxnPos> {
        let input = EpochInput { participants: Vec::new(), program: Vec::new(), request: None };
        // Unfenced and sent directly (no request id): the fence's own
        // fetches go this way.
        match self.send(SEQUENCER_GROUP, &ShardRequest::Sequence(input)).await? {
            ShardResponse::Sequenced { pos, .. } => Ok(pos),
            other => Err(unexpected("Sequence", other)),
        }
    }

    /// The last committed epoch, read linearizably from the sequencer leader.
    pub(super) async fn fetch_frontier(&self) -> ExecResult<u64> {
        match self.send(SEQUENCER_GROUP, &ShardRequest::Frontier).await? {
            ShardResponse::Count(epoch) => Ok(epoch),
            other => Err(unexpected("Frontier", other)),
        }
    }

    /// Committed epochs `from..` (at most `max`), waiting up to `wait_ms`
    /// for the first.
    pub async fn epochs(&self, from: u64, max: u32, wait_ms: u64) -> ExecResult<Vec<Epoch>> {
        match self.call(SEQUENCER_GROUP, &ShardRequest::Epochs { from, max, wait_ms }).await? {
            ShardResponse::Epochs(epochs) => Ok(epochs),
            other => Err(unexpected("Epochs", other)),
        }
    }
}

/// Sequenced positions on their participants.
impl Router {
    /// The rows at `key` (`prefix`: every row under it) of `vshard` as of
    /// sequenced position `pos`; `None`: not reached yet, ask again.
    pub async fn read_at(&self, vshard: u32, pos: TxnPos, key: Vec<u8>, prefix: bool) -> ExecResult<Option<Pairs>> {
        match self.call(vshard_group(vshard), &ShardRequest::ReadAt { pos, vshard, key, prefix }).await? {
            ShardResponse::Pairs(rows) => Ok(Some(rows)),
            ShardResponse::NotYet => Ok(None),
            other => Err(unexpected("ReadAt", other)),
        }
    }

    /// Whether `vshard` has applied `pos` (after waiting a while), with its
    /// record when `record`.
    pub async fn outcome(&self, vshard: u32, pos: TxnPos, record: bool) -> ExecResult<Outcome> {
        match self.call(vshard_group(vshard), &ShardRequest::Outcome { pos, record }).await? {
            ShardResponse::Outcome { applied, record } => Ok(Outcome { applied, record }),
            other => Err(unexpected("Outcome", other)),
        }
    }

    /// `vshard`'s verdict on its part of the statement at `pos`; `None`:
    /// none yet, ask again.
    pub async fn verdict_at(&self, vshard: u32, pos: TxnPos) -> ExecResult<Option<TxnResult>> {
        match self.call(vshard_group(vshard), &ShardRequest::VerdictAt { pos }).await? {
            ShardResponse::Verdict(verdict) => Ok(Some(verdict)),
            ShardResponse::NotYet => Ok(None),
            other => Err(unexpected("VerdictAt", other)),
        }
    }

    /// Whether `vshard` has applied `pos`, as of a read barrier there.
    pub async fn applied_now(&self, vshard: u32, pos: TxnPos) -> ExecResult<bool> {
        match self.call(vshard_group(vshard), &ShardRequest::AppliedNow { pos }).await? {
            ShardResponse::Count(n) => Ok(n > 0),
            other => Err(unexpected("AppliedNow", other)),
        }
    }

    /// The epoch through which `vshard`'s scheduler has completed everything.
    pub async fn complete_through(&self, vshard: u32) -> ExecResult<u64> {
        match self.call(vshard_group(vshard), &ShardRequest::CompleteThrough).await? {
            ShardResponse::Count(epoch) => Ok(epoch),
            other => Err(unexpected("CompleteThrough", other)),
        }
    }

    /// Has `gid` (a vShard: its outcome records; the sequencer: its epochs)
    /// forget what it keeps of epochs up to `through_epoch`.
    pub async fn collect(&self, gid: GroupId, through_epoch: u64) -> ExecResult<()> {
        match self.call(gid, &ShardRequest::Collect { through_epoch }).await? {
            ShardResponse::Done => Ok(()),
            other => Err(unexpected("Collect", other)),
        }
    }
}

/// Replica verification.
impl Router {
    /// Replicates a checksum point through `gid`'s log; its log index.
    pub async fn checksum_point(&self, gid: GroupId) -> ExecResult<u64> {
        match self.call(gid, &ShardRequest::Checksum).await? {
            ShardResponse::Checksum { index, .. } => Ok(index),
            other => Err(unexpected("Checksum", other)),
        }
    }

    /// The hash node `node`'s replica of `gid` took at checksum point
    /// `index` (`None`: superseded by a newer point).
    pub async fn replica_checksum(&self, node: u64, gid: GroupId, index: u64) -> ExecResult<Option<u64>> {
        match self.call_at(node, gid, &ShardRequest::ReplicaChecksum { index }).await? {
            ShardResponse::Checksum { hash, .. } => Ok(hash),
            other => Err(unexpected("ReplicaChecksum", other)),
        }
    }
}
