//! `SUM` over integers without wrapping around. DataFusion's `sum` adds
//! integers with wrapping arithmetic, so the sum of two rows holding
//! `9223372036854775807` and `1` would be negative. PostgreSQL's `sum(bigint)`
//! returns NUMERIC and cannot overflow at these sizes; OrdoDB keeps BIGINT
//! (as the fast path's programs do) and raises `22003` instead of a wrong
//! answer. The sum is kept exactly (in 128 bits) and checked once, at the
//! end, so only a result outside BIGINT fails — not a running total that
//! leaves the range and comes back, whose failure would depend on the order
//! rows and partial sums arrive in. [`crate::checked::CheckedIntegerArithmetic`]
//! swaps DataFusion's `sum` of a signed integer argument for [`checked_sum`],
//! which has the same name and result type, so plans and column names stay
//! as they were.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Int64Type};
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

    /// The exact running sum; for `sum(DISTINCT x)`, the values seen so far.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let name = format_state_name(args.name, if args.is_distinct { "distinct" } else { "value" });
        let ty = if args.is_distinct {
            DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true)))
        } else {
            STATE_TYPE
        };
        Ok(vec![Arc::new(Field::new(name, ty, true))])
    }
}

/// A partial sum: exact, as a NUMERIC of 38 digits (`i128`).
const STATE_TYPE: DataType = DataType::Decimal128(38, 0);

fn out_of_range() -> DataFusionError {
    DataFusionError::External(Box::new(ExecError::NumericValueOutOfRange("bigint out of range".into())))
}

/// `sum + v`, exact. (Fewer than 2^64 BIGINTs cannot leave `i128`; checked
/// all the same.)
fn add(sum: Option<i128>, v: i128) -> Result<Option<i128>> {
    Ok(Some(sum.unwrap_or(0).checked_add(v).ok_or_else(out_of_range)?))
}

/// The result: the exact sum if it is a BIGINT, else `22003`.
fn result(sum: Option<i128>) -> Result<ScalarValue> {
    let sum = sum.map(i64::try_from).transpose().map_err(|_| out_of_range())?;
    Ok(ScalarValue::Int64(sum))
}

/// The values of an integer column as BIGINT (NULLs skipped).
fn int64s(values: &ArrayRef) -> Result<Vec<i64>> {
    let values = cast(values, &DataType::Int64)?;
    Ok(values.as_primitive::<Int64Type>().iter().flatten().collect())
}

/// `None` until a non-NULL value arrives: the sum of no rows is NULL.
#[derive(Debug, Default)]
struct Sum {
    sum: Option<i128>,
}

impl Accumulator for Sum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for v in int64s(&values[0])? {
            self.sum = add(self.sum, i128::from(v))?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for v in states[0].as_primitive::<Decimal128Type>().iter().flatten() {
            self.sum = add(self.sum, v)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Decimal128(self.sum, 38, 0)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        result(self.sum)
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
        let mut sum: Option<i128> = None;
        for &v in &self.seen {
            sum = add(sum, i128::from(v))?;
        }
        result(sum)
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
        // A running total may leave BIGINT on the way: only the sum counts,
        // whatever order the rows come in.
        let max = i64::MAX;
        // (Distinct values: DataFusion plans `sum(x), sum(DISTINCT x)` as a
        // sum per value of x first, which must itself be a BIGINT.)
        let rows = format!("(VALUES ({max}), (1), (-1), (-{max}), (5), (7))");
        let got = run(&format!("SELECT sum(column1), sum(DISTINCT column1) FROM {rows}")).await.unwrap();
        assert_eq!(got, ["sum(column1)|sum(DISTINCT column1)", "12|12"]);
        // Not integers: DataFusion's own sum.
        let got = run("SELECT sum(x) AS s FROM (VALUES (1.5), (2.25)) AS v(x)").await.unwrap();
        assert_eq!(got, ["s", "3.75"]);
    }
}
