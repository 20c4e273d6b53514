//! Rows <-> Arrow: the schema of a table, record batches of its rows, and
//! the values of computed Arrow columns as inputs for a column type.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int16Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    Schema, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::common::ScalarValue;
use ordo_meta::catalog::{SqlType, TableDef};
use ordo_meta::datum::Datum;

use crate::coerce::{decimal_to_string, Input};
use crate::error::{ExecError, ExecResult};
use crate::param::Param;

pub fn arrow_type(ty: &SqlType) -> DataType {
    match ty {
        SqlType::SmallInt => DataType::Int16,
        SqlType::Int => DataType::Int32,
        SqlType::BigInt => DataType::Int64,
        SqlType::Double => DataType::Float64,
        SqlType::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
        SqlType::Text | SqlType::Varchar(_) => DataType::Utf8,
        SqlType::Bool => DataType::Boolean,
        SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        SqlType::Date => DataType::Date32,
    }
}

/// The PostgreSQL name of an Arrow type (for result column headers).
pub fn pg_type_name(dt: &DataType) -> &'static str {
    match dt {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "int2",
        DataType::Int32 | DataType::UInt16 => "int4",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "int8",
        DataType::Float16 | DataType::Float32 => "float4",
        DataType::Float64 => "float8",
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            "numeric"
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Boolean => "bool",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Null => "text",
        _ => "text",
    }
}

pub fn table_schema(table: &TableDef) -> SchemaRef {
    Arc::new(Schema::new(
        table.columns.iter().map(|c| Field::new(&c.name, arrow_type(&c.ty), c.nullable)).collect::<Vec<_>>(),
    ))
}

/// One record batch holding `rows` of `table` (columns in table order).
pub fn rows_to_batch(table: &TableDef, schema: &SchemaRef, rows: &[Vec<Datum>]) -> ExecResult<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    for (ci, col) in table.columns.iter().enumerate() {
        let cells = rows.iter().map(|r| &r[ci]);
        let arr: ArrayRef = match &col.ty {
            SqlType::SmallInt => Arc::new(cells.map(|d| int(d).map(|v| v as i16)).collect::<Int16Array>()),
            SqlType::Int => Arc::new(cells.map(|d| int(d).map(|v| v as i32)).collect::<Int32Array>()),
            SqlType::BigInt => Arc::new(cells.map(int).collect::<Int64Array>()),
            SqlType::Double => {
                Arc::new(cells.map(|d| if let Datum::Float(f) = d { Some(*f) } else { None }).collect::<Float64Array>())
            }
            SqlType::Numeric { precision, scale } => Arc::new(
                cells
                    .map(|d| if let Datum::Decimal(v) = d { Some(*v) } else { None })
                    .collect::<Decimal128Array>()
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| ExecError::Internal(e.to_string()))?,
            ),
            SqlType::Text | SqlType::Varchar(_) => Arc::new(
                cells.map(|d| if let Datum::Text(s) = d { Some(s.as_str()) } else { None }).collect::<StringArray>(),
            ),
            SqlType::Bool => {
                Arc::new(cells.map(|d| if let Datum::Bool(b) = d { Some(*b) } else { None }).collect::<BooleanArray>())
            }
            SqlType::Timestamp => Arc::new(
                cells
                    .map(|d| if let Datum::Timestamp(t) = d { Some(*t) } else { None })
                    .collect::<TimestampMicrosecondArray>(),
            ),
            SqlType::Date => {
                Arc::new(cells.map(|d| if let Datum::Date(v) = d { Some(*v) } else { None }).collect::<Date32Array>())
            }
        };
        arrays.push(arr);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| ExecError::Internal(e.to_string()))
}

fn int(d: &Datum) -> Option<i64> {
    if let Datum::Int(v) = d {
        Some(*v)
    } else {
        None
    }
}

/// The value at `row` of a computed column, as an input to coerce.
pub fn input_at(array: &dyn Array, row: usize) -> ExecResult<Input> {
    if array.is_null(row) {
        return Ok(Input::Null);
    }
    let unsupported =
        || ExecError::FeatureNotSupported(format!("values of type {} cannot be stored", array.data_type()));
    Ok(match array.data_type() {
        DataType::Null => Input::Null,
        DataType::Int8 => Input::Int(array.as_primitive::<Int8Type>().value(row) as i64),
        DataType::Int16 => Input::Int(array.as_primitive::<Int16Type>().value(row) as i64),
        DataType::Int32 => Input::Int(array.as_primitive::<Int32Type>().value(row) as i64),
        DataType::Int64 => Input::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Input::Int(array.as_primitive::<UInt8Type>().value(row) as i64),
        DataType::UInt16 => Input::Int(array.as_primitive::<UInt16Type>().value(row) as i64),
        DataType::UInt32 => Input::Int(array.as_primitive::<UInt32Type>().value(row) as i64),
        DataType::UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(row);
            i64::try_from(v).map(Input::Int).unwrap_or_else(|_| Input::Number(v.to_string()))
        }
        DataType::Float32 => Input::Float(array.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => Input::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            Input::Number(decimal_to_string(array.as_primitive::<Decimal128Type>().value(row), *scale))
        }
        DataType::Utf8 => Input::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Input::Text(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Input::Text(array.as_string_view().value(row).to_string()),
        DataType::Boolean => Input::Bool(array.as_boolean().value(row)),
        DataType::Date32 => Input::Datum(Datum::Date(array.as_primitive::<Date32Type>().value(row))),
        DataType::Timestamp(unit, _) => {
            let micros = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row).saturating_mul(1_000_000),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row).saturating_mul(1_000)
                }
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000,
            };
            Input::Datum(Datum::Timestamp(micros))
        }
        _ => return Err(unsupported()),
    })
}

/// A parameter as a DataFusion literal.
pub fn param_scalar(p: &Param) -> ScalarValue {
    match p {
        Param::Null => ScalarValue::Null,
        Param::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Param::Int(i) => ScalarValue::Int64(Some(*i)),
        Param::Float(f) => ScalarValue::Float64(Some(*f)),
        Param::Text(s) => ScalarValue::Utf8(Some(s.clone())),
        Param::Decimal { value, precision, scale } => ScalarValue::Decimal128(Some(*value), *precision, *scale),
        Param::Date(d) => ScalarValue::Date32(Some(*d)),
        Param::Timestamp(t) => ScalarValue::TimestampMicrosecond(Some(*t), None),
    }
}

/// A parameter as a SQL literal, for statements whose placeholders are
/// replaced by values before planning (types then follow SQL's literal
/// rules, as if the client had written the value).
pub fn param_sql(p: &Param) -> String {
    match p {
        Param::Null => "NULL".into(),
        Param::Bool(b) => b.to_string(),
        Param::Int(i) => i.to_string(),
        Param::Float(f) if f.is_finite() => format!("CAST({f:?} AS DOUBLE PRECISION)"),
        Param::Float(f) => format!("CAST('{f}' AS DOUBLE PRECISION)"),
        Param::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Param::Decimal { value, precision, scale } => {
            format!("CAST('{}' AS DECIMAL({precision},{scale}))", decimal_to_string(*value, *scale))
        }
        Param::Date(d) => {
            match chrono::NaiveDate::from_num_days_from_ce_opt(*d + crate::coerce::DAYS_FROM_CE_TO_UNIX) {
                Some(date) => format!("DATE '{}'", date.format("%Y-%m-%d")),
                None => "NULL".into(),
            }
        }
        Param::Timestamp(t) => match chrono::DateTime::from_timestamp_micros(*t) {
            Some(ts) => format!("TIMESTAMP '{}'", ts.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")),
            None => "NULL".into(),
        },
    }
}

/// The value at `row` of a result column, kept with its type so a later
/// statement can use it as a parameter.
pub fn param_at(array: &dyn Array, row: usize) -> ExecResult<Param> {
    if array.is_null(row) {
        return Ok(Param::Null);
    }
    Ok(match array.data_type() {
        DataType::Decimal128(precision, scale) => Param::Decimal {
            value: array.as_primitive::<Decimal128Type>().value(row),
            precision: *precision,
            scale: *scale,
        },
        _ => match input_at(array, row)? {
            Input::Null => Param::Null,
            Input::Int(i) => Param::Int(i),
            Input::Float(f) => Param::Float(f),
            Input::Bool(b) => Param::Bool(b),
            Input::Text(s) | Input::Number(s) => Param::Text(s),
            Input::Datum(Datum::Date(d)) => Param::Date(d),
            Input::Datum(Datum::Timestamp(t)) => Param::Timestamp(t),
            Input::Datum(other) => Param::Text(format!("{other:?}")),
        },
    })
}
