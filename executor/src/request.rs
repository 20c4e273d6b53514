//! Requests a gateway sends to the leader of a group, and their answers.

use ordo_meta::catalog::TableDef;
use ordo_meta::command::{MetaCommand, MetaResult};
use ordo_sequencer::EpochInput;
use ordo_vshard::shard::TxnPos;
use serde::{Deserialize, Serialize};

use crate::program::{StmtOutput, TxnProgram};

use crate::error::ExecError;

/// A statement parameter as the client sent it (a JSON scalar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Values a statement of a transaction produced (`RETURNING`, `SELECT`)
    /// and a later one uses: they keep their SQL type.
    Decimal { value: i128, precision: u8, scale: i8 },
    Date(i32),
    /// Microseconds since the Unix epoch, no time zone.
    Timestamp(i64),
}

impl Param {
    pub fn from_json(v: &serde_json::Value) -> Result<Param, ExecError> {
        Ok(match v {
            serde_json::Value::Null => Param::Null,
            serde_json::Value::Bool(b) => Param::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Param::Int(i),
                None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Param::Text(s.clone()),
            other => return Err(ExecError::InvalidParameter(format!("parameter must be a scalar, got {other}"))),
        })
    }
}

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
        #[serde(with = "ordo_vshard::codec::byte_pairs")]
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
    /// For a participant's leader in a sequenced [`MultiShardStatement`] at `pos`:
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
    /// epoch up to `after_epoch` (see [`crate::fence`]).
    Fenced { after_epoch: u64, req: Box<ShardRequest> },
    /// On any replica (no leader needed): the hash this replica took at
    /// checksum point `index`; answers `Checksum`.
    ReplicaChecksum { index: u64 },
    /// For a vShard leader: a reconnaissance of an UPDATE (`assignments`)
    /// or DELETE over its rows of `table` (see [`crate::program::Recon`]),
    /// taken from one storage snapshot without locks. Answers `Matches`.
    Reconnoitre { table: TableDef, assignments: Vec<(usize, String)>, delete: bool, selection: String, params: Vec<Param> },
    /// For a vShard leader: whether this vShard has applied sequenced
    /// position `pos`, as of a read barrier (committed entries count).
    /// Answers `Count(1)` or `Count(0)` at once.
    AppliedNow { pos: TxnPos },
}

impl ShardRequest {
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

/// One autocommit statement over several vShards whose effect on each
/// vShard follows from that vShard's rows alone. Sequenced, so it is atomic:
/// each participant runs its own part, and all commit only if every part
/// succeeds (see [`crate::sequenced`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MultiShardStatement {
    /// The rows each participant inserts.
    Insert { table: TableDef, parts: Vec<InsertPart> },
    /// The same UPDATE/DELETE on every participant's rows.
    Dml(DmlRequest),
}

/// The rows (encoded pk, encoded row) of an INSERT that go to `vshard`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InsertPart {
    pub vshard: u32,
    #[serde(with = "ordo_vshard::codec::byte_pairs")]
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DmlRequest {
    pub table: TableDef,
    /// `(column index, SQL expression)` for UPDATE; empty for DELETE.
    pub assignments: Vec<(usize, String)>,
    pub delete: bool,
    /// The WHERE clause as SQL text, if any.
    pub selection: Option<String>,
    /// When the statement names one row by its full primary key.
    pub point: Option<Vec<u8>>,
    pub params: Vec<Param>,
    /// The parameter slot `now()` was bound to: the executor fills it with
    /// its one timestamp (the epoch's, for a sequenced statement).
    pub now_slot: Option<usize>,
}

impl DmlRequest {
    /// The parameters, with `now_us` in the `now()` slot.
    pub fn params_at(&self, now_us: i64) -> Vec<Param> {
        let mut params = self.params.clone();
        if let Some(p) = self.now_slot.and_then(|slot| params.get_mut(slot)) {
            *p = Param::Timestamp(now_us);
        }
        params
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ShardResponse {
    /// What each statement of a `Program` produced.
    Outputs(Vec<StmtOutput>),
    /// Where the sequencer placed an input.
    Sequenced { pos: TxnPos, timestamp_us: i64 },
    Pairs(#[serde(with = "ordo_vshard::codec::byte_pairs")] Vec<(Vec<u8>, Vec<u8>)>),
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
    Rows(#[serde(with = "ordo_vshard::codec::bytes_seq")] Vec<Vec<u8>>),
    Count(u64),
    Meta(MetaResult),
    Done,
    /// A replica's content hash at log `index` (`hash: None`: superseded).
    Checksum { index: u64, hash: Option<u64> },
    NotLeader { leader: Option<u64> },
    /// A participant's verdict on its part of a sequenced statement.
    Verdict(crate::program::TxnResult),
    Error(ExecError),
    /// A reconnaissance: the table's version in the vShard and the row
    /// keys that matched, in key order.
    Matches {
        version: u64,
        #[serde(with = "ordo_vshard::codec::bytes_seq")]
        keys: Vec<Vec<u8>>,
    },
    /// Rows (values, in key order) read at a vShard's log `index`.
    RowsAt {
        index: u64,
        #[serde(with = "ordo_vshard::codec::bytes_seq")]
        rows: Vec<Vec<u8>>,
    },
}

pub use ordo_vshard::codec::encode;

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, ExecError> {
    ordo_vshard::codec::decode(b).map_err(|e| ExecError::Internal(format!("undecodable message: {e}")))
}
