//! Point reads without a query plan. `SELECT <columns> FROM t WHERE <every
//! primary-key column = a value>` names one row of one vShard; planning it
//! with DataFusion costs far more than reading the row. The gateway
//! recognises that shape on the parsed statement and reads the row as the
//! planned query would (the same fenced single-vShard `Get`, see
//! `provider::OrdoTable::scan`), then shapes the answer with the same
//! Arrow types, so the client cannot tell which way it went.
//!
//! Anything else — another column in the WHERE, an expression in the
//! select list, a value that is not exactly of the key's type — is left to
//! DataFusion (`None`), which also gives every error its proper SQLSTATE.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
};
use ordo_expr::arrow::{param_scalar, rows_to_batch, table_schema};
use ordo_expr::parse::ident;
use ordo_expr::{ExecError, ExecResult, Param};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{decode_row, encode_key, Datum};

use crate::names::object_name;
use crate::provider::{bound_key, Shared};
use crate::result::StatementResult;

/// A recognised point read: the table, the selected columns (index and
/// output name) and the key's values by column index.
struct PointRead {
    table: String,
    select: Option<Vec<(String, String)>>,
    equal: Vec<(String, ScalarValue)>,
}

/// Runs `st` as a point read if it has that shape; `None` otherwise.
pub(crate) async fn try_point_read(
    shared: &Shared,
    st: &Statement,
    params: &[Param],
) -> Option<ExecResult<StatementResult>> {
    let Statement::Query(q) = st else { return None };
    let shape = recognise(q, params)?;
    let def = shared.meta.catalog().table(&shape.table)?.clone();
    let columns = columns(&def, shape.select.as_deref())?;
    let mut eq = BTreeMap::new();
    for (name, value) in shape.equal {
        // A column twice (`id = 1 AND id = 2`) or not in the key: planned.
        let ci = def.column_index(&name).filter(|ci| def.primary_key.contains(ci))?;
        if eq.insert(ci, value).is_some() {
            return None;
        }
    }
    if eq.len() != def.primary_key.len() {
        return None;
    }
    let key = bound_key(&def, &eq, def.primary_key.len())?;
    Some(read(shared, &def, &key, &columns).await)
}

/// The statement's parts, if it is `SELECT cols FROM t WHERE a = v AND ...`
/// and nothing more.
fn recognise(q: &Query, params: &[Param]) -> Option<PointRead> {
    let plain_query = q.with.is_none()
        && q.order_by.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && q.locks.is_empty()
        && q.for_clause.is_none()
        && q.settings.is_none()
        && q.format_clause.is_none()
        && q.pipe_operators.is_empty();
    let SetExpr::Select(s) = q.body.as_ref() else { return None };
    let no_grouping = matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    let plain_select = s.distinct.is_none()
        && s.top.is_none()
        && s.into.is_none()
        && s.lateral_views.is_empty()
        && s.prewhere.is_none()
        && no_grouping
        && s.cluster_by.is_empty()
        && s.distribute_by.is_empty()
        && s.sort_by.is_empty()
        && s.having.is_none()
        && s.named_window.is_empty()
        && s.qualify.is_none()
        && s.connect_by.is_empty()
        && s.exclude.is_none()
        && s.select_modifiers.is_none()
        && s.value_table_mode.is_none();
    if !plain_query || !plain_select {
        return None;
    }
    let [from] = s.from.as_slice() else { return None };
    let TableFactor::Table {
        name,
        alias: None,
        args: None,
        with_hints,
        version: None,
        with_ordinality: false,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
    } = &from.relation
    else {
        return None;
    };
    if !from.joins.is_empty() || !with_hints.is_empty() || !partitions.is_empty() || !index_hints.is_empty() {
        return None;
    }
    let table = object_name(name).ok()?;
    let select = match s.projection.as_slice() {
        [SelectItem::Wildcard(o)]
            if o.opt_ilike.is_none()
                && o.opt_exclude.is_none()
                && o.opt_except.is_none()
                && o.opt_replace.is_none()
                && o.opt_rename.is_none()
                && o.opt_alias.is_none() =>
        {
            None
        }
        items => Some(items.iter().map(select_item).collect::<Option<Vec<_>>>()?),
    };
    let mut equal = Vec::new();
    conjuncts(s.selection.as_ref()?, params, &mut equal)?;
    Some(PointRead { table, select, equal })
}

/// `c` or `c AS name`: the column and its output name.
fn select_item(item: &SelectItem) -> Option<(String, String)> {
    match item {
        SelectItem::UnnamedExpr(Expr::Identifier(c)) => Some((ident(c), ident(c))),
        SelectItem::ExprWithAlias { expr: Expr::Identifier(c), alias } => Some((ident(c), ident(alias))),
        _ => None,
    }
}

/// `a = v AND b = w ...`, each side a column or a value.
fn conjuncts(e: &Expr, params: &[Param], out: &mut Vec<(String, ScalarValue)>) -> Option<()> {
    match e {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            conjuncts(left, params, out)?;
            conjuncts(right, params, out)
        }
        Expr::BinaryOp { left, op: BinaryOperator::Eq, right } => {
            let (column, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Identifier(c), v) | (v, Expr::Identifier(c)) => (ident(c), value(v, params)?),
                _ => return None,
            };
            out.push((column, value));
            Some(())
        }
        Expr::Nested(inner) => conjuncts(inner, params, out),
        _ => None,
    }
}

/// An integer or string literal, or a parameter, as DataFusion would type
/// it (integers as BIGINT).
fn value(e: &Expr, params: &[Param]) -> Option<ScalarValue> {
    let Expr::Value(v) = e else { return None };
    match &v.value {
        Value::Number(n, false) => n.parse::<i64>().ok().map(|i| ScalarValue::Int64(Some(i))),
        Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
        Value::Placeholder(p) => {
            let n: usize = p.strip_prefix('$')?.parse().ok()?;
            params.get(n.checked_sub(1)?).map(param_scalar)
        }
        _ => None,
    }
}

/// The selected columns: (index in the table, output name); every column
/// for `*`. `None` if one is unknown or two share an output name.
fn columns(def: &TableDef, select: Option<&[(String, String)]>) -> Option<Vec<(usize, String)>> {
    let out: Vec<(usize, String)> = match select {
        None => def.columns.iter().enumerate().map(|(i, c)| (i, c.name.clone())).collect(),
        Some(items) => {
            items.iter().map(|(c, name)| Some((def.column_index(c)?, name.clone()))).collect::<Option<_>>()?
        }
    };
    let mut names: Vec<&String> = out.iter().map(|(_, n)| n).collect();
    names.sort();
    names.dedup();
    (names.len() == out.len()).then_some(out)
}

/// Reads the row with primary key `key` and answers with `columns` of it.
async fn read(
    shared: &Shared,
    def: &TableDef,
    key: &[Datum],
    columns: &[(usize, String)],
) -> ExecResult<StatementResult> {
    let vshard = shared.vshard_of_key(def, key);
    let encoded = encode_key(&key.iter().collect::<Vec<_>>());
    let raw = shared.router.get_rows(vshard, def.clone(), vec![encoded]).await?;
    let rows: Vec<Vec<Datum>> =
        raw.iter().map(|r| decode_row(r)).collect::<Result<_, _>>().map_err(|e| ExecError::Internal(e.to_string()))?;
    let full = table_schema(def);
    let batch = rows_to_batch(def, &full, &rows)?;
    let indexes: Vec<usize> = columns.iter().map(|(i, _)| *i).collect();
    let batch = batch.project(&indexes).map_err(|e| ExecError::Internal(e.to_string()))?;
    let fields: Vec<_> = columns.iter().map(|(i, name)| full.field(*i).clone().with_name(name.clone())).collect();
    let schema = Arc::new(Schema::new(fields));
    StatementResult::from_batches(&schema, &[batch])
}
