//! `SUM` over integers without wrapping around. DataFusion's `sum` adds
//! integers with wrapping arithmetic, so the sum of two rows holding
//! `9223372036854775807` and `1` would be negative. PostgreSQL's `sum(bigint)`
//! returns NUMERIC and cannot overflow at these sizes; OrdoDB keeps BIGINT
//! (as the fast path's programs do) and raises `22003` instead of a wrong
//! answer. [`crate::checked::CheckedIntegerArithmetic`] swaps DataFusion's
//! `sum` of an integer argument for [`checked_sum`], which has the same name
//! and result type, so plans and column names stay as they were.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

use crate::error::ExecError;

/// The checked `sum` aggregate (of any integer type, as BIGINT).
pub fn checked_sum() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(CheckedSum { signature: Signature::any(1, Volatility::Immutable) }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedSum {
    signature: Signature,
}

impl AggregateUDFImpl for CheckedSum {
    /// DataFusion's name: the result column of `sum(x)` keeps its name.
    fn name(&self) -> &str {
        "sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(if args.is_distinct { Box::<DistinctSum>::default() } else { Box::<Sum>::default() })
    }

    /// The running sum; for `sum(DISTINCT x)`, the values seen so far.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let name = format_state_name(args.name, if args.is_distinct { "distinct" } else { "value" });
        let ty = if args.is_distinct {
            DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true)))
        } else {
            DataType::Int64
        };
        Ok(vec![Arc::new(Field::new(name, ty, true))])
    }
}

fn out_of_range() -> DataFusionError {
    DataFusionError::External(Box::new(ExecError::NumericValueOutOfRange("bigint out of range".into())))
}

/// The values of an integer column as BIGINT (NULLs skipped).
fn int64s(values: &ArrayRef) -> Result<Vec<i64>> {
    let values = cast(values, &DataType::Int64)?;
    Ok(values.as_primitive::<Int64Type>().iter().flatten().collect())
}

/// `None` until a non-NULL value arrives: the sum of no rows is NULL.
#[derive(Debug, Default)]
struct Sum {
    sum: Option<i64>,
}

impl Sum {
    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        for v in int64s(values)? {
            self.sum = Some(self.sum.unwrap_or(0).checked_add(v).ok_or_else(out_of_range)?);
        }
        Ok(())
    }
}

impl Accumulator for Sum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(self.sum)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(self.sum))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// The distinct values seen; summed (checked) at the end.
#[derive(Debug, Default)]
struct DistinctSum {
    seen: BTreeSet<i64>,
}

impl Accumulator for DistinctSum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.seen.extend(int64s(&values[0])?);
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for list in states[0].as_list::<i32>().iter().flatten() {
            self.seen.extend(int64s(&list)?);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self.seen.iter().map(|&v| ScalarValue::Int64(Some(v))).collect();
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Int64))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut sum: Option<i64> = None;
        for &v in &self.seen {
            sum = Some(sum.unwrap_or(0).checked_add(v).ok_or_else(out_of_range)?);
        }
        Ok(ScalarValue::Int64(sum))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.seen.len() * 2 * std::mem::size_of::<i64>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::util::display::array_value_to_string;

    use crate::error::{from_datafusion, ExecError};

    /// The column names, then each row, as `a|b|c` (NULL as the empty string).
    async fn run(sql: &str) -> Result<Vec<String>, ExecError> {
        let ctx = crate::session::context();
        let df = ctx.sql(sql).await.map_err(from_datafusion)?;
        let names: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let mut out = vec![names.join("|")];
        for b in df.collect().await.map_err(from_datafusion)? {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| if c.is_null(r) { String::new() } else { array_value_to_string(c, r).expect("cell") })
                    .collect();
                out.push(cells.join("|"));
            }
        }
        Ok(out)
    }

    const ROWS: &str = "(VALUES (1, 9223372036854775807), (1, 1), (2, 5), (2, 5), (2, NULL), (3, NULL))";

    #[tokio::test]
    async fn a_sum_past_bigint_is_an_error_not_a_wrapped_number() {
        for sql in [
            format!("SELECT sum(column2) FROM {ROWS}"),
            format!("SELECT column1, sum(column2) FROM {ROWS} GROUP BY column1"),
            format!("SELECT sum(DISTINCT column2) FROM {ROWS}"),
        ] {
            let e = run(&sql).await.unwrap_err();
            assert_eq!(e.sqlstate(), "22003", "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn sums_in_range_keep_their_values_names_and_nulls() {
        let rows = "(VALUES (2, 5), (2, 5), (2, NULL), (3, NULL), (4, -9223372036854775807), (4, -1))";
        let got = run(&format!(
            "SELECT column1, sum(column2), sum(DISTINCT column2) FROM {rows} GROUP BY column1 ORDER BY column1"
        ))
        .await
        .unwrap();
        let want = [
            "column1|sum(column2)|sum(DISTINCT column2)",
            "2|10|5",
            "3||",
            "4|-9223372036854775808|-9223372036854775808",
        ];
        assert_eq!(got, want);
        // Not integers: DataFusion's own sum.
        let got = run("SELECT sum(x) AS s FROM (VALUES (1.5), (2.25)) AS v(x)").await.unwrap();
        assert_eq!(got, ["s", "3.75"]);
    }
}
