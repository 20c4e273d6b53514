//! Transactions: the statements of one request compiled into a
//! [`TxnProgram`], which the gateway (`ordo_executor::Gateway`) runs — on
//! the one vShard's leader when it has one participant, else ordered by
//! the sequencer and executed by every participant.
//!
//! Values pass between statements by name: a statement that returns rows
//! (`SELECT`, `... RETURNING`) binds each named output column `c` of its
//! first row (NULL if none) to `$c`, which later statements use like a
//! parameter. `now()` / `current_timestamp` is the transaction's timestamp
//! (the epoch's, for cross-shard transactions).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, Expr, FunctionArguments, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
};
use ordo_executor::constants::PROGRAM_STATEMENTS_MAX;
use ordo_executor::txn::program::{ProgStatement, Returning, StmtOutput, TxnProgram};
use ordo_expr::arrow::param_sql;
use ordo_expr::coerce::decimal_to_string;
use ordo_expr::parse::ident;
use ordo_expr::{ExecError, ExecResult, Param};
use ordo_meta::catalog::TableDef;
use serde_json::Value as Json;

use crate::names::object_name;
use crate::provider::Shared;
use crate::result::{Column, StatementResult};

/// Runs `statements` as one transaction (`commit == false`: ROLLBACK —
/// everything is checked and compiled, nothing runs).
pub async fn transaction(
    shared: &Shared,
    statements: &[Statement],
    params: &[Param],
    commit: bool,
) -> ExecResult<Vec<StatementResult>> {
    let program = compile(shared, statements, params).await?;
    if !commit {
        return Ok(vec![StatementResult::affected(0); statements.len()]);
    }
    let outputs = shared.gateway.run_program(program).await?;
    if outputs.len() != statements.len() {
        return Err(ExecError::Internal(format!("{} outputs for {} statements", outputs.len(), statements.len())));
    }
    Ok(outputs.into_iter().map(to_result).collect())
}

/// Compiles `statements` into a program (its participants follow from its
/// locks, see `execute`).
pub async fn compile(shared: &Shared, statements: &[Statement], params: &[Param]) -> ExecResult<TxnProgram> {
    if statements.len() > PROGRAM_STATEMENTS_MAX {
        return Err(ExecError::ProgramLimitExceeded(format!(
            "at most {PROGRAM_STATEMENTS_MAX} statements per transaction"
        )));
    }
    let mut vars = Vars { base: params.len(), names: BTreeMap::new() };
    let mut program = Vec::with_capacity(statements.len());
    for st in statements {
        let mut st = st.clone();
        vars.rewrite(&mut st)?;
        let compiled = match &st {
            Statement::Insert(ins) => {
                let (table, targets, rows) = crate::dml::insert_shape(shared, ins).await?;
                let rows = rows.iter().map(|r| r.iter().map(|e| e.to_string()).collect()).collect();
                let returning = ins.returning.as_ref().map(|items| vars.returning(&table, items));
                ProgStatement::Insert { table, targets, rows, returning }
            }
            Statement::Update(up) => {
                let (_, req) = crate::dml::plan_update(shared, up, params).await?;
                let returning = up.returning.as_ref().map(|items| vars.returning(&req.table, items));
                ProgStatement::Modify {
                    table: req.table,
                    assignments: req.assignments,
                    delete: false,
                    selection: req.selection,
                    returning,
                    recon: None,
                }
            }
            Statement::Delete(del) => {
                let (_, req) = crate::dml::plan_delete(shared, del, params).await?;
                let returning = del.returning.as_ref().map(|items| vars.returning(&req.table, items));
                ProgStatement::Modify {
                    table: req.table,
                    assignments: Vec::new(),
                    delete: true,
                    selection: req.selection,
                    returning,
                    recon: None,
                }
            }
            Statement::Query(q) => {
                let (table, selection, items) = single_table_select(shared, q).await?;
                let binds = vars.bind_items(&table, &items);
                ProgStatement::Select { table, sql: q.to_string(), selection: selection.map(|s| s.to_string()), binds }
            }
            other => {
                return Err(ExecError::FeatureNotSupported(format!(
                    "only INSERT, UPDATE, DELETE and single-table SELECT are supported inside a transaction, got: {}",
                    other.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
                )))
            }
        };
        program.push(compiled);
    }
    Ok(TxnProgram { statements: program, params: params.to_vec(), vars: 1 + vars.names.len() })
}

/// `SELECT ... FROM one_table [WHERE ...]`: the table, the WHERE clause and
/// the select list.
async fn single_table_select(shared: &Shared, q: &Query) -> ExecResult<(TableDef, Option<Expr>, Vec<SelectItem>)> {
    let unsupported = || {
        ExecError::FeatureNotSupported(
            "a SELECT inside a transaction must read one table (no joins, subqueries or set operations)".into(),
        )
    };
    if q.with.is_some() {
        return Err(unsupported());
    }
    let SetExpr::Select(sel) = q.body.as_ref() else { return Err(unsupported()) };
    let [from] = sel.from.as_slice() else { return Err(unsupported()) };
    if !from.joins.is_empty() {
        return Err(unsupported());
    }
    let TableFactor::Table { name, .. } = &from.relation else { return Err(unsupported()) };
    let table = shared.table(&object_name(name)?).await?;
    if let Some(s) = &sel.selection {
        crate::dml::refuse_subqueries(s)?;
    }
    Ok((table, sel.selection.clone(), sel.projection.clone()))
}

/// Names bound by earlier statements and the slots they live in.
struct Vars {
    /// Number of client parameters; slot `base` is the timestamp.
    base: usize,
    names: BTreeMap<String, usize>,
}

const TIMESTAMP_FUNCTIONS: [&str; 5] =
    ["now", "current_timestamp", "localtimestamp", "transaction_timestamp", "statement_timestamp"];

/// Whether `e` is `now()` or one of its synonyms, without arguments.
fn is_timestamp_call(e: &Expr) -> bool {
    match e {
        Expr::Function(f) => {
            f.name.0.len() == 1
                && (matches!(f.args, FunctionArguments::None)
                    || matches!(&f.args, FunctionArguments::List(l) if l.args.is_empty()))
                && TIMESTAMP_FUNCTIONS.contains(&f.name.to_string().to_lowercase().as_str())
        }
        _ => false,
    }
}

/// Replaces `now()` & co. in `st` with the placeholder of parameter slot
/// `slot` (0-based, right after the client's parameters), so every vShard
/// evaluates the one timestamp the executor binds there; whether there was
/// any. A client placeholder past its parameters is refused rather than
/// read as that slot.
pub(crate) fn bind_timestamp(st: &mut Statement, slot: usize) -> ExecResult<bool> {
    let (mut stray, mut found) = (None, false);
    // Expressions are visited after their operands, so a placeholder put in
    // here is never looked at again as the client's.
    let _ = visit_expressions_mut(st, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                if p.trim_start_matches('$').parse::<usize>().is_ok_and(|n| n > slot) {
                    stray = Some(p.clone());
                }
            }
        }
        if is_timestamp_call(e) {
            *e = Vars::placeholder(slot);
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    match stray {
        Some(p) if found => Err(ExecError::InvalidParameter(format!("there is no parameter {p}: {slot} given"))),
        _ => Ok(found),
    }
}

impl Vars {
    fn placeholder(slot: usize) -> Expr {
        Expr::value(Value::Placeholder(format!("${}", slot + 1)))
    }

    /// `$name` -> `$n` of its slot; now() & co. -> the timestamp slot.
    fn rewrite(&self, st: &mut Statement) -> ExecResult<()> {
        let mut problem = None;
        let _ = visit_expressions_mut(st, |e| {
            match e {
                Expr::Value(v) => {
                    if let Value::Placeholder(p) = &v.value {
                        let name = p.trim_start_matches('$');
                        if name.parse::<usize>().is_err() {
                            match self.names.get(&name.to_lowercase()) {
                                Some(&slot) => *e = Self::placeholder(slot),
                                None => {
                                    problem = Some(ExecError::InvalidParameter(format!(
                                        "${name} is not bound: no earlier statement of this transaction returned a column named {name}"
                                    )));
                                    return ControlFlow::Break(());
                                }
                            }
                        }
                    }
                }
                e if is_timestamp_call(e) => *e = Self::placeholder(self.base),
                _ => {}
            }
            ControlFlow::Continue(())
        });
        problem.map_or(Ok(()), Err)
    }

    fn slot(&mut self, name: String) -> usize {
        let next = self.base + 1 + self.names.len();
        *self.names.entry(name).or_insert(next)
    }

    /// The slot of every named output column of a select list.
    fn bind_items(&mut self, table: &TableDef, items: &[SelectItem]) -> Vec<Option<usize>> {
        let mut out = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(Expr::Identifier(i)) => out.push(Some(self.slot(ident(i)))),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => {
                    out.push(p.last().map(|i| self.slot(ident(i))));
                }
                SelectItem::ExprWithAlias { alias, .. } => out.push(Some(self.slot(ident(alias)))),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    for c in &table.columns {
                        out.push(Some(self.slot(c.name.clone())));
                    }
                }
                SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAliases { .. } => out.push(None),
            }
        }
        out
    }

    fn returning(&mut self, table: &TableDef, items: &[SelectItem]) -> Returning {
        let binds = self.bind_items(table, items);
        Returning { items: items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "), binds }
    }
}

fn to_result(o: StmtOutput) -> StatementResult {
    StatementResult {
        columns: o.columns.into_iter().map(|(name, type_name)| Column { name, type_name }).collect(),
        rows: o.rows.into_iter().map(|r| r.iter().map(json).collect()).collect(),
        rows_affected: o.rows_affected,
    }
}

/// A value as the HTTP API renders it (NUMERIC as an exact string, dates
/// and timestamps as ISO text), like query results.
fn json(p: &Param) -> Json {
    match p {
        Param::Null => Json::Null,
        Param::Bool(b) => Json::Bool(*b),
        Param::Int(i) => (*i).into(),
        Param::Float(f) => {
            serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or_else(|| Json::String(f.to_string()))
        }
        Param::Text(s) => Json::String(s.clone()),
        Param::Decimal { value, scale, .. } => Json::String(decimal_to_string(*value, *scale)),
        Param::Date(_) | Param::Timestamp(_) => {
            let lit = param_sql(p);
            // `DATE '2024-01-02'` / `TIMESTAMP '...'`: the quoted part.
            Json::String(lit.split('\'').nth(1).unwrap_or_default().to_string())
        }
    }
}
