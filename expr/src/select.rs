//! SELECT shapes inside a transaction that need no query plan, beyond
//! plain columns: `ORDER BY` one column with `LIMIT n`, and aggregates
//! (`COUNT(*)`, `COUNT`, `SUM`, `MIN`, `MAX` of a column) without
//! `GROUP BY`. TPC-C's Delivery and Order-Status are made of these; through
//! DataFusion each cost a query plan while the transaction held its locks.
//!
//! Semantics follow PostgreSQL: NULLs sort last ascending and first
//! descending; aggregates skip NULLs; SUM/MIN/MAX of no rows are NULL and
//! COUNT is 0. Ties keep key order, so results stay deterministic.

use std::cmp::Ordering;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, LimitClause, OrderBy, OrderByKind, SelectItem, Value,
};
use ordo_meta::catalog::{SqlType, TableDef};
use ordo_meta::datum::Datum;

use crate::fast::{self, datum_val, EvalError, Val};
use crate::param::{datum_param, Param};
use crate::parse::{column_ref as column, ident};

/// `ORDER BY` one plain column: its index and whether descending.
pub fn order_column(order: Option<&OrderBy>, table: &TableDef) -> Option<Option<(usize, bool)>> {
    let Some(o) = order else { return Some(None) };
    let OrderByKind::Expressions(exprs) = &o.kind else { return None };
    let [e] = exprs.as_slice() else { return None };
    if e.with_fill.is_some() || e.options.nulls_first.is_some() {
        return None;
    }
    Some(Some((column(&e.expr, table)?, e.options.asc == Some(false))))
}

/// `LIMIT n` with a literal n and no offset.
pub fn limit(l: Option<&LimitClause>) -> Option<Option<usize>> {
    match l {
        None => Some(None),
        Some(LimitClause::LimitOffset { limit: Some(Expr::Value(v)), offset: None, limit_by })
            if limit_by.is_empty() =>
        {
            match &v.value {
                Value::Number(n, _) => n.parse().ok().map(Some),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Orders values; `None` when the kinds cannot be compared here.
fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    let lt = fast::binary(a.clone(), fast::Op::Lt, b.clone()).ok()?;
    let eq = fast::binary(a.clone(), fast::Op::Eq, b.clone()).ok()?;
    match (lt, eq) {
        (Val::Bool(true), _) => Some(Ordering::Less),
        (_, Val::Bool(true)) => Some(Ordering::Equal),
        (Val::Bool(false), Val::Bool(false)) => Some(Ordering::Greater),
        _ => None,
    }
}

/// Sorts rows by column `ci` (stable); `None` when a pair cannot be compared.
pub fn sort<'r>(rows: &mut [&'r Vec<Datum>], ci: usize, desc: bool, table: &TableDef) -> Option<()> {
    let ty = &table.columns[ci].ty;
    let mut keyed: Vec<(Val, &'r Vec<Datum>)> = rows.iter().map(|r| (datum_val(&r[ci], ty), *r)).collect();
    let mut ok = true;
    keyed.sort_by(|(a, _), (b, _)| {
        let o = match (a, b) {
            (Val::Null, Val::Null) => Ordering::Equal,
            // NULLs are larger than any value: last ascending, first descending.
            (Val::Null, _) => Ordering::Greater,
            (_, Val::Null) => Ordering::Less,
            _ => compare(a, b).unwrap_or_else(|| {
                ok = false;
                Ordering::Equal
            }),
        };
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    for (slot, (_, r)) in rows.iter_mut().zip(keyed) {
        *slot = r;
    }
    ok.then_some(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    CountRows,
    Count(usize),
    Sum(usize),
    Min(usize),
    Max(usize),
}

/// The items as aggregates of plain columns, with their output names.
pub fn aggregates(items: &[SelectItem], table: &TableDef) -> Option<Vec<(String, Agg)>> {
    items
        .iter()
        .map(|item| {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident(alias))),
                _ => return None,
            };
            let Expr::Function(f) = e else { return None };
            if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() || f.name.0.len() != 1 {
                return None;
            }
            let FunctionArguments::List(list) = &f.args else { return None };
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                return None;
            }
            let [FunctionArg::Unnamed(arg)] = list.args.as_slice() else { return None };
            let name = f.name.to_string().to_lowercase();
            let agg = match (name.as_str(), arg) {
                ("count", FunctionArgExpr::Wildcard) => Agg::CountRows,
                ("count", FunctionArgExpr::Expr(e)) => Agg::Count(column(e, table)?),
                ("sum", FunctionArgExpr::Expr(e)) => Agg::Sum(column(e, table)?),
                ("min", FunctionArgExpr::Expr(e)) => Agg::Min(column(e, table)?),
                ("max", FunctionArgExpr::Expr(e)) => Agg::Max(column(e, table)?),
                _ => return None,
            };
            Some((alias.unwrap_or(name), agg))
        })
        .collect()
}

/// The PostgreSQL type name of an aggregate's result.
pub fn type_name(agg: Agg, table: &TableDef) -> Option<&'static str> {
    Some(match agg {
        Agg::CountRows | Agg::Count(_) => "int8",
        Agg::Sum(ci) => match table.columns[ci].ty {
            SqlType::SmallInt | SqlType::Int | SqlType::BigInt => "int8",
            SqlType::Numeric { .. } => "numeric",
            SqlType::Double => "float8",
            _ => return None,
        },
        Agg::Min(ci) | Agg::Max(ci) => crate::arrow::pg_type_name(&crate::arrow::arrow_type(&table.columns[ci].ty)),
    })
}

/// Evaluates one aggregate over `rows`; `None` for the slow path.
pub fn evaluate(agg: Agg, rows: &[&Vec<Datum>], table: &TableDef) -> Result<Option<Param>, crate::error::ExecError> {
    let values = |ci: usize| {
        rows.iter().map(move |r| (&r[ci], datum_val(&r[ci], &table.columns[ci].ty))).filter(|(_, v)| *v != Val::Null)
    };
    Ok(Some(match agg {
        Agg::CountRows => Param::Int(rows.len() as i64),
        Agg::Count(ci) => Param::Int(values(ci).count() as i64),
        // Integers: exact, checked once at the end (as `checked_sum` does on
        // the slow path), so a running total may leave BIGINT on the way.
        Agg::Sum(ci) if matches!(table.columns[ci].ty, SqlType::SmallInt | SqlType::Int | SqlType::BigInt) => {
            let mut acc: Option<i128> = None;
            for (_, v) in values(ci) {
                let Val::Int(i) = v else { return Ok(None) };
                acc = Some(acc.unwrap_or(0) + i128::from(i));
            }
            match acc.map(i64::try_from) {
                None => Param::Null,
                Some(Ok(i)) => Param::Int(i),
                Some(Err(_)) => {
                    return Err(crate::error::ExecError::NumericValueOutOfRange("bigint out of range".into()))
                }
            }
        }
        Agg::Sum(ci) => {
            let mut acc: Option<Val> = None;
            for (_, v) in values(ci) {
                acc = Some(match acc {
                    None => v,
                    Some(a) => match fast::binary(a, fast::Op::Add, v) {
                        Ok(s) => s,
                        Err(EvalError::Sql(e)) => return Err(e),
                        Err(EvalError::Unsupported) => return Ok(None),
                    },
                });
            }
            match acc {
                None => Param::Null,
                Some(Val::Int(i)) => Param::Int(i),
                Some(Val::Float(f)) => Param::Float(f),
                Some(Val::Dec(value, scale)) => Param::Decimal { value, precision: 38, scale },
                Some(_) => return Ok(None),
            }
        }
        Agg::Min(ci) | Agg::Max(ci) => {
            let want = if matches!(agg, Agg::Min(_)) { Ordering::Less } else { Ordering::Greater };
            let mut best: Option<(&Datum, Val)> = None;
            for (d, v) in values(ci) {
                best = match best {
                    None => Some((d, v)),
                    Some((bd, bv)) => match compare(&v, &bv) {
                        Some(o) if o == want => Some((d, v)),
                        Some(_) => Some((bd, bv)),
                        None => return Ok(None),
                    },
                };
            }
            match best {
                None => Param::Null,
                Some((d, _)) => datum_param(d, &table.columns[ci].ty),
            }
        }
    }))
}
