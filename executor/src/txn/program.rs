//! Transaction programs: what a gateway compiles a `BEGIN; ...; COMMIT`
//! request into, what the sequencer orders, and what every executor of the
//! transaction runs.
//!
//! A program holds statements, not effects: its read and write set follow
//! from running it, so a program must run identically wherever and however
//! often it runs (see [`crate::txn::interp`]). Values flow between statements
//! through *variables*: a statement that returns rows binds each named
//! output column of its first row to a slot, and later statements read the
//! slot as a `$n` placeholder numbered after the client's parameters.

use ordo_meta::catalog::TableDef;
use serde::{Deserialize, Serialize};

use ordo_expr::{ExecError, Param};

use crate::constants::PROGRAM_READ_BYTES_MAX;

/// The error of a program that reads more than `PROGRAM_READ_BYTES_MAX`.
pub fn read_limit_exceeded() -> ExecError {
    ExecError::ProgramLimitExceeded(format!("a transaction may read at most {} MiB", PROGRAM_READ_BYTES_MAX >> 20))
}

/// Bytes of `(key, row)` pairs, as counted against `PROGRAM_READ_BYTES_MAX`.
pub fn read_bytes(rows: &[(Vec<u8>, Vec<u8>)]) -> usize {
    rows.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxnProgram {
    pub statements: Vec<ProgStatement>,
    /// The client's parameters: `$1..$n`.
    pub params: Vec<Param>,
    /// Variable slots after the parameters: `$n+1..$n+vars`. Slot 0
    /// (`$n+1`) holds the transaction's timestamp, which `now()` and
    /// `current_timestamp` were rewritten to.
    pub vars: usize,
}

/// `expr AS name` output items of `RETURNING` and which parameter slot
/// (an index into params ++ variables) each output column binds (None: not
/// used by a later statement).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Returning {
    /// The select list as SQL text, evaluated over the rows written.
    pub items: String,
    pub binds: Vec<Option<usize>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ProgStatement {
    /// `INSERT INTO table (targets) VALUES rows`: each cell is a constant
    /// expression (literal, parameter, variable) as SQL text.
    Insert { table: TableDef, targets: Vec<usize>, rows: Vec<Vec<String>>, returning: Option<Returning> },
    /// UPDATE (with assignments) or DELETE (`delete`) of the rows matching
    /// `selection`; assignments are `(column index, SQL expression)`.
    Modify {
        table: TableDef,
        assignments: Vec<(usize, String)>,
        delete: bool,
        selection: Option<String>,
        returning: Option<Returning>,
        /// What a reconnaissance found for a `selection` that no key bounds
        /// (else the statement locks the table in every vShard for writing
        /// and reads all its rows).
        recon: Option<Recon>,
    },
    /// A query over one table: `sql` runs over the rows `selection` can
    /// match.
    Select { table: TableDef, sql: String, selection: Option<String>, binds: Vec<Option<usize>> },
}

impl ProgStatement {
    pub fn table(&self) -> &TableDef {
        match self {
            ProgStatement::Insert { table, .. }
            | ProgStatement::Modify { table, .. }
            | ProgStatement::Select { table, .. } => table,
        }
    }
}

/// The result of a *reconnaissance* (Calvin's OLLP): before ordering a
/// transaction whose UPDATE/DELETE has a predicate on non-key columns, the
/// gateway evaluates the predicate on every vShard's current rows and
/// records, per vShard, the keys that matched and the table's version
/// there (`ordo_vshard::shard::TABLE_VERSION_PREFIX`: the log index of
/// the last write of the table in that vShard). The transaction is then
/// ordered with write locks on those keys only, plus a read lock on the
/// table in each vShard (so no write of the table runs between its
/// version check and its end).
///
/// At its position every participant reads each vShard's version. Where
/// it is unchanged, no row of the table changed there since, so the keys
/// found are exactly the rows that match now, besides the transaction's
/// own earlier writes, which it adds. Where it changed, that vShard's rows
/// are read and the predicate evaluated again: a row that matches now but
/// was not found (and is not the transaction's own) aborts the program
/// everywhere alike with `StaleReconnaissance` (nothing applied), and the
/// gateway reconnoitres and orders it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recon {
    /// The table's version in each vShard, by vShard number.
    pub versions: Vec<u64>,
    /// The row keys (table prefix ++ encoded pk) that matched, by vShard,
    /// sorted and without repeats.
    pub keys: Vec<(u32, Vec<u8>)>,
}

/// What one statement of a transaction produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StmtOutput {
    pub rows_affected: u64,
    /// `(name, PostgreSQL type name)` of each result column; empty when the
    /// statement returns no rows.
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Param>>,
}

/// The decided outcome of a sequenced transaction, as its coordinator
/// records it: the statements' outputs, or the error every participant
/// reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TxnResult {
    Committed(Vec<StmtOutput>),
    Aborted(ExecError),
}
