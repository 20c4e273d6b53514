//! SELECT and RETURNING outputs of a program: the fast path for simple
//! queries over one table, and queries DataFusion plans over in-memory rows.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Expr, GroupByExpr, SelectItem, SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use ordo_expr::arrow::{arrow_type, param_at, param_sql, pg_type_name, rows_to_batch, table_schema};
use ordo_expr::fast;
use ordo_expr::parse::{column_ref, ident, parse_expr};
use ordo_expr::select as fast_select;
use ordo_expr::{datum_param, Param};
use ordo_expr::{from_datafusion, ExecError, ExecResult};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::Datum;

use super::Run;
use crate::constants::STATEMENT_ROWS_MAX;
use crate::txn::program::{Returning, StmtOutput};

impl Run<'_> {
    /// The output of a write statement: its count, and with RETURNING the
    /// list evaluated over the rows it wrote (deleted rows for DELETE).
    pub(super) async fn returning(
        &mut self,
        table: &TableDef,
        returning: Option<&Returning>,
        rows: &[Vec<Datum>],
        affected: u64,
    ) -> ExecResult<StmtOutput> {
        let Some(r) = returning else {
            return Ok(StmtOutput { rows_affected: affected, ..Default::default() });
        };
        if let Some(items) = parse_items(&r.items).and_then(|items| plain_columns(&items, table)) {
            let mut out = self.plain_output(table, &items, rows.iter(), &r.binds)?;
            out.rows_affected = affected;
            return Ok(out);
        }
        let batch = rows_to_batch(table, &table_schema(table), rows)?;
        let out = self.query(table, batch, &format!("SELECT {} FROM \"{}\"", r.items, table.name)).await?;
        self.output(&out, &r.binds, Some(affected))
    }

    /// Result rows as an output; the first row's columns bind their slots
    /// (no row binds NULL).
    pub(super) fn output(
        &mut self,
        batches: &[RecordBatch],
        binds: &[Option<usize>],
        affected: Option<u64>,
    ) -> ExecResult<StmtOutput> {
        let mut out = StmtOutput::default();
        if let Some(b) = batches.first() {
            out.columns = b
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), pg_type_name(f.data_type()).to_string()))
                .collect();
        }
        for b in batches {
            for r in 0..b.num_rows() {
                if out.rows.len() >= STATEMENT_ROWS_MAX {
                    return Err(ExecError::ProgramLimitExceeded(format!(
                        "a statement inside a transaction may return at most {STATEMENT_ROWS_MAX} rows"
                    )));
                }
                out.rows.push(b.columns().iter().map(|c| param_at(c.as_ref(), r)).collect::<ExecResult<_>>()?);
            }
        }
        self.bind(&out, binds)?;
        out.rows_affected = affected.unwrap_or(out.rows.len() as u64);
        Ok(out)
    }

    /// A SELECT of plain columns with a simple WHERE, no grouping, ordering
    /// or limit, without a query plan; `None` for anything else.
    pub(super) fn select_fast(
        &mut self,
        table: &TableDef,
        sql: &str,
        sel: Option<&Expr>,
        rows: &[Vec<Datum>],
        binds: &[Option<usize>],
    ) -> ExecResult<Option<StmtOutput>> {
        let Ok(mut parsed) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else { return Ok(None) };
        let Some(Statement::Query(q)) = parsed.pop() else { return Ok(None) };
        if q.fetch.is_some() || q.with.is_some() {
            return Ok(None);
        }
        let Some(order) = fast_select::order_column(q.order_by.as_ref(), table) else { return Ok(None) };
        let Some(limit) = fast_select::limit(q.limit_clause.as_ref()) else { return Ok(None) };
        let SetExpr::Select(s) = q.body.as_ref() else { return Ok(None) };
        let simple = s.distinct.is_none()
            && s.having.is_none()
            && matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
        if !simple {
            return Ok(None);
        }
        let items = plain_columns(&s.projection, table);
        let aggs = match items {
            Some(_) => None,
            None => match fast_select::aggregates(&s.projection, table) {
                Some(a) if order.is_none() && limit.is_none() => Some(a),
                _ => return Ok(None),
            },
        };
        let Some(mut kept) = self.kept_fast(table, sel, rows)? else { return Ok(None) };
        if let Some(aggs) = aggs {
            return self.aggregate_fast(table, &aggs, &kept, binds);
        }
        let items = items.expect("plain columns when not aggregates");
        if let Some((ci, desc)) = order {
            if fast_select::sort(&mut kept, ci, desc, table).is_none() {
                return Ok(None);
            }
        }
        if let Some(n) = limit {
            kept.truncate(n);
        }
        self.plain_output(table, &items, kept.into_iter(), binds).map(Some)
    }

    /// The rows the WHERE clause keeps, by the fast evaluator; `None` when
    /// it cannot evaluate the clause.
    pub(super) fn kept_fast<'r>(
        &self,
        table: &TableDef,
        sel: Option<&Expr>,
        rows: &'r [Vec<Datum>],
    ) -> ExecResult<Option<Vec<&'r Vec<Datum>>>> {
        let pred = match sel {
            Some(e) => match fast::compile(e, table, &self.params) {
                Some(p) => Some(p),
                None => return Ok(None),
            },
            None => None,
        };
        let mut kept = Vec::new();
        for row in rows {
            let keep = match &pred {
                Some(p) => fast::keeps(p, row, table),
                None => Ok(true),
            };
            match fast::sql(keep)? {
                None => return Ok(None),
                Some(true) => kept.push(row),
                Some(false) => {}
            }
        }
        Ok(Some(kept))
    }

    /// One row of aggregates over `kept`; `None` when one is not covered.
    pub(super) fn aggregate_fast(
        &mut self,
        table: &TableDef,
        aggs: &[(String, fast_select::Agg)],
        kept: &[&Vec<Datum>],
        binds: &[Option<usize>],
    ) -> ExecResult<Option<StmtOutput>> {
        let mut out = StmtOutput::default();
        let mut row = Vec::with_capacity(aggs.len());
        for (name, agg) in aggs {
            let Some(ty) = fast_select::type_name(*agg, table) else { return Ok(None) };
            let Some(v) = fast_select::evaluate(*agg, kept, table)? else { return Ok(None) };
            out.columns.push((name.clone(), ty.to_string()));
            row.push(v);
        }
        out.rows.push(row);
        self.bind(&out, binds)?;
        out.rows_affected = 1;
        Ok(Some(out))
    }

    /// Binds each output column's slot to its value in the first row (NULL
    /// when there is no row).
    pub(super) fn bind(&mut self, out: &StmtOutput, binds: &[Option<usize>]) -> ExecResult<()> {
        for (ci, slot) in binds.iter().enumerate() {
            if let Some(slot) = *slot {
                let value = out.rows.first().and_then(|r| r.get(ci)).cloned().unwrap_or(Param::Null);
                let p = self
                    .params
                    .get_mut(slot)
                    .ok_or_else(|| ExecError::Internal(format!("variable slot {slot} out of range")))?;
                *p = value;
            }
        }
        Ok(())
    }

    /// Output rows of plain column items, with their bindings.
    pub(super) fn plain_output<'r>(
        &mut self,
        table: &TableDef,
        items: &[(String, usize)],
        rows: impl Iterator<Item = &'r Vec<Datum>>,
        binds: &[Option<usize>],
    ) -> ExecResult<StmtOutput> {
        let mut out = StmtOutput {
            columns: items
                .iter()
                .map(|(name, ci)| (name.clone(), pg_type_name(&arrow_type(&table.columns[*ci].ty)).to_string()))
                .collect(),
            ..Default::default()
        };
        for row in rows {
            if out.rows.len() >= STATEMENT_ROWS_MAX {
                return Err(ExecError::ProgramLimitExceeded(format!(
                    "a statement inside a transaction may return at most {STATEMENT_ROWS_MAX} rows"
                )));
            }
            out.rows.push(items.iter().map(|(_, ci)| datum_param(&row[*ci], &table.columns[*ci].ty)).collect());
        }
        self.bind(&out, binds)?;
        out.rows_affected = out.rows.len() as u64;
        Ok(out)
    }

    /// Runs `sql` (placeholders bound to literals) over `batch` registered
    /// as `table`.
    pub(super) async fn query(&self, table: &TableDef, batch: RecordBatch, sql: &str) -> ExecResult<Vec<RecordBatch>> {
        let sql = bind_placeholders(sql, &self.params)?;
        let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(from_datafusion)?;
        self.ctx.deregister_table(table.name.as_str()).map_err(from_datafusion)?;
        self.ctx.register_table(table.name.as_str(), Arc::new(mem)).map_err(from_datafusion)?;
        let df = self.ctx.sql(&sql).await.map_err(from_datafusion)?;
        df.collect().await.map_err(from_datafusion)
    }
}

/// Replaces every `$n` in `sql` by parameter `n` as a literal.
pub fn bind_placeholders(sql: &str, params: &[Param]) -> ExecResult<String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| ExecError::Syntax(e.to_string()))?;
    let mut problem = None;
    for st in &mut statements {
        let _ = visit_expressions_mut(st, |e| {
            if let Expr::Value(v) = e {
                if let datafusion::sql::sqlparser::ast::Value::Placeholder(p) = &v.value {
                    let bound = p
                        .strip_prefix('$')
                        .and_then(|n| n.parse::<usize>().ok())
                        .and_then(|n| params.get(n.wrapping_sub(1)))
                        .ok_or_else(|| ExecError::InvalidParameter(format!("there is no parameter {p}")))
                        .and_then(|param| parse_expr(&param_sql(param)));
                    match bound {
                        Ok(lit) => *e = Expr::Nested(Box::new(lit)),
                        Err(err) => {
                            problem = Some(err);
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        });
    }
    if let Some(e) = problem {
        return Err(e);
    }
    Ok(statements.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; "))
}

/// `a, b AS x, *` as select items.
fn parse_items(items: &str) -> Option<Vec<SelectItem>> {
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT {items}")).ok()?;
    match parsed.pop()? {
        Statement::Query(q) => match *q.body {
            SetExpr::Select(s) => Some(s.projection),
            _ => None,
        },
        _ => None,
    }
}

/// Output name and column of each item, when every item is a plain column
/// (or `*`).
fn plain_columns(items: &[SelectItem], table: &TableDef) -> Option<Vec<(String, usize)>> {
    let col = |e: &Expr| column_ref(e, table);
    let mut out = Vec::new();
    for item in items {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let ci = col(e)?;
                out.push((table.columns[ci].name.clone(), ci));
            }
            SelectItem::ExprWithAlias { expr, alias } => out.push((ident(alias), col(expr)?)),
            SelectItem::Wildcard(opts) if opts.opt_exclude.is_none() && opts.opt_except.is_none() => {
                out.extend(table.columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)));
            }
            _ => return None,
        }
    }
    Some(out)
}
