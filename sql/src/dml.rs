//! INSERT, UPDATE and DELETE: resolved against the catalog on the gateway
//! and sent to the leaders of the vShards that own the rows.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Delete, Expr, FromTable, Insert, SetExpr, TableFactor, TableObject, Update,
};
use futures::{StreamExt, TryStreamExt};
use ordo_executor::constants::STATEMENT_ROWS_MAX;
use ordo_executor::txn::statement::{DmlRequest, InsertPart, MultiShardStatement};
use ordo_expr::fast::eval_scalar;
use ordo_expr::target::{target, Target};
use ordo_expr::{coerce, ExecError, ExecResult, Input, Param};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{encode_key, encode_row, Datum};

use crate::names::object_name;
use crate::provider::Shared;
use crate::result::StatementResult;

use crate::constants::WRITE_FANOUT_MAX;

/// A single-vShard write: its rows or its UPDATE/DELETE.
enum ShardWrite {
    Insert(TableDef, Vec<(Vec<u8>, Vec<u8>)>),
    Modify(DmlRequest),
}

/// Sends one write per vShard (in parallel, bounded) and sums the counts.
async fn fan_out(shared: &Shared, writes: Vec<(u32, ShardWrite)>) -> ExecResult<u64> {
    let router = &shared.router;
    let counts: Vec<u64> = futures::stream::iter(writes)
        .map(|(v, write)| async move {
            match write {
                ShardWrite::Insert(table, rows) => router.insert_rows(v, table, rows).await,
                ShardWrite::Modify(dml) => router.modify_rows(v, dml).await,
            }
        })
        .buffer_unordered(WRITE_FANOUT_MAX)
        .try_collect()
        .await?;
    Ok(counts.into_iter().sum())
}

/// An INSERT's rows (encoded key, encoded row), grouped by vShard.
type RowsByShard = BTreeMap<u32, Vec<(Vec<u8>, Vec<u8>)>>;

pub async fn insert(shared: &Shared, ins: &Insert, params: &[Param]) -> ExecResult<StatementResult> {
    let (table, by_shard) = plan_insert(shared, ins, params).await?;
    if by_shard.len() > 1 {
        // Rows on several vShards: sequenced, so all or none are inserted.
        let participants = by_shard.keys().copied().collect();
        let parts = by_shard.into_iter().map(|(vshard, rows)| InsertPart { vshard, rows }).collect();
        let n = shared.gateway.run_statement(MultiShardStatement::Insert { table, parts }, participants).await?;
        return Ok(StatementResult::affected(n));
    }
    let writes = by_shard.into_iter().map(|(v, rows)| (v, ShardWrite::Insert(table.clone(), rows))).collect();
    Ok(StatementResult::affected(fan_out(shared, writes).await?))
}

/// An INSERT's table, target columns (indexes) and rows of expressions.
pub(crate) async fn insert_shape<'a>(
    shared: &Shared,
    ins: &'a Insert,
) -> ExecResult<(TableDef, Vec<usize>, Vec<&'a [Expr]>)> {
    if ins.on.is_some() {
        return Err(ExecError::FeatureNotSupported("INSERT ... ON CONFLICT is not supported yet".into()));
    }
    let TableObject::TableName(name) = &ins.table else {
        return Err(ExecError::FeatureNotSupported("INSERT into a table function".into()));
    };
    let table = shared.table(&object_name(name)?).await?;
    let targets: Vec<usize> = if ins.columns.is_empty() {
        (0..table.columns.len()).collect()
    } else {
        let mut seen = BTreeSet::new();
        let mut t = Vec::with_capacity(ins.columns.len());
        for c in &ins.columns {
            let cname = object_name(c)?;
            let idx = table.column_index(&cname).ok_or_else(|| ExecError::UndefinedColumn(cname.clone()))?;
            if !seen.insert(idx) {
                return Err(ExecError::DuplicateColumn(format!("column \"{cname}\" specified more than once")));
            }
            t.push(idx);
        }
        t
    };
    let source = ins.source.as_ref().ok_or_else(|| ExecError::FeatureNotSupported("INSERT without VALUES".into()))?;
    let SetExpr::Values(values) = source.body.as_ref() else {
        return Err(ExecError::FeatureNotSupported("INSERT ... SELECT is not supported yet".into()));
    };
    if values.rows.len() > STATEMENT_ROWS_MAX {
        return Err(ExecError::ProgramLimitExceeded(format!("at most {STATEMENT_ROWS_MAX} rows per INSERT")));
    }
    for row_exprs in &values.rows {
        // Without a column list a row may give fewer values than the table
        // has columns; the rest are NULL (PostgreSQL's defaults).
        let short_ok = ins.columns.is_empty() && row_exprs.len() <= targets.len();
        if row_exprs.len() != targets.len() && !short_ok {
            return Err(ExecError::Syntax(format!(
                "INSERT has {} expressions but {} target columns",
                row_exprs.len(),
                targets.len()
            )));
        }
    }
    Ok((table, targets, values.rows.iter().map(|r| r.content.as_slice()).collect()))
}

async fn plan_insert(shared: &Shared, ins: &Insert, params: &[Param]) -> ExecResult<(TableDef, RowsByShard)> {
    if ins.returning.is_some() {
        return Err(ExecError::Internal("INSERT ... RETURNING runs as a transaction".into()));
    }
    let (table, targets, rows) = insert_shape(shared, ins).await?;
    let mut by_shard: RowsByShard = BTreeMap::new();
    for row_exprs in rows {
        let mut inputs: Vec<Input> = vec![Input::Null; table.columns.len()];
        for (expr, &ci) in row_exprs.iter().zip(&targets) {
            inputs[ci] = eval_scalar(expr, params)?;
        }
        let mut row = Vec::with_capacity(table.columns.len());
        for (input, col) in inputs.into_iter().zip(&table.columns) {
            row.push(coerce(input, col)?);
        }
        let pk: Vec<Datum> = table.primary_key.iter().map(|&i| row[i].clone()).collect();
        let vshard = shared.vshard_of_key(&table, &pk);
        let key = encode_key(&pk.iter().collect::<Vec<_>>());
        by_shard.entry(vshard).or_default().push((key, encode_row(&row)));
    }
    Ok((table, by_shard))
}

pub(crate) fn table_of(relation: &TableFactor) -> ExecResult<String> {
    match relation {
        TableFactor::Table { name, alias: None, .. } => object_name(name),
        TableFactor::Table { alias: Some(_), .. } => {
            Err(ExecError::FeatureNotSupported("table aliases in UPDATE/DELETE are not supported yet".into()))
        }
        other => Err(ExecError::FeatureNotSupported(format!("cannot modify {other}"))),
    }
}

/// UPDATE/DELETE expressions run on each vShard over that vShard's rows
/// only, so a subquery there would see a fraction of its table: refuse it.
pub(crate) fn refuse_subqueries(e: &Expr) -> ExecResult<()> {
    let found = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| match x {
        Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => std::ops::ControlFlow::Break(()),
        _ => std::ops::ControlFlow::Continue(()),
    });
    if found.is_break() {
        return Err(ExecError::FeatureNotSupported("subqueries in UPDATE/DELETE are not supported yet".into()));
    }
    Ok(())
}

/// Where an UPDATE/DELETE runs and what it asks each vShard to do.
fn plan_dml(
    shared: &Shared,
    table: TableDef,
    assignments: Vec<(usize, String)>,
    delete: bool,
    selection: Option<&Expr>,
    params: &[Param],
) -> ExecResult<(Target, DmlRequest)> {
    if let Some(sel) = selection {
        refuse_subqueries(sel)?;
    }
    let base = DmlRequest {
        table: table.clone(),
        assignments,
        delete,
        selection: selection.map(|s| s.to_string()),
        point: None,
        params: params.to_vec(),
        now_slot: None,
    };
    let target = target(&table, selection, params, shared.vshards);
    let req = match &target {
        Target::Point { pk, .. } => DmlRequest { point: Some(pk.clone()), ..base },
        _ => base,
    };
    Ok((target, req))
}

async fn run_dml(shared: &Shared, target: Target, req: DmlRequest) -> ExecResult<StatementResult> {
    let writes = match target {
        Target::Point { vshard, .. } | Target::Shard { vshard, .. } => vec![(vshard, ShardWrite::Modify(req))],
        Target::All => {
            // Every vShard's rows: sequenced, so the statement is atomic.
            let participants = (0..shared.vshards).collect();
            let n = shared.gateway.run_statement(MultiShardStatement::Dml(req), participants).await?;
            return Ok(StatementResult::affected(n));
        }
    };
    Ok(StatementResult::affected(fan_out(shared, writes).await?))
}

/// `now_slot`: the parameter slot `now()` was bound to (see
/// `crate::txn::bind_timestamp`), which the executor fills.
pub async fn update(
    shared: &Shared,
    up: &Update,
    params: &[Param],
    now_slot: Option<usize>,
) -> ExecResult<StatementResult> {
    let (target, mut req) = plan_update(shared, up, params).await?;
    req.now_slot = now_slot;
    run_dml(shared, target, req).await
}

pub async fn delete(
    shared: &Shared,
    del: &Delete,
    params: &[Param],
    now_slot: Option<usize>,
) -> ExecResult<StatementResult> {
    let (target, mut req) = plan_delete(shared, del, params).await?;
    req.now_slot = now_slot;
    run_dml(shared, target, req).await
}

pub(crate) async fn plan_update(shared: &Shared, up: &Update, params: &[Param]) -> ExecResult<(Target, DmlRequest)> {
    if up.from.is_some() || !up.table.joins.is_empty() {
        return Err(ExecError::FeatureNotSupported("UPDATE ... FROM is not supported yet".into()));
    }
    let table = shared.table(&table_of(&up.table.relation)?).await?;
    let mut assignments = Vec::with_capacity(up.assignments.len());
    for a in &up.assignments {
        let AssignmentTarget::ColumnName(c) = &a.target else {
            return Err(ExecError::FeatureNotSupported("tuple assignments are not supported".into()));
        };
        let cname = object_name(c)?;
        let ci = table.column_index(&cname).ok_or_else(|| ExecError::UndefinedColumn(cname.clone()))?;
        if table.is_pk_column(ci) {
            return Err(ExecError::FeatureNotSupported(format!(
                "updating primary key column \"{cname}\" is not supported"
            )));
        }
        if assignments.iter().any(|(i, _)| *i == ci) {
            return Err(ExecError::DuplicateColumn(format!("multiple assignments to same column \"{cname}\"")));
        }
        refuse_subqueries(&a.value)?;
        assignments.push((ci, a.value.to_string()));
    }
    plan_dml(shared, table, assignments, false, up.selection.as_ref(), params)
}

pub(crate) async fn plan_delete(shared: &Shared, del: &Delete, params: &[Param]) -> ExecResult<(Target, DmlRequest)> {
    if del.using.is_some() || !del.tables.is_empty() {
        return Err(ExecError::FeatureNotSupported("DELETE ... USING is not supported yet".into()));
    }
    let from = match &del.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [twj] = from.as_slice() else {
        return Err(ExecError::FeatureNotSupported("DELETE from several tables".into()));
    };
    if !twj.joins.is_empty() {
        return Err(ExecError::FeatureNotSupported("DELETE with joins".into()));
    }
    let table = shared.table(&table_of(&twj.relation)?).await?;
    plan_dml(shared, table, Vec::new(), true, del.selection.as_ref(), params)
}
