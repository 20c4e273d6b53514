//! Statement results as the HTTP API returns them.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, SchemaRef,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use ordo_expr::arrow::pg_type_name;
use ordo_expr::coerce::decimal_to_string;
use ordo_expr::{ExecError, ExecResult};
use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StatementResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    pub rows_affected: u64,
}

impl StatementResult {
    pub fn affected(n: u64) -> StatementResult {
        StatementResult { rows_affected: n, ..Default::default() }
    }

    /// The rows of a query, values rendered like PostgreSQL's JSON output
    /// (numbers as numbers, NUMERIC as exact strings, dates as ISO text).
    pub fn from_batches(schema: &SchemaRef, batches: &[RecordBatch]) -> ExecResult<StatementResult> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column { name: f.name().clone(), type_name: pg_type_name(f.data_type()).to_string() })
            .collect();
        let opts = FormatOptions::new()
            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
            .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"))
            .with_date_format(Some("%Y-%m-%d"));
        let mut rows = Vec::new();
        for b in batches {
            let mut cols = Vec::with_capacity(b.num_columns());
            for c in b.columns() {
                let f = ArrayFormatter::try_new(c.as_ref(), &opts).map_err(|e| ExecError::Internal(e.to_string()))?;
                cols.push((c, f));
            }
            for r in 0..b.num_rows() {
                rows.push(cols.iter().map(|(a, f)| json_value(a.as_ref(), f, r)).collect());
            }
        }
        let rows_affected = rows.len() as u64;
        Ok(StatementResult { columns, rows, rows_affected })
    }
}

fn json_value(a: &dyn Array, f: &ArrayFormatter<'_>, r: usize) -> Value {
    if a.is_null(r) {
        return Value::Null;
    }
    let float =
        |v: f64| serde_json::Number::from_f64(v).map(Value::Number).unwrap_or_else(|| Value::String(v.to_string()));
    match a.data_type() {
        DataType::Int8 => a.as_primitive::<Int8Type>().value(r).into(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(r).into(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(r).into(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(r).into(),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(r).into(),
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(r).into(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(r).into(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(r).into(),
        DataType::Float32 => float(a.as_primitive::<Float32Type>().value(r) as f64),
        DataType::Float64 => float(a.as_primitive::<Float64Type>().value(r)),
        DataType::Decimal128(_, s) => Value::String(decimal_to_string(a.as_primitive::<Decimal128Type>().value(r), *s)),
        DataType::Boolean => Value::Bool(a.as_boolean().value(r)),
        _ => Value::String(f.value(r).to_string()),
    }
}
