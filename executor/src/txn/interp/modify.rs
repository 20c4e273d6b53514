//! INSERT, UPDATE and DELETE statements of a program, and which rows an
//! UPDATE/DELETE changes: by the fast path when it covers the statement,
//! else by a DataFusion plan over the candidate rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::sql::sqlparser::ast::Expr;
use ordo_expr::arrow::input_at;
use ordo_expr::fast;
use ordo_expr::fast::eval_scalar;
use ordo_expr::parse::parse_expr;
use ordo_expr::target::{target, vshard_of_key};
use ordo_expr::Param;
use ordo_expr::{coerce, Input};
use ordo_expr::{from_datafusion, ExecError, ExecResult};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{encode_key, encode_row, Datum};
use ordo_vshard::shard::row_key;

use super::rows::{row_indexes, rows_with_index, ROW_INDEX_COLUMN};
use super::select::bind_placeholders;
use super::{Candidate, Run};
use crate::constants::STATEMENT_ROWS_MAX;
use crate::txn::program::{Recon, Returning, StmtOutput};

/// The rows an UPDATE/DELETE changes, by index into its input: the new
/// row, or `None` for a deletion.
pub type Changes = Vec<(usize, Option<Vec<Datum>>)>;

/// The query that plans an UPDATE/DELETE over an in-memory table of its
/// candidate rows (see [`rows_with_index`]): for each matching row, its
/// index and the assignments' new values.
pub fn modify_query(table: &TableDef, assignments: &[(usize, String)], selection: Option<&str>) -> String {
    let mut select = format!("SELECT \"{ROW_INDEX_COLUMN}\"");
    for (_, expr) in assignments {
        select.push_str(&format!(", ({expr})"));
    }
    select.push_str(&format!(" FROM \"{}\"", table.name));
    if let Some(sel) = selection {
        select.push_str(&format!(" WHERE ({sel})"));
    }
    select
}

impl Run<'_> {
    /// `INSERT INTO table (targets) VALUES rows`: fails on a key that
    /// exists or repeats.
    pub(super) async fn insert(
        &mut self,
        table: &TableDef,
        targets: &[usize],
        rows: &[Vec<String>],
        returning: Option<&Returning>,
    ) -> ExecResult<StmtOutput> {
        let mut inserted = Vec::with_capacity(rows.len());
        let mut seen = BTreeSet::new();
        for cells in rows {
            let mut inputs = vec![Input::Null; table.columns.len()];
            for (text, &ci) in cells.iter().zip(targets) {
                inputs[ci] = eval_scalar(&parse_expr(text)?, &self.params)?;
            }
            let mut row = Vec::with_capacity(table.columns.len());
            for (input, col) in inputs.into_iter().zip(&table.columns) {
                row.push(coerce(input, col)?);
            }
            let pk: Vec<Datum> = table.primary_key.iter().map(|&i| row[i].clone()).collect();
            let vshard = vshard_of_key(table, &pk, self.vshards);
            let key = row_key(table.id, &encode_key(&pk.iter().collect::<Vec<_>>()));
            if !seen.insert(key.clone()) || self.get(vshard, &key).await?.is_some() {
                return Err(ExecError::UniqueViolation(table.name.clone()));
            }
            self.write(vshard, key, Some(encode_row(&row)))?;
            inserted.push(row);
        }
        let n = inserted.len() as u64;
        self.returning(table, returning, &inserted, n).await
    }

    /// UPDATE (`assignments`) or DELETE (`delete`) of the rows `selection`
    /// matches among the candidates its keys (or reconnaissance) allow.
    pub(super) async fn modify(
        &mut self,
        table: &TableDef,
        (assignments, delete, selection): (&[(usize, String)], bool, Option<&str>),
        recon: Option<&Recon>,
        returning: Option<&Returning>,
    ) -> ExecResult<StmtOutput> {
        let sel = selection.map(parse_expr).transpose()?;
        let candidates = match (recon, selection) {
            (Some(r), Some(selection)) => {
                let shape = ModifyShape { assignments, delete, selection };
                self.reconnoitred(table, &shape, r).await?
            }
            _ => {
                let t = target(table, sel.as_ref(), &self.params, self.vshards);
                self.candidates(table, &t).await?
            }
        };
        let changed = match self.modify_fast(table, assignments, delete, sel.as_ref(), &candidates)? {
            Some(changed) => changed,
            None => self.modify_planned(table, assignments, delete, selection, &candidates).await?,
        };
        let n = changed.len() as u64;
        self.returning(table, returning, &changed, n).await
    }

    /// An UPDATE/DELETE the fast path does not cover, planned by DataFusion
    /// over the candidates; the rows it wrote (deleted rows for DELETE).
    pub(super) async fn modify_planned(
        &mut self,
        table: &TableDef,
        assignments: &[(usize, String)],
        delete: bool,
        selection: Option<&str>,
        candidates: &[Candidate],
    ) -> ExecResult<Vec<Vec<Datum>>> {
        let select = modify_query(table, assignments, selection);
        let rows: Vec<Vec<Datum>> = candidates.iter().map(|c| c.row.clone()).collect();
        let batch = rows_with_index(table, &rows)?;
        let out = self.query(table, batch, &select).await?;
        let mut changed = Vec::new();
        for b in &out {
            let idx = row_indexes(b)?;
            for r in 0..b.num_rows() {
                let c = &candidates[idx.value(r) as usize];
                if delete {
                    self.write(c.vshard, c.key.clone(), None)?;
                    changed.push(c.row.clone());
                } else {
                    let mut row = c.row.clone();
                    for (j, (ci, _)) in assignments.iter().enumerate() {
                        row[*ci] = coerce(input_at(b.column(j + 1).as_ref(), r)?, &table.columns[*ci])?;
                    }
                    self.write(c.vshard, c.key.clone(), Some(encode_row(&row)))?;
                    changed.push(row);
                }
                if changed.len() > STATEMENT_ROWS_MAX {
                    return Err(ExecError::ProgramLimitExceeded(format!(
                        "one statement may change at most {STATEMENT_ROWS_MAX} rows"
                    )));
                }
            }
        }
        Ok(changed)
    }

    /// UPDATE/DELETE without a query plan (see [`modify_fast`]): the
    /// changed rows (old ones for DELETE), or `None` for the DataFusion path.
    pub(super) fn modify_fast(
        &mut self,
        table: &TableDef,
        assignments: &[(usize, String)],
        delete: bool,
        sel: Option<&Expr>,
        candidates: &[Candidate],
    ) -> ExecResult<Option<Vec<Vec<Datum>>>> {
        let rows: Vec<&Vec<Datum>> = candidates.iter().map(|c| &c.row).collect();
        let Some(changes) = modify_fast(table, assignments, delete, sel, &self.params, &rows)? else { return Ok(None) };
        let mut changed = Vec::with_capacity(changes.len());
        for (i, new) in changes {
            let c = &candidates[i];
            match new {
                Some(row) => {
                    self.write(c.vshard, c.key.clone(), Some(encode_row(&row)))?;
                    changed.push(row);
                }
                None => {
                    self.write(c.vshard, c.key.clone(), None)?;
                    changed.push(c.row.clone());
                }
            }
        }
        Ok(Some(changed))
    }
}

/// An UPDATE/DELETE as far as which rows it changes: its assignments
/// decide, with the WHERE clause, whether it is evaluated without a query
/// plan (see [`modify_fast`]) or by DataFusion.
pub struct ModifyShape<'a> {
    pub assignments: &'a [(usize, String)],
    pub delete: bool,
    pub selection: &'a str,
}

/// The indexes of the `rows` of `table` that the statement of `shape` (its
/// placeholders bound to `params`) changes, evaluated as a program's
/// UPDATE or DELETE evaluates them — the fast path when the statement
/// takes it, else DataFusion over the WHERE clause: what a reconnaissance
/// finds is what the statement would find over the same rows.
pub async fn matching(
    table: &TableDef,
    shape: &ModifyShape<'_>,
    params: &[Param],
    rows: &[Vec<Datum>],
) -> ExecResult<Vec<usize>> {
    let selection = shape.selection;
    let sel = parse_expr(selection)?;
    let refs: Vec<&Vec<Datum>> = rows.iter().collect();
    if let Some(found) = modify_fast(table, shape.assignments, shape.delete, Some(&sel), params, &refs)? {
        return Ok(found.into_iter().map(|(i, _)| i).collect());
    }
    let sql = bind_placeholders(
        &format!("SELECT \"{ROW_INDEX_COLUMN}\" FROM \"{}\" WHERE ({selection})", table.name),
        params,
    )?;
    let batch = rows_with_index(table, rows)?;
    let ctx = ordo_expr::session::context();
    let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(from_datafusion)?;
    ctx.register_table(table.name.as_str(), Arc::new(mem)).map_err(from_datafusion)?;
    let out = ctx.sql(&sql).await.map_err(from_datafusion)?.collect().await.map_err(from_datafusion)?;
    let mut found = Vec::new();
    for b in &out {
        let idx = row_indexes(b)?;
        found.extend((0..b.num_rows()).map(|r| idx.value(r) as usize));
    }
    Ok(found)
}

/// The changes of an UPDATE (`Some(new row)`) or DELETE (`None`) by index
/// into `rows`, computed without a query plan when the WHERE clause and
/// every assignment are simple (see [`ordo_expr::fast`]); `None` when they are
/// not, and the caller plans the statement with DataFusion instead.
pub fn modify_fast(
    table: &TableDef,
    assignments: &[(usize, String)],
    delete: bool,
    sel: Option<&Expr>,
    params: &[Param],
    rows: &[&Vec<Datum>],
) -> ExecResult<Option<Changes>> {
    let pred = match sel {
        Some(e) => match fast::compile(e, table, params) {
            Some(p) => Some(p),
            None => return Ok(None),
        },
        None => None,
    };
    let mut assigns = Vec::with_capacity(assignments.len());
    for (ci, text) in assignments {
        match fast::compile(&parse_expr(text)?, table, params) {
            Some(f) => assigns.push((*ci, f)),
            None => return Ok(None),
        }
    }
    let mut changes = Vec::new();
    for (i, old) in rows.iter().enumerate() {
        let keep = match &pred {
            Some(p) => fast::keeps(p, old, table),
            None => Ok(true),
        };
        match fast::sql(keep)? {
            None => return Ok(None),
            Some(false) => continue,
            Some(true) => {}
        }
        if delete {
            changes.push((i, None));
        } else {
            let mut row = (*old).clone();
            for (ci, f) in &assigns {
                let Some(v) = fast::sql(f.eval(old, table))? else { return Ok(None) };
                row[*ci] = coerce(fast::val_input(v), &table.columns[*ci])?;
            }
            changes.push((i, Some(row)));
        }
        if changes.len() > STATEMENT_ROWS_MAX {
            return Err(ExecError::ProgramLimitExceeded(format!(
                "one statement may change at most {STATEMENT_ROWS_MAX} rows"
            )));
        }
    }
    Ok(Some(changes))
}
