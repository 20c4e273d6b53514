//! Coercion of input values (SQL literals, JSON parameters, computed values)
//! to the stored [`Datum`] of a column type, with PostgreSQL's errors.

use ordo_meta::catalog::{ColumnDef, SqlType};
use ordo_meta::datum::Datum;

use crate::error::{ExecError, ExecResult};
use crate::param::Param;

/// A value before it has a column type: what a literal or a parameter gives.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Null,
    Int(i64),
    Float(f64),
    /// An exact numeric literal too big or too precise for `Int` (kept as text).
    Number(String),
    Text(String),
    Bool(bool),
    /// Already typed (e.g. computed by DataFusion against the column type).
    Datum(Datum),
}

impl Input {
    pub fn from_param(p: &Param) -> Input {
        match p {
            Param::Null => Input::Null,
            Param::Bool(b) => Input::Bool(*b),
            Param::Int(i) => Input::Int(*i),
            Param::Float(f) => Input::Float(*f),
            Param::Text(s) => Input::Text(s.clone()),
            Param::Decimal { value, scale, .. } => Input::Number(decimal_to_string(*value, *scale)),
            Param::Date(d) => Input::Datum(Datum::Date(*d)),
            Param::Timestamp(t) => Input::Datum(Datum::Timestamp(*t)),
        }
    }

    /// A numeric literal as written in SQL.
    pub fn from_number_literal(text: &str) -> Input {
        match text.parse::<i64>() {
            Ok(i) => Input::Int(i),
            Err(_) => Input::Number(text.to_string()),
        }
    }
}

/// Coerces `input` for storage in `col`, enforcing NOT NULL, ranges and lengths.
pub fn coerce(input: Input, col: &ColumnDef) -> ExecResult<Datum> {
    let d = coerce_type(input, &col.ty, &col.name)?;
    if d.is_null() && !col.nullable {
        return Err(ExecError::NotNullViolation(format!(
            "null value in column \"{}\" violates not-null constraint",
            col.name
        )));
    }
    Ok(d)
}

fn mismatch(col: &str, ty: &SqlType, what: &str) -> ExecError {
    ExecError::DatatypeMismatch(format!(
        "column \"{col}\" is of type {} but expression is of type {what}",
        ty.pg_name()
    ))
}

fn bad_text(ty: &str, s: &str) -> ExecError {
    ExecError::InvalidTextRepresentation(format!("invalid input syntax for type {ty}: \"{s}\""))
}

fn int_in_range(v: i64, ty: &SqlType) -> ExecResult<Datum> {
    let (lo, hi, name) = match ty {
        SqlType::SmallInt => (i16::MIN as i64, i16::MAX as i64, "smallint"),
        SqlType::Int => (i32::MIN as i64, i32::MAX as i64, "integer"),
        _ => (i64::MIN, i64::MAX, "bigint"),
    };
    if v < lo || v > hi {
        return Err(ExecError::NumericValueOutOfRange(format!("{name} out of range")));
    }
    Ok(Datum::Int(v))
}

pub fn coerce_type(input: Input, ty: &SqlType, col: &str) -> ExecResult<Datum> {
    use SqlType::*;
    match (input, ty) {
        (Input::Null, _) => Ok(Datum::Null),
        (Input::Datum(d), _) => coerce_datum(d, ty, col),
        (Input::Int(v), SmallInt | Int | BigInt) => int_in_range(v, ty),
        (Input::Int(v), Double) => Ok(Datum::Float(v as f64)),
        (Input::Int(v), Numeric { precision, scale }) => decimal_from_str(&v.to_string(), *precision, *scale),
        (Input::Float(f), Double) if f.is_finite() => Ok(Datum::Float(f)),
        (Input::Float(_), Double) => {
            Err(ExecError::NumericValueOutOfRange("double precision value out of range".into()))
        }
        (Input::Float(f), Numeric { precision, scale }) => decimal_from_str(&f.to_string(), *precision, *scale),
        (Input::Float(f), SmallInt | Int | BigInt) => {
            if !f.is_finite() || f.round() < i64::MIN as f64 || f.round() > i64::MAX as f64 {
                return Err(ExecError::NumericValueOutOfRange(format!("{} out of range", ty.pg_name())));
            }
            int_in_range(f.round() as i64, ty)
        }
        (Input::Number(s), SmallInt | Int | BigInt) => match s.parse::<f64>() {
            Ok(f) if s.contains(['.', 'e', 'E']) => coerce_type(Input::Float(f), ty, col),
            _ => Err(ExecError::NumericValueOutOfRange(format!("{} out of range", ty.pg_name()))),
        },
        (Input::Number(s), Double) => match s.parse::<f64>() {
            Ok(f) => coerce_type(Input::Float(f), ty, col),
            Err(_) => Err(bad_text("double precision", &s)),
        },
        (Input::Number(s), Numeric { precision, scale }) => decimal_from_str(&s, *precision, *scale),
        (Input::Text(s), Text) => Ok(Datum::Text(s)),
        (Input::Text(s), Varchar(n)) => {
            if s.chars().count() > *n as usize {
                return Err(ExecError::StringDataRightTruncation(format!(
                    "value too long for type character varying({n})"
                )));
            }
            Ok(Datum::Text(s))
        }
        (Input::Text(s), SmallInt | Int | BigInt) => match s.trim().parse::<i64>() {
            Ok(v) => int_in_range(v, ty),
            Err(_) => Err(bad_text(ty.pg_name(), &s)),
        },
        (Input::Text(s), Double) => {
            s.trim().parse::<f64>().map(Datum::Float).map_err(|_| bad_text("double precision", &s))
        }
        (Input::Text(s), Numeric { precision, scale }) => decimal_from_str(s.trim(), *precision, *scale),
        (Input::Text(s), Bool) => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => Ok(Datum::Bool(true)),
            "f" | "false" | "no" | "off" | "0" => Ok(Datum::Bool(false)),
            _ => Err(bad_text("boolean", &s)),
        },
        (Input::Text(s), Date) => parse_date(&s).map(Datum::Date).ok_or_else(|| bad_text("date", &s)),
        (Input::Text(s), Timestamp) => {
            parse_timestamp(&s).map(Datum::Timestamp).ok_or_else(|| bad_text("timestamp", &s))
        }
        (Input::Bool(b), Bool) => Ok(Datum::Bool(b)),
        (Input::Int(_) | Input::Float(_) | Input::Number(_), _) => Err(mismatch(col, ty, "numeric")),
        (Input::Bool(_), _) => Err(mismatch(col, ty, "boolean")),
    }
}

fn coerce_datum(d: Datum, ty: &SqlType, col: &str) -> ExecResult<Datum> {
    match d {
        Datum::Null => Ok(Datum::Null),
        Datum::Int(v) => coerce_type(Input::Int(v), ty, col),
        Datum::Float(f) => coerce_type(Input::Float(f), ty, col),
        Datum::Text(s) => coerce_type(Input::Text(s), ty, col),
        Datum::Bool(b) => coerce_type(Input::Bool(b), ty, col),
        Datum::Timestamp(v) if *ty == SqlType::Timestamp => Ok(Datum::Timestamp(v)),
        Datum::Date(v) if *ty == SqlType::Date => Ok(Datum::Date(v)),
        Datum::Date(v) if *ty == SqlType::Timestamp => Ok(Datum::Timestamp(v as i64 * 86_400_000_000)),
        // Decimals computed by DataFusion arrive already at the column scale.
        Datum::Decimal(v) if matches!(ty, SqlType::Numeric { .. }) => Ok(Datum::Decimal(v)),
        other => Err(mismatch(col, ty, &format!("{other:?}"))),
    }
}

/// Parses a decimal literal into the unscaled integer at `scale`, rounding
/// half away from zero like PostgreSQL, and checks the precision.
pub fn decimal_from_str(s: &str, precision: u8, scale: i8) -> ExecResult<Datum> {
    let err = || bad_text("numeric", s);
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().map_err(|_| err())?),
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err());
    }
    if !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let digits: String = format!("{int_part}{frac_part}");
    // value = digits * 10^(exp - frac_len); we want value * 10^scale.
    let shift = exp - frac_part.len() as i32 + scale as i32;
    let digits = digits.trim_start_matches('0');
    let overflow = || ExecError::NumericValueOutOfRange("numeric field overflow".into());
    let mut unscaled: i128 = 0;
    let keep = if shift >= 0 { digits.len() } else { digits.len().saturating_sub((-shift) as usize) };
    for b in digits[..keep].bytes() {
        unscaled = unscaled.checked_mul(10).and_then(|v| v.checked_add((b - b'0') as i128)).ok_or_else(overflow)?;
    }
    if shift > 0 {
        for _ in 0..shift {
            unscaled = unscaled.checked_mul(10).ok_or_else(overflow)?;
        }
    } else if keep < digits.len() && digits.as_bytes()[keep] >= b'5' {
        unscaled += 1;
    }
    let limit = 10i128.checked_pow(precision as u32).ok_or_else(overflow)?;
    if unscaled >= limit {
        return Err(overflow());
    }
    Ok(Datum::Decimal(if neg { -unscaled } else { unscaled }))
}

/// Formats an unscaled decimal at `scale` the way PostgreSQL prints it.
pub fn decimal_to_string(v: i128, scale: i8) -> String {
    if scale <= 0 {
        // A negative scale (`1e40` read as NUMERIC): zeros appended as
        // text, since the value itself may not fit an i128.
        let zeros = if v == 0 { 0 } else { scale.unsigned_abs() as usize };
        return format!("{v}{}", "0".repeat(zeros));
    }
    let s = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if s.len() <= scale { format!("{}{}", "0".repeat(scale + 1 - s.len()), s) } else { s };
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{}{i}.{f}", if v < 0 { "-" } else { "" })
}

pub(crate) const DAYS_FROM_CE_TO_UNIX: i32 = 719_163;

pub fn parse_date(s: &str) -> Option<i32> {
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    Some(chrono::Datelike::num_days_from_ce(&d) - DAYS_FROM_CE_TO_UNIX)
}

pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S%.fZ"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    parse_date(s).map(|d| d as i64 * 86_400_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: SqlType, nullable: bool) -> ColumnDef {
        ColumnDef { name: "c".into(), ty, nullable }
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(coerce(Input::Int(5), &col(SqlType::SmallInt, true)).unwrap(), Datum::Int(5));
        let e = coerce(Input::Int(40_000), &col(SqlType::SmallInt, true)).unwrap_err();
        assert_eq!(e.sqlstate(), "22003");
        let e = coerce(Input::Text("abc".into()), &col(SqlType::BigInt, true)).unwrap_err();
        assert_eq!(e.sqlstate(), "22P02");
        let e = coerce(Input::Bool(true), &col(SqlType::Int, true)).unwrap_err();
        assert_eq!(e.sqlstate(), "42804");
    }

    #[test]
    fn decimals_round_and_check_precision() {
        assert_eq!(decimal_from_str("12.345", 10, 2).unwrap(), Datum::Decimal(1235));
        assert_eq!(decimal_from_str("-0.5", 10, 0).unwrap(), Datum::Decimal(-1));
        assert_eq!(decimal_from_str("1e3", 10, 1).unwrap(), Datum::Decimal(10000));
        assert_eq!(decimal_from_str("1000", 4, 2).unwrap_err().sqlstate(), "22003");
        assert_eq!(decimal_from_str("1.2.3", 10, 2).unwrap_err().sqlstate(), "22P02");
        assert_eq!(decimal_to_string(1235, 2), "12.35");
        assert_eq!(decimal_to_string(-5, 2), "-0.05");
        // `1e40` as NUMERIC: scale -40, beyond what an i128 holds.
        assert_eq!(decimal_to_string(1, -40), format!("1{}", "0".repeat(40)));
        assert_eq!(decimal_to_string(-12, -2), "-1200");
        assert_eq!(decimal_to_string(0, -3), "0");
    }

    #[test]
    fn not_null_and_varchar_are_enforced() {
        assert_eq!(coerce(Input::Null, &col(SqlType::Int, false)).unwrap_err().sqlstate(), "23502");
        let e = coerce(Input::Text("abcdef".into()), &col(SqlType::Varchar(3), true)).unwrap_err();
        assert_eq!(e.sqlstate(), "22001");
    }

    #[test]
    fn dates_and_timestamps_parse() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(coerce(Input::Text("nope".into()), &col(SqlType::Date, true)).unwrap_err().sqlstate(), "22P02");
    }
}
