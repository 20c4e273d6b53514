//! Constant expressions evaluated without a query plan: literals,
//! parameters, signs and casts of them, to [`Input`]s — the values of
//! INSERT and of key predicates — and the `column = constant` conjuncts of
//! a WHERE clause.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{BinaryOperator, CastKind, Expr, UnaryOperator, Value};
use ordo_meta::catalog::TableDef;

use crate::coerce::Input;
use crate::error::{ExecError, ExecResult};
use crate::param::Param;

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
                (Expr::Identifier(c), v) | (v, Expr::Identifier(c)) => (crate::parse::ident(c), v),
                (Expr::CompoundIdentifier(p), v) | (v, Expr::CompoundIdentifier(p)) if p.len() == 2 => {
                    (crate::parse::ident(&p[1]), v)
                }
                _ => return,
            };
            if let (Some(ci), Ok(input)) = (table.column_index(&col), eval_const(val, params)) {
                out.insert(ci, input);
            }
        }
        _ => {}
    }
}
