//! Checked integer arithmetic in DataFusion's plans. DataFusion computes
//! `+`, `-`, `*` and unary minus on integers wrapping around on overflow
//! (its `BinaryExpr` has checked arithmetic off, and no setting turns it
//! on), so `9223372036854775807 + 1` would be a negative number. PostgreSQL
//! — and the fast path ([`crate::fast`]) — raise `22003` instead. The
//! analyzer rule [`CheckedIntegerArithmetic`], run after type coercion,
//! replaces each such integer operation with a function that evaluates it
//! with Arrow's checked kernels; decimal and float arithmetic is left as
//! DataFusion plans it. The functions keep the operators' names, so result
//! columns are named as before. `sum` of integers is swapped for a checked
//! one the same way ([`crate::checked_sum`]).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; see the module documentation.
#[derive(Debug, Default)]
pub struct CheckedIntegerArithmetic;

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn name(&self) -> &str {
        "ordo_checked_integer_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan.transform_up_with_subqueries(rewrite_plan)?.data)
    }
}

/// Rewrites the expressions of one plan node, typed against its inputs
/// (and a scan's table). An expression whose type cannot be told here
/// (an outer reference, say) is left as it is.
fn rewrite_plan(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let mut schema = datafusion::logical_expr::utils::merge_schema(&plan.inputs());
    if let LogicalPlan::TableScan(ts) = &plan {
        schema.merge(&DFSchema::try_from_qualified_schema(ts.table_name.clone(), &ts.source.schema())?);
    }
    plan.map_expressions(|e| e.transform_up(|e| rewrite_expr(e, &schema)))
}

fn rewrite_expr(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let integer = |x: &Expr| x.get_type(schema).ok().filter(DataType::is_integer);
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply) =>
        {
            match (integer(&left), integer(&right)) {
                (Some(l), Some(r)) if l == r => Ok(Transformed::yes(call(Arith::Binary(op), vec![*left, *right]))),
                _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right }))),
            }
        }
        Expr::Negative(inner) => match integer(&inner) {
            Some(_) => Ok(Transformed::yes(call(Arith::Negate, vec![*inner]))),
            None => Ok(Transformed::no(Expr::Negative(inner))),
        },
        // DataFusion's `sum` (or ours again, which has the same name:
        // swapping it for itself changes nothing).
        // Signed only: DataFusion sums unsigned integers into their own
        // type, which this BIGINT sum is not.
        Expr::AggregateFunction(mut agg)
            if agg.func.name() == "sum"
                && matches!(agg.params.args.as_slice(), [x] if integer(x).is_some_and(|t| t.is_signed_integer())) =>
        {
            agg.func = crate::checked_sum::checked_sum();
            Ok(Transformed::yes(Expr::AggregateFunction(agg)))
        }
        other => Ok(Transformed::no(other)),
    }
}

fn call(arith: Arith, args: Vec<Expr>) -> Expr {
    let udf = CheckedUdf { arith, signature: Signature::any(args.len(), Volatility::Immutable) };
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(ScalarUDF::new_from_impl(udf)), args))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Arith {
    Binary(Operator),
    Negate,
}

/// `a + b`, `a - b`, `a * b` or `-a` on integers of one type, checked.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedUdf {
    arith: Arith,
    signature: Signature,
}

impl fmt::Display for Arith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arith::Binary(op) => write!(f, "{op}"),
            Arith::Negate => write!(f, "-"),
        }
    }
}

impl ScalarUDFImpl for CheckedUdf {
    fn name(&self) -> &str {
        match self.arith {
            Arith::Binary(Operator::Plus) => "ordo_checked_add",
            Arith::Binary(Operator::Minus) => "ordo_checked_sub",
            Arith::Binary(_) => "ordo_checked_mul",
            Arith::Negate => "ordo_checked_neg",
        }
    }

    /// Named as the operator it replaces (`a + b`, `(- a)`), so result
    /// columns keep their names.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(match args {
            [a, b] => format!("{} {} {}", a.schema_name(), self.arith, b.schema_name()),
            [a] => format!("(- {})", a.schema_name()),
            _ => format!("{}(...)", self.name()),
        })
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let ty = args.arg_fields.first().map_or(DataType::Null, |f| f.data_type().clone());
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(self.name(), ty, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Scalars only (constant folding): a one-row array comes back, and
        // the answer is a scalar again.
        let scalars = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out: ArrayRef = match (self.arith, arrays.as_slice()) {
            (Arith::Binary(Operator::Plus), [a, b]) => numeric::add(a, b)?,
            (Arith::Binary(Operator::Minus), [a, b]) => numeric::sub(a, b)?,
            (Arith::Binary(Operator::Multiply), [a, b]) => numeric::mul(a, b)?,
            (Arith::Negate, [a]) => {
                let zero = ScalarValue::new_zero(a.data_type())?.to_array_of_size(a.len())?;
                numeric::sub(&zero, a)?
            }
            _ => return datafusion::common::internal_err!("{} called with {} arguments", self.name(), arrays.len()),
        };
        if scalars {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}
