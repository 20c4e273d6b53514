//! Rows as Arrow record batches with a trailing row-index column, so a
//! query's output rows can be traced back to the stored rows they came from.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use ordo_expr::arrow::{rows_to_batch, table_schema};
use ordo_expr::{ExecError, ExecResult};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{decode_row, Datum};

/// The column `rows_with_index` adds: each row's index in its input.
pub const ROW_INDEX_COLUMN: &str = "__ordo_row";

/// The `ROW_INDEX_COLUMN` of a query's output batch over `rows_with_index`
/// (its first column).
pub fn row_indexes(batch: &RecordBatch) -> ExecResult<&Int64Array> {
    batch.column(0).as_any().downcast_ref::<Int64Array>().ok_or_else(|| ExecError::Internal("row index".into()))
}

/// Decodes stored `(key, row)` pairs' rows.
pub fn decode_rows(stored: &[(Vec<u8>, Vec<u8>)]) -> ExecResult<Vec<Vec<Datum>>> {
    stored.iter().map(|(_, v)| decode_row(v)).collect::<Result<_, _>>().map_err(|e| ExecError::Internal(e.to_string()))
}

/// The table's rows plus a trailing row-index column.
pub fn rows_with_index(table: &TableDef, rows: &[Vec<Datum>]) -> ExecResult<RecordBatch> {
    let schema = table_schema(table);
    let base = rows_to_batch(table, &schema, rows)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(ROW_INDEX_COLUMN, DataType::Int64, false));
    let mut cols: Vec<ArrayRef> = base.columns().to_vec();
    cols.push(Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| ExecError::Internal(e.to_string()))
}
