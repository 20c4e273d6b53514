//! The OLTP fast path: scalar expressions simple enough to evaluate row by
//! row without a query plan — column references, constants and parameters,
//! `+ - *`, `||` on text, comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL`, searched
//! `CASE WHEN ... THEN ... [ELSE ...] END` — over integers,
//! floats, NUMERIC, text and booleans. Planning a statement through
//! DataFusion costs far more than running it on one row (measured: most of
//! a vShard leader's CPU in a transfer benchmark), and most OLTP statements
//! are of this shape.
//!
//! Anything else — other functions, division, mixed float/NUMERIC, dates
//! compared with text — is `None`/[`Unsupported`], and the caller runs the
//! statement through DataFusion instead, before it has written anything.
//! Semantics follow PostgreSQL (which DataFusion's agree with here): NULL
//! propagates, three-valued logic, integer overflow is an error, text
//! compares bytewise.

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, UnaryOperator};
use ordo_meta::catalog::{SqlType, TableDef};
use ordo_meta::datum::Datum;

use crate::coerce::{decimal_from_str, decimal_to_string, Input};
use crate::constant::eval_const;
use crate::error::{ExecError, ExecResult};
use crate::param::Param;
use crate::parse::column_ref;

/// Evaluating needs the slow path after all (e.g. a type mix not handled).
#[derive(Debug)]
pub struct Unsupported;

#[derive(Clone, Debug)]
pub enum Fast {
    Col(usize),
    Const(Val),
    Bin(Box<Fast>, Op, Box<Fast>),
    Not(Box<Fast>),
    Neg(Box<Fast>),
    IsNull(Box<Fast>, bool),
    /// Searched CASE: the first branch whose condition is TRUE, else the
    /// ELSE value (NULL without one).
    Case(Vec<(Fast, Fast)>, Option<Box<Fast>>),
    /// `substr(text, from [, count])`, 1-based, in characters.
    Substr(Box<Fast>, Box<Fast>, Option<Box<Fast>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

/// A value while evaluating: NUMERIC keeps its scale.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Float(f64),
    Dec(i128, i8),
    Text(String),
    Bool(bool),
    /// Dates and timestamps: compared with their own kind only.
    Other(Datum),
}

/// Compiles `expr` over the columns of `table`; `None` when it is not of
/// the supported shape.
pub fn compile(expr: &Expr, table: &TableDef, params: &[Param]) -> Option<Fast> {
    Some(match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Fast::Col(column_ref(expr, table)?),
        Expr::Nested(e) => compile(e, table, params)?,
        Expr::UnaryOp { op: UnaryOperator::Not, expr } => Fast::Not(Box::new(compile(expr, table, params)?)),
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } if !is_const(expr) => {
            Fast::Neg(Box::new(compile(expr, table, params)?))
        }
        Expr::IsNull(e) => Fast::IsNull(Box::new(compile(e, table, params)?), true),
        Expr::IsNotNull(e) => Fast::IsNull(Box::new(compile(e, table, params)?), false),
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Plus => Op::Add,
                BinaryOperator::Minus => Op::Sub,
                BinaryOperator::Multiply => Op::Mul,
                BinaryOperator::Eq => Op::Eq,
                BinaryOperator::NotEq => Op::NotEq,
                BinaryOperator::Lt => Op::Lt,
                BinaryOperator::LtEq => Op::LtEq,
                BinaryOperator::Gt => Op::Gt,
                BinaryOperator::GtEq => Op::GtEq,
                BinaryOperator::And => Op::And,
                BinaryOperator::Or => Op::Or,
                BinaryOperator::StringConcat => Op::Concat,
                _ => return None,
            };
            let (l, r) = (compile(left, table, params)?, compile(right, table, params)?);
            // INT and SMALLINT operands on both sides: PostgreSQL (and
            // DataFusion) compute in 32 or 16 bits and fail past them; the
            // fast path computes in 64, so it leaves those to DataFusion.
            if matches!(op, Op::Add | Op::Sub | Op::Mul)
                && l.kind(table) == Kind::NarrowInt
                && r.kind(table) == Kind::NarrowInt
            {
                return None;
            }
            Fast::Bin(Box::new(l), op, Box::new(r))
        }
        // substr(s, from[, count]) and SUBSTRING(s FROM from [FOR count]).
        Expr::Substring { expr, substring_from: Some(from), substring_for, .. } => Fast::Substr(
            Box::new(compile(expr, table, params)?),
            Box::new(compile(from, table, params)?),
            match substring_for {
                Some(c) => Some(Box::new(compile(c, table, params)?)),
                None => None,
            },
        ),
        Expr::Case { operand: None, conditions, else_result, .. } => {
            let branches = conditions
                .iter()
                .map(|w| Some((compile(&w.condition, table, params)?, compile(&w.result, table, params)?)))
                .collect::<Option<Vec<_>>>()?;
            let otherwise = match else_result {
                Some(e) => Some(Box::new(compile(e, table, params)?)),
                None => None,
            };
            let case = Fast::Case(branches, otherwise);
            // PostgreSQL types a CASE once, for all rows: branches of
            // integer and NUMERIC make it NUMERIC (arithmetic on it cannot
            // overflow as bigint would). The fast path types values per
            // row, so it leaves such a CASE to DataFusion.
            if case.kind(table) == Kind::Mixed {
                return None;
            }
            case
        }
        other => Fast::Const(input_val(eval_const(other, params).ok()?)?),
    })
}

/// The static type of a compiled expression, as far as the fast path
/// needs it (see the CASE rule in [`compile`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// INT or SMALLINT (a column of them; literals are BIGINT).
    NarrowInt,
    Int,
    Dec,
    Float,
    Text,
    Bool,
    Other,
    /// NULL: fits any branch.
    Unknown,
    /// Branches of different types.
    Mixed,
}

impl Kind {
    fn of_column(ty: &SqlType) -> Kind {
        match ty {
            SqlType::SmallInt | SqlType::Int => Kind::NarrowInt,
            SqlType::BigInt => Kind::Int,
            SqlType::Numeric { .. } => Kind::Dec,
            SqlType::Double => Kind::Float,
            SqlType::Text | SqlType::Varchar(_) => Kind::Text,
            SqlType::Bool => Kind::Bool,
            SqlType::Timestamp | SqlType::Date => Kind::Other,
        }
    }

    fn of_val(v: &Val) -> Kind {
        match v {
            Val::Null => Kind::Unknown,
            Val::Int(_) => Kind::Int,
            Val::Float(_) => Kind::Float,
            Val::Dec(..) => Kind::Dec,
            Val::Text(_) => Kind::Text,
            Val::Bool(_) => Kind::Bool,
            Val::Other(_) => Kind::Other,
        }
    }

    /// INT and SMALLINT count as BIGINT but for the rule in [`compile`].
    fn wide(self) -> Kind {
        if self == Kind::NarrowInt {
            Kind::Int
        } else {
            self
        }
    }

    /// The type of `a op b` for arithmetic: the wider of the two.
    fn arithmetic(a: Kind, b: Kind) -> Kind {
        if a == Kind::NarrowInt && b == Kind::NarrowInt {
            return Kind::NarrowInt;
        }
        match (a.wide(), b.wide()) {
            (Kind::Mixed, _) | (_, Kind::Mixed) => Kind::Mixed,
            (Kind::Float, _) | (_, Kind::Float) => Kind::Float,
            (Kind::Dec, _) | (_, Kind::Dec) => Kind::Dec,
            (Kind::Unknown, k) | (k, Kind::Unknown) => k,
            (k, _) => k,
        }
    }

    /// The type of a CASE whose branches have types `a` and `b`.
    fn unify(a: Kind, b: Kind) -> Kind {
        match (a, b) {
            (Kind::Unknown, k) | (k, Kind::Unknown) => k,
            (x, y) if x == y => x,
            (x, y) if x.wide() == y.wide() => x.wide(),
            _ => Kind::Mixed,
        }
    }
}

impl Fast {
    fn kind(&self, table: &TableDef) -> Kind {
        match self {
            Fast::Col(ci) => table.columns.get(*ci).map_or(Kind::Other, |c| Kind::of_column(&c.ty)),
            Fast::Const(v) => Kind::of_val(v),
            Fast::Bin(a, Op::Add | Op::Sub | Op::Mul, b) => Kind::arithmetic(a.kind(table), b.kind(table)),
            Fast::Bin(_, Op::Concat, _) | Fast::Substr(..) => Kind::Text,
            Fast::Bin(..) | Fast::Not(_) | Fast::IsNull(..) => Kind::Bool,
            Fast::Neg(a) => a.kind(table),
            Fast::Case(branches, otherwise) => {
                let first = otherwise.as_ref().map_or(Kind::Unknown, |e| e.kind(table));
                branches.iter().fold(first, |k, (_, v)| Kind::unify(k, v.kind(table)))
            }
        }
    }
}

fn is_const(e: &Expr) -> bool {
    matches!(e, Expr::Value(_))
}

fn input_val(i: Input) -> Option<Val> {
    Some(match i {
        Input::Null => Val::Null,
        Input::Int(v) => Val::Int(v),
        Input::Float(f) => Val::Float(f),
        Input::Number(s) => {
            let scale = s.split(['e', 'E']).next()?.split('.').nth(1).map_or(0, |f| f.len()) as i8;
            if s.contains(['e', 'E']) || scale > 30 {
                return None;
            }
            match decimal_from_str(&s, 38, scale).ok()? {
                Datum::Decimal(v) => Val::Dec(v, scale),
                _ => return None,
            }
        }
        // An untyped string literal compared with a date would need a cast.
        Input::Text(s) => Val::Text(s),
        Input::Bool(b) => Val::Bool(b),
        Input::Datum(d) => Val::Other(d),
    })
}

/// A stored value as a `Val`.
pub fn datum_val(d: &Datum, ty: &SqlType) -> Val {
    match (d, ty) {
        (Datum::Null, _) => Val::Null,
        (Datum::Int(v), _) => Val::Int(*v),
        (Datum::Float(f), _) => Val::Float(*f),
        (Datum::Decimal(v), SqlType::Numeric { scale, .. }) => Val::Dec(*v, *scale),
        (Datum::Decimal(v), _) => Val::Dec(*v, 0),
        (Datum::Text(s), _) => Val::Text(s.clone()),
        (Datum::Bool(b), _) => Val::Bool(*b),
        (other, _) => Val::Other(other.clone()),
    }
}

/// The value as an input for storing in a column.
pub fn val_input(v: Val) -> Input {
    match v {
        Val::Null => Input::Null,
        Val::Int(i) => Input::Int(i),
        Val::Float(f) => Input::Float(f),
        Val::Dec(v, s) => Input::Number(decimal_to_string(v, s)),
        Val::Text(s) => Input::Text(s),
        Val::Bool(b) => Input::Bool(b),
        Val::Other(d) => Input::Datum(d),
    }
}

type Eval = Result<Val, EvalError>;

/// Why evaluation stopped: a SQL error (reported to the client) or a shape
/// the fast path does not handle (the caller falls back).
#[derive(Debug)]
pub enum EvalError {
    Sql(ExecError),
    Unsupported,
}

impl From<ExecError> for EvalError {
    fn from(e: ExecError) -> EvalError {
        EvalError::Sql(e)
    }
}

/// Largest scale of a NUMERIC value while evaluating (its digits max).
const DECIMAL_SCALE_MAX: i8 = 38;

fn overflow() -> EvalError {
    EvalError::Sql(ExecError::NumericValueOutOfRange("value out of range".into()))
}

fn rescale(v: i128, from: i8, to: i8) -> Result<i128, EvalError> {
    debug_assert!(to >= from);
    10i128.checked_pow((to - from) as u32).and_then(|m| v.checked_mul(m)).ok_or_else(overflow)
}

impl Fast {
    /// Evaluates over `row` (values in `table`'s column order).
    pub fn eval(&self, row: &[Datum], table: &TableDef) -> Eval {
        match self {
            Fast::Col(ci) => Ok(datum_val(&row[*ci], &table.columns[*ci].ty)),
            Fast::Const(v) => Ok(v.clone()),
            Fast::Not(e) => match e.eval(row, table)? {
                Val::Null => Ok(Val::Null),
                Val::Bool(b) => Ok(Val::Bool(!b)),
                _ => Err(EvalError::Unsupported),
            },
            Fast::Neg(e) => match e.eval(row, table)? {
                Val::Null => Ok(Val::Null),
                Val::Int(i) => i.checked_neg().map(Val::Int).ok_or_else(overflow),
                Val::Float(f) => Ok(Val::Float(-f)),
                Val::Dec(v, s) => Ok(Val::Dec(-v, s)),
                _ => Err(EvalError::Unsupported),
            },
            Fast::IsNull(e, want_null) => Ok(Val::Bool((e.eval(row, table)? == Val::Null) == *want_null)),
            Fast::Substr(s, from, count) => {
                let (s, from) = (s.eval(row, table)?, from.eval(row, table)?);
                let count = match count {
                    Some(c) => Some(c.eval(row, table)?),
                    None => None,
                };
                match (s, from, count) {
                    (Val::Null, _, _) | (_, Val::Null, _) | (_, _, Some(Val::Null)) => Ok(Val::Null),
                    (Val::Text(s), Val::Int(from), count) => {
                        // PostgreSQL: characters from..from+count, clipped to the string.
                        let end = match count {
                            None => i64::MAX,
                            Some(Val::Int(c)) if c < 0 => {
                                return Err(EvalError::Sql(ExecError::InvalidParameter(
                                    "negative substring length not allowed".into(),
                                )))
                            }
                            Some(Val::Int(c)) => from.saturating_add(c),
                            Some(_) => return Err(EvalError::Unsupported),
                        };
                        let (lo, hi) = (from.max(1), end.max(1));
                        Ok(Val::Text(s.chars().skip((lo - 1) as usize).take(hi.saturating_sub(lo) as usize).collect()))
                    }
                    _ => Err(EvalError::Unsupported),
                }
            }
            Fast::Case(branches, otherwise) => {
                for (cond, result) in branches {
                    if keeps(cond, row, table)? {
                        return result.eval(row, table);
                    }
                }
                otherwise.as_ref().map_or(Ok(Val::Null), |e| e.eval(row, table))
            }
            Fast::Bin(l, Op::And, r) => logic(l.eval(row, table)?, r.eval(row, table)?, true),
            Fast::Bin(l, Op::Or, r) => logic(l.eval(row, table)?, r.eval(row, table)?, false),
            Fast::Bin(l, op, r) => binary(l.eval(row, table)?, *op, r.eval(row, table)?),
        }
    }
}

fn logic(a: Val, b: Val, and: bool) -> Eval {
    let t = |v: &Val| match v {
        Val::Null => Ok(None),
        Val::Bool(b) => Ok(Some(*b)),
        _ => Err(EvalError::Unsupported),
    };
    Ok(match (t(&a)?, t(&b)?, and) {
        (Some(false), _, true) | (_, Some(false), true) => Val::Bool(false),
        (Some(true), Some(true), true) => Val::Bool(true),
        (Some(true), _, false) | (_, Some(true), false) => Val::Bool(true),
        (Some(false), Some(false), false) => Val::Bool(false),
        _ => Val::Null,
    })
}

pub fn binary(a: Val, op: Op, b: Val) -> Eval {
    use std::cmp::Ordering;
    if a == Val::Null || b == Val::Null {
        return Ok(Val::Null);
    }
    // Bring numbers to one kind: Int op Int, Dec op Dec (same scale), Float op Float.
    let (a, b) = match (a, b) {
        // A product's scale is the sum of its factors' scales.
        (Val::Int(x), Val::Dec(y, s)) if op == Op::Mul => (Val::Dec(x as i128, 0), Val::Dec(y, s)),
        (Val::Dec(x, s), Val::Int(y)) if op == Op::Mul => (Val::Dec(x, s), Val::Dec(y as i128, 0)),
        (Val::Int(x), Val::Dec(y, s)) => (Val::Dec(rescale(x as i128, 0, s)?, s), Val::Dec(y, s)),
        (Val::Dec(x, s), Val::Int(y)) => (Val::Dec(x, s), Val::Dec(rescale(y as i128, 0, s)?, s)),
        (Val::Int(x), Val::Float(y)) => (Val::Float(x as f64), Val::Float(y)),
        (Val::Float(x), Val::Int(y)) => (Val::Float(x), Val::Float(y as f64)),
        (Val::Dec(x, sx), Val::Dec(y, sy)) if op != Op::Mul && sx != sy => {
            let s = sx.max(sy);
            (Val::Dec(rescale(x, sx, s)?, s), Val::Dec(rescale(y, sy, s)?, s))
        }
        pair => pair,
    };
    let ord: Option<Ordering> = match (&a, &b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Dec(x, _), Val::Dec(y, _)) if op != Op::Mul => Some(x.cmp(y)),
        (Val::Text(x), Val::Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Other(Datum::Date(x)), Val::Other(Datum::Date(y))) => Some(x.cmp(y)),
        (Val::Other(Datum::Timestamp(x)), Val::Other(Datum::Timestamp(y))) => Some(x.cmp(y)),
        _ => None,
    };
    if op == Op::Concat {
        return match (a, b) {
            (Val::Text(mut x), Val::Text(y)) => {
                x.push_str(&y);
                Ok(Val::Text(x))
            }
            _ => Err(EvalError::Unsupported),
        };
    }
    let cmp = |f: fn(Ordering) -> bool| ord.map(|o| Val::Bool(f(o))).ok_or(EvalError::Unsupported);
    match op {
        Op::Eq => cmp(|o| o == Ordering::Equal),
        Op::NotEq => cmp(|o| o != Ordering::Equal),
        Op::Lt => cmp(|o| o == Ordering::Less),
        Op::LtEq => cmp(|o| o != Ordering::Greater),
        Op::Gt => cmp(|o| o == Ordering::Greater),
        Op::GtEq => cmp(|o| o != Ordering::Less),
        Op::Add | Op::Sub | Op::Mul => match (a, b) {
            (Val::Int(x), Val::Int(y)) => match op {
                Op::Add => x.checked_add(y),
                Op::Sub => x.checked_sub(y),
                _ => x.checked_mul(y),
            }
            .map(Val::Int)
            .ok_or_else(overflow),
            (Val::Float(x), Val::Float(y)) => Ok(Val::Float(match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                _ => x * y,
            })),
            (Val::Dec(x, sx), Val::Dec(y, sy)) => match op {
                Op::Add => x.checked_add(y).map(|v| Val::Dec(v, sx)).ok_or_else(overflow),
                Op::Sub => x.checked_sub(y).map(|v| Val::Dec(v, sx)).ok_or_else(overflow),
                // A product's scale is the sum of its factors' (bounded by
                // NUMERIC's 38 digits: a chain of products cannot wrap it).
                _ => match sx.checked_add(sy).filter(|s| *s <= DECIMAL_SCALE_MAX) {
                    Some(s) => x.checked_mul(y).map(|v| Val::Dec(v, s)).ok_or_else(overflow),
                    None => Err(overflow()),
                },
            },
            _ => Err(EvalError::Unsupported),
        },
        Op::And | Op::Or | Op::Concat => unreachable!("handled above"),
    }
}

/// Whether a WHERE clause keeps the row: only TRUE does.
pub fn keeps(pred: &Fast, row: &[Datum], table: &TableDef) -> Result<bool, EvalError> {
    match pred.eval(row, table)? {
        Val::Bool(b) => Ok(b),
        Val::Null => Ok(false),
        _ => Err(EvalError::Unsupported),
    }
}

/// Converts an evaluation result for callers that report SQL errors and
/// treat "unsupported" as "use the slow path".
pub fn sql<T>(r: Result<T, EvalError>) -> ExecResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(EvalError::Sql(e)) => Err(e),
        Err(EvalError::Unsupported) => Ok(None),
    }
}

/// A value expression without column references, as in `INSERT ...
/// VALUES ($q * $price, now())`: constants directly, arithmetic and CASE
/// through the fast evaluator over no columns.
pub fn eval_scalar(expr: &Expr, params: &[Param]) -> ExecResult<Input> {
    match eval_const(expr, params) {
        Err(ExecError::FeatureNotSupported(msg)) => {
            let none =
                TableDef { id: 0, name: String::new(), columns: Vec::new(), primary_key: Vec::new(), partition_len: 0 };
            let compiled = compile(expr, &none, params).ok_or(ExecError::FeatureNotSupported(msg))?;
            match compiled.eval(&[], &none) {
                Ok(v) => Ok(val_input(v)),
                Err(EvalError::Sql(e)) => Err(e),
                Err(EvalError::Unsupported) => {
                    Err(ExecError::FeatureNotSupported(format!("cannot evaluate {expr} here")))
                }
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_expr;
    use ordo_meta::catalog::ColumnDef;

    fn table() -> TableDef {
        let col = |name: &str, ty| ColumnDef { name: name.into(), ty, nullable: true };
        TableDef {
            id: 1,
            name: "t".into(),
            columns: vec![
                col("id", SqlType::Int),
                col("bal", SqlType::Numeric { precision: 12, scale: 2 }),
                col("name", SqlType::Text),
                col("n", SqlType::BigInt),
            ],
            primary_key: vec![0],
            partition_len: 1,
        }
    }

    fn eval(sql: &str, row: &[Datum]) -> Result<Val, EvalError> {
        let t = table();
        compile(&parse_expr(sql).unwrap(), &t, &[Param::Int(7)])
            .unwrap_or_else(|| panic!("{sql} compiles"))
            .eval(row, &t)
    }

    #[test]
    fn arithmetic_comparison_and_nulls_follow_sql() {
        let row = [Datum::Int(3), Datum::Decimal(1050), Datum::Text("ab".into()), Datum::Null];
        assert_eq!(eval("bal + 1", &row).unwrap(), Val::Dec(1150, 2));
        assert_eq!(eval("bal - 0.5", &row).unwrap(), Val::Dec(1000, 2));
        assert_eq!(eval("bal * 2", &row).unwrap(), Val::Dec(2100, 2));
        assert_eq!(eval("id * $1 - 1", &row).unwrap(), Val::Int(20));
        assert_eq!(eval("id = 3 AND name = 'ab'", &row).unwrap(), Val::Bool(true));
        assert_eq!(eval("name > 'b'", &row).unwrap(), Val::Bool(false));
        assert_eq!(eval("n + 1", &row).unwrap(), Val::Null);
        assert_eq!(eval("n = 1 OR id = 3", &row).unwrap(), Val::Bool(true));
        assert_eq!(eval("n = 1 AND id = 3", &row).unwrap(), Val::Null);
        assert_eq!(eval("n IS NULL AND NOT id <> 3", &row).unwrap(), Val::Bool(true));
        assert!(matches!(eval("name + 1", &row), Err(EvalError::Unsupported)));
        let big = [Datum::Int(i64::MAX), Datum::Null, Datum::Null, Datum::Int(i64::MAX)];
        assert_eq!(eval("CASE WHEN id - 1 >= 10 THEN id - 1 ELSE id - 1 + 91 END", &row).unwrap(), Val::Int(93));
        assert_eq!(eval("CASE WHEN id > 1 THEN bal END", &row).unwrap(), Val::Dec(1050, 2));
        assert_eq!(eval("CASE WHEN n > 1 THEN 1 END", &row).unwrap(), Val::Null);
        assert_eq!(eval("name || '  ' || name", &row).unwrap(), Val::Text("ab  ab".into()));
        assert_eq!(eval("substr('x' || name, 1, 2)", &row).unwrap(), Val::Text("xa".into()));
        assert_eq!(eval("substr(name, 2)", &row).unwrap(), Val::Text("b".into()));
        assert_eq!(eval("substr(name, 0, 2)", &row).unwrap(), Val::Text("a".into()));
        assert_eq!(eval("substr(name, 5, 2)", &row).unwrap(), Val::Text("".into()));
        assert_eq!(eval("substr(n, 1, 2)", &row).unwrap(), Val::Null);
        assert!(matches!(eval("n + 1", &big), Err(EvalError::Sql(ExecError::NumericValueOutOfRange(_)))));
        // Scales add up in products: bounded, never wrapped.
        let product = vec!["bal"; 40].join(" * ");
        assert!(matches!(eval(&product, &row), Err(EvalError::Sql(ExecError::NumericValueOutOfRange(_)))));
    }

    #[test]
    fn other_shapes_are_left_to_datafusion() {
        let t = table();
        for sql in ["bal / 2", "upper(name)", "id IN (1, 2)", "CASE id WHEN 1 THEN 2 END"] {
            assert!(compile(&parse_expr(sql).unwrap(), &t, &[]).is_none(), "{sql}");
        }
    }
}
