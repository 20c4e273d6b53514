//! Sequenced inputs other than programs: one autocommit statement over
//! several vShards, whose effect on each vShard follows from that vShard's
//! rows alone, and what the epoch log carries ([`SequencedInput`]).

use ordo_expr::Param;
use ordo_meta::catalog::TableDef;
use serde::{Deserialize, Serialize};

use crate::txn::program::TxnProgram;

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

/// One autocommit statement over several vShards whose effect on each
/// vShard follows from that vShard's rows alone. Sequenced, so it is atomic:
/// each participant runs its own part, and all commit only if every part
/// succeeds (see `crate::scheduling`).
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
    #[serde(with = "ordo_raft::codec::byte_pairs")]
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
