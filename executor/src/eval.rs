//! Statements analysed without a query plan: constant expressions
//! (literals, parameters, casts of them) evaluated to [`Input`]s — the
//! values of INSERT and of key predicates — and the rows a `WHERE` clause
//! can touch ([`Target`]): one row, one vShard, or every vShard.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{BinaryOperator, CastKind, Expr, Ident, UnaryOperator, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{encode_key, Datum};
use ordo_vshard::routing::vshard_of;

use crate::coerce::{coerce, Input};
use crate::error::{ExecError, ExecResult};
use crate::request::Param;

/// Evaluates a constant expression. Anything that is not a literal,
/// a `$n` parameter, a sign or a cast of those is refused.
pub fn eval_const(expr: &Expr, params: &[Param]) -> ExecResult<Input> {
    match expr {
        Expr::Value(v) => value(&v.value, params),
        Expr::Nested(e) => eval_const(e, params),
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match eval_const(expr, params)? {
            Input::Int(i) => Ok(i.checked_neg().map(Input::Int).unwrap_or_else(|| Input::Number(format!("-{i}")))),
            Input::Float(f) => Ok(Input::Float(-f)),
            Input::Number(s) => Ok(Input::Number(match s.strip_prefix('-') {
                Some(rest) => rest.to_string(),
                None => format!("-{s}"),
            })),
            _ => Err(ExecError::DatatypeMismatch("unary minus needs a number".into())),
        },
        Expr::UnaryOp { op: UnaryOperator::Plus, expr } => eval_const(expr, params),
        // The target column decides the type; an explicit cast of a literal
        // is checked when the value is coerced to that column.
        Expr::Cast { kind: CastKind::Cast | CastKind::DoubleColon, expr, .. } => eval_const(expr, params),
        Expr::TypedString(ts) => value(&ts.value.value, params),
        other => Err(ExecError::FeatureNotSupported(format!("only constant values are supported here, got: {other}"))),
    }
}

/// A value expression without column references, as in `INSERT ...
/// VALUES ($q * $price, now())`: constants directly, arithmetic and CASE
/// through the fast evaluator over no columns.
pub fn eval_scalar(expr: &Expr, params: &[Param]) -> ExecResult<Input> {
    match eval_const(expr, params) {
        Err(ExecError::FeatureNotSupported(msg)) => {
            let none = TableDef { id: 0, name: String::new(), columns: Vec::new(), primary_key: Vec::new(), partition_len: 0 };
            let compiled = crate::fast::compile(expr, &none, params).ok_or(ExecError::FeatureNotSupported(msg))?;
            match compiled.eval(&[], &none) {
                Ok(v) => Ok(crate::fast::val_input(v)),
                Err(crate::fast::EvalError::Sql(e)) => Err(e),
                Err(crate::fast::EvalError::Unsupported) => {
                    Err(ExecError::FeatureNotSupported(format!("cannot evaluate {expr} here")))
                }
            }
        }
        other => other,
    }
}

fn value(v: &Value, params: &[Param]) -> ExecResult<Input> {
    Ok(match v {
        Value::Number(n, _) => Input::from_number_literal(n),
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Input::Text(s.clone()),
        Value::DollarQuotedString(s) => Input::Text(s.value.clone()),
        Value::Boolean(b) => Input::Bool(*b),
        Value::Null => Input::Null,
        Value::Placeholder(p) => {
            let n: usize = p
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| ExecError::Syntax(format!("unsupported placeholder {p}")))?;
            let param = params
                .get(n.wrapping_sub(1))
                .ok_or_else(|| ExecError::InvalidParameter(format!("there is no parameter ${n}")))?;
            Input::from_param(param)
        }
        other => return Err(ExecError::FeatureNotSupported(format!("unsupported literal {other}"))),
    })
}

/// An identifier as PostgreSQL folds it: lowercased unless quoted.
pub fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The column of `table` an expression names (`c` or `t.c`), if it is a
/// plain column reference.
pub fn column_ref(e: &Expr, table: &TableDef) -> Option<usize> {
    match e {
        Expr::Identifier(i) => table.column_index(&ident(i)),
        Expr::CompoundIdentifier(p) if p.len() == 2 => table.column_index(&ident(&p[1])),
        _ => None,
    }
}

/// Parses one SQL expression (text the gateway produced from an AST).
pub fn parse_expr(sql: &str) -> ExecResult<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| ExecError::Syntax(e.to_string()))
}

/// The vShard of a row whose primary key (or at least its partition
/// prefix) is `key`.
pub fn vshard_of_key(table: &TableDef, key: &[Datum], vshards: u32) -> u32 {
    let part: Vec<&Datum> = key[..table.partition_len].iter().collect();
    vshard_of(&encode_key(&part), vshards)
}

/// `column = constant` conjuncts of a WHERE clause, by column index.
/// Constants that cannot be evaluated (e.g. a variable not bound yet) are
/// left out, which only makes the target wider.
pub fn key_equalities(table: &TableDef, e: &Expr, params: &[Param], out: &mut BTreeMap<usize, Input>) {
    match e {
        Expr::Nested(inner) => key_equalities(table, inner, params, out),
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            key_equalities(table, left, params, out);
            key_equalities(table, right, params, out);
        }
        Expr::BinaryOp { left, op: BinaryOperator::Eq, right } => {
            let (col, val) = match (left.as_ref(), right.as_ref()) {
                (Expr::Identifier(c), v) | (v, Expr::Identifier(c)) => (ident(c), v),
                (Expr::CompoundIdentifier(p), v) | (v, Expr::CompoundIdentifier(p)) if p.len() == 2 => (ident(&p[1]), v),
                _ => return,
            };
            if let (Some(ci), Ok(input)) = (table.column_index(&col), eval_const(val, params)) {
                out.insert(ci, input);
            }
        }
        _ => {}
    }
}

/// The rows a statement on one table can touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One row: its vShard and encoded primary key.
    Point { vshard: u32, pk: Vec<u8> },
    /// The rows under one primary-key prefix (`part`, encoded): at least
    /// the partition key, so one vShard; longer when more leading key
    /// columns are bound (keys are self-delimiting, so a byte prefix of
    /// the encoded key selects exactly those rows).
    Shard { vshard: u32, part: Vec<u8> },
    /// Any row.
    All,
}

impl Target {
    pub fn vshards(&self, vshards: u32) -> Vec<u32> {
        match self {
            Target::Point { vshard, .. } | Target::Shard { vshard, .. } => vec![*vshard],
            Target::All => (0..vshards).collect(),
        }
    }
}

/// Where a `WHERE` clause on `table` can match: the full primary key bound
/// by equalities gives one row, the partition key (or a longer leading
/// part of the primary key) a range of one vShard.
pub fn target(table: &TableDef, selection: Option<&Expr>, params: &[Param], vshards: u32) -> Target {
    let Some(sel) = selection else { return Target::All };
    let mut eq = BTreeMap::new();
    key_equalities(table, sel, params, &mut eq);
    let bind = |n: usize| -> Option<Vec<Datum>> {
        table.primary_key[..n]
            .iter()
            .map(|&ci| {
                let d = coerce(eq.get(&ci)?.clone(), &table.columns[ci]).ok()?;
                (!d.is_null()).then_some(d)
            })
            .collect()
    };
    if let Some(pk) = bind(table.primary_key.len()) {
        let vshard = vshard_of_key(table, &pk, vshards);
        return Target::Point { vshard, pk: encode_key(&pk.iter().collect::<Vec<_>>()) };
    }
    for n in (table.partition_len.max(1)..table.primary_key.len()).rev() {
        if let Some(part) = bind(n) {
            let vshard = vshard_of_key(table, &part, vshards);
            return Target::Shard { vshard, part: encode_key(&part.iter().collect::<Vec<_>>()) };
        }
    }
    Target::All
}
