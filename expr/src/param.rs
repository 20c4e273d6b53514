//! Parameter values: what a client sends for `$1`, `$2`, ... and what a
//! statement of a transaction hands to later ones.

use ordo_meta::catalog::SqlType;
use ordo_meta::datum::Datum;
use serde::{Deserialize, Serialize};

use crate::error::ExecError;

/// A statement parameter as the client sent it (a JSON scalar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Values a statement of a transaction produced (`RETURNING`, `SELECT`)
    /// and a later one uses: they keep their SQL type.
    Decimal {
        value: i128,
        precision: u8,
        scale: i8,
    },
    Date(i32),
    /// Microseconds since the Unix epoch, no time zone.
    Timestamp(i64),
}

impl Param {
    pub fn from_json(v: &serde_json::Value) -> Result<Param, ExecError> {
        Ok(match v {
            serde_json::Value::Null => Param::Null,
            serde_json::Value::Bool(b) => Param::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Param::Int(i),
                None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Param::Text(s.clone()),
            other => return Err(ExecError::InvalidParameter(format!("parameter must be a scalar, got {other}"))),
        })
    }
}

/// A stored value as a typed parameter (what DataFusion's output gives).
pub fn datum_param(d: &Datum, ty: &SqlType) -> Param {
    match (d, ty) {
        (Datum::Null, _) => Param::Null,
        (Datum::Int(i), _) => Param::Int(*i),
        (Datum::Float(f), _) => Param::Float(*f),
        (Datum::Decimal(v), SqlType::Numeric { precision, scale }) => {
            Param::Decimal { value: *v, precision: *precision, scale: *scale }
        }
        (Datum::Decimal(v), _) => Param::Decimal { value: *v, precision: 38, scale: 0 },
        (Datum::Text(s), _) => Param::Text(s.clone()),
        (Datum::Bool(b), _) => Param::Bool(*b),
        (Datum::Date(d), _) => Param::Date(*d),
        (Datum::Timestamp(t), _) => Param::Timestamp(*t),
    }
}
