//! The locks a transaction program needs, per vShard, derived from the
//! program and its parameters alone — before it runs, so every
//! participant derives the same set and enqueues it in the same order.
//!
//! Each statement locks what its keys allow: a row when its whole primary
//! key is known up front, the rows of one partition key when that is known
//! (e.g. `WHERE w_id = 1 AND o_id = $o_id`), and otherwise the table in
//! every vShard (a range lock that also covers rows inserted meanwhile, so
//! a predicate on non-key columns re-checked at execution sees exactly the
//! rows it would have seen alone). Values computed by earlier statements
//! (variables) are unknown here and widen the lock. An UPDATE/DELETE the
//! gateway reconnoitred ([`crate::txn::program::Recon`]) writes only the keys
//! found, and reads the table to keep them valid.

use std::collections::BTreeMap;

use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{encode_key, Datum};
use ordo_scheduler::{LockMode, LockSpan};
use ordo_vshard::shard::{row_key, table_prefix, table_version_key};

use crate::txn::program::{ProgStatement, Recon, TxnProgram};
use crate::txn::statement::{DmlRequest, MultiShardStatement};
use ordo_expr::coerce;
use ordo_expr::fast::eval_scalar;
use ordo_expr::parse::parse_expr;
use ordo_expr::target::{target, vshard_of_key, Target};
use ordo_expr::Param;

/// Lock spans by vShard.
pub type LockSet = BTreeMap<u32, Vec<LockSpan>>;

/// The locks `vshard`'s part of a sequenced statement takes: the rows it
/// inserts, the row an UPDATE/DELETE names by key, else the table's range.
/// The same locks a single-shard INSERT or UPDATE/DELETE takes.
pub fn statement_locks(statement: &MultiShardStatement, vshard: u32) -> Vec<LockSpan> {
    match statement {
        MultiShardStatement::Insert { table, parts } => {
            parts.iter().filter(|p| p.vshard == vshard).flat_map(|p| insert_locks(table.id, &p.rows)).collect()
        }
        MultiShardStatement::Dml(dml) => vec![dml_lock(dml)],
    }
}

/// The rows (encoded pk, row) an INSERT into table `table_id` writes.
pub fn insert_locks(table_id: u64, rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<LockSpan> {
    rows.iter().map(|(pk, _)| LockSpan::key(&row_key(table_id, pk), LockMode::Write)).collect()
}

/// An UPDATE/DELETE's lock in one vShard: its row when it names one by
/// key, else the table's range.
pub fn dml_lock(dml: &DmlRequest) -> LockSpan {
    match &dml.point {
        Some(pk) => LockSpan::key(&row_key(dml.table.id, pk), LockMode::Write),
        None => LockSpan::prefix(&table_prefix(dml.table.id), LockMode::Write),
    }
}

pub fn lock_set(program: &TxnProgram, vshards: u32) -> LockSet {
    let mut set = LockSet::new();
    for st in &program.statements {
        match st {
            ProgStatement::Insert { table, targets, rows, .. } => {
                for cells in rows {
                    insert_row_locks(&mut set, table, targets, cells, &program.params, vshards);
                }
            }
            ProgStatement::Modify { table, recon: Some(recon), selection: Some(_), .. } => {
                recon_locks(&mut set, table, recon, vshards)
            }
            ProgStatement::Modify { table, selection, .. } => {
                target_locks(&mut set, table, selection.as_deref(), &program.params, vshards, LockMode::Write)
            }
            ProgStatement::Select { table, selection, .. } => {
                target_locks(&mut set, table, selection.as_deref(), &program.params, vshards, LockMode::Read)
            }
        }
    }
    set
}

fn target_locks(
    set: &mut LockSet,
    table: &TableDef,
    selection: Option<&str>,
    params: &[Param],
    vshards: u32,
    mode: LockMode,
) {
    let sel = match selection.map(parse_expr).transpose() {
        Ok(s) => s,
        // Unparsable text fails when the statement runs; lock widely meanwhile.
        Err(_) => return whole_table(set, table, vshards, mode),
    };
    match target(table, sel.as_ref(), params, vshards) {
        Target::Point { vshard, pk } => {
            set.entry(vshard).or_default().push(LockSpan::key(&row_key(table.id, &pk), mode))
        }
        Target::Shard { vshard, part } => {
            set.entry(vshard).or_default().push(LockSpan::prefix(&row_key(table.id, &part), mode))
        }
        Target::All => whole_table(set, table, vshards, mode),
    }
}

/// A reconnoitred UPDATE/DELETE: the keys it found for writing; the table
/// and its version in every vShard for reading, so that no write of the
/// table is ordered between the version check and the statement.
fn recon_locks(set: &mut LockSet, table: &TableDef, recon: &Recon, vshards: u32) {
    whole_table(set, table, vshards, LockMode::Read);
    for v in 0..vshards {
        set.entry(v).or_default().push(LockSpan::key(&table_version_key(table.id), LockMode::Read));
    }
    for (v, key) in &recon.keys {
        set.entry(*v).or_default().push(LockSpan::key(key, LockMode::Write));
    }
}

fn whole_table(set: &mut LockSet, table: &TableDef, vshards: u32, mode: LockMode) {
    for v in 0..vshards {
        set.entry(v).or_default().push(LockSpan::prefix(&table_prefix(table.id), mode));
    }
}

/// A row's key (or partition) from constant cells; wider when unknown.
fn insert_row_locks(
    set: &mut LockSet,
    table: &TableDef,
    targets: &[usize],
    cells: &[String],
    params: &[Param],
    vshards: u32,
) {
    let value = |ci: usize| -> Option<Datum> {
        let pos = targets.iter().position(|&t| t == ci)?;
        let input = eval_scalar(&parse_expr(cells.get(pos)?).ok()?, params).ok()?;
        coerce(input, &table.columns[ci]).ok().filter(|d| !d.is_null())
    };
    let known: Vec<Option<Datum>> = table.primary_key.iter().map(|&ci| value(ci)).collect();
    let mode = LockMode::Write;
    if let Some(pk) = known.iter().cloned().collect::<Option<Vec<Datum>>>() {
        let v = vshard_of_key(table, &pk, vshards);
        let key = row_key(table.id, &encode_key(&pk.iter().collect::<Vec<_>>()));
        set.entry(v).or_default().push(LockSpan::key(&key, mode));
    } else if let Some(part) = (table.partition_len.max(1)..=table.primary_key.len())
        .rev()
        .find_map(|n| known[..n].iter().cloned().collect::<Option<Vec<Datum>>>())
    {
        // The longest known leading part of the key (e.g. warehouse and
        // district of an order whose id comes from an earlier statement).
        let v = vshard_of_key(table, &part, vshards);
        let prefix = row_key(table.id, &encode_key(&part.iter().collect::<Vec<_>>()));
        set.entry(v).or_default().push(LockSpan::prefix(&prefix, mode));
    } else {
        // Missing or computed partition columns: the row could land in any
        // vShard (or fail to be built, which the program reports).
        whole_table(set, table, vshards, mode);
    }
}

/// Whether `set` lets a transaction read `[start, end)` (or write it, with
/// `mode == Write`) in `vshard`.
pub fn covered(set: &LockSet, vshard: u32, start: &[u8], end: Option<&[u8]>, mode: LockMode) -> bool {
    set.get(&vshard).is_some_and(|spans| spans.iter().any(|s| s.covers(start, end, mode)))
}

/// The participants of a program that evaluate it: the lowest (which
/// records the client's result) and every one it may write in. The others
/// are *passive* (Calvin's term): they only read, so they do not run the
/// program; they serve their rows at the position, live, until every
/// active participant has applied it — from then on no one evaluates it
/// again, so no one reads them at it again, and they keep no record.
pub fn active_participants(locks: &LockSet, participants: &[u32]) -> Vec<u32> {
    let writes = |v: &u32| locks.get(v).is_some_and(|spans| spans.iter().any(|s| s.mode == LockMode::Write));
    participants.iter().enumerate().filter(|(i, v)| *i == 0 || writes(v)).map(|(_, v)| *v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_participant_and_the_writers_are_active() {
        let mut locks = LockSet::new();
        locks.insert(1, vec![LockSpan::prefix(b"t", LockMode::Read)]);
        locks.insert(2, vec![LockSpan::prefix(b"t", LockMode::Read), LockSpan::key(b"t1", LockMode::Write)]);
        locks.insert(3, vec![LockSpan::prefix(b"t", LockMode::Read)]);
        locks.insert(4, vec![LockSpan::key(b"u", LockMode::Write)]);
        assert_eq!(active_participants(&locks, &[1, 2, 3, 4]), vec![1, 2, 4]);
    }
}
