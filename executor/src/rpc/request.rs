//! Requests a gateway sends to the leader of a group, and their answers.

use ordo_meta::catalog::TableDef;
use ordo_meta::command::{MetaCommand, MetaResult};
use ordo_raft::{GroupStatus, RequestId};
use ordo_sequencer::EpochInput;
use ordo_vshard::shard::TxnPos;
use serde::{Deserialize, Serialize};

use ordo_expr::{ExecError, Param};

use crate::txn::program::{StmtOutput, TxnProgram, TxnResult};
use crate::txn::statement::DmlRequest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ShardRequest {
    /// Read barrier on the leader; answers `Count(applied index)`.
    ReadIndex,
    /// Catalog change, for the meta group's leader.
    Meta(MetaCommand),
    /// Rows with these encoded primary keys.
    Get { table: TableDef, pks: Vec<Vec<u8>> },
    /// The rows of the table in this vShard under an encoded primary-key
    /// prefix (empty: every row).
    Scan { table: TableDef, prefix: Vec<u8> },
    /// Insert rows (encoded pk, encoded row); fails on an existing key.
    Insert {
        table: TableDef,
        #[serde(with = "ordo_raft::codec::byte_pairs")]
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// UPDATE or DELETE of the rows of this vShard matching `selection`.
    Dml(DmlRequest),
    /// Delete every row of a dropped table.
    DropTable { table_id: u64 },
    /// A transaction whose rows all live in this vShard: run under the
    /// vShard's lock, committed as one write set or not at all. Answers
    /// `Outputs`.
    Program(TxnProgram),
    /// For the sequencer's leader: order a cross-shard transaction. Answers
    /// `Sequenced`. Not idempotent: a retry orders it again.
    Sequence(EpochInput),
    /// For a participant's leader while it holds sequenced position `pos`:
    /// the row at `key` (or with `prefix: true` every row under that
    /// prefix) of `vshard` as of `pos`. Answers `Pairs` or `NotYet`.
    ReadAt { pos: TxnPos, vshard: u32, key: Vec<u8>, prefix: bool },
    /// For a vShard leader: every row under `prefix` at the read point
    /// (`epoch`, `index`) (`ordo_vshard::history`). Without `index` (a
    /// query's first read of this vShard), once every sequenced transaction
    /// of this vShard up to `epoch` is done here, at the log index applied
    /// then. Takes no lock. Answers `RowsAt` with the index read at.
    ScanAsOf { epoch: u64, index: Option<u64>, prefix: Vec<u8> },
    /// Waits (a while) until this vShard has applied sequenced position
    /// `pos`; answers `Outcome`, with the record this vShard stored for it
    /// when `record` (the gateway asks the lowest participant only).
    Outcome { pos: TxnPos, record: bool },
    /// For a participant's leader in a sequenced [`MultiShardStatement`](crate::txn::statement::MultiShardStatement) at `pos`:
    /// its verdict on its own part (the lowest participant: the decision
    /// for all). Answers `Verdict` or `NotYet`.
    VerdictAt { pos: TxnPos },
    /// On the leader: replicate a checksum point; answers `Checksum`.
    Checksum,
    /// For the sequencer's leader: the number of the last committed epoch,
    /// read linearizably. Answers `Count`.
    Frontier,
    /// For the meta leader: the catalog as stored, read linearizably, for
    /// nodes without a meta replica. Answers `Catalog`.
    Catalog,
    /// For the sequencer's leader: committed epochs `from..` (at most
    /// `max`), waiting up to `wait_ms` for the first. Answers `Epochs`.
    Epochs { from: u64, max: u32, wait_ms: u64 },
    /// For a vShard leader: the epoch its scheduler has completed through
    /// (`SchedulerStat::complete_through_epoch`). Answers `Count`.
    CompleteThrough,
    /// For a vShard leader: forget outcomes of epochs up to `through_epoch`;
    /// for the sequencer leader: forget those epochs. Answers `Done`.
    Collect { through_epoch: u64 },
    /// A single-shard request that the vShard orders only after every
    /// epoch up to `after_epoch` (see [`crate::rpc::frontier`]).
    Fenced { after_epoch: u64, req: Box<ShardRequest> },
    /// On any replica (no leader needed): the hash this replica took at
    /// checksum point `index`; answers `Checksum`.
    ReplicaChecksum { index: u64 },
    /// For a vShard leader: a reconnaissance of an UPDATE (`assignments`)
    /// or DELETE over its rows of `table` (see [`crate::txn::program::Recon`]),
    /// taken from one storage snapshot without locks. Answers `Matches`.
    Reconnoitre {
        table: TableDef,
        assignments: Vec<(usize, String)>,
        delete: bool,
        selection: String,
        params: Vec<Param>,
    },
    /// For a vShard leader: whether this vShard has applied sequenced
    /// position `pos`, as of a read barrier (committed entries count).
    /// Answers `Count(1)` or `Count(0)` at once.
    AppliedNow { pos: TxnPos },
    /// A client write (see [`ShardRequest::is_write`]) under the id that
    /// names it across retries: the group applies it once per id and
    /// answers a retry with the first answer (`ordo_raft::requests`).
    Once { id: RequestId, req: Box<ShardRequest> },
    /// The group's state as its leader sees it (followers' progress
    /// included), for operators; answers `Status`.
    Status,
}

impl ShardRequest {
    /// Whether this changes a group on a client's behalf: such a request is
    /// sent [`ShardRequest::Once`], so a retry after a lost reply cannot
    /// apply it twice.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            ShardRequest::Meta(_)
                | ShardRequest::Insert { .. }
                | ShardRequest::Dml(_)
                | ShardRequest::DropTable { .. }
                | ShardRequest::Program(_)
                | ShardRequest::Sequence(_)
        )
    }

    /// The id of a [`ShardRequest::Once`] request (looking inside a fence).
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            ShardRequest::Once { id, .. } => Some(*id),
            ShardRequest::Fenced { req, .. } => req.request_id(),
            _ => None,
        }
    }

    /// Whether this is a client's request to one vShard that the vShard
    /// orders itself (not through the sequencer): those are fenced, so they
    /// follow every cross-shard transaction committed before they arrived.
    pub fn needs_fence(&self) -> bool {
        matches!(
            self,
            ShardRequest::Get { .. }
                | ShardRequest::Scan { .. }
                | ShardRequest::Insert { .. }
                | ShardRequest::Dml(_)
                | ShardRequest::Program(_)
                // Ordered after every cross-shard transaction committed
                // before it, like a write: a new leader must not order it
                // ahead of a position an earlier leader already served.
                | ShardRequest::DropTable { .. }
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ShardResponse {
    /// What each statement of a `Program` produced.
    Outputs(Vec<StmtOutput>),
    /// Where the sequencer placed an input.
    Sequenced {
        pos: TxnPos,
        timestamp_us: i64,
    },
    Pairs(#[serde(with = "ordo_raft::codec::byte_pairs")] Vec<(Vec<u8>, Vec<u8>)>),
    Epochs(Vec<ordo_sequencer::Epoch>),
    /// The encoded catalog as of meta log `index` (empty: no table yet).
    Catalog {
        index: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The position asked for is not reached yet: ask again.
    NotYet,
    Outcome {
        applied: bool,
        #[serde(with = "serde_bytes")]
        record: Option<Vec<u8>>,
    },
    Rows(#[serde(with = "ordo_raft::codec::bytes_seq")] Vec<Vec<u8>>),
    Count(u64),
    Meta(MetaResult),
    Done,
    /// A replica's content hash at log `index` (`hash: None`: superseded).
    Checksum {
        index: u64,
        hash: Option<u64>,
    },
    NotLeader {
        leader: Option<u64>,
    },
    /// A participant's verdict on its part of a sequenced statement.
    Verdict(TxnResult),
    Error(ExecError),
    /// A reconnaissance: the table's version in the vShard and the row
    /// keys that matched, in key order.
    Matches {
        version: u64,
        #[serde(with = "ordo_raft::codec::bytes_seq")]
        keys: Vec<Vec<u8>>,
    },
    /// Rows (values, in key order) read at a vShard's log `index`.
    RowsAt {
        index: u64,
        #[serde(with = "ordo_raft::codec::bytes_seq")]
        rows: Vec<Vec<u8>>,
    },
    /// A group's state (`ShardRequest::Status`).
    Status(GroupStatus),
}
